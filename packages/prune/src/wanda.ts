// Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter 2023, "A Simple and Effective
// Pruning Approach for Large Language Models", arXiv 2306.11695, Eq. 1; locuslab/wanda `prune_wanda`).
import { PosttrainError, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { type PruneResult, applyMask, checkWeight } from './magnitude.js';
import { type SparsityPattern, checkComparison, checkDivides, nmMask, resolveSparsity, unstructuredMask } from './nm.js';

/** Options of {@link wandaPrune}. */
export interface WandaOptions {
  /** Fraction of each output row's weights pruned, in [0, 1). Implied (1 − n/m) with an N:M pattern. */
  sparsity: number;
  /** `'unstructured'` (compared within each output row, the paper's choice) or N:M (within each group of m inputs of a row). */
  pattern: SparsityPattern;
  /**
   * Unstructured only (N:M ignores it): where the lowest scores are counted — `'row'` (each output
   * row, the paper's choice) or `'layer'` (across the whole layer; the paper's §5 ablation).
   */
  comparison: 'row' | 'layer';
}

/** Frozen defaults of {@link wandaPrune}: 50% unstructured, per output row. */
export const defaultWandaOptions: Readonly<WandaOptions> = Object.freeze({ sparsity: 0.5, pattern: 'unstructured', comparison: 'row' });

/**
 * Wanda on one layer: the score of weight `W_ij` is `|W_ij| · ‖X_j‖₂` (Eq. 1), `‖X_j‖₂` the norm
 * of input feature j over the calibration tokens (`columnNorms`, from `accumulateHessians(…,
 * { hessian: false })` in @posttrain/policy). Scores are compared per output: exactly
 * `⌊in·sparsity⌋` weights of lowest score are pruned in every row (ties: the earlier input first);
 * with `comparison: 'layer'` the `⌊out·in·sparsity⌋` lowest across the layer; with an N:M pattern the `m − n` lowest of every group of `m` inputs. The kept weights are not
 * changed (no weight update, the paper's point). Scores are computed in float64. The inputs are not
 * modified.
 *
 * @example
 * ```ts
 * // weight [out, in] row-major; columnNorms [in]: ‖X_j‖₂ of each input feature
 * const weight = new Float32Array([1, -1, 0.5, 0.2]); // [1, 4]
 * wandaPrune(weight, new Float64Array([0.1, 1, 1, 1])).mask; // [0, 1, 1, 0]: |1|·0.1 and |0.2|·1 are lowest
 * ```
 */
export function wandaPrune(weight: Float32Array, columnNorms: Float64Array | Float32Array, options: Partial<WandaOptions> = {}): PruneResult {
  const o = resolveOptions('wandaPrune', options, defaultWandaOptions);
  const { sparsity, pattern } = resolveSparsity('wandaPrune', options, o.sparsity, o.pattern);
  if (!(columnNorms instanceof Float64Array || columnNorms instanceof Float32Array) || columnNorms.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `wandaPrune: expected columnNorms as a Float64Array [in] of the inputs' ‖X_j‖₂; got ${describeValue(columnNorms)}`, {
      help: 'take them from accumulateHessians(model, calibration, { hessian: false }) in @posttrain/policy: stats.get(path).columnNorms',
    });
  }
  const inFeatures = columnNorms.length;
  if (weight instanceof Float32Array && weight.length % inFeatures !== 0) {
    throw new PosttrainError('SHAPE_MISMATCH', `wandaPrune: expected a weight [out, ${inFeatures}] for ${inFeatures} column norms; got ${weight.length} values, not a whole number of rows`);
  }
  const rows = weight.length / inFeatures;
  checkWeight('wandaPrune', weight, [rows, inFeatures]);
  for (let j = 0; j < inFeatures; j++) {
    if (!Number.isFinite(columnNorms[j]) || columnNorms[j] < 0) {
      throw new PosttrainError('NON_FINITE', `wandaPrune: columnNorms[${j}] is ${columnNorms[j]}; expected finite norms ≥ 0`, { help: 'check the calibration inputs for NaN or Inf activations' });
    }
  }
  const comparison = checkComparison('wandaPrune', o.comparison);
  const scores = Float64Array.from(weight, (w, i) => Math.abs(w) * columnNorms[i % inFeatures]);
  let mask: Uint8Array;
  if (pattern === 'unstructured') mask = unstructuredMask(scores, inFeatures, sparsity, comparison);
  else {
    checkDivides('wandaPrune', inFeatures, pattern.m);
    mask = nmMask(scores, inFeatures, pattern);
  }
  return { mask, weight: applyMask(weight, mask) };
}
