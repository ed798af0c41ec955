import { existsSync } from 'node:fs';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { afterAll, describe, expect, it } from 'vitest';
import { maxRelError, ref } from './fixture.js';
import { unpackDigits } from './pack.js';
import { QuantizedLinear } from './quantized-linear.js';

// WebGPU in Node through Dawn; without a GPU, Dawn finds SwiftShader's Vulkan driver from Debian's
// chromium package (set before the first adapter search). Skips, saying why, where there is none.
const swiftShader = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (process.env.VK_ICD_FILENAMES === undefined && existsSync(swiftShader)) process.env.VK_ICD_FILENAMES = swiftShader;

async function probe(): Promise<{ adapter?: string; why?: string }> {
  try {
    const info = await initBackend('webgpu');
    await initBackend('cpu');
    return { adapter: info.adapter ?? 'unnamed' };
  } catch (e) {
    return { why: isPosttrainError(e) ? e.message : String(e) };
  }
}
const { adapter, why } = await probe();
if (!adapter) console.warn(`quantize WebGPU tests skipped: ${why}`);

const f32 = (v: number) => Math.fround(v) + 0;
async function values(t: tf.Tensor): Promise<number[]> {
  const v = Array.from(await t.data(), (x) => x + 0); // asynchronously: no dataSync on WebGPU in Node
  t.dispose();
  return v;
}

describe.skipIf(!adapter)(`QuantizedLinear on WebGPU (${adapter ?? 'no adapter'})`, () => {
  afterAll(async () => {
    await initBackend('cpu');
  });

  it('unpacks packed words exactly, where the tf-op route would garble words past 2^24', async () => {
    await initBackend('webgpu');
    tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0);
    const n = 4000;
    const words = new Int32Array(n);
    let s = 1;
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) % 2147483648;
      words[i] = (s * 2 + (i % 2)) | 0;
    }
    words.set([-1, -(2 ** 31), 2 ** 31 - 1, 0]);
    const shifts = [4, 0, 12, 8, 20, 16, 28, 24];
    const before = tf.memory().numTensors;
    const t = tf.tensor2d(words, [n, 1], 'int32');
    const d = await values(unpackDigits(t, shifts, 4));
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
    let wrong = 0;
    for (let i = 0; i < n; i++) shifts.forEach((sh, k) => (wrong += d[i * 8 + k] === ((words[i] as number) >>> sh) % 16 ? 0 : 1));
    expect(wrong).toBe(0);
  });

  it.each([
    ['int8', { scheme: 'int8' }, ref.int8],
    ['int4 g32', { scheme: 'int4', groupSize: 32 }, ref.int4_g32_sym],
    ['int4 g64 zero-points', { scheme: 'int4', groupSize: 64, symmetric: false }, ref.int4_g64_asym],
    ['nf4', { scheme: 'nf4' }, ref.nf4],
  ] as const)("%s: torch's dequantised weight exactly, its forward within 1e-5", async (_, options, fx) => {
    await initBackend('webgpu');
    tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0);
    const before = tf.memory().numTensors;
    const layer = QuantizedLinear.fromWeight(Float32Array.from(ref.weight), ref.out_features, ref.in_features, options, { bias: Float32Array.from(ref.bias) });
    expect(await values(layer.dequantizeWeight())).toEqual(fx.dequantized.map(f32));
    const x = tf.tensor2d(ref.x, [3, ref.in_features]);
    expect(maxRelError(await values(layer.forward(x)), fx.output, 0.01)).toBeLessThan(1e-5);
    x.dispose();
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
