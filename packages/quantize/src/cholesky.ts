// Dense symmetric linear algebra for GPTQ, in float64 on row-major arrays (internal: not exported from the package).

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
