// The inverse-Hessian factor that GPTQ (@posttrain/quantize) and SparseGPT (@posttrain/prune) both
// start from: dead inputs removed, dampening, and the upper Cholesky factor of H⁻¹ — dense symmetric
// linear algebra in float64 on row-major arrays.

/**
 * Prepares a layer's input Hessian `H [cols, cols]` (from {@link accumulateHessians}) for the
 * OBS-style updates of GPTQ (Frantar et al. 2022) and SparseGPT (Frantar & Alistarh 2023), in place,
 * as their reference code does: an input that never fired (`H_jj = 0`) gets `H_jj = 1` and its
 * column of `weight [rows, cols]` set to 0; then `dampening · mean(diag H)` is added to the
 * diagonal. Returns `U`, upper triangular with `(H + λI)⁻¹ = Uᵀ U`, or undefined when the damped
 * H is still not positive definite (raise the dampening or add calibration tokens).
 *
 * @example
 * ```ts
 * const H = Float64Array.from(stats.get(path)!.hessian);
 * const W = Float64Array.from(weight); // [rows, cols]
 * const U = dampedInverseHessianFactor(H, W, rows, 0.01);
 * ```
 */
export function dampedInverseHessianFactor(H: Float64Array, W: Float64Array, rows: number, dampening: number): Float64Array | undefined {
  const cols = Math.round(Math.sqrt(H.length));
  let meanDiag = 0;
  for (let j = 0; j < cols; j++) {
    if (H[j * cols + j] === 0) {
      H[j * cols + j] = 1;
      for (let r = 0; r < rows; r++) W[r * cols + j] = 0;
    }
    meanDiag += H[j * cols + j] / cols;
  }
  for (let j = 0; j < cols; j++) H[j * cols + j] += dampening * meanDiag;
  return upperCholeskyOfInverse(H, cols);
}

/**
 * `U` with `A⁻¹ = Uᵀ U`, U upper triangular (torch: cholesky → cholesky_inverse → cholesky(upper)),
 * for a symmetric `A [n, n]`; undefined when A is not positive definite.
 *
 * @example
 * ```ts
 * upperCholeskyOfInverse(new Float64Array([4, 0, 0, 1]), 2); // [0.5, 0, 0, 1]: diag(1/4, 1) = Uᵀ U
 * ```
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

/**
 * Lower Cholesky factor `L` (`A = L Lᵀ`) of a symmetric `A [n, n]` (row-major), or undefined when
 * A is not positive definite.
 *
 * @example
 * ```ts
 * cholesky(new Float64Array([4, 2, 2, 2]), 2); // [2, 0, 1, 1]
 * ```
 */
export function cholesky(A: Float64Array, n: number): Float64Array | undefined {
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
