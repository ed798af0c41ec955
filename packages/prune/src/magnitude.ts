// Magnitude pruning: the weights of smallest |W| go (Han et al. 2015; the baseline of the Wanda and
// SparseGPT papers, locuslab/wanda `prune_magnitude`, llm-compressor's MagnitudePruningModifier).
import { PosttrainError, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { type SparsityPattern, checkComparison, checkDivides, checkFinite, checkShape, checkSparsity, nmMask, pruneLowest, resolveSparsity, unstructuredMask } from './nm.js';

/** Options of {@link magnitudePrune}. */
export interface MagnitudeOptions {
  /** Fraction of the layer's weights pruned, in [0, 1). Implied (1 − n/m) with an N:M pattern. */
  sparsity: number;
  /** `'unstructured'` (the lowest |W| across the whole layer) or N:M (the m − n lowest of every group of m inputs of a row). */
  pattern: SparsityPattern;
  /**
   * Unstructured only (N:M ignores it): where the lowest weights are counted — `'layer'` (across the whole layer, the
   * baseline of the Wanda and SparseGPT papers) or `'row'` (the same share of every output row, Wanda's
   * comparison group; Sun et al. 2023, §5 "comparison group").
   */
  comparison: 'layer' | 'row';
}

/** Frozen defaults of {@link magnitudePrune}: 50% unstructured, across the layer. */
export const defaultMagnitudeOptions: Readonly<MagnitudeOptions> = Object.freeze({ sparsity: 0.5, pattern: 'unstructured', comparison: 'layer' });

/** A criterion's result for one layer: the mask and the pruned weight. */
export interface PruneResult {
  /** `[out, in]` row-major, 1 = kept, 0 = pruned. */
  mask: Uint8Array;
  /** `[out, in]` row-major: the weight with zeros where pruned (and, for SparseGPT, the kept weights updated). */
  weight: Float32Array;
}

/**
 * Magnitude pruning of one layer's `weight [out, in]` (row-major, PyTorch layout): exactly
 * `⌊out·in·sparsity⌋` weights of smallest |W| across the layer are pruned (ties: the earlier
 * position first), `⌊in·sparsity⌋` of every row with `comparison: 'row'`, or with an N:M pattern the `m − n` smallest of every group of `m` consecutive
 * inputs of each row. The input is not modified.
 *
 * @example
 * ```ts
 * const weight = new Float32Array([0.1, -0.9, 0.5, 0.2, -0.3, 0.05, 0.7, -0.6]); // [2, 4]
 * magnitudePrune(weight, [2, 4], { sparsity: 0.5 }).mask; // [0, 1, 1, 0, 0, 0, 1, 1]
 * magnitudePrune(weight, [2, 4], { pattern: { n: 2, m: 4 } }).mask; // [0, 1, 1, 0, 0, 0, 1, 1]
 * magnitudePrune(weight, [2, 4], { sparsity: 0.25, comparison: 'row' }).mask; // [0, 1, 1, 1, 1, 0, 1, 1]
 * ```
 */
export function magnitudePrune(weight: Float32Array, shape: readonly [number, number], options: Partial<MagnitudeOptions> = {}): PruneResult {
  const o = resolveOptions('magnitudePrune', options, defaultMagnitudeOptions);
  const { sparsity, pattern } = resolveSparsity('magnitudePrune', options, o.sparsity, o.pattern);
  const inFeatures = checkWeight('magnitudePrune', weight, shape);
  const comparison = checkComparison('magnitudePrune', o.comparison);
  const scores = Float32Array.from(weight, Math.abs);
  let mask: Uint8Array;
  if (pattern === 'unstructured') mask = unstructuredMask(scores, inFeatures, sparsity, comparison);
  else {
    checkDivides('magnitudePrune', inFeatures, pattern.m);
    mask = nmMask(scores, inFeatures, pattern);
  }
  return { mask, weight: applyMask(weight, mask) };
}

/** Options of {@link magnitudePruneGlobal}. */
export interface MagnitudeGlobalOptions {
  /** Fraction of all the layers' weights together pruned, in [0, 1). */
  sparsity: number;
}

/** Frozen defaults of {@link magnitudePruneGlobal}: 50%. */
export const defaultMagnitudeGlobalOptions: Readonly<MagnitudeGlobalOptions> = Object.freeze({ sparsity: 0.5 });

/**
 * Global magnitude pruning: one threshold over every given weight together, so exactly
 * `⌊total·sparsity⌋` weights of smallest |W| across all the layers are pruned (ties: earlier
 * layer, then earlier position first) and each layer ends at its own sparsity. Returns one mask
 * per weight, in order (1 = kept). The inputs are not modified.
 *
 * @example
 * ```ts
 * const masks = magnitudePruneGlobal([new Float32Array([1, 2, 3, 4]), new Float32Array([0.1, 0.2])], { sparsity: 0.5 });
 * // [[0, 1, 1, 1], [0, 0]]: the small layer loses everything, the large one one weight
 * ```
 */
export function magnitudePruneGlobal(weights: readonly Float32Array[], options: Partial<MagnitudeGlobalOptions> = {}): Uint8Array[] {
  const o = resolveOptions('magnitudePruneGlobal', options, defaultMagnitudeGlobalOptions);
  checkSparsity('magnitudePruneGlobal', o.sparsity);
  if (!Array.isArray(weights) || weights.length === 0 || !weights.every((w) => w instanceof Float32Array)) {
    throw new PosttrainError('INVALID_ARGUMENT', `magnitudePruneGlobal: expected a non-empty array of Float32Array weights; got ${describeValue(weights)}`);
  }
  weights.forEach((w, i) => checkFinite('magnitudePruneGlobal', w, w.length, `weights[${i}]`));
  const total = weights.reduce((n, w) => n + w.length, 0);
  const scores = new Float32Array(total);
  let offset = 0;
  for (const w of weights) {
    for (let i = 0; i < w.length; i++) scores[offset + i] = Math.abs(w[i]);
    offset += w.length;
  }
  const all = new Uint8Array(total).fill(1);
  pruneLowest(scores, 0, total, Math.floor(total * o.sparsity), all);
  const masks: Uint8Array[] = [];
  offset = 0;
  for (const w of weights) {
    masks.push(all.slice(offset, offset + w.length));
    offset += w.length;
  }
  return masks;
}

/** `weight · mask` as a new Float32Array (pruned entries exactly +0). */
export function applyMask(weight: Float32Array, mask: Uint8Array): Float32Array {
  return Float32Array.from(weight, (w, i) => (mask[i] ? w : 0));
}

/** Checks a `[out, in]` Float32Array weight of finite values against `shape`; returns `in`. */
export function checkWeight(owner: string, weight: Float32Array, shape: readonly [number, number]): number {
  if (!(weight instanceof Float32Array)) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected the weight as a Float32Array [out, in] (row-major); got ${describeValue(weight)}`);
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d > 0) || shape[0] * shape[1] !== weight.length) {
    throw new PosttrainError(
      'SHAPE_MISMATCH',
      `${owner}: expected shape [out, in] with out · in = ${weight.length} (the weight's length); got ${Array.isArray(shape) ? `[${shape.join(', ')}]` : describeValue(shape)}`,
    );
  }
  checkShape(owner, weight.length, shape[1]);
  checkFinite(owner, weight, shape[1]);
  return shape[1];
}
