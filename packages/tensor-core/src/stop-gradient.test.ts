import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { stopGradient } from './stop-gradient.js';

describe('stopGradient', () => {
  it('keeps the values and blocks the gradient, without leaking tensors', () => {
    const x = tf.tensor1d([1, -2, 3]);
    const before = tf.memory().numTensors;
    const y = stopGradient(x);
    expect(Array.from(y.dataSync())).toEqual([1, -2, 3]);
    expect(y).not.toBe(x);
    y.dispose();
    // d/dx [x² + stop(x)·x] = 2x + stop(x): the stopped factor is a constant.
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.add(tf.square(v), tf.mul(stopGradient(v), v))))(x);
    expect(Array.from(g.dataSync())).toEqual([3, -6, 9]);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
