import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { initBackend, type BackendInfo } from './backend.js';
import { isPosttrainError } from './errors.js';
import { AdamW } from './optim.js';
import { valueAndGrads } from './grads.js';
import { Rng } from './rng.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { fileSource, fileTarget } from './file-source.js';
import { TinyGpt } from './testing/tiny-gpt.js';
import { expectAllClose, readValues, seededNormal as random, type Values } from './testing/backend-parity.js';
import { withTempDir } from './testing/temp-dir.js';

// WebGPU in Node runs through Dawn (the optional `webgpu` package). Without a GPU, Dawn finds
// SwiftShader's Vulkan driver, which Debian's chromium package ships; Vulkan reads
// VK_ICD_FILENAMES at the first adapter search, so it is set here, before any. Every result is
// compared with the cpu backend. Where no adapter exists the tests skip and say what is missing.
const swiftShader = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (process.env.VK_ICD_FILENAMES === undefined && existsSync(swiftShader)) process.env.VK_ICD_FILENAMES = swiftShader;

async function probe(): Promise<{ info?: BackendInfo; why?: string }> {
  try {
    const info = await initBackend('webgpu');
    await initBackend('cpu');
    return { info };
  } catch (e) {
    return { why: isPosttrainError(e) ? e.message : String(e) };
  }
}

const { info: gpu, why } = await probe();
if (!gpu) console.warn(`WebGPU tests skipped: ${why}`);

async function on(backend: 'cpu' | 'webgpu', f: () => tf.Tensor | tf.Tensor[]): Promise<Values[]> {
  await initBackend(backend);
  // Let every op run on the GPU, however small, instead of handing small ones to the cpu.
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0);
  return readValues(f()); // asynchronously: dataSync() needs OffscreenCanvas on WebGPU, which Node lacks
}

const TOL = 1e-4; // float32 on a GPU: max |webgpu − cpu| ≤ TOL · max(1, max |cpu|)

describe.skipIf(!gpu)(`WebGPU (${gpu?.adapter ?? 'no adapter'}) agrees with cpu`, () => {
  afterAll(async () => {
    await initBackend('cpu');
  });

  it('reports the adapter, and auto never picks a software one', async () => {
    expect(gpu?.name).toBe('webgpu');
    expect(typeof gpu?.adapter).toBe('string');
    if (gpu?.softwareAdapter) expect((await initBackend('auto')).name).not.toBe('webgpu');
  });

  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    it(`batched matMul transposeA=${ta} transposeB=${tb}`, async () => {
      const a = random(ta ? [3, 5, 7] : [3, 7, 5], 1);
      const b = random(tb ? [3, 4, 5] : [3, 5, 4], 2);
      const run = () => tf.matMul(a(), b(), ta, tb);
      expectAllClose(await on('webgpu', run), await on('cpu', run), TOL);
    });
  }

  it('softmax, log-softmax and layer-norm reductions', async () => {
    const x = random([4, 9], 3);
    const run = () => {
      const t = x();
      const centred = t.sub(t.mean(-1, true));
      return [tf.softmax(t), tf.logSoftmax(t), centred.mul(centred.square().mean(-1, true).add(1e-5).rsqrt())];
    };
    expectAllClose(await on('webgpu', run), await on('cpu', run), TOL);
  });

  it('gather and its gradient (embedding rows scatter-added)', async () => {
    const table = random([50, 6], 4);
    const ids = [3, 7, 3, 49, 0, 7];
    const run = () => tf.grad((w: tf.Tensor) => tf.gather(w, tf.tensor1d(ids, 'int32')).square().sum())(table());
    expectAllClose(await on('webgpu', run), await on('cpu', run), TOL);
  });

  it('writes a checkpoint from WebGPU tensors (asynchronous reads) that reads back exactly on cpu', async () => {
    await initBackend('webgpu');
    const values = Array.from({ length: 12 }, (_, i) => i * 0.25 - 1);
    const weight = tf.tensor(values, [3, 4]);
    const files = new Map<string, Uint8Array | string>();
    await writeCheckpoint({ weight }, fileTarget(files));
    weight.dispose();
    await initBackend('cpu');
    const read = await readCheckpoint(fileSource(files));
    expect(read.weight.shape).toEqual([3, 4]);
    expect(Array.from(read.weight.dataSync())).toEqual(values);
    tf.dispose(Object.values(read));
  });

  it('trains a tiny GPT: same losses as cpu for 4 AdamW steps, the loss falls, no tensor leaks', async () => {
    const config = { vocabSize: 32, hiddenSize: 16, numHeads: 2, numLayers: 1, maxPositions: 8 };
    const rng = new Rng(5);
    const batch = Array.from({ length: 2 * 8 }, () => rng.int(config.vocabSize));
    const train = async (backend: 'cpu' | 'webgpu') => {
      await initBackend(backend);
      if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0);
      const model = new TinyGpt(config, 0);
      const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 0 });
      const ids = tf.tensor(batch, [2, 8], 'int32');
      const losses: number[] = [];
      let afterFirst = 0;
      for (let i = 0; i < 4; i++) {
        const { value, grads } = valueAndGrads(() => model.loss(ids), optimizer.params);
        optimizer.step(grads);
        losses.push((await value.data())[0]);
        tf.dispose([value, ...grads.values()]);
        if (i === 0) afterFirst = tf.memory().numTensors;
      }
      const leaked = tf.memory().numTensors - afterFirst;
      tf.dispose(ids);
      optimizer.dispose();
      model.dispose();
      return { losses, leaked };
    };
    const cpu = await train('cpu');
    const webgpu = await train('webgpu');
    webgpu.losses.forEach((l, i) => expect(Math.abs(l - cpu.losses[i])).toBeLessThanOrEqual(TOL * Math.abs(cpu.losses[i])));
    expect(webgpu.losses[3]).toBeLessThan(webgpu.losses[0] - 0.3);
    expect(webgpu.leaked).toBe(0);
  }, 120_000);
});

describe('WebGPU without an adapter', () => {
  it('throws BACKEND_UNAVAILABLE with a help line instead of hanging', async () => {
    // A child process, because a Dawn instance keeps the first Vulkan driver list it saw.
    const script = [
      `const { initBackend, isPosttrainError } = await import(${JSON.stringify(new URL('./index.ts', import.meta.url).href)});`,
      "try { await initBackend('webgpu'); console.log('unexpected: got an adapter'); }",
      'catch (e) { console.log(JSON.stringify({ posttrain: isPosttrainError(e), code: e.code, message: e.message })); }',
    ].join('\n');
    const tsx = fileURLToPath(new URL('../../../node_modules/tsx/dist/cli.mjs', import.meta.url));
    const { stdout } = await withTempDir('posttrain-webgpu-', async (dir) => {
      const file = join(dir, 'probe.mts');
      await writeFile(file, script);
      return promisify(execFile)(process.execPath, [tsx, file], {
        env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json' },
        cwd: fileURLToPath(new URL('..', import.meta.url)),
        timeout: 60_000,
      });
    });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { posttrain: boolean; code: string; message: string };
    expect(result.posttrain).toBe(true);
    expect(result.code).toBe('BACKEND_UNAVAILABLE');
    expect(result.message).toMatch(/no WebGPU adapter/);
    expect(result.message).toMatch(/help: /);
  }, 90_000);
});
