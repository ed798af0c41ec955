// SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned
// in One-Shot", arXiv 2301.00774, Algorithm 1), as IST-DASLab/sparsegpt sparsegpt.py `fasterprune`
// and llm-compressor's SparseGPTModifier run it.
import { dampedInverseHessianFactor } from '@posttrain/policy';
import { PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { type PruneResult, checkWeight } from './magnitude.js';
import { type SparsityPattern, checkDivides, pruneGroup, pruneLowest, resolveSparsity } from './nm.js';

/** Options of {@link sparsegptPrune}. */
export interface SparseGptOptions {
  /** Fraction of the weights pruned, in [0, 1), chosen block by block. Implied (1 − n/m) with an N:M pattern. */
  sparsity: number;
  /** `'unstructured'` (the mask of each block of columns chosen at once) or N:M (each group of m columns chosen when it comes up). */
  pattern: SparsityPattern;
  /** Added to H's diagonal as a fraction of its mean (the reference's `percdamp`, llm-compressor's `dampening_frac`). */
  dampening: number;
  /** Columns per block: the unstructured mask's selection unit and the lazy batch update's width (the reference's `blocksize`, 128). */
  blockSize: number;
}

/** Frozen defaults of {@link sparsegptPrune}: 50% unstructured, 1% dampening, blocks of 128 (the reference's). */
export const defaultSparseGptOptions: Readonly<SparseGptOptions> = Object.freeze({ sparsity: 0.5, pattern: 'unstructured', dampening: 0.01, blockSize: 128 });

/** What {@link sparsegptPrune} returns: the mask, the updated weight and the OBS loss. */
export interface SparseGptResult extends PruneResult {
  /** The OBS loss Σ (w − q)² / [H⁻¹]²_jj / 2 of the pruned weights, summed over rows (the reference's `Losses`). */
  loss: number;
}

/**
 * SparseGPT on one layer given the Hessian of its inputs `H = (2/n) Σ x xᵀ` (`accumulateHessians`
 * in @posttrain/policy): prunes `weight [out, in]` and updates the remaining weights so the
 * layer's output on the calibration inputs changes least (optimal brain surgeon, column by column).
 * Step by step as the reference `fasterprune`: dead inputs (`H_jj = 0`: `H_jj ← 1`, `W[:, j] ← 0`),
 * dampening `λ = dampening · mean(diag H)`, `U` = upper Cholesky factor of `(H + λI)⁻¹`; then in
 * blocks of `blockSize` columns: the block's mask is chosen by the OBS saliency `w² / U_jj²`
 * (unstructured: the lowest `sparsity` fraction of the whole block at its start; N:M: the `m − n`
 * lowest of each row's group of `m` columns when the group comes up, from the weights updated so
 * far), each column `q = w · mask`, `err = (w − q) / U_jj`, `W[:, j:] −= err · U[j, j:]` in the
 * block, and after the block `W[:, end:] −= Err · U[block, end:]` (the lazy batch update).
 *
 * One difference from the reference code: it prunes `score ≤ sort(score)[⌊k⌋]`, one weight more
 * than asked; here exactly `⌊count·sparsity⌋` per block (ties: the earlier position first), so a
 * layer whose blocks divide evenly ends at exactly `sparsity`. Runs in float64 (the reference runs
 * float32; on the reference layer both give the same mask); the inputs are not modified.
 *
 * @example
 * ```ts
 * // weight: Float32Array [out, in] row-major; hessian: Float64Array [in, in] (shapes read from the lengths)
 * const { mask, weight: pruned, loss } = sparsegptPrune(weight, hessian, { pattern: { n: 2, m: 4 } });
 * ```
 */
export function sparsegptPrune(weight: Float32Array, hessian: Float64Array | Float32Array, options: Partial<SparseGptOptions> = {}): SparseGptResult {
  const o = resolveSparseGptOptions('sparsegptPrune', options);
  const { sparsity, pattern } = resolveSparsity('sparsegptPrune', options, o.sparsity, o.pattern);
  const cols = Math.round(Math.sqrt(hessian?.length ?? 0));
  if (!(hessian instanceof Float64Array || hessian instanceof Float32Array) || cols === 0 || cols * cols !== hessian.length) {
    throw new PosttrainError(
      'SHAPE_MISMATCH',
      `sparsegptPrune: expected the Hessian as a Float64Array [in, in] (in · in values); got ${describeValue(hessian)}${hessian?.length !== undefined ? ` of ${hessian.length} values` : ''}`,
      {
        help: 'take it from accumulateHessians(model, calibration) in @posttrain/policy: stats.get(path).hessian',
      },
    );
  }
  if (weight instanceof Float32Array && weight.length % cols !== 0) {
    throw new PosttrainError('SHAPE_MISMATCH', `sparsegptPrune: expected a weight [out, ${cols}] for a Hessian [${cols}, ${cols}]; got ${weight.length} values, not a whole number of rows`);
  }
  const rows = weight.length / cols;
  checkWeight('sparsegptPrune', weight, [rows, cols]);
  for (let i = 0; i < hessian.length; i++) {
    if (!Number.isFinite(hessian[i])) {
      throw new PosttrainError('NON_FINITE', `sparsegptPrune: Hessian entry [${Math.floor(i / cols)}, ${i % cols}] is ${hessian[i]}; expected a finite Hessian`, {
        help: 'check the calibration inputs for NaN or Inf activations',
      });
    }
  }
  if (pattern !== 'unstructured') {
    checkDivides('sparsegptPrune', cols, pattern.m);
    if (o.blockSize % pattern.m !== 0) {
      throw new PosttrainError('INVALID_OPTION', `sparsegptPrune: blockSize ${o.blockSize} is not a multiple of the N:M group size m = ${pattern.m}, so groups would straddle blocks`, {
        help: `use a blockSize that m divides, such as ${Math.max(pattern.m, Math.round(o.blockSize / pattern.m) * pattern.m)}`,
      });
    }
  }

  const W = Float64Array.from(weight);
  const H = Float64Array.from(hessian);
  const U = dampedInverseHessianFactor(H, W, rows, o.dampening);
  if (!U) {
    throw new PosttrainError('INVALID_ARGUMENT', `sparsegptPrune: H + ${o.dampening} · mean(diag H) · I is not positive definite, so H⁻¹ has no Cholesky factor`, {
      help: 'raise dampening (default 0.01) or add calibration tokens: H has rank at most the number of tokens',
    });
  }

  const mask = new Uint8Array(rows * cols).fill(1);
  let loss = 0;
  for (let i1 = 0; i1 < cols; i1 += o.blockSize) {
    const i2 = Math.min(i1 + o.blockSize, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    const Err1 = new Float64Array(rows * count);
    const mask1 = new Uint8Array(rows * count).fill(1);
    for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) W1[r * count + k] = W[r * cols + i1 + k];
    const d1 = Float64Array.from({ length: count }, (_, k) => U[(i1 + k) * cols + i1 + k]);
    if (pattern === 'unstructured') {
      const saliency = Float64Array.from(W1, (w, i) => (w * w) / (d1[i % count] * d1[i % count]));
      pruneLowest(saliency, 0, saliency.length, Math.floor(saliency.length * sparsity), mask1);
    }
    for (let k = 0; k < count; k++) {
      if (pattern !== 'unstructured' && k % pattern.m === 0) {
        const { n, m } = pattern;
        const saliency = new Float64Array(m);
        const groupMask = new Uint8Array(m);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < m; j++) saliency[j] = W1[r * count + k + j] ** 2 / d1[k + j] ** 2;
          groupMask.fill(1);
          pruneGroup(saliency, 0, m, m - n, groupMask);
          mask1.set(groupMask, r * count + k);
        }
      }
      const c = i1 + k;
      const d = U[c * cols + c];
      for (let r = 0; r < rows; r++) {
        if (mask1[r * count + k]) continue; // q = w: no error to spread
        const w = W1[r * count + k];
        loss += (w * w) / (d * d) / 2;
        const err = w / d;
        Err1[r * count + k] = err;
        for (let j = k; j < count; j++) W1[r * count + j] -= err * U[c * cols + i1 + j];
        W1[r * count + k] = 0; // q: exactly zero
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < count; k++) {
        W[r * cols + i1 + k] = W1[r * count + k];
        mask[r * cols + i1 + k] = mask1[r * count + k];
      }
    }
    // Lazy batch update of the columns after the block: W[:, i2:] −= Err1 · U[i1:i2, i2:].
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < count; k++) {
        const err = Err1[r * count + k];
        if (err === 0) continue;
        const u = (i1 + k) * cols;
        for (let j = i2; j < cols; j++) W[r * cols + j] -= err * U[u + j];
      }
    }
  }
  return { mask, weight: Float32Array.from(W), loss };
}

/** Validates SparseGPT's own options (shared with `pruneModel`). */
export function resolveSparseGptOptions(owner: string, options: Partial<SparseGptOptions> | undefined): SparseGptOptions {
  const o = resolveOptions(owner, options, defaultSparseGptOptions);
  checkNumber(owner, 'dampening', o.dampening, 'a number ≥ 0 (a fraction of mean diag H, default 0.01)', (v) => v >= 0);
  checkNumber(owner, 'blockSize', o.blockSize, 'a positive integer (default 128)', (v) => Number.isInteger(v) && v > 0);
  return o;
}
