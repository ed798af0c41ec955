import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import { defaultGaeOptions, gae } from './gae.js';

const cases = Object.entries(loadReference('rl_ref')).filter(([, c]) => c.fn === 'gae');

describe('gae: fixture coverage and defaults', () => {
  it('covers the defaults, holes and an all-masked row, T = 160, λ = 1 and γ = 0', () => {
    expect(cases.map(([n]) => n).sort()).toEqual(['gae_defaults', 'gae_holes_all_masked', 'gae_long', 'gae_monte_carlo', 'gae_one_step']);
  });
  it("has TRL's PPO defaults, frozen", () => {
    expect(defaultGaeOptions).toEqual({ gamma: 1, lambda: 0.95 });
    expect(Object.isFrozen(defaultGaeOptions)).toBe(true);
  });
});

describe.each(BACKENDS)('gae on %s', (backend) => {
  useBackend(backend);

  it.each(cases)('%s matches PyTorch', (_, c) => {
    checkCase(c, ({ rewards, values, mask }, options) => ({ ...gae(rewards, values, mask, options) }));
  });

  it('a worked example: γ = λ = 1 gives returns = the reward-to-go; the value after the last token is 0', () => {
    const rewards = tf.tensor2d([[0, 0, 1, 9]]);
    const values = tf.tensor2d([[0.5, 0.25, 0.75, 9]]);
    const mask = tf.tensor2d([[1, 1, 1, 0]]);
    const { advantages, returns } = gae(rewards, values, mask, { gamma: 1, lambda: 1 });
    expect(Array.from(returns.dataSync())).toEqual([1, 1, 1, 0]);
    expect(Array.from(advantages.dataSync())).toEqual([0.5, 0.75, 0.25, 0]);
    tf.dispose([rewards, values, mask, advantages, returns]);
  });

  it('an all-masked batch gives zeros; the outputs carry no gradient', () => {
    const rewards = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const values = tf.tensor2d([
      [1, 1, 1],
      [1, 1, 1],
    ]);
    const empty = tf.zeros([2, 3]);
    const out = gae(rewards, values, empty);
    expect(Array.from(out.advantages.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(out.returns.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    const mask = tf.ones([2, 3]);
    const grad = tf.grad((v: tf.Tensor) => {
      const { advantages, returns } = gae(rewards, v, mask);
      return tf.add(tf.sum(advantages), tf.sum(returns)) as tf.Scalar;
    })(values);
    expect(Array.from(grad.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    tf.dispose([rewards, values, empty, mask, grad, out.advantages, out.returns]);
  });

  it('accepts a bool mask and T = 0', () => {
    const rewards = tf.tensor2d([[0, 1]]);
    const values = tf.tensor2d([[0, 0]]);
    const mask = tf.tensor2d([[true, false]], [1, 2], 'bool');
    const out = gae(rewards, values, mask, { gamma: 0.5, lambda: 0.5 });
    expect(Array.from(out.returns.dataSync())).toEqual([0, 0]); // the reward at the masked step is not seen
    const empty = tf.zeros([3, 0]);
    const none = gae(empty, empty, empty);
    expect(none.advantages.shape).toEqual([3, 0]);
    tf.dispose([rewards, values, mask, empty, out.advantages, out.returns, none.advantages, none.returns]);
  });

  it('rejects γ, λ outside [0, 1] and unknown options, naming them', () => {
    const x = tf.zeros([2, 3]);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ gamma: 1.5 }, 'gae: expected gamma to be a number in [0, 1]; got 1.5'],
      [{ lambda: -0.1 }, 'gae: expected lambda to be a number in [0, 1]; got -0.1'],
      [{ lambda: Number.NaN }, 'gae: expected lambda to be a number in [0, 1]; got NaN'],
      [{ lam: 0.9 }, 'gae: unknown option "lam"; known options are gamma, lambda'],
    ];
    for (const [options, message] of cases) {
      const e = thrown(() => gae(x, x, x, options));
      expect(isPosttrainError(e) && e.code).toBe('INVALID_OPTION');
      expect(e.message).toBe(message);
    }
    tf.dispose(x);
  });

  it('rejects inputs of different shapes, listing them', () => {
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([2, 4]);
    const c = tf.zeros([6]);
    let e = thrown(() => gae(a, b, a));
    expect(isPosttrainError(e) && e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toContain('gae: expected rewards, values, mask to share one shape [B, T]; got rewards [2, 3], values [2, 4], mask [2, 3]');
    expect(e.message).toContain('help:');
    e = thrown(() => gae(c, c, c));
    expect(e.message).toContain('got rewards [6], values [6], mask [6]');
    tf.dispose([a, b, c]);
  });
});
