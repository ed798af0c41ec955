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
 *   name); throws `BACKEND_UNAVAILABLE`, saying why, when there is none. In Node, Vulkan reads
 *   `VK_ICD_FILENAMES` at the first adapter search, so set it before that (in-process is enough).
 *   Read results with `await t.data()`: in Node `dataSync()` on WebGPU throws (tfjs needs
 *   `OffscreenCanvas` for it).
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
  switch (name) {
    case 'cpu':
      await activate('cpu');
      return { name: 'cpu', threads: 1, float16: false };
    case 'wasm':
      return initWasm();
    case 'webgpu': {
      const search = await findAdapter();
      if (!search.adapter) {
        const options = 'cause' in search ? { help: search.help, cause: search.cause } : { help: search.help };
        throw new PosttrainError('BACKEND_UNAVAILABLE', `no WebGPU adapter: ${search.reason}`, options);
      }
      return initWebGpu(search.adapter);
    }
    case 'auto': {
      // On Linux without a GPU device node, Dawn can only find software adapters, which auto never
      // takes; not probing keeps Vulkan's warnings off the terminal.
      const { adapter } = (await linuxWithoutGpu()) ? { adapter: undefined } : await findAdapter();
      if (adapter && !adapter.software) {
        try {
          return await initWebGpu(adapter);
        } catch {
          // A hardware adapter whose device tfjs cannot open: fall through to wasm, as documented.
        }
      }
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
  const before = processListeners();
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  installWasmKernels();
  await activate('wasm');
  dropEmscriptenRethrowers(before);
  const threads = typeof wasm.getThreadsCount === 'function' ? wasm.getThreadsCount() : 1;
  return { name: 'wasm', threads, float16: false };
}

type ProcessEvent = 'uncaughtException' | 'unhandledRejection';
type Listeners = Record<ProcessEvent, Function[]>;

function processListeners(): Listeners | undefined {
  if (!isNode || typeof process.listeners !== 'function') return undefined;
  return { uncaughtException: process.listeners('uncaughtException'), unhandledRejection: process.listeners('unhandledRejection') };
}

/**
 * The wasm backend's Emscripten glue adds `process.on('uncaughtException', e => { throw e })` and
 * the same for rejections when it starts in Node. Rethrowing from inside the handler makes Node
 * exit with code 7 and print the throwing line of the glue, 40 KB of minified source, above
 * every uncaught error of the program. Dropping exactly those two listeners (added during the
 * start, and written as Emscripten writes them) restores Node's own reporting and exit code 1.
 */
function dropEmscriptenRethrowers(before: Listeners | undefined): void {
  if (!before) return;
  const rethrows = /^function\s*\(\s*(ex|reason)\s*\)\s*\{\s*(if\s*\(\s*!\s*\(\s*ex instanceof ExitStatus\s*\)\s*\)\s*\{\s*)?throw (ex|reason);?\s*\}?\s*\}$/;
  const added = (listeners: Function[], event: ProcessEvent) => listeners.filter((l) => !before[event].includes(l) && rethrows.test(String(l)));
  for (const listener of added(process.listeners('uncaughtException'), 'uncaughtException')) process.removeListener('uncaughtException', listener as NodeJS.UncaughtExceptionListener);
  for (const listener of added(process.listeners('unhandledRejection'), 'unhandledRejection')) process.removeListener('unhandledRejection', listener as NodeJS.UnhandledRejectionListener);
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

/** What {@link findAdapter} found: an adapter, or why there is none and how to get one. */
type AdapterSearch = { adapter: AdapterFacts } | { adapter?: undefined; reason: string; help: string; cause?: unknown };

interface DawnModule {
  create(options: string[]): GpuLike;
  globals: object;
}

const swiftShaderIcd = '/usr/lib/chromium/vk_swiftshader_icd.json';

function noAdapterHelp(): string {
  if (!isNode) return 'use a browser with WebGPU enabled (for a software adapter: chromium --enable-unsafe-webgpu)';
  return (
    "Dawn needs a Vulkan driver: a GPU's, or SwiftShader for tests (Debian: apt-get install chromium libvulkan1, " +
    `then VK_ICD_FILENAMES=${swiftShaderIcd}, set before the first initBackend call of the process)`
  );
}

/**
 * Finds the WebGPU adapter `navigator.gpu` offers: the browser's, or in Node a Dawn instance from
 * the optional `webgpu` package, which then becomes `navigator.gpu` (with Dawn's `GPU*` globals)
 * for tfjs-backend-webgpu. Never throws: a missing package, a failing Dawn and an empty adapter
 * list all come back as reasons.
 */
/**
 * Whether Linux device nodes say there is a GPU: a DRM render node, an NVIDIA device or WSL's
 * `/dev/dxg`. Pure, for testing; {@link linuxWithoutGpu} passes it the file system.
 */
export function linuxHasGpuDevice(driEntries: readonly string[], exists: (path: string) => boolean): boolean {
  return driEntries.some((e) => e.startsWith('renderD')) || exists('/dev/nvidia0') || exists('/dev/dxg');
}

async function linuxWithoutGpu(): Promise<boolean> {
  if (!isNode || process.platform !== 'linux' || (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) return false;
  try {
    const moduleName = 'node:fs';
    const fs = (await import(/* @vite-ignore */ moduleName)) as typeof import('node:fs');
    let entries: string[] = [];
    try {
      entries = fs.readdirSync('/dev/dri');
    } catch {
      // no /dev/dri at all
    }
    return !linuxHasGpuDevice(entries, (path) => fs.existsSync(path));
  } catch {
    return false;
  }
}

async function findAdapter(): Promise<AdapterSearch> {
  const nav = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator;
  let gpu = nav?.gpu;
  let dawn: DawnModule | undefined;
  if (!gpu) {
    if (!isNode) return { reason: 'this runtime has no navigator.gpu', help: noAdapterHelp() };
    try {
      const moduleName = 'webgpu';
      dawn = (await import(/* @vite-ignore */ moduleName)) as DawnModule;
      gpu = dawn.create([]);
    } catch (cause) {
      return { reason: "the optional 'webgpu' package (Dawn for Node) could not be loaded", help: 'npm install webgpu', cause };
    }
  }
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (cause) {
    return { reason: 'navigator.gpu.requestAdapter() failed', help: noAdapterHelp(), cause };
  }
  if (!adapter) {
    const reason = dawn
      ? `Dawn found none (VK_ICD_FILENAMES is ${process.env.VK_ICD_FILENAMES === undefined ? 'unset' : JSON.stringify(process.env.VK_ICD_FILENAMES)})`
      : 'navigator.gpu.requestAdapter() returned null';
    return { reason, help: noAdapterHelp() };
  }
  // Keep a Dawn instance only once it has an adapter: Vulkan reads VK_ICD_FILENAMES when an instance
  // first lists adapters, so an instance that found none stays empty even after the variable is set,
  // while a fresh one on the next call sees it.
  if (dawn) {
    Object.assign(globalThis, dawn.globals);
    if (nav) {
      Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
    } else {
      Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    }
  }
  const info = adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {};
  const parts = ['vendor', 'architecture', 'device', 'description'].map((k) => info[k]).filter((v): v is string => typeof v === 'string' && v !== '');
  const description = parts.join(' ') || 'unknown adapter';
  // Dawn reports SwiftShader as vendor "google", architecture "swiftshader", `info.isFallbackAdapter`
  // true; older implementations put `isFallbackAdapter` on the adapter itself.
  const fallback = info.isFallbackAdapter === true || adapter.isFallbackAdapter === true;
  return { adapter: { description, software: fallback || softwareNames.test(description), float16: adapter.features.has('shader-f16') } };
}

async function initWebGpu(adapter: AdapterFacts): Promise<BackendInfo> {
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
