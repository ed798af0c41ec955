import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { magnitudePrune, magnitudePruneGlobal } from './magnitude.js';
import { type NMPattern, nmMask, nmViolations } from './nm.js';
import { sparsegptPrune } from './sparsegpt.js';
import { wandaPrune } from './wanda.js';

// The three criteria against scripts/reference/prune_ref.py (torch transcriptions of locuslab/wanda's
// prune_magnitude / prune_wanda and IST-DASLab/sparsegpt's fasterprune) on a fixed layer W [16, 64]
// with X [256, 64] (outlier and dead input features): masks equal entry for entry, SparseGPT's
// updated weights to float32 rounding, N:M patterns exact on every row, and the layer's output error
// ‖(W − Ŵ) Xᵀ‖ ordered SparseGPT < Wanda < magnitude.

interface RefCase {
  method: 'magnitude' | 'wanda' | 'sparsegpt';
  sparsity: number;
  pattern: 'unstructured' | NMPattern;
  blockSize: number;
  mask: string;
  kept: number;
  outputError: number;
  weight?: string;
  loss?: number;
  float32MaskMismatches?: number;
}
const ref = JSON.parse(readFileSync(new URL('./fixtures/prune_ref.json', import.meta.url), 'utf8')) as {
  shape: [number, number];
  tokens: number;
  weight: string;
  inputCodes: string;
  inputColumnScales: number[];
  cases: RefCase[];
};
const bytes = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'));
const [OUT, IN] = ref.shape;
const N = ref.tokens;
const weight = new Float32Array(bytes(ref.weight).buffer);
const codes = new Int8Array(bytes(ref.inputCodes).buffer);
const X = Float64Array.from(codes, (c, i) => c * ref.inputColumnScales[i % IN]); // [N, IN], exact
const hessian = new Float64Array(IN * IN);
const norms = new Float64Array(IN);
for (let t = 0; t < N; t++) {
  for (let i = 0; i < IN; i++) {
    const xi = X[t * IN + i];
    norms[i] += xi * xi;
    for (let j = 0; j < IN; j++) hessian[i * IN + j] += xi * X[t * IN + j];
  }
}
for (let i = 0; i < hessian.length; i++) hessian[i] *= 2 / N;
for (let j = 0; j < IN; j++) norms[j] = Math.sqrt(norms[j]);

function outputError(What: Float32Array): number {
  let sum = 0;
  for (let r = 0; r < OUT; r++) {
    for (let t = 0; t < N; t++) {
      let y = 0;
      for (let j = 0; j < IN; j++) y += (weight[r * IN + j] - What[r * IN + j]) * X[t * IN + j];
      sum += y * y;
    }
  }
  return Math.sqrt(sum);
}
const run = (c: RefCase) => {
  const options = c.pattern === 'unstructured' ? { sparsity: c.sparsity } : { pattern: c.pattern };
  if (c.method === 'magnitude') return magnitudePrune(weight, [OUT, IN], options);
  if (c.method === 'wanda') return wandaPrune(weight, norms, options);
  return sparsegptPrune(weight, hessian, { ...options, blockSize: c.blockSize });
};
const label = (c: RefCase) => `${c.method} ${c.pattern === 'unstructured' ? `${c.sparsity * 100}%` : `${c.pattern.n}:${c.pattern.m}`} blocks of ${c.blockSize}`;

describe('criteria against the PyTorch reference', () => {
  for (const c of ref.cases) {
    it(`${label(c)}: the same mask, ${c.weight ? 'the same updated weights, ' : ''}the pattern exact`, () => {
      const r = run(c);
      const expected = bytes(c.mask);
      let mismatches = 0;
      for (let i = 0; i < expected.length; i++) if (expected[i] !== r.mask[i]) mismatches++;
      expect(mismatches).toBe(0);
      expect(r.mask.reduce((s, v) => s + v, 0)).toBe(c.kept);
      for (let i = 0; i < r.mask.length; i++) if (!r.mask[i]) expect(r.weight[i]).toBe(0);
      if (c.pattern !== 'unstructured') {
        expect(nmViolations(r.mask, IN, c.pattern)).toBe(0);
        expect(nmViolations(r.weight, IN, c.pattern)).toBe(0);
      }
      if (c.weight) {
        const w = new Float32Array(bytes(c.weight).buffer.slice(0));
        let worst = 0;
        for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(w[i] - r.weight[i]));
        expect(worst).toBeLessThan(1e-6);
        expect((r as unknown as { loss: number }).loss).toBeCloseTo(c.loss as number, 8);
      } else {
        for (let i = 0; i < r.mask.length; i++) if (r.mask[i]) expect(r.weight[i]).toBe(weight[i]);
      }
      expect(outputError(r.weight)).toBeCloseTo(c.outputError, 4);
    });
  }

  it('output error on the calibration inputs: SparseGPT < Wanda < magnitude at 50%, 2:4, 1:4 and 4:8', () => {
    for (const pattern of ['unstructured', { n: 2, m: 4 }, { n: 1, m: 4 }, { n: 4, m: 8 }] as const) {
      const options = pattern === 'unstructured' ? { sparsity: 0.5 } : { pattern };
      const e = {
        magnitude: outputError(magnitudePrune(weight, [OUT, IN], options).weight),
        wanda: outputError(wandaPrune(weight, norms, options).weight),
        sparsegpt: outputError(sparsegptPrune(weight, hessian, options).weight),
      };
      expect(e.sparsegpt).toBeLessThan(e.wanda);
      expect(e.wanda).toBeLessThan(e.magnitude);
    }
  });
});

describe('patterns and bad input', () => {
  it('nmMask keeps the n largest of each group; global magnitude uses one threshold', () => {
    expect([...nmMask([0.1, 0.9, 0.5, 0.2, 3, 1, 2, 0], 4, { n: 2, m: 4 })]).toEqual([0, 1, 1, 0, 1, 0, 1, 0]);
    const masks = magnitudePruneGlobal([new Float32Array([1, 2, 3, 4]), new Float32Array([0.1, 0.2])], { sparsity: 0.5 });
    expect(masks.map((m) => [...m])).toEqual([
      [0, 1, 1, 1],
      [0, 0],
    ]);
  });

  it("comparison: 'row' prunes ⌊in·s⌋ of every row, 'layer' ⌊out·in·s⌋ across it; Wanda per layer is magnitude on |W|·‖X_j‖", () => {
    const count = (mask: Uint8Array, from: number, to: number): number => mask.subarray(from, to).reduce((a, v) => a + (v === 0 ? 1 : 0), 0);
    const byRow = magnitudePrune(weight, [OUT, IN], { sparsity: 0.3, comparison: 'row' }).mask;
    for (let r = 0; r < OUT; r++) expect(count(byRow, r * IN, (r + 1) * IN)).toBe(Math.floor(IN * 0.3));
    // magnitude per row is Wanda per row with equal norms
    expect(byRow).toEqual(wandaPrune(weight, new Float64Array(IN).fill(1), { sparsity: 0.3 }).mask);
    const byLayer = wandaPrune(weight, norms, { sparsity: 0.3, comparison: 'layer' }).mask;
    expect(count(byLayer, 0, OUT * IN)).toBe(Math.floor(OUT * IN * 0.3));
    const scaled = Float32Array.from(weight, (w, i) => w * norms[i % IN]);
    expect(byLayer).toEqual(magnitudePrune(scaled, [OUT, IN], { sparsity: 0.3 }).mask);
    // rows end at different sparsities per layer, never per row
    const perRow = new Set(Array.from({ length: OUT }, (_, r) => count(byLayer, r * IN, (r + 1) * IN)));
    expect(perRow.size).toBeGreaterThan(1);
    // an N:M pattern ignores comparison
    expect(wandaPrune(weight, norms, { pattern: { n: 2, m: 4 }, comparison: 'layer' }).mask).toEqual(wandaPrune(weight, norms, { pattern: { n: 2, m: 4 } }).mask);
  });

  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(isPosttrainError(e)).toBe(true);
      return `${(e as Error & { code: string }).code}: ${(e as Error).message}`;
    }
    throw new Error('expected an error');
  };
  it('rejects sparsity outside [0, 1), n ≥ m, an m not dividing the inputs, NaN weights, a conflicting sparsity', () => {
    expect(code(() => magnitudePrune(weight, [OUT, IN], { sparsity: 1 }))).toMatch(/INVALID_OPTION: .*sparsity.*\[0, 1\).*got 1/);
    expect(code(() => wandaPrune(weight, norms, { sparsity: -0.1 }))).toMatch(/got -0.1/);
    expect(code(() => sparsegptPrune(weight, hessian, { pattern: { n: 4, m: 4 } }))).toMatch(/pattern.n .*1 ≤ n < m = 4.*got 4/);
    expect(code(() => magnitudePrune(weight, [OUT, IN], { pattern: { n: 2, m: 3 } }))).toMatch(/m = 3 does not divide the layer's 64 input features/);
    expect(code(() => sparsegptPrune(weight, hessian, { pattern: { n: 2, m: 4 }, blockSize: 18 }))).toMatch(/blockSize 18 is not a multiple/);
    expect(code(() => wandaPrune(weight, norms, { sparsity: 0.5, pattern: { n: 1, m: 4 } }))).toMatch(/sparsity 0.5 conflicts with the 1:4 pattern/);
    const bad = weight.slice();
    bad[70] = Number.NaN;
    expect(code(() => magnitudePrune(bad, [OUT, IN]))).toMatch(/NON_FINITE: .*\[1, 6\] is NaN/);
    expect(code(() => magnitudePrune(weight, [OUT, IN], { sparsty: 0.5 } as never))).toMatch(/unknown option "sparsty"/);
    expect(code(() => wandaPrune(weight, norms, { comparison: 'column' as never }))).toMatch(/INVALID_OPTION: wandaPrune: expected comparison to be 'layer' or 'row'; got "column"/);
  });
});
