// Preference-optimisation steps beside an SFT step on one tiny Llama: time per optimizer step and
// peak tf.memory().numBytes during the run (tf.profile's peakBytes: the bytes held after each kernel,
// weights included), for LoRA SFT, DPO with the adapters-disabled reference, DPO with a frozen copy
// and DPO with precomputed reference log-probs.
import { Rng, tf } from '@posttrain/tensor-core';
import { ByteTokenizer } from '@posttrain/data';
import { dpoTrain, type DpoTrainOptions } from '@posttrain/dpo';
import { createModel, type ModelConfigInput } from '@posttrain/models';
import { sftTrain } from '@posttrain/sft';
import { median, type Run } from './timing.js';

const tokenizer = new ByteTokenizer();

/** The train-step suite's tiny shape as a Llama: vocab 260 (bytes), d 128, 4 heads, 2 layers, SwiGLU 512, sequences of 64 tokens. */
export const tinyLlama: ModelConfigInput = {
  modelType: 'llama',
  vocabSize: tokenizer.vocabSize,
  hiddenSize: 128,
  intermediateSize: 512,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 4,
  maxPositions: 64,
  eosTokenId: tokenizer.eosTokenId,
  padTokenId: tokenizer.padTokenId,
};

/** Sequences per micro-batch: SFT 8 examples, DPO 4 pairs (its [2B, T] forward is 8 sequences too), so the two compare per sequence. */
const SEQUENCES = 8;
const batchOf = (mode: Mode) => (mode === 'sft' ? SEQUENCES : SEQUENCES / 2);
const LORA = { r: 16, alpha: 32, targetModules: 'all-linear' as const, seed: 0 };

/** Random strings of a–z: 32-character prompts and 31-character completions, 64 tokens with EOS. */
function records(count: number): { prompt: string; chosen: string; rejected: string }[] {
  const rng = new Rng(7);
  const text = (n: number) => Array.from({ length: n }, () => String.fromCharCode(97 + rng.int(26))).join('');
  return Array.from({ length: count }, () => ({ prompt: text(32), chosen: text(31), rejected: text(31) }));
}

type Mode = 'sft' | 'adapters-disabled' | 'frozen-copy' | 'precomputed';

/** Trains `steps` optimizer steps in `mode` on a fresh model; returns per-step seconds (from the trainer's own timing). */
async function runMode(mode: Mode, steps: number): Promise<{ seconds: number[]; loss: number; weightBytes: number }> {
  const model = createModel(tinyLlama, { seed: 0 });
  const copy = mode === 'frozen-copy' ? createModel(tinyLlama, { seed: 0 }) : undefined;
  const weightBytes = [...model.namedParameters().values()].reduce((n, v) => n + v.size * 4, 0);
  const data = records(batchOf(mode) * steps);
  try {
    const common = { model, tokenizer, lora: LORA, lr: 1e-3, batchSize: batchOf(mode), maxSteps: steps, progress: 'none' as const };
    const result =
      mode === 'sft'
        ? await sftTrain({ ...common, train: data.map((r) => ({ prompt: r.prompt, completion: r.chosen })) })
        : await dpoTrain({ ...common, train: data, reference: (copy ? { model: copy } : mode) as DpoTrainOptions['reference'] });
    // Each step's time from its units and their rate: tokens for SFT, pairs for DPO.
    const unit = mode === 'sft' ? 'tokens' : 'pairs';
    return { seconds: result.history.map((r) => Number(r[unit] ?? 0) / Math.max(Number(r[`${unit}_per_second`] ?? 1), 1e-9)), loss: result.loss, weightBytes };
  } finally {
    model.dispose();
    copy?.dispose();
  }
}

/** Peak bytes over a 2-step run in `mode`, the bytes held before it (the model, and the copy), and those left after. */
async function peakOf(mode: Mode): Promise<{ peak: number; before: number }> {
  let before = 0;
  const model = createModel(tinyLlama, { seed: 0 });
  const copy = mode === 'frozen-copy' ? createModel(tinyLlama, { seed: 0 }) : undefined;
  const data = records(batchOf(mode) * 2);
  try {
    before = tf.memory().numBytes;
    const common = { model, tokenizer, lora: LORA, lr: 1e-3, batchSize: batchOf(mode), maxSteps: 2, progress: 'none' as const };
    const profile = await tf.profile(async () => {
      if (mode === 'sft') await sftTrain({ ...common, train: data.map((r) => ({ prompt: r.prompt, completion: r.chosen })) });
      else await dpoTrain({ ...common, train: data, reference: (copy ? { model: copy } : mode) as DpoTrainOptions['reference'] });
    });
    return { peak: profile.peakBytes, before };
  } finally {
    model.dispose();
    copy?.dispose();
  }
}

/**
 * One run per mode, each with its median step time over `steps` steps after 2 warm-up steps, and
 * `peakBytes` / `bytesBefore` / `peakOverSft` from a separate profiled 2-step run.
 */
export async function benchPreference(backend: string, budgetSeconds: number): Promise<Run[]> {
  const modes: Mode[] = ['sft', 'adapters-disabled', 'frozen-copy', 'precomputed'];
  const runs: Run[] = [];
  let sftPeak = 0;
  // A first SFT step sets the pace: enough steps to fill about a quarter of the budget per mode.
  const probe = await runMode('sft', 2);
  const steps = Math.max(4, Math.min(30, Math.floor(budgetSeconds / 4 / Math.max(median(probe.seconds), 1e-3))));
  for (const mode of modes) {
    const { seconds, loss, weightBytes } = await runMode(mode, steps + 2);
    const measured = seconds.slice(2);
    const { peak, before } = await peakOf(mode);
    if (mode === 'sft') sftPeak = peak;
    const msPerStep = median(measured) * 1000;
    const sequences = SEQUENCES;
    runs.push({
      name: mode === 'sft' ? `sft-step/tiny-llama/${backend}/lora` : `dpo-step/tiny-llama/${backend}/${mode}`,
      backend,
      shape: `tiny-llama (${(weightBytes / 4 / 1e6).toFixed(2)}M params + LoRA r16), ${mode === 'sft' ? `${SEQUENCES} sequences` : `${SEQUENCES / 2} pairs (${SEQUENCES} sequences)`} × 64 tokens`,
      msPerStep,
      tokensPerSec: (sequences * 63 * 1000) / msPerStep,
      steps: measured.length,
      warmupSteps: 2,
      finalLoss: Math.round(loss * 1e5) / 1e5,
      peakBytes: peak,
      bytesBefore: before,
      weightBytes,
      peakOverSft: sftPeak > 0 ? Math.round((peak / sftPeak) * 1000) / 1000 : undefined,
    });
  }
  return runs;
}
