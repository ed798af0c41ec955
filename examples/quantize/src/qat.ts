// The QAT figure: does quantisation-aware training (prepareQat → N steps → convertQat) close more of the
// int4 round-to-nearest perplexity gap than spending the same N steps on float training and quantising
// afterwards? Both arms start from the committed Shakespeare LM (./lm.ts) and see the same batches, the
// same learning rate and the same seed; only the fake quantisation differs.
import type { PretrainedModel } from '@posttrain/models';
import { perplexity } from '@posttrain/policy';
import { convertQat, prepareQat, quantizeModel, type QuantizeOptions } from '@posttrain/quantize';
import { PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { CONTEXT, heldOutIds, withLm } from './lm.js';
import { continuePretraining } from './tune.js';

/** Options of {@link qatFigure}. */
export interface QatFigureOptions {
  /** Extra optimizer steps N, the same for both arms. */
  steps: number;
  /** Constant learning rate of AdamW (no warm-up, weight decay 0), the same for both arms. */
  lr: number;
  /** Seed of the training windows' offsets (and the trainer's). */
  seed: number;
  /** Windows of {@link CONTEXT} training bytes per step. */
  batchSize: number;
  /** The int4 (or other) setting measured. */
  quantize: Partial<QuantizeOptions>;
  /** Held-out bytes scored, from the start of the held-out split; null: all 111,540. */
  heldOutBytes: number | null;
  /** Where progress lines go. */
  log: (line: string) => void;
}

/**
 * Defaults of {@link QatFigureOptions}, the figure's setting: 200 steps of 16 windows at lr 1e-4, int4
 * in groups of 128, symmetric (llm-compressor's W4A16), the whole held-out split. Measured on wasm
 * (two cores, 451 s): untouched LM 5.5026 float / 5.5368 int4; arm A (200 float steps) 5.4689 float /
 * 5.5243 int4; arm B (QAT) 5.4923 converted: 57.8% of arm A's gap recovered (and below even the
 * untouched float model). At 100 steps: A 5.4929 / 5.5391, B 5.5115, 59.7% recovered.
 *
 * @example
 * ```ts
 * await qatFigure({ ...defaultQatFigureOptions, steps: 20, heldOutBytes: 4096 });
 * ```
 */
export const defaultQatFigureOptions: Readonly<QatFigureOptions> = Object.freeze({
  steps: 200,
  lr: 1e-4,
  seed: 0,
  batchSize: 16,
  quantize: Object.freeze({ scheme: 'int4', groupSize: 128, symmetric: true }) as Partial<QuantizeOptions>,
  heldOutBytes: null,
  log: () => {},
});

/** Held-out perplexities of {@link qatFigure} (disjoint windows of 128 bytes). */
export interface QatFigure {
  /** The committed LM, float. */
  base: number;
  /** The committed LM, round-to-nearest quantised. */
  baseQuantized: number;
  /** Arm A: N more float steps, float. */
  floatTuned: number;
  /** Arm A: N more float steps, then round-to-nearest quantised. */
  floatTunedQuantized: number;
  /** Arm B: prepareQat → N steps → convertQat (a real quantised model). */
  qat: number;
  /** (floatTunedQuantized − qat) / (floatTunedQuantized − floatTuned): the share of arm A's gap QAT closes. */
  recovered: number;
  /** (baseQuantized − qat) / (baseQuantized − base): the same against the committed LM's gap. */
  recoveredVsBase: number;
  /** Last training loss of each arm (nats per byte). */
  trainLoss: { float: number; qat: number };
  /** Held-out bytes scored per window set, and seconds taken. */
  tokens: number;
  seconds: number;
}

/**
 * Measures the QAT figure on the committed Shakespeare LM: the untouched model in float and
 * round-to-nearest quantised; arm A, N more float steps then round-to-nearest; arm B, `prepareQat`,
 * the same N steps (same windows, lr, seed), then `convertQat`. Each arm starts from a fresh load.
 * Returns held-out perplexities and the recovered share of the quantisation gap. Run it on wasm.
 *
 * @example
 * ```ts
 * await initBackend('wasm');
 * const fig = await qatFigure({ steps: 200, lr: 1e-4 });
 * console.log(`${(100 * fig.recovered).toFixed(0)}% of the int4 gap recovered`);
 * ```
 */
export async function qatFigure(options: Partial<QatFigureOptions> = {}): Promise<QatFigure> {
  const owner = 'qatFigure';
  const o = resolveOptions(owner, options, defaultQatFigureOptions as QatFigureOptions);
  checkNumber(owner, 'steps', o.steps, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber(owner, 'lr', o.lr, 'a positive number', (v) => Number.isFinite(v) && v > 0);
  checkNumber(owner, 'batchSize', o.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  if (o.heldOutBytes !== null && !(Number.isInteger(o.heldOutBytes) && o.heldOutBytes > CONTEXT)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected heldOutBytes to be null or an integer above ${CONTEXT}; got ${describeValue(o.heldOutBytes)}`);
  }
  const t0 = performance.now();
  const ids = o.heldOutBytes === null ? heldOutIds() : heldOutIds().subarray(0, o.heldOutBytes);
  let tokens = 0;
  const ppl = async (model: PretrainedModel): Promise<number> => {
    const r = await perplexity(model, ids, { contextLength: CONTEXT, stride: CONTEXT, batchSize: 16 });
    tokens = r.tokens;
    return r.perplexity;
  };
  const tune = (model: PretrainedModel): Promise<number> => continuePretraining(model, { steps: o.steps, lr: o.lr, batchSize: o.batchSize, seed: o.seed });

  const base = await withLm(ppl);
  const baseQuantized = await withLm(async (model) => {
    await quantizeModel(model, o.quantize);
    return ppl(model);
  });
  o.log(`untouched LM: float ${base.toFixed(4)}, round-to-nearest ${baseQuantized.toFixed(4)}`);
  const a = await withLm(async (model) => {
    const loss = await tune(model);
    const float = await ppl(model);
    await quantizeModel(model, o.quantize);
    return { loss, float, quantized: await ppl(model) };
  });
  o.log(`A (float ${o.steps} steps): float ${a.float.toFixed(4)}, round-to-nearest ${a.quantized.toFixed(4)}, last loss ${a.loss.toFixed(4)}`);
  const b = await withLm(async (model) => {
    prepareQat(model, o.quantize);
    const loss = await tune(model);
    await convertQat(model);
    return { loss, quantized: await ppl(model) };
  });
  const recovered = (a.quantized - b.quantized) / (a.quantized - a.float);
  const recoveredVsBase = (baseQuantized - b.quantized) / (baseQuantized - base);
  o.log(
    `B (QAT ${o.steps} steps): converted ${b.quantized.toFixed(4)}, last loss ${b.loss.toFixed(4)}; recovered ${(100 * recovered).toFixed(1)}% (vs untouched ${(100 * recoveredVsBase).toFixed(1)}%)`,
  );
  return {
    base,
    baseQuantized,
    floatTuned: a.float,
    floatTunedQuantized: a.quantized,
    qat: b.quantized,
    recovered,
    recoveredVsBase,
    trainLoss: { float: a.loss, qat: b.loss },
    tokens,
    seconds: (performance.now() - t0) / 1000,
  };
}
