import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { clipGradNorm, clipGradNormAsync } from './clip.js';
import { thrown } from './testing/assert.js';
import { optimFixture } from './testing/optim-fixture.js';

// Reference: scripts/reference/optim_ref.py, torch.nn.utils.clip_grad_norm_ on fixed gradients.
const fixture = optimFixture.clip;

function fixtureGrads(): Map<string, tf.Tensor> {
  return new Map(Object.entries(fixture.grads).map(([k, v]) => [k, tf.tensor(v, fixture.shapes[k], 'float32')]));
}

describe('clipGradNorm', () => {
  for (const c of fixture.cases) {
    it(`matches torch.nn.utils.clip_grad_norm_ with maxNorm ${c.maxNorm} (1e-6 relative)`, () => {
      const grads = fixtureGrads();
      const total = clipGradNorm(grads, c.maxNorm);
      expect(Math.abs(total - c.totalNorm) / c.totalNorm).toBeLessThan(1e-6);
      for (const [k, expected] of Object.entries(c.clipped)) {
        const got = grads.get(k) as tf.Tensor;
        expect(got.shape).toEqual(fixture.shapes[k]);
        got.dataSync().forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-6 * Math.max(1, Math.abs(expected[i]))));
      }
      tf.dispose([...grads.values()]);
    });
  }

  it('computes the global norm by hand, scales every gradient, and keeps keys and order', () => {
    const a = tf.tensor([3, 4]);
    const b = tf.tensor([[12]]);
    const grads = new Map([
      ['a', a],
      ['b', b],
    ]);
    const total = clipGradNorm(grads, 6.5); // √(9 + 16 + 144) = 13 → coef ≈ 0.5
    expect(total).toBeCloseTo(13, 5);
    expect([...grads.keys()]).toEqual(['a', 'b']);
    expect(a.isDisposed && b.isDisposed).toBe(true);
    const [a0, a1] = (grads.get('a') as tf.Tensor).dataSync();
    expect(a0).toBeCloseTo(1.5, 6);
    expect(a1).toBeCloseTo(2, 6);
    expect((grads.get('b') as tf.Tensor).shape).toEqual([1, 1]);
    expect((grads.get('b') as tf.Tensor).dataSync()[0]).toBeCloseTo(6, 5);
    tf.dispose([...grads.values()]);
  });

  it('leaves gradients below maxNorm unchanged (multiplied by 1) and returns their norm', () => {
    const grads = new Map([['w', tf.tensor([0.3, -0.4])]]);
    expect(clipGradNorm(grads, 1)).toBeCloseTo(0.5, 6);
    expect(Array.from((grads.get('w') as tf.Tensor).dataSync())).toEqual([Math.fround(0.3), Math.fround(-0.4)]);
    tf.dispose([...grads.values()]);
  });

  it('returns 0 for no gradients', () => {
    expect(clipGradNorm(new Map(), 1)).toBe(0);
  });

  it('returns a non-finite norm as is', () => {
    const grads = new Map([['w', tf.tensor([Number.NaN, 1])]]);
    expect(clipGradNorm(grads, 1)).toBeNaN();
    tf.dispose([...grads.values()]);
  });

  it('rejects maxNorm ≤ 0 or non-finite, and non-float32 gradients, naming them', () => {
    const grads = fixtureGrads();
    for (const maxNorm of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = thrown(() => clipGradNorm(grads, maxNorm));
      expect(isPosttrainError(error)).toBe(true);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toContain(`clipGradNorm: expected maxNorm to be > 0; got ${maxNorm}`);
    }
    const ints = new Map([['steps', tf.tensor([1, 2], [2], 'int32')]]);
    expect(thrown(() => clipGradNorm(ints, 1)).message).toContain('expected float32 gradients; "steps" is int32 [2]');
    expect(thrown(() => clipGradNorm({} as Map<string, tf.Tensor>, 1)).code).toBe('INVALID_ARGUMENT');
    // Nothing was replaced by the failed calls.
    for (const g of grads.values()) expect(g.isDisposed).toBe(false);
    tf.dispose([...grads.values(), ...ints.values()]);
  });

  it('leaves tf.memory().numTensors unchanged across calls', () => {
    const grads = fixtureGrads();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) clipGradNorm(grads, 0.5);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([...grads.values()]);
  });
});

describe('clipGradNormAsync', () => {
  it('gives the same norm and clipped gradients as clipGradNorm, without leaking', async () => {
    const c = fixture.cases[0];
    const grads = fixtureGrads();
    const before = tf.memory().numTensors;
    const total = await clipGradNormAsync(grads, c.maxNorm);
    expect(tf.memory().numTensors).toBe(before);
    const sync = fixtureGrads();
    expect(total).toBe(clipGradNorm(sync, c.maxNorm));
    for (const [k, g] of grads) expect(Array.from(g.dataSync())).toEqual(Array.from((sync.get(k) as tf.Tensor).dataSync()));
    await expect(clipGradNormAsync(grads, -1)).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    tf.dispose([...grads.values(), ...sync.values()]);
  });
});
