// Sparsity patterns shared by the criteria: unstructured (the lowest `sparsity` fraction of a
// comparison group) and N:M semi-structured (N kept in every group of M consecutive inputs of a
// row, NVIDIA's 2:4), with the selection, the checks and the exact pattern verification.
import { PosttrainError, checkNumber, describeValue } from '@posttrain/tensor-core';

/** N:M semi-structured sparsity: `n` weights kept in every group of `m` consecutive inputs of an output row (2:4 keeps 2 of 4). */
export interface NMPattern {
  n: number;
  m: number;
}

/** Where the pruned weights may fall: anywhere (`'unstructured'`, at the requested `sparsity`) or in an {@link NMPattern}. */
export type SparsityPattern = 'unstructured' | NMPattern;

/**
 * The N:M mask of `scores [out, in]` (row-major): in every group of `m` consecutive inputs of a
 * row the `n` highest scores are kept (1) and the `m − n` lowest pruned (0); ties prune the
 * earlier input first (a stable ascending sort). `m` must divide `inFeatures`.
 *
 * @example
 * ```ts
 * nmMask(new Float32Array([0.1, -0.9, 0.5, 0.2]).map(Math.abs), 4, { n: 2, m: 4 }); // Uint8Array [0, 1, 1, 0]
 * ```
 */
export function nmMask(scores: ArrayLike<number>, inFeatures: number, pattern: NMPattern): Uint8Array {
  const { n, m } = checkPattern('nmMask', pattern) as NMPattern;
  checkShape('nmMask', scores.length, inFeatures);
  checkDivides('nmMask', inFeatures, m);
  const mask = new Uint8Array(scores.length).fill(1);
  for (let start = 0; start < scores.length; start += m) pruneGroup(scores, start, m, m - n, mask);
  return mask;
}

/**
 * Counts the groups of `m` consecutive inputs (per output row of a `[out, in]` mask or weight,
 * row-major) that do not hold exactly `n` kept entries — at most `n` non-zeros for a weight, where
 * a kept weight may itself be zero. 0 means the pattern holds exactly.
 *
 * @example
 * ```ts
 * nmViolations(new Uint8Array([1, 1, 0, 0, 0, 1, 1, 1]), 8, { n: 2, m: 4 }); // 1 (the second group keeps 3)
 * nmViolations(new Float32Array([0.5, 0, 0, -1]), 4, { n: 2, m: 4 }); // 0
 * ```
 */
export function nmViolations(maskOrWeight: Uint8Array | Float32Array, inFeatures: number, pattern: NMPattern): number {
  const { n, m } = checkPattern('nmViolations', pattern) as NMPattern;
  checkShape('nmViolations', maskOrWeight.length, inFeatures);
  checkDivides('nmViolations', inFeatures, m);
  const isMask = maskOrWeight instanceof Uint8Array;
  let bad = 0;
  for (let start = 0; start < maskOrWeight.length; start += m) {
    let kept = 0;
    for (let k = 0; k < m; k++) if (maskOrWeight[start + k] !== 0) kept++;
    if (isMask ? kept !== n : kept > n) bad++;
  }
  return bad;
}

// ---- internal helpers of the criteria (not exported from the package) ----------------------------

/** Sets `mask[start + j] = 0` for the `k` lowest `scores[start + j]`, `j < length` (ties: earlier first). Small groups only. */
export function pruneGroup(scores: ArrayLike<number>, start: number, length: number, k: number, mask: Uint8Array): void {
  if (k <= 0) return;
  const order = Array.from({ length }, (_, j) => start + j);
  order.sort((a, b) => scores[a] - scores[b] || a - b);
  for (let j = 0; j < k; j++) mask[order[j]] = 0;
}

/**
 * Sets `mask[i] = 0` for the `k` lowest `scores[i]`, `start ≤ i < end` (ties: earlier first):
 * a numeric sort of a copy finds the k-th value, then everything below it and the first ties are pruned.
 */
export function pruneLowest(scores: ArrayLike<number>, start: number, end: number, k: number, mask: Uint8Array): void {
  if (k <= 0) return;
  const sorted = Float64Array.from({ length: end - start }, (_, j) => scores[start + j]).sort();
  const threshold = sorted[k - 1];
  let ties = 0; // how many entries equal to the threshold are pruned
  for (let j = k - 1; j >= 0 && sorted[j] === threshold; j--) ties++;
  for (let i = start; i < end; i++) {
    const s = scores[i];
    if (s < threshold) mask[i] = 0;
    else if (s === threshold && ties > 0) {
      mask[i] = 0;
      ties--;
    }
  }
}

/**
 * The unstructured mask of a row-major `[out, inFeatures]` score array: the ⌊out·in·sparsity⌋ lowest
 * scores across the whole layer pruned (`'layer'`), or the ⌊in·sparsity⌋ lowest of every row
 * (`'row'`); ties go to the earlier position. 1 = kept.
 */
export function unstructuredMask(scores: ArrayLike<number>, inFeatures: number, sparsity: number, comparison: 'layer' | 'row'): Uint8Array {
  const mask = new Uint8Array(scores.length).fill(1);
  if (comparison === 'layer') pruneLowest(scores, 0, scores.length, Math.floor(scores.length * sparsity), mask);
  else {
    const k = Math.floor(inFeatures * sparsity);
    for (let r = 0; r < scores.length; r += inFeatures) pruneLowest(scores, r, r + inFeatures, k, mask);
  }
  return mask;
}

/** Validates a {@link SparsityPattern}: `'unstructured'` or integers 0 < n < m. */
export function checkPattern(owner: string, pattern: unknown): SparsityPattern {
  if (pattern === 'unstructured') return pattern;
  if (pattern === null || typeof pattern !== 'object' || Array.isArray(pattern)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected pattern to be 'unstructured' or { n, m } (such as { n: 2, m: 4 }); got ${describeValue(pattern)}`);
  }
  const { n, m, ...rest } = pattern as Record<string, unknown>;
  if (Object.keys(rest).length > 0) throw new PosttrainError('INVALID_OPTION', `${owner}: unknown key "${Object.keys(rest)[0]}" in pattern; expected { n, m }`);
  checkNumber(owner, 'pattern.m', m, 'an integer ≥ 2 (the group size: 4 for 2:4)', (v) => Number.isInteger(v) && v >= 2);
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n >= (m as number)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected pattern.n to be an integer with 1 ≤ n < m = ${m} (the weights kept per group); got ${describeValue(n)}`, {
      help: `N:M keeps N of every M weights: use for example { n: ${Math.max(1, (m as number) >> 1)}, m: ${m} }; n = m would prune nothing`,
    });
  }
  return { n, m: m as number };
}

/** Validates `sparsity ∈ [0, 1)`. */
export function checkSparsity(owner: string, sparsity: unknown): number {
  if (typeof sparsity !== 'number' || !Number.isFinite(sparsity) || sparsity < 0 || sparsity >= 1) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected sparsity to be a fraction in [0, 1) (0.5 prunes half the weights); got ${describeValue(sparsity)}`, {
      help: typeof sparsity === 'number' && sparsity >= 1 && sparsity <= 100 ? `a percentage? use ${sparsity / 100}` : 'sparsity 1 would prune every weight; use for example 0.5',
    });
  }
  return sparsity;
}

/**
 * The pattern and sparsity of a criterion's options: with an N:M pattern, the sparsity is `1 − n/m`
 * and an explicitly given `sparsity` must agree with it.
 */
export function resolveSparsity(owner: string, given: { sparsity?: unknown; pattern?: unknown } | undefined, sparsity: unknown, pattern: unknown): { sparsity: number; pattern: SparsityPattern } {
  const p = checkPattern(owner, pattern);
  if (p === 'unstructured') return { sparsity: checkSparsity(owner, sparsity), pattern: p };
  const implied = 1 - p.n / p.m;
  if (given?.sparsity !== undefined && (typeof given.sparsity !== 'number' || Math.abs(given.sparsity - implied) > 1e-9)) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: sparsity ${describeValue(given.sparsity)} conflicts with the ${p.n}:${p.m} pattern, which prunes ${+(implied * 100).toFixed(4)}% of the weights`,
      {
        help: `leave sparsity out with an N:M pattern (or give ${implied})`,
      },
    );
  }
  return { sparsity: implied, pattern: p };
}

/** Throws unless `length` values form rows of `inFeatures`. */
export function checkShape(owner: string, length: number, inFeatures: number): void {
  if (!Number.isInteger(inFeatures) || inFeatures <= 0 || length === 0 || length % inFeatures !== 0) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected [out, in] values with in = ${inFeatures}; got ${length} values, not a whole number of rows`);
  }
}

/** Throws unless the group size `m` divides the layer's `inFeatures` (`layer` names it). */
export function checkDivides(owner: string, inFeatures: number, m: number, layer = "the layer's"): void {
  if (inFeatures % m !== 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: the N:M group size m = ${m} does not divide ${layer} ${inFeatures} input features`, {
      help: "pick an m that divides every pruned layer's inputs (4 for 2:4), or leave the layer out with the layers option",
    });
  }
}

/** Throws NON_FINITE naming the first NaN or ±Inf weight `[row, column]`. */
export function checkFinite(owner: string, weight: Float32Array, inFeatures: number, layer = 'weight'): void {
  for (let i = 0; i < weight.length; i++) {
    if (!Number.isFinite(weight[i])) {
      throw new PosttrainError('NON_FINITE', `${owner}: ${layer} [${Math.floor(i / inFeatures)}, ${i % inFeatures}] is ${weight[i]}; expected finite weights`, {
        help: 'a NaN weight has no magnitude to rank; fix or reload the model before pruning',
      });
    }
  }
}

/** Validates a `comparison` option: `'layer'` or `'row'` (an N:M pattern ignores it: it compares within groups of a row). */
export function checkComparison(owner: string, comparison: unknown): 'layer' | 'row' {
  if (comparison !== 'layer' && comparison !== 'row') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected comparison to be 'layer' or 'row'; got ${describeValue(comparison)}`);
  }
  return comparison;
}
