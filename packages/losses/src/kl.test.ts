import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import { k1, k2, k3 } from './kl.js';

const ESTIMATORS = { k1, k2, k3 } as const;
const cases = Object.entries(loadReference('rl_ref')).filter(([, c]) => c.fn in ESTIMATORS);

describe('KL estimators: fixture coverage', () => {
  it('has a random and an extreme case (log r up to ±20 and down to ±1e-4) for each estimator', () => {
    const names = cases.map(([n]) => n);
    for (const fn of Object.keys(ESTIMATORS)) for (const kind of ['random', 'extreme']) expect(names).toContain(`${fn}_${kind}`);
  });
});

describe.each(BACKENDS)('KL estimators on %s', (backend) => {
  useBackend(backend);

  it.each(cases)('%s matches PyTorch (values and gradients)', (_, c) => {
    checkCase(c, ({ logprobs, refLogprobs }) => {
      const kl = ESTIMATORS[c.fn as keyof typeof ESTIMATORS](logprobs, refLogprobs);
      return { kl, loss: tf.sum(kl) }; // d Σ kl / d x is the elementwise derivative
    });
  });

  it('estimate KL(π‖π_ref) from samples of π: k1 and k3 average to it, k3 and k2 are ≥ 0', () => {
    // π = [0.7, 0.2, 0.1], π_ref = [0.4, 0.4, 0.2]; exact expectation over x ~ π.
    const p = [0.7, 0.2, 0.1];
    const q = [0.4, 0.4, 0.2];
    const exact = p.reduce((s, pi, i) => s + pi * Math.log(pi / q[i]), 0);
    const logprobs = tf.tensor1d(p.map(Math.log));
    const refLogprobs = tf.tensor1d(q.map(Math.log));
    const weights = tf.tensor1d(p);
    for (const [name, fn] of [
      ['k1', k1],
      ['k3', k3],
    ] as const) {
      const mean = tf.tidy(() => tf.sum(tf.mul(fn(logprobs, refLogprobs), weights)));
      expect(mean.dataSync()[0], name).toBeCloseTo(exact, 6);
      mean.dispose();
    }
    const [a, b] = [k2(logprobs, refLogprobs), k3(logprobs, refLogprobs)];
    expect(Math.min(...a.dataSync(), ...b.dataSync())).toBeGreaterThanOrEqual(0);
    tf.dispose([logprobs, refLogprobs, weights, a, b]);
  });

  it('k3 keeps its precision when π ≈ π_ref (expm1, no cancellation)', () => {
    const logprobs = tf.tensor1d([-2, -3]);
    const refLogprobs = tf.tensor1d([-2 + 1e-3, -3 - 2e-3]);
    const kl = k3(logprobs, refLogprobs);
    const d = [refLogprobs.dataSync()[0] - -2, refLogprobs.dataSync()[1] - -3]; // the float32 log r
    const expected = d.map((x) => Math.expm1(x) - x); // ≈ x²/2 ≈ 5e-7, 2e-6
    kl.dataSync().forEach((v, i) => expect(Math.abs(v - expected[i]) / expected[i]).toBeLessThan(1e-3));
    tf.dispose([logprobs, refLogprobs, kl]);
  });

  it('rejects tensors of different shapes, naming both', () => {
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([2, 4]);
    for (const fn of [k1, k2, k3]) {
      const e = thrown(() => fn(a, b));
      expect(isPosttrainError(e) && e.code).toBe('SHAPE_MISMATCH');
      expect(e.message).toContain(`${fn.name}: expected logprobs and refLogprobs of the same shape; got [2, 3] and [2, 4]`);
      expect(e.message).toContain('help:');
    }
    const e = thrown(() => k3(a, undefined as unknown as tf.Tensor));
    expect(e.message).toBe('k3: expected refLogprobs to be a tensor; got undefined');
    tf.dispose([a, b]);
  });
});
