import { type CausalLM, type Rng, tf } from '@posttrain/tensor-core';

/** One measured benchmark, as written to bench/results/latest.json. */
export interface Run {
  name: string;
  backend: string;
  shape: string;
  /** Median milliseconds per step (a training step, a forward pass, or one decoded token). */
  msPerStep: number;
  tokensPerSec: number;
  steps: number;
  warmupSteps: number;
  adapter?: string;
  finalLoss?: number;
  /** Memory runs: peak tf.memory().numBytes during a profiled run (tf.profile's peakBytes). */
  peakBytes?: number;
  /** Memory runs: tf.memory().numBytes before the run (the model's weights, and a reference copy's). */
  bytesBefore?: number;
  /** Memory runs: the bytes of the model's own parameters (one copy of the weights). */
  weightBytes?: number;
  /** Memory runs: peakBytes / the SFT step's peakBytes on the same model. */
  peakOverSft?: number;
  /** RL runs: median milliseconds of the step's parts — generation, reward functions, the reference's scoring forward, and the update (the rest). */
  generationMs?: number;
  rewardMs?: number;
  scoringMs?: number;
  updateMs?: number;
  /** RL runs: tokens generated per rollout (tokensPerSec is their rate during generation). */
  rolloutTokens?: number;
  /** Realistic runs: the process's peak resident set (bytes) after the run, as PyTorch's is measured. */
  peakRssBytes?: number;
  /** Realistic runs: the same shape in PyTorch on this machine, measured in the same `npm run bench` (scripts/reference/bench_torch_real.py), and ours / PyTorch's ms. */
  torchMsPerStep?: number;
  vsTorch?: number;
  torchPeakRssBytes?: number;
  /** Quantisation and pruning runs: held-out perplexity of the model measured (the suite says on how many bytes). */
  perplexity?: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs `step` (which returns its own duration in ms) for warm-up and then measurement: 3 warm-up
 * steps (1 when a step takes over 5 s), then at least 3 measured steps (2 when a step takes over a
 * minute) and more until `budgetSeconds` or 30 steps.
 */
export async function timeSteps(step: () => Promise<number>, budgetSeconds: number): Promise<{ ms: number[]; warmup: number }> {
  const first = await step();
  const warmup = first > 5000 ? 1 : 3;
  for (let i = 1; i < warmup; i++) await step();
  const ms: number[] = [];
  const deadline = performance.now() + budgetSeconds * 1000;
  const least = first > 60_000 ? 2 : 3;
  while (ms.length < least || (ms.length < 30 && performance.now() < deadline)) ms.push(await step());
  return { ms, warmup };
}

/** A `[rows, length]` int32 tensor of token ids drawn uniformly from `[0, vocab)` by `rng`. */
export function randomIds(rng: Rng, rows: number, length: number, vocab: number): tf.Tensor2D {
  return tf.tensor2d(
    Array.from({ length: rows }, () => Array.from({ length }, () => rng.int(vocab))),
    [rows, length],
    'int32',
  );
}

/** {@link timeSteps} over forward passes of `model` on `ids` (no gradient), each waiting for the logits. */
export function timeForward(model: CausalLM, ids: tf.Tensor, budgetSeconds: number): Promise<{ ms: number[]; warmup: number }> {
  return timeSteps(async () => {
    const t0 = performance.now();
    const out = model.forward(ids);
    await out.logits.data();
    tf.dispose([out.logits, out.hidden]);
    return performance.now() - t0;
  }, budgetSeconds);
}
