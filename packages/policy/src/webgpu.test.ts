import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf, type BackendInfo } from '@posttrain/tensor-core';
import { loadModel } from '@posttrain/models';
import { generate, sequenceLogps } from './index.js';
import { expectClose, fixtureDir, greedyReference, int2d } from './testing/helpers.js';

// generate and sequenceLogps on WebGPU (Dawn through the `webgpu` package; without a GPU,
// SwiftShader's Vulkan driver from Debian's chromium), against PyTorch and cpu. Nothing here may
// read a GPU tensor synchronously: WebGPU in Node has no `dataSync`. Skips where no adapter exists.
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

describe.skipIf(!gpu)(`policy on WebGPU (${gpu?.adapter ?? 'no adapter'})`, () => {
  afterAll(async () => {
    await initBackend('cpu');
  });

  it('greedy generate on the llama fixture gives PyTorch’s tokens, log-probs within 1e-4, with and without the cache', async () => {
    await initBackend('webgpu');
    tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0);
    const model = await loadModel(fixtureDir('llama'));
    const reference = greedyReference('llama');
    const prompt = int2d([reference.prompt]);
    try {
      for (const useCache of [true, false]) {
        const result = await generate(model, prompt, { greedy: true, maxNewTokens: reference.new_tokens.length, stopTokenIds: [], useCache, returnLogprobs: true });
        expect(result.tokens[0], `useCache ${useCache}`).toEqual(reference.new_tokens);
        expectClose((result.logprobs as number[][])[0], reference.logprobs, 1e-4, `logprobs (useCache ${useCache})`);
      }
    } finally {
      prompt.dispose();
      model.dispose();
    }
  }, 120_000);

  it('sequenceLogps on WebGPU equals cpu within 1e-4', async () => {
    const ids = [
      [5, 66, 67, 68, 62, 90, 12],
      [7, 8, 9, 62, 3, 0, 0],
    ];
    const mask = [
      [1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 0, 0],
    ];
    const labels = ids.map((row, r) => row.map((id, t) => (t >= 4 && mask[r][t] ? id : -100)));
    const run = async (backend: 'cpu' | 'webgpu') => {
      await initBackend(backend);
      const model = await loadModel(fixtureDir('llama'));
      const batch = { inputIds: int2d(ids), attentionMask: int2d(mask), labels: int2d(labels) };
      const out = sequenceLogps(model, batch, { chunkSize: 1 });
      const values = { logps: Array.from(await out.logps.data()), tokenLogps: Array.from(await out.tokenLogps.data()) };
      tf.dispose([out.logps, out.tokenLogps, out.tokens, batch.inputIds, batch.attentionMask, batch.labels]);
      model.dispose();
      return values;
    };
    const cpu = await run('cpu');
    const webgpu = await run('webgpu');
    expectClose(webgpu.logps, cpu.logps, 1e-4, 'logps');
    expectClose(webgpu.tokenLogps, cpu.tokenLogps, 1e-4, 'tokenLogps');
  }, 120_000);
});
