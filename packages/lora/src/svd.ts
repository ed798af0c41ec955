/** The top singular triplets of a matrix: `W ≈ Σ_k s[k] · u[k] v[k]ᵀ`. */
export interface SingularTriplets {
  /** Left singular vectors, each of length `rows`. */
  u: Float64Array[];
  /** Singular values, largest first. */
  s: number[];
  /** Right singular vectors, each of length `cols`. */
  v: Float64Array[];
}

/**
 * The `k` largest singular triplets of `w` (rows of length `cols`), in float64, from the cyclic
 * Jacobi eigen-decomposition of `WᵀW`. Meant for layer-sized matrices (PiSSA initialisation), not
 * for speed: O(cols³) per sweep.
 *
 * @example
 * ```ts
 * const { s } = topSingularTriplets([Float64Array.of(3, 0), Float64Array.of(0, 2)], 2, 1); // s = [3]
 * ```
 */
export function topSingularTriplets(w: Float64Array[], cols: number, k: number): SingularTriplets {
  const n = cols;
  const g = Array.from({ length: n }, () => new Float64Array(n));
  for (const row of w) {
    for (let i = 0; i < n; i++) {
      const ri = row[i];
      if (ri === 0) continue;
      for (let j = 0; j < n; j++) g[i][j] += ri * row[j];
    }
  }
  const { values, vectors } = jacobiEigen(g);
  const order = values
    .map((_, i) => i)
    .sort((a, b) => values[b] - values[a])
    .slice(0, k);
  const u: Float64Array[] = [];
  const s: number[] = [];
  const v: Float64Array[] = [];
  for (const idx of order) {
    const vec = new Float64Array(n);
    for (let i = 0; i < n; i++) vec[i] = vectors[i][idx];
    // u = W v / σ, with σ = |W v| (more accurate than √λ for small values).
    const wv = Float64Array.from(w, (row) => row.reduce((acc, x, i) => acc + x * vec[i], 0));
    const sigma = Math.hypot(...wv);
    u.push(sigma > 0 ? wv.map((x) => x / sigma) : new Float64Array(w.length));
    s.push(sigma);
    v.push(vec);
  }
  return { u, s, v };
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations; columns of `vectors` are the eigenvectors. */
function jacobiEigen(input: Float64Array[]): { values: number[]; vectors: Float64Array[] } {
  const n = input.length;
  const a = input.map((row) => Float64Array.from(row));
  const vectors = Array.from({ length: n }, (_, i) => {
    const row = new Float64Array(n);
    row[i] = 1;
    return row;
  });
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let total = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        total += a[i][j] * a[i][j];
        if (i !== j) off += a[i][j] * a[i][j];
      }
    }
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p][q];
        if (apq === 0) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let i = 0; i < n; i++) {
          const aip = a[i][p];
          const aiq = a[i][q];
          a[i][p] = c * aip - sn * aiq;
          a[i][q] = sn * aip + c * aiq;
        }
        for (let i = 0; i < n; i++) {
          const api = a[p][i];
          const aqi = a[q][i];
          a[p][i] = c * api - sn * aqi;
          a[q][i] = sn * api + c * aqi;
        }
        for (let i = 0; i < n; i++) {
          const vip = vectors[i][p];
          const viq = vectors[i][q];
          vectors[i][p] = c * vip - sn * viq;
          vectors[i][q] = sn * vip + c * viq;
        }
      }
    }
  }
  return { values: a.map((row, i) => row[i]), vectors };
}
