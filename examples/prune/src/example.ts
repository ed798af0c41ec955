// The example: the byte-level Llama of examples/quantize (pretrained here on Shakespeare) pruned by each
// criterion — magnitude, Wanda and SparseGPT at 50% unstructured sparsity and at 2:4 — each on a fresh
// copy of the model with calibration rows from the training split; then 25% of every MLP's channels
// removed (a smaller model) and a short recovery fine-tune, against the dense model given the same
// steps; and SparseGPT 50% recovered with its masks kept. Everything measured by held-out perplexity
// (policy's `perplexity`, disjoint windows of 128 bytes).
import type { PretrainedModel } from '@posttrain/models';
import { perplexity } from '@posttrain/policy';
import { type SparsityPattern, keepMasks, nmViolations, pruneMlpChannels, pruneModel, removeMasks, sparsityReport } from '@posttrain/prune';
import { type Linear, PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { CONTEXT, calibrationBatches, heldOutIds, withLm } from '../../quantize/src/lm.js';
import { continuePretraining } from '../../quantize/src/tune.js';

/** The criteria, in the order of the table and of the done line. */
export const PRUNE_METHODS = Object.freeze(['magnitude', 'wanda', 'sparsegpt'] as const);

/** One of {@link PRUNE_METHODS}. */
export type PruneMethod = (typeof PRUNE_METHODS)[number];

/** Options of {@link runPruneExample}. */
export interface PruneExampleOptions {
  /** Held-out bytes scored, from the start of the held-out split; null: all 111,540. */
  heldOutBytes: number | null;
  /** Calibration rows of Wanda and SparseGPT: windows of 128 bytes at random offsets of the training split. */
  calibration: number;
  /** Seed of the calibration rows' offsets and of the recovery batches. */
  seed: number;
  /** Unstructured sparsity of the first table. */
  sparsity: number;
  /** The semi-structured pattern of the second table (null: skip it). */
  pattern: { n: number; m: number } | null;
  /** Also magnitude compared per output row and Wanda per layer (the Wanda paper's comparison-group ablation). */
  comparisons: boolean;
  /** Share of every MLP's intermediate channels removed (0: skip the structured part). */
  mlpFraction: number;
  /** Recovery fine-tune: steps (0: none), constant AdamW learning rate, windows of 128 bytes per step. */
  recoverySteps: number;
  recoveryLr: number;
  recoveryBatchSize: number;
  /** Windows per forward pass of the perplexity. */
  batchSize: number;
  /** Where the table's lines go. */
  log: (line: string) => void;
}

/**
 * Defaults of {@link PruneExampleOptions}: the whole held-out split, 128 calibration rows (16,384
 * tokens), seed 0, 50% and 2:4, 25% of MLP channels, 100 recovery steps of 8 windows at lr 1e-4.
 *
 * @example
 * ```ts
 * await runPruneExample({ ...defaultPruneExampleOptions, heldOutBytes: 8192, recoverySteps: 0 });
 * ```
 */
export const defaultPruneExampleOptions: Readonly<PruneExampleOptions> = Object.freeze({
  heldOutBytes: null,
  calibration: 128,
  seed: 0,
  sparsity: 0.5,
  pattern: Object.freeze({ n: 2, m: 4 }),
  comparisons: true,
  mlpFraction: 0.25,
  recoverySteps: 100,
  recoveryLr: 1e-4,
  recoveryBatchSize: 8,
  batchSize: 16,
  log: console.log,
});

/** One row of the example's tables. */
export interface PruneFigure {
  /** `dense`, a criterion, `mlp-channels`, or one of those followed by ` + recovery`. */
  name: string;
  /** `'unstructured'`, `'2:4'` (or another N:M), `'structured'` or `'dense'`. */
  pattern: string;
  /** Held-out perplexity. */
  perplexity: number;
  /** Zeros over the linear layers' weights (lm_head excluded; it is tied to the embedding). */
  layerSparsity: number;
  /** Parameters (tied once), and how many are not zero. */
  parameters: number;
  nonZero: number;
  /** Bytes of the model.safetensors `saveModel` would write. */
  savedBytes: number;
  /** Seconds to prune (with calibration passes) or to fine-tune. */
  seconds: number;
}

/** What {@link runPruneExample} measured. */
export interface PruneExampleResult {
  dense: PruneFigure;
  /** At `sparsity`, per criterion. */
  unstructured: Record<PruneMethod, PruneFigure>;
  /** At `sparsity`, magnitude per output row and Wanda per layer (absent unless `comparisons`). */
  comparisons?: { magnitudeByRow: PruneFigure; wandaByLayer: PruneFigure };
  /** At `pattern`, per criterion (absent when `pattern` is null). */
  semiStructured?: Record<PruneMethod, PruneFigure>;
  /** MLP channels removed, before and after recovery, and the dense model given the same recovery steps. */
  structured?: { pruned: PruneFigure; recovered?: PruneFigure; denseRecovered?: PruneFigure };
  /** SparseGPT at `sparsity` recovered with keepMasks: its layer sparsity is unchanged. */
  sparseRecovered?: PruneFigure;
  /** Held-out bytes scored (the windows' targets). */
  tokens: number;
  calibrationTokens: number;
  seconds: number;
}

function describePattern(pattern: SparsityPattern): string {
  return pattern === 'unstructured' ? 'unstructured' : `${pattern.n}:${pattern.m}`;
}

/**
 * Loads the Shakespeare LM once per row, prunes it, scores it on the held-out bytes and logs a table
 * row; disposes every model. Wanda and SparseGPT calibrate on `calibration` rows of the training
 * split in batches of 16 (block by block, pruneModel's default); magnitude needs none. Magnitude
 * compares across each layer and Wanda within each output row, as in their papers; `comparisons`
 * adds each with the other's group. The MLP
 * channels are scored by their calibrated activations (`score: 'activation'`).
 *
 * @example
 * ```ts
 * const result = await runPruneExample({ heldOutBytes: 16_384, calibration: 32, recoverySteps: 20 });
 * console.log(doneLine(result, 42.1)); // done in 42.1 s: ppl dense 5.048, magnitude …, wanda …, sparsegpt … (50%)
 * ```
 */
export async function runPruneExample(options: Partial<PruneExampleOptions> = {}): Promise<PruneExampleResult> {
  const owner = 'runPruneExample';
  const o = resolveOptions(owner, options, defaultPruneExampleOptions as PruneExampleOptions);
  const all = heldOutIds();
  if (o.heldOutBytes !== null)
    checkNumber(owner, 'heldOutBytes', o.heldOutBytes, `an integer in [${2 * CONTEXT}, ${all.length}] or null`, (v) => Number.isInteger(v) && v >= 2 * CONTEXT && v <= all.length);
  checkNumber(owner, 'calibration', o.calibration, 'an integer ≥ 3 (SparseGPT needs at least 384 tokens, the widest layer’s inputs)', (v) => Number.isInteger(v) && v >= 3);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  checkNumber(owner, 'sparsity', o.sparsity, 'a number in (0, 1)', (v) => v > 0 && v < 1);
  checkNumber(owner, 'mlpFraction', o.mlpFraction, 'a number in [0, 1)', (v) => v >= 0 && v < 1);
  checkNumber(owner, 'recoverySteps', o.recoverySteps, 'an integer ≥ 0', (v) => Number.isInteger(v) && v >= 0);
  checkNumber(owner, 'batchSize', o.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v >= 1);
  if (o.pattern !== null && !(typeof o.pattern === 'object' && Number.isInteger(o.pattern.n) && Number.isInteger(o.pattern.m) && o.pattern.n > 0 && o.pattern.n < o.pattern.m)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected pattern to be null or { n, m } with 0 < n < m; got ${describeValue(o.pattern)}`, { help: 'pattern: { n: 2, m: 4 }' });
  }
  const t0 = performance.now();
  const ids = o.heldOutBytes === null ? all : all.subarray(0, o.heldOutBytes);
  const calibration = calibrationBatches(o.calibration, o.seed);
  let tokens = 0;
  o.log(
    `held-out: ${ids.length.toLocaleString('en')} bytes, windows of ${CONTEXT} (stride ${CONTEXT}); calibration: ${o.calibration} × ${CONTEXT} = ${(o.calibration * CONTEXT).toLocaleString('en')} tokens of the training split (seed ${o.seed})`,
  );
  o.log(
    `${'model'.padEnd(26)} ${'pattern'.padEnd(12)} ${'ppl'.padStart(7)} ${'Δppl'.padStart(8)} ${'sparsity'.padStart(8)} ${'parameters'.padStart(10)} ${'saved bytes'.padStart(11)} ${'seconds'.padStart(7)}`,
  );

  let dense: PruneFigure | undefined;
  const measure = async (model: PretrainedModel, name: string, pattern: string, seconds: number): Promise<PruneFigure> => {
    const r = await perplexity(model, ids, { contextLength: CONTEXT, stride: CONTEXT, batchSize: o.batchSize });
    tokens = r.tokens;
    const report = sparsityReport(model);
    const f: PruneFigure = {
      name,
      pattern,
      perplexity: r.perplexity,
      layerSparsity: report.layerSparsity,
      parameters: report.parameters.total,
      nonZero: report.parameters.nonZero,
      savedBytes: report.savedBytes,
      seconds,
    };
    const delta = dense === undefined ? '' : `${f.perplexity >= dense.perplexity ? '+' : ''}${(100 * (f.perplexity / dense.perplexity - 1)).toFixed(2)}%`;
    o.log(
      `${name.padEnd(26)} ${pattern.padEnd(12)} ${f.perplexity.toFixed(3).padStart(7)} ${delta.padStart(8)} ${`${(100 * f.layerSparsity).toFixed(1)}%`.padStart(8)} ${f.parameters.toLocaleString('en').padStart(10)} ${f.savedBytes.toLocaleString('en').padStart(11)} ${seconds.toFixed(1).padStart(7)}`,
    );
    return f;
  };
  const timed = async (fn: () => Promise<unknown>): Promise<number> => {
    const t = performance.now();
    await fn();
    return (performance.now() - t) / 1000;
  };
  const recover = (model: PretrainedModel) => continuePretraining(model, { steps: o.recoverySteps, lr: o.recoveryLr, batchSize: o.recoveryBatchSize, seed: o.seed });

  dense = await withLm((model) => measure(model, 'dense', 'dense', 0));
  const pruned = (name: string, method: PruneMethod, pattern: SparsityPattern, comparison?: 'layer' | 'row'): Promise<PruneFigure> =>
    withLm(async (model) => {
      let masks: Map<string, Uint8Array> | undefined;
      const seconds = await timed(async () => {
        ({ masks } = await pruneModel(model, method === 'magnitude' ? undefined : calibration, { method, sparsity: o.sparsity, pattern, comparison }));
      });
      if (pattern !== 'unstructured') {
        for (const [path, mask] of masks as Map<string, Uint8Array>) {
          const bad = nmViolations(mask, (model.getModule(path) as Linear).inFeatures, pattern);
          if (bad !== 0) throw new Error(`${method} left ${bad} groups of ${path} off the ${describePattern(pattern)} pattern`);
        }
      }
      return measure(model, name, describePattern(pattern), seconds);
    });
  const byCriterion = async (pattern: SparsityPattern): Promise<Record<PruneMethod, PruneFigure>> => {
    const out = {} as Record<PruneMethod, PruneFigure>;
    for (const method of PRUNE_METHODS) out[method] = await pruned(method, method, pattern);
    return out;
  };
  const unstructured = await byCriterion('unstructured');
  // The comparison-group ablation (Wanda paper §5): each of magnitude and Wanda with the other's group.
  const comparisons = o.comparisons
    ? { magnitudeByRow: await pruned('magnitude, per row', 'magnitude', 'unstructured', 'row'), wandaByLayer: await pruned('wanda, per layer', 'wanda', 'unstructured', 'layer') }
    : undefined;
  const semiStructured = o.pattern === null ? undefined : await byCriterion(o.pattern);

  let structured: PruneExampleResult['structured'];
  if (o.mlpFraction > 0) {
    const name = `mlp-channels −${Math.round(100 * o.mlpFraction)}%`;
    let recovered: PruneFigure | undefined;
    const smaller = await withLm(async (model) => {
      const f = await measure(model, name, 'structured', await timed(() => pruneMlpChannels(model, { fraction: o.mlpFraction, score: 'activation', calibration })));
      if (o.recoverySteps > 0) recovered = await measure(model, `${name} + ${o.recoverySteps} steps`, 'structured', await timed(() => recover(model)));
      return f;
    });
    const denseRecovered = o.recoverySteps > 0 ? await withLm(async (model) => measure(model, `dense + ${o.recoverySteps} steps`, 'dense', await timed(() => recover(model)))) : undefined;
    structured = { pruned: smaller, recovered, denseRecovered };
  }
  let sparseRecovered: PruneFigure | undefined;
  if (o.recoverySteps > 0) {
    sparseRecovered = await withLm(async (model) => {
      await pruneModel(model, calibration, { method: 'sparsegpt', sparsity: o.sparsity });
      keepMasks(model); // the zeros SparseGPT left become masks the fine-tune cannot fill
      const seconds = await timed(() => recover(model));
      removeMasks(model);
      return measure(model, `sparsegpt + ${o.recoverySteps} steps`, 'unstructured', seconds);
    });
  }
  return {
    dense,
    unstructured,
    comparisons,
    semiStructured,
    structured,
    sparseRecovered,
    tokens,
    calibrationTokens: o.calibration * CONTEXT,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * The example's last line: `done in X s: ppl dense A, magnitude B, wanda C, sparsegpt D (50%)`
 * (perplexities to 3 decimals, at the unstructured sparsity).
 *
 * @example
 * ```ts
 * doneLine(result, 405.3); // 'done in 405.3 s: ppl dense 5.503, magnitude 5.895, wanda 6.192, sparsegpt 5.665 (50%)'
 * ```
 */
export function doneLine(result: PruneExampleResult, seconds: number): string {
  const ppl = (f: PruneFigure) => f.perplexity.toFixed(3);
  const u = result.unstructured;
  const share = Math.round(100 * u.sparsegpt.layerSparsity);
  return `done in ${seconds.toFixed(1)} s: ppl dense ${ppl(result.dense)}, magnitude ${ppl(u.magnitude)}, wanda ${ppl(u.wanda)}, sparsegpt ${ppl(u.sparsegpt)} (${share}%)`;
}
