// Model benchmarks: decoding tokens/s with and without the KV cache, and the forward pass of a
// ~30M-parameter Llama, through @posttrain/models.
import { Rng } from '@posttrain/tensor-core';
import { createModel, type ModelConfigInput } from '@posttrain/models';
import { generate } from '@posttrain/policy';
import { median, randomIds, timeForward, timeSteps, type Run } from './timing.js';

/** A Llama of ~34M parameters (vocab 32000, d 384, 6 layers, 6 heads over 2 key/value heads, untied output). */
export const llama30m: ModelConfigInput = {
  modelType: 'llama',
  vocabSize: 32000,
  hiddenSize: 384,
  intermediateSize: 1024,
  numLayers: 6,
  numHeads: 6,
  numKvHeads: 2,
  maxPositions: 2048,
};

/** Forward passes of `batch × seq` tokens (no gradient). */
export async function benchForward(backend: string, budgetSeconds: number, batch = 1, seq = 128): Promise<Run> {
  const model = createModel(llama30m, { seed: 0 });
  const ids = randomIds(new Rng(2), batch, seq, llama30m.vocabSize);
  const { ms, warmup } = await timeForward(model, ids, budgetSeconds);
  const parameters = model.numParameters();
  model.dispose();
  ids.dispose();
  const msPerStep = median(ms);
  return {
    name: `forward/llama30m/${backend}`,
    backend,
    shape: `llama30m (${(parameters / 1e6).toFixed(1)}M params) ${batch}x${seq}`,
    msPerStep,
    tokensPerSec: (batch * seq * 1000) / msPerStep,
    steps: ms.length,
    warmupSteps: warmup,
  };
}

/** Greedy decoding of `newTokens` tokens after a `promptLength`-token prompt, batch 1. */
export async function benchDecode(backend: string, budgetSeconds: number, useCache: boolean, promptLength = 16, newTokens = 32): Promise<Run> {
  const model = createModel(llama30m, { seed: 0 });
  const prompt = randomIds(new Rng(3), 1, promptLength, llama30m.vocabSize);
  const { ms, warmup } = await timeSteps(async () => {
    const t0 = performance.now();
    const result = await generate(model, prompt, { greedy: true, maxNewTokens: newTokens, stopTokenIds: [], useCache });
    if (result.tokens[0].length !== newTokens) throw new Error('decode benchmark: generation stopped early');
    return performance.now() - t0;
  }, budgetSeconds);
  model.dispose();
  prompt.dispose();
  const msPerToken = median(ms) / newTokens;
  return {
    name: `decode/llama30m/${backend}/${useCache ? 'kv-cache' : 'no-cache'}`,
    backend,
    shape: `llama30m, prompt ${promptLength}, ${newTokens} new tokens, batch 1`,
    msPerStep: msPerToken,
    tokensPerSec: 1000 / msPerToken,
    steps: ms.length,
    warmupSteps: warmup,
  };
}
