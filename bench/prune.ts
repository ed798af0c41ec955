// Pruning on the byte-level Llama pretrained on Shakespeare (examples/quantize/lm, 0.82M parameters):
// per criterion (magnitude, Wanda, SparseGPT) and pattern (50% unstructured, 2:4) the time pruneModel
// takes on the whole model, calibration passes included (128 rows × 128 tokens of the training split),
// with the pruned model's perplexity on the first 16,384 held-out bytes (the example measures the whole
// split); then 25% of the MLP channels removed (pruneMlpChannels, activation scores): its time, and the
// forward ms of [1, 128] and [8, 128] batches of the smaller model beside the dense one.
import type { PretrainedModel } from '@posttrain/models';
import { perplexity } from '@posttrain/policy';
import { type SparsityPattern, pruneMlpChannels, pruneModel, sparsityReport } from '@posttrain/prune';
import { Rng } from '@posttrain/tensor-core';
import { CONTEXT, calibrationBatches, heldOutIds, loadLm } from '../examples/quantize/src/lm.js';
import { median, randomIds, timeForward, timeSteps, type Run } from './timing.js';

/** Held-out bytes the bench scores (the example scores all 111,540). */
const HELD_OUT_BYTES = 16_384;

/** Calibration rows of 128 tokens (the example's default). */
const CALIBRATION_ROWS = 128;

/** A pruning run: the Run fields plus what the pruned model scores. */
export interface PruneRun extends Run {
  method?: string;
  pattern?: string;
  /** Zeros over the linear layers' weights (lm_head, tied, excluded). */
  sparsity?: number;
  parameters?: number;
  /** Bytes of the model.safetensors saveModel writes. */
  savedBytes?: number;
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Each step loads a fresh copy of the model (not timed), prunes it (timed) and keeps the last pruned
 * copy for the perplexity. `budgetSeconds` bounds each timing loop.
 */
async function timePrune(prune: (model: PretrainedModel) => Promise<unknown>, budgetSeconds: number): Promise<{ ms: number[]; warmup: number; model: PretrainedModel }> {
  let last: PretrainedModel | undefined;
  const timing = await timeSteps(async () => {
    last?.dispose();
    ({ model: last } = await loadLm());
    const t0 = performance.now();
    await prune(last);
    return performance.now() - t0;
  }, budgetSeconds);
  return { ...timing, model: last as PretrainedModel };
}

/**
 * Per criterion and pattern: pruneModel's time and the pruned model's perplexity and sparsity; MLP
 * channel removal's time, and forward ms of the dense and the 25%-smaller model.
 */
export async function benchPrune(backend: string, budgetSeconds: number): Promise<PruneRun[]> {
  const runs: PruneRun[] = [];
  const ids = heldOutIds().subarray(0, HELD_OUT_BYTES);
  const calibration = calibrationBatches(CALIBRATION_ROWS, 0);
  const calibrationTokens = CALIBRATION_ROWS * CONTEXT;
  const scored = async (model: PretrainedModel) => {
    const { perplexity: ppl } = await perplexity(model, ids, { contextLength: CONTEXT, stride: CONTEXT, batchSize: 16 });
    const report = sparsityReport(model);
    return { perplexity: round(ppl, 4), sparsity: round(report.layerSparsity, 6), parameters: report.parameters.total, savedBytes: report.savedBytes };
  };
  for (const pattern of ['unstructured', { n: 2, m: 4 }] as SparsityPattern[]) {
    const label = pattern === 'unstructured' ? '50%' : `${pattern.n}:${pattern.m}`;
    for (const method of ['magnitude', 'wanda', 'sparsegpt'] as const) {
      const calibrated = method !== 'magnitude';
      const { ms, warmup, model } = await timePrune((m) => pruneModel(m, calibrated ? calibration : undefined, { method, sparsity: 0.5, pattern }), budgetSeconds / 8);
      try {
        const msPerStep = median(ms);
        runs.push({
          name: `prune/shakespeare-lm/${backend}/${method}/${label}`,
          backend,
          shape: `shakespeare-lm (0.82M params), pruneModel ${method} ${label}, all 28 linear layers${calibrated ? `, calibration ${CALIBRATION_ROWS}x${CONTEXT} (tokensPerSec: calibration tokens/s)` : ', no calibration (tokensPerSec 0)'}; ppl on ${HELD_OUT_BYTES} held-out bytes`,
          msPerStep,
          tokensPerSec: calibrated ? (calibrationTokens * 1000) / msPerStep : 0,
          steps: ms.length,
          warmupSteps: warmup,
          method,
          pattern: label,
          ...(await scored(model)),
        });
      } finally {
        model.dispose();
      }
    }
  }
  const forward = async (model: PretrainedModel, variant: string, extra: Partial<PruneRun>): Promise<void> => {
    for (const batch of [1, 8]) {
      const input = randomIds(new Rng(2), batch, CONTEXT, 256);
      const { ms, warmup } = await timeForward(model, input, budgetSeconds / 8);
      input.dispose();
      const msPerStep = median(ms);
      runs.push({
        name: `prune-forward/shakespeare-lm/${backend}/${variant}/${batch}x${CONTEXT}`,
        backend,
        shape: `shakespeare-lm ${variant}, ${batch}x${CONTEXT}; ppl on ${HELD_OUT_BYTES} held-out bytes`,
        msPerStep,
        tokensPerSec: (batch * CONTEXT * 1000) / msPerStep,
        steps: ms.length,
        warmupSteps: warmup,
        ...extra,
      });
    }
  };
  const { model: dense } = await loadLm();
  try {
    await forward(dense, 'dense', { method: 'dense', pattern: 'dense', ...(await scored(dense)) });
  } finally {
    dense.dispose();
  }
  const { ms, warmup, model: smaller } = await timePrune((m) => pruneMlpChannels(m, { fraction: 0.25, score: 'activation', calibration }), budgetSeconds / 8);
  try {
    const figures = { method: 'mlp-channels', pattern: 'structured 25%', ...(await scored(smaller)) };
    const msPerStep = median(ms);
    runs.push({
      name: `prune/shakespeare-lm/${backend}/mlp-channels/25%`,
      backend,
      shape: `shakespeare-lm, pruneMlpChannels 25% (activation scores, calibration ${CALIBRATION_ROWS}x${CONTEXT}; tokensPerSec: calibration tokens/s); ppl on ${HELD_OUT_BYTES} held-out bytes`,
      msPerStep,
      tokensPerSec: (calibrationTokens * 1000) / msPerStep,
      steps: ms.length,
      warmupSteps: warmup,
      ...figures,
    });
    await forward(smaller, 'mlp-channels-25%', figures);
  } finally {
    smaller.dispose();
  }
  return runs;
}
