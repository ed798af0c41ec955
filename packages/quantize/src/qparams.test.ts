import { describe, expect, it } from 'vitest';
import { MIN_SCALE, affineQParams, dequantizeValue, qRange, quantizeValue, quantizeValues, roundHalfEven } from './qparams.js';

describe('qparams (compressed-tensors calculate_qparams / _quantize)', () => {
  it('ranges and round half to even', () => {
    expect(qRange(4)).toEqual({ qmin: -8, qmax: 7 });
    expect(qRange(8)).toEqual({ qmin: -128, qmax: 127 });
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven)).toEqual([0, 2, 2, 0, -2, -2, 2, -3]);
  });
  it('symmetric and asymmetric scales and zero-points', () => {
    const s = affineQParams(-1, 0.5, 4, true);
    expect(s.zero).toBe(0);
    expect(s.scale).toBe(Math.fround(1 / 7.5));
    const a = affineQParams(-1, 0.5, 4, false);
    expect(a).toEqual({ scale: Math.fround(0.1), zero: 2 });
    // zero is always representable: an all-positive group still has min' = 0
    expect(affineQParams(0.2, 0.5, 4, false).zero).toBe(-8);
    // an all-zero group gets float32 eps, not a zero scale
    expect(affineQParams(0, 0, 8, true).scale).toBe(MIN_SCALE);
    expect(affineQParams(0, 0, 4, false)).toEqual({ scale: MIN_SCALE, zero: -8 });
  });
  it('quantize, clamp and dequantize', () => {
    expect(Array.from(quantizeValues(new Float32Array([-1, 0, 0.5, 9]), Math.fround(0.1), 2, 4))).toEqual([-8, 2, 7, 7]);
    // symmetric max maps to 7.5, which rounds to 8 (half to even) and is clamped to 7
    expect(quantizeValue(3.75, 0.5, 0, 4)).toBe(7);
    expect(quantizeValue(-3.75, 0.5, 0, 4)).toBe(-8);
    expect(quantizeValue(-1.25, 0.5, 0, 4)).toBe(-2);
    expect(dequantizeValue(5, 0.1, 2)).toBe(Math.fround(Math.fround(3) * Math.fround(0.1)));
  });
  it('rejects bad input', () => {
    expect(() => qRange(16)).toThrow(/bits/);
    expect(() => affineQParams(Number.NaN, 1, 4, true)).toThrow(/finite/);
  });
});
