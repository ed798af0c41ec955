import { describe, expect, it } from 'vitest';
import { dampedInverseHessianFactor, upperCholeskyOfInverse } from './hessian-inverse.js';

// The factor GPTQ and SparseGPT share: Uᵀ U = (H + λ·mean(diag H)·I)⁻¹ with U upper triangular,
// dead inputs (H_jj = 0) set to 1 and their weight columns zeroed first.

function gram(X: number[][]): Float64Array {
  const n = X[0].length;
  const H = new Float64Array(n * n);
  for (const x of X) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] += 2 * x[i] * x[j];
  return H;
}

describe('dampedInverseHessianFactor', () => {
  it('gives U upper triangular with Uᵀ U (H + λI) = I, zeroing the columns of dead inputs', () => {
    const X = [
      [1, 0.5, 0, -1],
      [0.2, -1, 0, 0.3],
      [2, 0.1, 0, 0.7],
      [-0.4, 0.9, 0, 1.1],
      [0.6, 0.6, 0, -0.2],
    ]; // input 2 never fires
    const n = 4;
    const H = gram(X);
    const original = H.slice();
    const W = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]); // [2, 4]
    const U = dampedInverseHessianFactor(H, W, 2, 0.01) as Float64Array;
    expect([...W]).toEqual([1, 2, 0, 4, 5, 6, 0, 8]);
    let mean = 0;
    for (let j = 0; j < n; j++) mean += (j === 2 ? 1 : original[j * n + j]) / n;
    expect(H[2 * n + 2]).toBeCloseTo(1 + 0.01 * mean, 12);
    expect(H[0]).toBeCloseTo(original[0] + 0.01 * mean, 12);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(U[i * n + j]).toBe(0);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0; // (Uᵀ U H)_ij
        for (let k = 0; k < n; k++) {
          let uu = 0;
          for (let m = 0; m < n; m++) uu += U[m * n + i] * U[m * n + k];
          s += uu * H[k * n + j];
        }
        expect(s).toBeCloseTo(i === j ? 1 : 0, 9);
      }
    }
  });

  it('returns undefined when H is not positive definite', () => {
    expect(upperCholeskyOfInverse(new Float64Array([1, 2, 2, 1]), 2)).toBeUndefined();
    expect(dampedInverseHessianFactor(new Float64Array([1, 2, 2, 1]), new Float64Array(2), 1, 0)).toBeUndefined();
  });
});
