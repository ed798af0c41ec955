import { tf } from './tf.js';
import { PosttrainError } from './errors.js';
import { installWasmKernels } from './wasm-kernels.js';

/** A backend posttrain can run on; `auto` picks the fastest available. */
export type BackendName = 'auto' | 'webgpu' | 'wasm' | 'cpu';

/** What {@link initBackend} chose. */
export interface BackendInfo {
  /** The active tfjs backend. */
  name: 'webgpu' | 'wasm' | 'cpu';
  /** The WebGPU adapter's description (vendor, architecture, device), when on WebGPU. */
  adapter?: string;
  /** True when the WebGPU adapter is a software rasteriser (SwiftShader, lavapipe, a fallback adapter). */
  softwareAdapter?: boolean;
  /** CPU threads the backend computes with. */
  threads: number;
  /** True when the WebGPU adapter supports `shader-f16`. */
  float16: boolean;
}

const isNode = typeof process !== 'undefined' && process.versions?.node !== undefined;

/**
 * Selects and initialises a backend, registering posttrain's kernels for it.
 *
 * - `auto` (the default): WebGPU when a hardware adapter exists (browsers; Node with the optional
 *   `webgpu` package installed), else wasm, else cpu. It never picks a software adapter
 *   (SwiftShader, lavapipe, anything reported as a fallback adapter): those are 5–50× slower than
 *   wasm.
 * - `webgpu`: WebGPU with whatever adapter exists, software ones included (tests ask for them by
 *   name); throws `BACKEND_UNAVAILABLE` when there is none.
 * - `wasm`: the WebAssembly backend (SIMD; threads in browsers with cross-origin isolation).
 * - `cpu`: the plain JavaScript backend, slow but always there.
 *
 * @example
 * ```ts
 * const info = await initBackend();        // { name: 'wasm', threads: 1, float16: false } in Node
 * await initBackend('cpu');                // switch to the reference backend
 * ```
 */
export async function initBackend(name: BackendName = 'auto'): Promise<BackendInfo> {
  // tfjs prints a "use tfjs-node" banner in Node on first use of the cpu backend; posttrain does not
  // use tfjs-node, so the banner is noise.
  tf.env().set('PROD', true);
  switch (name) {
    case 'cpu':
      await activate('cpu');
      return { name: 'cpu', threads: 1, float16: false };
    case 'wasm':
      return initWasm();
    case 'webgpu':
      return initWebGpu(true);
    case 'auto': {
      const gpu = await findAdapter().catch(() => undefined);
      if (gpu && !gpu.software) return initWebGpu(false);
      try {
        return await initWasm();
      } catch {
        return initBackend('cpu');
      }
    }
    default:
      throw new PosttrainError('INVALID_ARGUMENT', `initBackend: expected 'auto', 'webgpu', 'wasm' or 'cpu'; got ${JSON.stringify(name)}`);
  }
}

async function activate(name: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (cause) {
    throw new PosttrainError('BACKEND_UNAVAILABLE', `could not initialise the ${name} backend`, { cause });
  }
  if (!ok || tf.getBackend() !== name) {
    throw new PosttrainError('BACKEND_UNAVAILABLE', `could not initialise the ${name} backend; tfjs is on ${tf.getBackend()}`);
  }
}

async function initWasm(): Promise<BackendInfo> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  installWasmKernels();
  await activate('wasm');
  const threads = typeof wasm.getThreadsCount === 'function' ? wasm.getThreadsCount() : 1;
  return { name: 'wasm', threads, float16: false };
}

interface AdapterFacts {
  description: string;
  software: boolean;
  float16: boolean;
}

interface GpuAdapterLike {
  features: { has(name: string): boolean };
  info?: Record<string, unknown>;
  isFallbackAdapter?: boolean;
  requestAdapterInfo?: () => Promise<Record<string, unknown>>;
}

interface GpuLike {
  requestAdapter(options?: object): Promise<GpuAdapterLike | null>;
}

const softwareNames = /swiftshader|llvmpipe|lavapipe|softpipe|basic render|warp/i;

/** Makes `navigator.gpu` available in Node through the optional `webgpu` package (Dawn). */
async function ensureNavigatorGpu(): Promise<GpuLike | undefined> {
  const nav = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode) return undefined;
  let dawn: { create(options: string[]): GpuLike; globals: object };
  try {
    const moduleName = 'webgpu';
    dawn = (await import(/* @vite-ignore */ moduleName)) as typeof dawn;
  } catch {
    return undefined;
  }
  const gpu = dawn.create([]);
  Object.assign(globalThis, dawn.globals);
  if (nav) {
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
  return gpu;
}

async function findAdapter(): Promise<AdapterFacts | undefined> {
  const gpu = await ensureNavigatorGpu();
  if (!gpu) return undefined;
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return undefined;
  const info = adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {};
  const parts = ['vendor', 'architecture', 'device', 'description']
    .map((k) => info[k])
    .filter((v): v is string => typeof v === 'string' && v !== '');
  const description = parts.join(' ') || 'unknown adapter';
  const fallback = info.isFallbackAdapter === true || adapter.isFallbackAdapter === true;
  return { description, software: fallback || softwareNames.test(description), float16: adapter.features.has('shader-f16') };
}

async function initWebGpu(allowSoftware: boolean): Promise<BackendInfo> {
  const adapter = await findAdapter();
  if (!adapter) {
    throw new PosttrainError('BACKEND_UNAVAILABLE', 'no WebGPU adapter found', {
      help: isNode
        ? "install the optional 'webgpu' package (npm i webgpu) and a Vulkan driver; for a software adapter set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json"
        : 'use a browser with WebGPU enabled',
    });
  }
  if (adapter.software && !allowSoftware) {
    throw new PosttrainError('BACKEND_UNAVAILABLE', `WebGPU adapter "${adapter.description}" is a software rasteriser`);
  }
  // tfjs-backend-webgpu registers itself only if navigator.gpu exists when it is imported.
  await import('@tensorflow/tfjs-backend-webgpu');
  await activate('webgpu');
  return {
    name: 'webgpu',
    adapter: adapter.description,
    softwareAdapter: adapter.software,
    threads: 1,
    float16: adapter.float16,
  };
}
