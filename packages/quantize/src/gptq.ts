// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", arXiv 2210.17323, Algorithm 1) as llm-compressor runs it
// (src/llmcompressor/modifiers/quantization/gptq/gptq_quantize.py `quantize_weight`).
import { PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { affineQParams, dequantizeValue, quantizeValue } from './qparams.js';

/** Options of {@link gptqQuantize}. */
export interface GptqOptions {
  /** Bits per weight: 4 (int4) or 8 (int8). */
  bits: 4 | 8;
  /** Input columns sharing one scale (32, 64, 128, …), or `null` for one scale per output channel. */
  groupSize: number | null;
  /** Symmetric grid (zero-point 0) or asymmetric with per-group zero-points. */
  symmetric: boolean;
  /** Added to H's diagonal as a fraction of its mean (llm-compressor's `dampening_frac`, GPTQ's `percdamp`). */
  dampening: number;
  /** Columns per lazy batch update (the paper's B = 128). */
  blockSize: number;
  /**
   * Quantise columns in order of decreasing `H_jj` (activation order). `true` or `'group'`:
   * llm-compressor's `actorder: group` — groups are runs of columns in that order, so a `gIdx`
   * maps each column to its group; `'weight'`: groups stay runs of the original columns (scales
   * computed first, no `gIdx` needed at inference); `false`: natural order.
   */
  actOrder: boolean | 'group' | 'weight';
  /**
   * When group scales are computed: `'static'` (llm-compressor) from the weight before any
   * update; `'dynamic'` (IST-DASLab's gptq.py with `static_groups=False`) when the group's first
   * column comes up, from the weight with the updates of earlier blocks (not of earlier columns of
   * the same block: the original reads the lazily updated outer matrix).
   */
  groupQParams: 'static' | 'dynamic';
}

/** Frozen defaults of {@link gptqQuantize}: int4, groups of 128, symmetric, 1% dampening, blocks of 128, no act-order, static groups (llm-compressor's W4A16 preset). */
export const defaultGptqOptions: Readonly<GptqOptions> = Object.freeze({ bits: 4, groupSize: 128, symmetric: true, dampening: 0.01, blockSize: 128, actOrder: false, groupQParams: 'static' });

/** What {@link gptqQuantize} returns: the integers and grid of `QuantizedLinear.fromIntegers`. */
export interface GptqResult {
  /** `[out, in]` row-major codes in `[qmin, qmax]`, in the original column order. */
  q: Int8Array;
  /** `[out, groups]` float32 scales (one group per channel when `groupSize` is null). */
  scales: Float32Array;
  /** `[out, groups]` zero-points; undefined when symmetric. */
  zeros: Int8Array | undefined;
  /** `[in]` column → group, only with act-order `'group'` (otherwise column j is in group ⌊j / groupSize⌋). */
  gIdx: Int32Array | undefined;
  /** `[in]` the order columns were quantised in (identity without act-order). */
  perm: Int32Array;
  groupSize: number;
  /** GPTQ's loss Σ (w − q)² / [H⁻¹]²_jj / 2 over all weights. */
  loss: number;
  /** True when H + damping was not positive definite and the layer fell back to round-to-nearest (llm-compressor does the same, with a warning). */
  fellBackToRtn: boolean;
}

/**
 * Quantises one linear layer's weight with GPTQ given the Hessian of its inputs
 * `H = (2/n) Σ x xᵀ` (see `accumulateHessians` in @posttrain/policy). Follows llm-compressor's
 * `quantize_weight` step by step: group scales from the weight (compressed-tensors' grid, see
 * qparams.ts), dead inputs (`H_jj = 0`: `H_jj ← 1`, weights zeroed), dampening
 * `λ = dampening · mean(diag H)`, `U` = upper Cholesky factor of `(H + λI)⁻¹`, then column by
 * column `q = quant(w)`, `err = (w − q) / U_jj`, `W[:, j:] −= err · U[j, j:]` inside blocks of
 * `blockSize` columns and one lazy `W[:, end:] −= Err · U[block, end:]` per block (Algorithm 1).
 * Each column is fake-quantised in float32 (compressed-tensors' `fake_quantize` on a float32
 * weight); the error propagation runs in float64 (llm-compressor's is float32: on the reference
 * layer both give the same integers). Inputs are not modified.
 *
 * @example
 * ```ts
 * // weight: Float32Array [out, in] row-major; hessian: Float64Array [in, in] (shapes read from the lengths)
 * const { q, scales, gIdx, loss } = gptqQuantize(weight, hessian, { bits: 4, groupSize: 128, actOrder: true });
 * ```
 */
export function gptqQuantize(weight: Float32Array, hessian: Float64Array | Float32Array, options: Partial<GptqOptions> = {}): GptqResult {
  const o = resolveGptqOptions(options);
  const cols = Math.round(Math.sqrt(hessian?.length ?? 0));
  if (
    !(weight instanceof Float32Array) ||
    !(hessian instanceof Float64Array || hessian instanceof Float32Array) ||
    cols === 0 ||
    cols * cols !== hessian.length ||
    weight.length % cols !== 0 ||
    weight.length === 0
  ) {
    throw new PosttrainError(
      'SHAPE_MISMATCH',
      `gptqQuantize: expected a Float32Array weight [out, in] and a Hessian [in, in] (out·in and in·in values); got ${weight?.length} and ${hessian?.length} values`,
    );
  }
  const rows = weight.length / cols;
  const g = o.groupSize ?? cols;
  if (cols % g !== 0) {
    throw new PosttrainError('INVALID_OPTION', `gptqQuantize: groupSize ${g} does not divide the layer's ${cols} input features`, {
      help: 'use a group size that divides inFeatures (32, 64, 128) or groupSize: null for per-channel scales',
    });
  }
  for (let i = 0; i < weight.length; i++) {
    if (!Number.isFinite(weight[i])) throw new PosttrainError('NON_FINITE', `gptqQuantize: weight [${Math.floor(i / cols)}, ${i % cols}] is ${weight[i]}; expected finite weights`);
  }
  for (let i = 0; i < hessian.length; i++) {
    if (!Number.isFinite(hessian[i]))
      throw new PosttrainError('NON_FINITE', `gptqQuantize: Hessian entry [${Math.floor(i / cols)}, ${i % cols}] is ${hessian[i]}; expected a finite Hessian`, {
        help: 'check the calibration inputs for NaN or Inf activations',
      });
  }
  const groups = cols / g;
  const actOrder = o.actOrder === true ? 'group' : o.actOrder;

  // Column order: decreasing H_jj (stable, so equal diagonals keep their order).
  const perm = Int32Array.from({ length: cols }, (_, j) => j);
  if (actOrder !== false) perm.sort((a, b) => hessian[b * cols + b] - hessian[a * cols + a]);
  const W = new Float64Array(rows * cols); // permuted
  const H = new Float64Array(cols * cols); // permuted
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) W[r * cols + c] = weight[r * cols + perm[c]];
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) H[i * cols + j] = hessian[perm[i] * cols + perm[j]];
  // groupOf[c]: group of permuted column c. 'group' and no act-order: runs of the quantisation order; 'weight': runs of the original columns.
  const groupOf = Int32Array.from({ length: cols }, (_, c) => Math.floor((actOrder === 'weight' ? perm[c] : c) / g));

  // Scales from the weight before any update (llm-compressor's observer), in the original column order for 'weight'.
  const scales = new Float32Array(rows * groups);
  const zeros = new Int8Array(rows * groups);
  const observe = (r: number, group: number, columns: (k: number) => number): void => {
    let min = Infinity;
    let max = -Infinity;
    for (let k = 0; k < g; k++) {
      const v = columns(k);
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const p = affineQParams(min, max, o.bits, o.symmetric);
    scales[r * groups + group] = p.scale;
    zeros[r * groups + group] = p.zero;
  };
  for (let r = 0; r < rows; r++) {
    for (let group = 0; group < groups; group++) {
      if (actOrder === 'weight') observe(r, group, (k) => weight[r * cols + group * g + k]);
      else observe(r, group, (k) => W[r * cols + group * g + k]);
    }
  }

  // Dead inputs, dampening, U = upper Cholesky factor of H⁻¹.
  let meanDiag = 0;
  for (let j = 0; j < cols; j++) {
    if (H[j * cols + j] === 0) {
      H[j * cols + j] = 1;
      for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
    }
    meanDiag += H[j * cols + j] / cols;
  }
  for (let j = 0; j < cols; j++) H[j * cols + j] += o.dampening * meanDiag;
  let U = upperCholeskyOfInverse(H, cols);
  const fellBackToRtn = U === undefined;
  if (!U) {
    U = new Float64Array(cols * cols);
    for (let j = 0; j < cols; j++) U[j * cols + j] = 1;
  }

  const Q = new Int8Array(rows * cols); // permuted
  let loss = 0;
  const B = o.blockSize;
  for (let i1 = 0; i1 < cols; i1 += B) {
    const i2 = Math.min(i1 + B, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    const Err1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) W1[r * count + k] = W[r * cols + i1 + k];
    for (let k = 0; k < count; k++) {
      const c = i1 + k;
      const group = groupOf[c];
      if (o.groupQParams === 'dynamic' && o.groupSize !== null && c % g === 0) {
        for (let r = 0; r < rows; r++) observe(r, group, (m) => W[r * cols + c + m]); // the outer W, as the original
      }
      const d = U[c * cols + c];
      for (let r = 0; r < rows; r++) {
        const scale = scales[r * groups + group];
        const zero = zeros[r * groups + group];
        const w = W1[r * count + k];
        const q = quantizeValue(w, scale, zero, o.bits); // float32, as fake_quantize on a float32 weight
        Q[r * cols + c] = q;
        const dq = dequantizeValue(q, scale, zero);
        loss += ((w - dq) * (w - dq)) / (d * d) / 2;
        const err = (w - dq) / d;
        Err1[r * count + k] = err;
        if (err === 0) continue;
        for (let m = k; m < count; m++) W1[r * count + m] -= err * U[c * cols + i1 + m];
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

  const q = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) q[r * cols + perm[c]] = Q[r * cols + c];
  let gIdx: Int32Array | undefined;
  if (actOrder === 'group') {
    gIdx = new Int32Array(cols);
    for (let c = 0; c < cols; c++) gIdx[perm[c]] = groupOf[c];
  }
  return { q, scales, zeros: o.symmetric ? undefined : zeros, gIdx, perm, groupSize: g, loss, fellBackToRtn };
}

/** Validates GPTQ's options (shared with `gptqModel`). */
export function resolveGptqOptions(options: Partial<GptqOptions> | undefined, owner = 'gptqQuantize'): GptqOptions {
  const o = resolveOptions(owner, options, defaultGptqOptions);
  if (o.bits !== 4 && o.bits !== 8) throw new PosttrainError('INVALID_OPTION', `${owner}: expected bits to be 4 or 8; got ${describeValue(o.bits)}`);
  if (o.groupSize !== null) checkNumber(owner, 'groupSize', o.groupSize, 'a positive integer or null (per channel)', (v) => Number.isInteger(v) && v > 0);
  if (typeof o.symmetric !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected symmetric to be true or false; got ${describeValue(o.symmetric)}`);
  checkNumber(owner, 'dampening', o.dampening, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'blockSize', o.blockSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  if (![true, false, 'group', 'weight'].includes(o.actOrder))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected actOrder to be true, false, 'group' or 'weight'; got ${describeValue(o.actOrder)}`);
  if (o.groupQParams !== 'static' && o.groupQParams !== 'dynamic')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected groupQParams to be 'static' or 'dynamic'; got ${describeValue(o.groupQParams)}`);
  return o;
}

/**
 * `U` with `A⁻¹ = Uᵀ U`, U upper triangular (torch: cholesky → cholesky_inverse → cholesky(upper)),
 * for a symmetric `A [n, n]`; undefined when A is not positive definite.
 */
export function upperCholeskyOfInverse(A: Float64Array, n: number): Float64Array | undefined {
  const L = cholesky(A, n);
  if (!L) return undefined;
  // Linv = L⁻¹ (lower triangular), by forward substitution column by column.
  const Linv = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    Linv[j * n + j] = 1 / L[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += L[i * n + k] * Linv[k * n + j];
      Linv[i * n + j] = -s / L[i * n + i];
    }
  }
  // A⁻¹ = Linvᵀ Linv: (A⁻¹)_ij = Σ_{k ≥ max(i, j)} Linv_ki Linv_kj.
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += Linv[k * n + i] * Linv[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  const L2 = cholesky(inv, n);
  if (!L2) return undefined;
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) U[i * n + j] = L2[j * n + i];
  return U;
}

/** Lower Cholesky factor of a symmetric `A [n, n]` (row-major), or undefined when not positive definite. */
function cholesky(A: Float64Array, n: number): Float64Array | undefined {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0)) return undefined;
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / ljj;
    }
  }
  return L;
}
