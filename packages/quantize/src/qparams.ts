import { PosttrainError } from '@posttrain/tensor-core';

/**
 * Integer grids of affine (scale + zero-point) quantisation, exactly as compressed-tensors computes
 * them — the library llm-compressor writes and vLLM reads. Sources, at commit 52792be of
 * github.com/neuralmagic/compressed-tensors:
 * - `quantization/utils/helpers.py` `calculate_range`: qmin = -2^(b-1), qmax = 2^(b-1) - 1;
 * - `quantization/utils/helpers.py` `calculate_qparams`: min' = min(min, 0), max' = max(max, 0)
 *   (zero is always representable); symmetric scale = max(|min'|, |max'|) / ((qmax - qmin) / 2),
 *   zero = 0; asymmetric scale = (max' - min') / (qmax - qmin), zero = round(clamp(qmin - min'/scale,
 *   qmin, qmax)); both scales are clamped below at float32's machine epsilon (2^-23), which is how a
 *   zero scale (an all-zero group) becomes a tiny positive;
 * - `quantization/lifecycle/forward.py` `_quantize`: q = round(clamp(w / scale + zero, qmin, qmax))
 *   with `torch.round` (round half to even); `_dequantize`: w' = (q - zero) · scale.
 *
 * All arithmetic is float32 (`Math.fround` after each operation), as torch does on float32 tensors,
 * so the integers match PyTorch's bit for bit.
 */

/**
 * float32's machine epsilon, 2^-23: the smallest scale compressed-tensors allows (`torch.finfo(torch.float32).eps`).
 *
 * @example
 * ```ts
 * affineQParams(0, 0, 8, true).scale === MIN_SCALE; // true: an all-zero channel
 * ```
 */
export const MIN_SCALE = 2 ** -23;

const f = Math.fround;

/**
 * The signed integer range of a `bits`-bit grid: `{ qmin: -2^(bits-1), qmax: 2^(bits-1) - 1 }`
 * (compressed-tensors `calculate_range`).
 *
 * @example
 * ```ts
 * qRange(4); // { qmin: -8, qmax: 7 }
 * ```
 */
export function qRange(bits: number): { qmin: number; qmax: number } {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) {
    throw new PosttrainError('INVALID_ARGUMENT', `qRange: expected bits to be an integer in [2, 8]; got ${String(bits)}`);
  }
  return { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 };
}

/**
 * Round half to even, as `torch.round` does: 0.5 → 0, 1.5 → 2, 2.5 → 2, -0.5 → -0 (returned as 0).
 *
 * @example
 * ```ts
 * roundHalfEven(2.5); // 2
 * ```
 */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d < 0.5) return fl + 0;
  if (d > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl + 0 : fl + 1;
}

/**
 * Scale and zero-point of one group (or channel) from its minimum and maximum, following
 * compressed-tensors' `calculate_qparams` in float32 (see the module comment for the formulas).
 * `zero` is an integer in [qmin, qmax]; it is 0 when `symmetric`.
 *
 * @example
 * ```ts
 * affineQParams(-1, 0.5, 4, true);  // { scale: 1 / 7.5, zero: 0 }
 * affineQParams(-1, 0.5, 4, false); // { scale: 0.1, zero: 2 }
 * ```
 */
export function affineQParams(min: number, max: number, bits: number, symmetric: boolean): { scale: number; zero: number } {
  const { qmin, qmax } = qRange(bits);
  if (!Number.isFinite(min) || !Number.isFinite(max)) {
    throw new PosttrainError('NON_FINITE', `affineQParams: expected finite min and max; got ${min} and ${max}`);
  }
  const lo = Math.min(f(min), 0);
  const hi = Math.max(f(max), 0);
  const range = qmax - qmin;
  if (symmetric) {
    const absMax = Math.max(Math.abs(lo), Math.abs(hi));
    const scale = Math.max(f(absMax / (range / 2)), MIN_SCALE);
    return { scale, zero: 0 };
  }
  const scale = Math.max(f(f(hi - lo) / range), MIN_SCALE);
  const z = f(qmin - f(lo / scale));
  return { scale, zero: roundHalfEven(Math.min(Math.max(z, qmin), qmax)) };
}

/**
 * One weight's integer code: `round(clamp(w / scale + zero, qmin, qmax))` in float32 with round
 * half to even (compressed-tensors `_quantize`).
 *
 * @example
 * ```ts
 * quantizeValue(0.3, 0.1, 2, 4); // 5  (0.3 / 0.1 = 3, + 2)
 * ```
 */
export function quantizeValue(w: number, scale: number, zero: number, bits: number): number {
  const { qmin, qmax } = qRange(bits);
  const scaled = f(f(f(w) / f(scale)) + zero);
  return roundHalfEven(Math.min(Math.max(scaled, qmin), qmax));
}

/**
 * {@link quantizeValue} over a typed array with one scale and zero-point.
 *
 * @example
 * ```ts
 * quantizeValues(new Float32Array([-1, 0, 0.5]), 0.1, 2, 4); // Int8Array [-8, 2, 7]
 * ```
 */
export function quantizeValues(w: Float32Array, scale: number, zero: number, bits: number): Int8Array {
  const out = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = quantizeValue(w[i] as number, scale, zero, bits);
  return out;
}

/**
 * A code back to a float: `(q - zero) · scale` in float32 (compressed-tensors `_dequantize`).
 *
 * @example
 * ```ts
 * dequantizeValue(5, 0.1, 2); // 0.3 (as float32)
 * ```
 */
export function dequantizeValue(q: number, scale: number, zero: number): number {
  return f(f(q - zero) * f(scale));
}
