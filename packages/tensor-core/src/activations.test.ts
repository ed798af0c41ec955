import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { geluTanh, silu } from './activations.js';
import { expectClose } from './testing/assert.js';

// Reference: scripts/reference/activations_ref.py (PyTorch, float64 from float32 inputs).
const ref = JSON.parse(readFileSync(new URL('../fixtures/activations_ref.json', import.meta.url), 'utf8')) as {
  x: number[];
  upstream: number[];
} & Record<'geluTanh' | 'silu', { y: number[]; grad: number[] }>;

const TOL = 1e-5; // max |ours − torch| ≤ TOL · max(1, max |torch|)

describe.each([
  ['geluTanh', geluTanh],
  ['silu', silu],
] as const)('%s matches PyTorch', (name, fn) => {
  it('forward and gradient, including saturated inputs', () => {
    const before = tf.memory().numTensors;
    const x = tf.tensor(ref.x);
    const upstream = tf.tensor(ref.upstream);
    const { value, grad } = tf.valueAndGrad((t: tf.Tensor) => fn(t).mul(upstream).sum())(x);
    const y = fn(x);
    expectClose(y.dataSync(), ref[name].y, TOL, 'forward');
    expectClose(grad.dataSync(), ref[name].grad, TOL, 'gradient');
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    tf.dispose([x, upstream, value, grad, y]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
