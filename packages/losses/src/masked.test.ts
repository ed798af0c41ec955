import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { maskedMean, maskedWhiten, type MaskedMeanOptions, type MaskedWhitenOptions } from './masked.js';
import { BACKENDS, checkCase, expectError, loadReference, useBackend } from './testing/reference.js';

// PyTorch references: packages/losses/fixtures/token_ref.json (scripts/reference/losses_token.py).
// The fixture's `loss` is Σ weights ⊙ output with random weights, so its gradient checks the
// whole Jacobian against random cotangents.
const reference = loadReference('token_ref');
const casesOf = (fn: string) => Object.keys(reference).filter((name) => reference[name].fn === fn);

const runners: Record<string, (inputs: Record<string, tf.Tensor>, options: Record<string, unknown>) => Record<string, tf.Tensor>> = {
  maskedMean: ({ x, mask, weights }, options) =>
    tf.tidy(() => {
      const mean = maskedMean(x, mask, options as Partial<MaskedMeanOptions>);
      return { mean, loss: tf.sum(tf.mul(mean, weights)) };
    }),
  maskedWhiten: ({ x, mask, weights }, options) =>
    tf.tidy(() => {
      const whitened = maskedWhiten(x, mask, options as Partial<MaskedWhitenOptions>);
      return { whitened, loss: tf.sum(tf.mul(whitened, weights)) };
    }),
};

describe.each(BACKENDS)('masked statistics on %s', (backend) => {
  useBackend(backend);

  describe.each(Object.keys(runners))('%s against torch', (fn) => {
    it.each(casesOf(fn))('%s: values and gradients', (name) => {
      checkCase(reference[name], runners[fn]);
    });
  });

  it('an all-masked input: mean 0, whitened 0, zero finite gradients', () => {
    const x = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const mask = tf.zeros([2, 3]);
    for (const f of [
      (v: tf.Tensor) => maskedMean(v, mask),
      (v: tf.Tensor) => maskedMean(v, mask, { axis: 1 }),
      (v: tf.Tensor) => maskedWhiten(v, mask),
      (v: tf.Tensor) => maskedWhiten(v, mask, { shiftMean: false }),
    ]) {
      const out = f(x);
      expect(Array.from(out.dataSync()).every((v) => v === 0)).toBe(true);
      const grad = tf.grad((v: tf.Tensor) => tf.sum(f(v)))(x);
      expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true); // NaN !== 0
      tf.dispose([out, grad]);
    }
    tf.dispose([x, mask]);
  });

  it('one selected element whitens to 0 (TRL divides by zero there)', () => {
    const x = tf.tensor1d([3, -7, 11]);
    const mask = tf.tensor1d([0, 1, 0]);
    const out = maskedWhiten(x, mask);
    expect(Array.from(out.dataSync())).toEqual([0, 0, 0]);
    tf.dispose([x, mask, out]);
  });

  it('masked-out ∞ and NaN stay out; whitening gives mean 0 and Bessel variance 1 on the mask', () => {
    const x = tf.tensor1d([1, Infinity, 2, Number.NaN, 6]);
    const mask = tf.tensor1d([1, 0, 1, 0, 1]);
    const mean = maskedMean(x, mask);
    expect(mean.dataSync()[0]).toBeCloseTo(3, 6);
    const w = maskedWhiten(x, mask);
    const [a, , b, , c] = Array.from(w.dataSync());
    expect(w.dataSync()[1]).toBe(0);
    expect(w.dataSync()[3]).toBe(0);
    expect(a + b + c).toBeCloseTo(0, 5);
    expect((a * a + b * b + c * c) / 2).toBeCloseTo(1, 5); // unbiased variance of the whitened values
    tf.dispose([x, mask, mean, w]);
  });

  it('a bool mask is accepted (cast to float32 0/1)', () => {
    const x = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    const mask = tf.tensor2d([
      [1, 0],
      [1, 1],
    ]);
    const maskBool = tf.cast(mask, 'bool');
    const a = maskedMean(x, mask, { axis: 0 });
    const b = maskedMean(x, maskBool, { axis: 0 });
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    expect(Array.from(a.dataSync())).toEqual([2, 4]);
    tf.dispose([x, mask, maskBool, a, b]);
  });

  it('rejects a mask of another shape, naming both shapes', () => {
    const x = tf.zeros([2, 3]);
    const mask = tf.zeros([2, 1]);
    const help = '\nhelp: pass a float32 0/1 mask with one entry per element of x (1 = counted), e.g. the completion mask [B, T]';
    expectError(() => maskedMean(x, mask), 'SHAPE_MISMATCH', `maskedMean: expected x and mask of the same shape; got [2, 3] and [2, 1]${help}`);
    expectError(() => maskedWhiten(x, mask), 'SHAPE_MISMATCH', `maskedWhiten: expected x and mask of the same shape; got [2, 3] and [2, 1]${help}`);
    tf.dispose([x, mask]);
  });

  it('rejects unknown and meaningless options, naming them', () => {
    const x = tf.zeros([2, 3]);
    const mask = tf.ones([2, 3]);
    expectError(() => maskedMean(x, mask, { axis: 2 }), 'INVALID_OPTION', 'maskedMean: expected axis to be an integer in [-2, 2); got 2');
    expectError(() => maskedMean(x, mask, { axis: 0.5 }), 'INVALID_OPTION', 'maskedMean: expected axis to be an integer in [-2, 2); got 0.5');
    expectError(() => maskedMean(x, mask, { dim: 1 } as Partial<MaskedMeanOptions>), 'INVALID_OPTION', 'maskedMean: unknown option "dim"; known options are axis');
    expectError(() => maskedWhiten(x, mask, { shiftMean: 1 as unknown as boolean }), 'INVALID_OPTION', 'maskedWhiten: expected shiftMean to be true or false; got 1');
    expectError(() => maskedWhiten(x, mask, { shift_mean: false } as Partial<MaskedWhitenOptions>), 'INVALID_OPTION', 'maskedWhiten: unknown option "shift_mean"; known options are shiftMean');
    tf.dispose([x, mask]);
  });
});
