import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { Conv1D } from './conv1d.js';
import { Linear } from './layers.js';
import { thrown } from './testing/assert.js';

describe('Conv1D', () => {
  it('stores the weight [in, out] and computes x W + b, the transpose of a Linear', () => {
    const conv = new Conv1D(3, 2);
    expect(conv.weight.shape).toEqual([3, 2]);
    const weight = tf.tensor2d([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const bias = tf.tensor1d([0.5, -0.5]);
    conv.loadStateDict({ weight, bias });
    const linear = new Linear(3, 2);
    const weightT = weight.transpose();
    linear.loadStateDict({ weight: weightT, bias });
    const x = tf.tensor3d([
      [
        [1, 0, -1],
        [2, 1, 0],
      ],
    ]);
    const y = conv.forward(x);
    expect(y.shape).toEqual([1, 2, 2]);
    expect(Array.from(y.dataSync())).toEqual([-3.5, -4.5, 5.5, 7.5]);
    expect(Array.from(y.dataSync())).toEqual(Array.from(linear.forward(x).dataSync()));
    tf.dispose([weight, bias, weightT, x, y]);
    conv.dispose();
    linear.dispose();
  });

  it('names a wrong input width', () => {
    const conv = new Conv1D(4, 2, { bias: false });
    const x = tf.zeros([2, 3]);
    expect(thrown(() => conv.forward(x)).message).toBe('Conv1D: expected input [..., 4]; got [2, 3]');
    expect([...conv.namedParameters().keys()]).toEqual(['weight']);
    x.dispose();
    conv.dispose();
  });
});
