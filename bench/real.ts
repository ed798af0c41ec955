// The realistic suite: a model of SmolLM2-135M's configuration with random weights (no download),
// at the shapes a user runs — a LoRA SFT step (r 16 on every linear layer; 1 × 32 tokens, the
// shape wasm's heap holds: see LORA_SHAPE) with its peak memory, a 512-token forward pass, and
// KV-cache decoding at batch 1 and 8.
// scripts/reference/bench_torch_real.py times the same shapes in PyTorch; run.ts writes both.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AdamW, Rng, tf, valueAndGrads } from '@posttrain/tensor-core';
import { createModel, type ModelConfigInput } from '@posttrain/models';
import { applyLora } from '@posttrain/lora';
import { causalLmLoss } from '@posttrain/losses';
import { generate } from '@posttrain/policy';
import { median, randomIds, timeForward, timeSteps, type Run } from './timing.js';

/** SmolLM2-135M's configuration (HuggingFaceTB/SmolLM2-135M config.json): 134.5M parameters, tied embeddings. */
export const smollm135m: ModelConfigInput = {
  modelType: 'llama',
  vocabSize: 49152,
  hiddenSize: 576,
  intermediateSize: 1536,
  numLayers: 30,
  numHeads: 9,
  numKvHeads: 3,
  maxPositions: 8192,
  ropeTheta: 100000,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: true,
};

const shapeName = (parameters: number) => `smollm135m (${(parameters / 1e6).toFixed(1)}M params, random weights)`;

/** LoRA SFT steps (forward, loss on every token, backward, AdamW on the adapters) at `batch × seq`, and the process's peak resident set. */
export async function benchLoraStep(backend: string, budgetSeconds: number, batch = 4, seq = 256): Promise<Run> {
  const model = createModel(smollm135m, { seed: 0 });
  const parameters = model.numParameters();
  applyLora(model, { r: 16, alpha: 32, targetModules: 'all-linear', seed: 0 });
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-4 });
  const ids = randomIds(new Rng(4), batch, seq, smollm135m.vocabSize);
  let loss = Number.NaN;
  const step = async (): Promise<number> => {
    const t0 = performance.now();
    const { value, grads } = valueAndGrads(() => causalLmLoss(model.forward(ids).logits, ids).loss, optimizer.params);
    optimizer.step(grads);
    loss = (await value.data())[0];
    value.dispose();
    tf.dispose([...grads.values()]);
    return performance.now() - t0;
  };
  // tf.profile fails inside this step (a kernel without recorded outputs), so memory is the
  // process's peak resident set, as PyTorch's is measured, and tfjs's bytes after a step.
  const before = tf.memory().numBytes;
  const { ms, warmup } = await timeSteps(step, budgetSeconds);
  const weightBytes = parameters * 4;
  optimizer.dispose();
  model.dispose();
  ids.dispose();
  const msPerStep = median(ms);
  return {
    name: `real/lora-step/${backend}`,
    backend,
    shape: `${shapeName(parameters)}, LoRA r 16 all-linear, ${batch}x${seq}`,
    msPerStep,
    tokensPerSec: (batch * seq * 1000) / msPerStep,
    steps: ms.length,
    warmupSteps: warmup,
    finalLoss: loss,
    bytesBefore: before,
    weightBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

/** A forward pass of `seq` tokens, batch 1, no gradient. */
export async function benchRealForward(backend: string, budgetSeconds: number, seq = 512): Promise<Run> {
  const model = createModel(smollm135m, { seed: 0 });
  const parameters = model.numParameters();
  const ids = randomIds(new Rng(5), 1, seq, smollm135m.vocabSize);
  const { ms, warmup } = await timeForward(model, ids, budgetSeconds);
  model.dispose();
  ids.dispose();
  const msPerStep = median(ms);
  return { name: `real/forward/${backend}`, backend, shape: `${shapeName(parameters)}, 1x${seq}`, msPerStep, tokensPerSec: (seq * 1000) / msPerStep, steps: ms.length, warmupSteps: warmup };
}

/** Greedy decoding with the KV cache: `newTokens` after a `promptLength`-token prompt, `batch` rows; tokensPerSec counts every row's tokens. */
export async function benchRealDecode(backend: string, budgetSeconds: number, batch: number, promptLength = 32, newTokens = 32): Promise<Run> {
  const model = createModel(smollm135m, { seed: 0 });
  const parameters = model.numParameters();
  const prompt = randomIds(new Rng(6), batch, promptLength, smollm135m.vocabSize);
  const { ms, warmup } = await timeSteps(async () => {
    const t0 = performance.now();
    const result = await generate(model, prompt, { greedy: true, maxNewTokens: newTokens, stopTokenIds: [], useCache: true });
    if (result.tokens[0].length !== newTokens) throw new Error('decode benchmark: generation stopped early');
    return performance.now() - t0;
  }, budgetSeconds);
  model.dispose();
  prompt.dispose();
  const msPerStep = median(ms) / newTokens;
  return {
    name: `real/decode/${backend}/batch${batch}`,
    backend,
    shape: `${shapeName(parameters)}, prompt ${promptLength}, ${newTokens} new tokens, batch ${batch}, KV cache`,
    msPerStep,
    tokensPerSec: (batch * 1000) / msPerStep,
    steps: ms.length,
    warmupSteps: warmup,
  };
}

/**
 * The LoRA step's shape. The 4 × 256 does not fit on wasm: tfjs-wasm's heap is at most
 * 4 GiB, and the step keeps every layer's activations until the backward pass (1 × 32 already
 * peaks at 3.6 GB resident); 1 × 256 and 4 × 256 abort ("memory access out of bounds"). Per-layer
 * freeing and recomputation (docs/performance.md) are what would let it run.
 */
export const LORA_SHAPE = Object.freeze({ batch: 1, seq: 32 });

/**
 * The whole suite on one backend, then (unless `torch` is false) the same shapes in PyTorch through
 * scripts/reference/bench_torch_real.py with Debian's python3-torch, in the same run: each of our
 * runs gets PyTorch's ms (`torchMsPerStep`) and the ratio (`vsTorch`, ours / PyTorch's).
 */
export async function benchReal(backend: string, budgetSeconds: number, torch = true, lora: { batch: number; seq: number } = LORA_SHAPE): Promise<Run[]> {
  const runs = [
    await benchRealForward(backend, budgetSeconds),
    await benchRealDecode(backend, budgetSeconds, 1),
    await benchRealDecode(backend, budgetSeconds, 8),
    await benchLoraStep(backend, budgetSeconds, lora.batch, lora.seq),
  ];
  if (!torch) return runs;
  const script = fileURLToPath(new URL('../scripts/reference/bench_torch_real.py', import.meta.url));
  const output = execFileSync('/usr/bin/python3', [script, '--seconds', String(budgetSeconds), '--lora-batch', String(lora.batch), '--lora-seq', String(lora.seq)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  const reference = JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as { runs: (Run & { peakRssBytes?: number })[] };
  for (const run of runs) {
    const theirs = reference.runs.find((r) => r.name === run.name.replace(`/${backend}`, '/torch'));
    if (!theirs) continue;
    run.torchMsPerStep = theirs.msPerStep;
    run.vsTorch = run.msPerStep / theirs.msPerStep;
    if (theirs.peakRssBytes !== undefined) run.torchPeakRssBytes = theirs.peakRssBytes;
  }
  return runs;
}
