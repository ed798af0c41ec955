import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { type GptqOptions, gptqQuantize } from './gptq.js';
import { affineQParams, quantizeValue } from './qparams.js';

// GPTQ against scripts/reference/gptq_ref.py, a torch transcription of llm-compressor's
// quantize_weight run on a fixed layer (W [32, 256], X [512, 256] with outlier and dead input
// features): the integers, scales, zero-points, group index and loss must match, and the layer's
// output error ‖(W − Ŵ) Xᵀ‖ must be below round-to-nearest's with the same grid.

interface RefCase {
  options: { bits: 4 | 8; group: number | null; symmetric: boolean; actorder: boolean; dynamic: boolean };
  expected: { q: string; scales: number[]; zeros: number[]; gIdx: number[]; perm: number[]; loss: number };
  float32: { q: string; mismatches: number };
  outputError: { gptq: number; rtn: number };
}
const ref = JSON.parse(readFileSync(new URL('./fixtures/gptq_ref.json', import.meta.url), 'utf8')) as {
  shape: [number, number];
  tokens: number;
  weight: string;
  inputCodes: string;
  inputColumnScales: number[];
  cases: Record<string, RefCase>;
};
const bytes = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'));
const [OUT, IN] = ref.shape;
const N = ref.tokens;
const weight = new Float32Array(bytes(ref.weight).buffer);
const codes = new Int8Array(bytes(ref.inputCodes).buffer);
const X = Float64Array.from(codes, (c, i) => c * ref.inputColumnScales[i % IN]); // [N, IN], exact
const hessian = new Float64Array(IN * IN); // (2/n) XᵀX, exact (dyadic sums)
for (let t = 0; t < N; t++) {
  for (let i = 0; i < IN; i++) {
    const xi = X[t * IN + i];
    if (xi === 0) continue;
    for (let j = 0; j < IN; j++) hessian[i * IN + j] += xi * X[t * IN + j];
  }
}
for (let i = 0; i < hessian.length; i++) hessian[i] *= 2 / N;

const optionsOf = (c: RefCase): Partial<GptqOptions> => ({
  bits: c.options.bits,
  groupSize: c.options.group,
  symmetric: c.options.symmetric,
  actOrder: c.options.actorder,
  groupQParams: c.options.dynamic ? 'dynamic' : 'static',
});

/** Ŵ [OUT, IN] from codes and a grid; `group(j)` is column j's group. */
function dequantize(q: Int8Array, scales: Float32Array, zeros: Int8Array | undefined, groups: number, group: (j: number) => number): Float64Array {
  return Float64Array.from(q, (v, i) => {
    const k = Math.floor(i / IN) * groups + group(i % IN);
    return (v - (zeros ? zeros[k] : 0)) * scales[k];
  });
}

/** ‖(W − Ŵ) Xᵀ‖_F over the calibration rows. */
function outputError(What: Float64Array): number {
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

/** Round-to-nearest on the same grid (compressed-tensors' qparams of each group of the original weight). */
function rtn(bits: number, groupSize: number, symmetric: boolean): Float64Array {
  const out = new Float64Array(OUT * IN);
  for (let r = 0; r < OUT; r++) {
    for (let g0 = 0; g0 < IN; g0 += groupSize) {
      const w = weight.subarray(r * IN + g0, r * IN + g0 + groupSize);
      const { scale, zero } = affineQParams(Math.min(...w), Math.max(...w), bits, symmetric);
      for (let k = 0; k < groupSize; k++) out[r * IN + g0 + k] = (quantizeValue(w[k], scale, zero, bits) - zero) * scale;
    }
  }
  return out;
}

describe('gptqQuantize against the PyTorch reference (scripts/reference/gptq_ref.py)', () => {
  for (const [name, c] of Object.entries(ref.cases)) {
    it(`${name}: the same integers, scales, zero-points, gIdx and loss; output error below round-to-nearest`, () => {
      const r = gptqQuantize(weight, hessian, optionsOf(c));
      const expectedQ = new Int8Array(bytes(c.expected.q).buffer);
      let mismatches = 0;
      for (let i = 0; i < expectedQ.length; i++) if (r.q[i] !== expectedQ[i]) mismatches++;
      expect(mismatches, `${name}: codes differing from torch float64`).toBe(0);
      const vsFloat32 = new Int8Array(bytes(c.float32.q).buffer).reduce((n, v, i) => n + (v === r.q[i] ? 0 : 1), 0);
      expect(vsFloat32, `${name}: codes differing from torch float32 (llm-compressor's precision)`).toBe(c.float32.mismatches);
      expect([...r.scales]).toEqual(c.expected.scales.map(Math.fround));
      if (c.options.symmetric) expect(r.zeros).toBeUndefined();
      else expect([...(r.zeros ?? [])]).toEqual(c.expected.zeros);
      expect([...r.perm]).toEqual(c.expected.perm);
      if (c.options.actorder) expect([...(r.gIdx ?? [])]).toEqual(c.expected.gIdx);
      else expect(r.gIdx).toBeUndefined();
      expect(r.loss).toBeCloseTo(c.expected.loss, 9);
      expect(r.fellBackToRtn).toBe(false);

      const groups = IN / r.groupSize;
      const gptqError = outputError(dequantize(r.q, r.scales, r.zeros, groups, (j) => (r.gIdx ? r.gIdx[j] : Math.floor(j / r.groupSize))));
      const rtnError = outputError(rtn(c.options.bits, c.options.group ?? IN, c.options.symmetric));
      expect(gptqError).toBeCloseTo(c.outputError.gptq, 6);
      expect(rtnError).toBeCloseTo(c.outputError.rtn, 6);
      expect(gptqError).toBeLessThan(0.9 * rtnError);
    });
  }

  it("act-order 'weight' keeps groups of original columns (no gIdx) and still beats round-to-nearest", () => {
    const r = gptqQuantize(weight, hessian, { bits: 4, groupSize: 64, symmetric: false, actOrder: 'weight' });
    expect(r.gIdx).toBeUndefined();
    expect([...r.perm]).toEqual(ref.cases.int4_g64_asym_actorder.expected.perm); // the same order, other groups
    const gptqError = outputError(dequantize(r.q, r.scales, r.zeros, IN / 64, (j) => Math.floor(j / 64)));
    expect(gptqError).toBeLessThan(0.9 * outputError(rtn(4, 64, false)));
  });
});

describe('gptqQuantize on its own', () => {
  it('equals round-to-nearest when the inputs are uncorrelated (diagonal H: no error to spread)', () => {
    const diag = new Float64Array(IN * IN);
    for (let j = 0; j < IN; j++) diag[j * IN + j] = 1 + (j % 7);
    const r = gptqQuantize(weight, diag, { bits: 4, groupSize: 32 });
    for (let row = 0; row < OUT; row++) {
      for (let g0 = 0; g0 < IN; g0 += 32) {
        const w = weight.subarray(row * IN + g0, row * IN + g0 + 32);
        const { scale, zero } = affineQParams(Math.min(...w), Math.max(...w), 4, true);
        for (let k = 0; k < 32; k++) expect(r.q[row * IN + g0 + k]).toBe(quantizeValue(w[k], scale, zero, 4));
      }
    }
  });

  it('does not modify its inputs; falls back to round-to-nearest when H is not positive definite', () => {
    const w = weight.slice();
    const h = hessian.slice();
    gptqQuantize(w, h, { bits: 8, groupSize: null, actOrder: true });
    expect(w).toEqual(weight);
    expect(h).toEqual(hessian);
    const negative = new Float64Array(IN * IN);
    for (let j = 0; j < IN; j++) negative[j * IN + j] = -1;
    const r = gptqQuantize(weight, negative, { bits: 8, groupSize: null });
    expect(r.fellBackToRtn).toBe(true);
    expect(r.q[0]).toBe(quantizeValue(weight[0], r.scales[0], 0, 8));
  });

  it('rejects a group size that does not divide the inputs, NaN weights, bad shapes and options, naming them', () => {
    const fails = (fn: () => unknown, code: string, text: string): void => {
      try {
        fn();
      } catch (error) {
        expect(isPosttrainError(error), String(error)).toBe(true);
        expect((error as { code: string }).code).toBe(code);
        expect((error as Error).message).toContain(text);
        return;
      }
      throw new Error('expected an error');
    };
    fails(() => gptqQuantize(weight, hessian, { groupSize: 96 }), 'INVALID_OPTION', 'groupSize 96 does not divide the layer');
    const nan = weight.slice();
    nan[5] = Number.NaN;
    fails(() => gptqQuantize(nan, hessian), 'NON_FINITE', 'weight [0, 5] is NaN');
    fails(() => gptqQuantize(weight, hessian.subarray(1)), 'SHAPE_MISMATCH', 'Hessian [in, in]');
    fails(() => gptqQuantize(weight, hessian, { bits: 3 as 4 }), 'INVALID_OPTION', 'expected bits to be 4 or 8; got 3');
    fails(() => gptqQuantize(weight, hessian, { actOrdre: true } as never), 'INVALID_OPTION', 'unknown option "actOrdre"');
  });
});
