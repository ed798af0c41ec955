import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import { defaultPpoPolicyLossOptions, defaultPpoValueLossOptions, ppoPolicyLoss, ppoValueLoss, type PpoPolicyInputs, type PpoValueInputs } from './ppo.js';

const reference = Object.entries(loadReference('rl_ref'));
const policyCases = reference.filter(([, c]) => c.fn === 'ppoPolicyLoss');
const valueCases = reference.filter(([, c]) => c.fn === 'ppoValueLoss');

describe('PPO losses: fixture coverage and defaults', () => {
  it('covers defaults, garbage under the mask, ±20 log-ratios, dual clip, T = 128 and an all-masked batch', () => {
    expect(policyCases.map(([n]) => n).sort()).toEqual(['ppo_policy_all_masked', 'ppo_policy_defaults', 'ppo_policy_dual_clip', 'ppo_policy_extreme', 'ppo_policy_long', 'ppo_policy_masked_garbage']);
    expect(valueCases.map(([n]) => n).sort()).toEqual(['ppo_value_defaults', 'ppo_value_extreme', 'ppo_value_long', 'ppo_value_masked_garbage']);
  });
  it("has TRL's defaults (cliprange 0.2, cliprange_value 0.2), dual clip off, frozen", () => {
    expect(defaultPpoPolicyLossOptions).toEqual({ clipRange: 0.2, dualClip: null });
    expect(defaultPpoValueLossOptions).toEqual({ clipRangeValue: 0.2 });
    expect(Object.isFrozen(defaultPpoPolicyLossOptions) && Object.isFrozen(defaultPpoValueLossOptions)).toBe(true);
  });
});

describe.each(BACKENDS)('PPO losses on %s', (backend) => {
  useBackend(backend);

  it.each(policyCases)('%s matches PyTorch (values and d loss / d logprobs)', (_, c) => {
    checkCase(c, (inputs, options) => ({ ...ppoPolicyLoss(inputs as unknown as PpoPolicyInputs, options) }));
  });

  it.each(valueCases)('%s matches PyTorch (values and d loss / d values)', (_, c) => {
    checkCase(c, (inputs, options) => ({ ...ppoValueLoss(inputs as unknown as PpoValueInputs, options) }));
  });

  it('an all-masked batch gives 0 and a zero, finite gradient even with garbage under the mask', () => {
    const logprobs = tf.tensor2d([
      [1e4, -1e4],
      [Infinity, 3],
    ]);
    const oldLogprobs = tf.tensor2d([
      [0, 0],
      [0, Number.NaN],
    ]);
    const advantages = tf.tensor2d([
      [1e30, -1e30],
      [1, 1],
    ]);
    const mask = tf.zeros([2, 2]);
    const out = ppoPolicyLoss({ logprobs, oldLogprobs, advantages, mask });
    for (const [name, t] of Object.entries(out)) expect(t.dataSync()[0], name).toBe(0);
    const grad = tf.grad((lp: tf.Tensor) => ppoPolicyLoss({ logprobs: lp, oldLogprobs, advantages, mask }).loss)(logprobs);
    expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true); // ±0
    const values = ppoValueLoss({ values: logprobs, oldValues: oldLogprobs, returns: advantages, mask });
    expect([values.loss.dataSync()[0], values.clipFraction.dataSync()[0]]).toEqual([0, 0]);
    const vgrad = tf.grad((v: tf.Tensor) => ppoValueLoss({ values: v, oldValues: oldLogprobs, returns: advantages, mask }).loss)(logprobs);
    expect(Array.from(vgrad.dataSync()).every((g) => g === 0)).toBe(true);
    tf.dispose([logprobs, oldLogprobs, advantages, mask, grad, vgrad, ...Object.values(out), ...Object.values(values)]);
  });

  it('clips as eq. 7 says: no gradient past 1 + ε for A > 0 or below 1 − ε for A < 0; the dual clip caps A < 0', () => {
    const oldLogprobs = tf.zeros([1, 4]);
    const logprobs = tf.tensor2d([[Math.log(1.5), Math.log(0.5), Math.log(1.5), Math.log(5)]]);
    const advantages = tf.tensor2d([[1, -1, -1, -1]]);
    const mask = tf.ones([1, 4]);
    const inputs = { logprobs, oldLogprobs, advantages, mask };
    const out = ppoPolicyLoss(inputs, { clipRange: 0.2 });
    // per token: −min(1.5, 1.2) = −1.2; max(0.5, 0.8) = 0.8; max(1.5, 1.2) = 1.5; max(5, 1.2) = 5
    expect(out.loss.dataSync()[0]).toBeCloseTo((-1.2 + 0.8 + 1.5 + 5) / 4, 6);
    expect(out.clipFraction.dataSync()[0]).toBeCloseTo(0.5, 6);
    const grad = tf.grad((lp: tf.Tensor) => ppoPolicyLoss({ ...inputs, logprobs: lp }, { clipRange: 0.2 }).loss)(logprobs);
    const g = grad.dataSync();
    expect([g[0], g[1]]).toEqual([0, 0]);
    expect(g[2]).toBeCloseTo(1.5 / 4, 6);
    const dual = ppoPolicyLoss(inputs, { clipRange: 0.2, dualClip: 3 });
    expect(dual.loss.dataSync()[0]).toBeCloseTo((-1.2 + 0.8 + 1.5 + 3) / 4, 6); // 5 capped at c·|A| = 3
    expect(dual.dualClipFraction.dataSync()[0]).toBeCloseTo(0.25, 6);
    tf.dispose([oldLogprobs, logprobs, advantages, mask, grad, ...Object.values(out), ...Object.values(dual)]);
  });

  it('rejects meaningless options and unknown keys, naming them', () => {
    const x = tf.zeros([2, 3]);
    const policy = { logprobs: x, oldLogprobs: x, advantages: x, mask: x };
    const cases: Array<[() => unknown, string]> = [
      [() => ppoPolicyLoss(policy, { clipRange: 0 }), 'ppoPolicyLoss: expected clipRange to be a number in (0, 1); got 0'],
      [() => ppoPolicyLoss(policy, { clipRange: 1 }), 'ppoPolicyLoss: expected clipRange to be a number in (0, 1); got 1'],
      [() => ppoPolicyLoss(policy, { dualClip: 1 }), 'ppoPolicyLoss: expected dualClip to be null (off) or a number > 1; got 1'],
      [() => ppoPolicyLoss(policy, { cliprange: 0.2 } as never), 'ppoPolicyLoss: unknown option "cliprange"; known options are clipRange, dualClip'],
      [() => ppoValueLoss({ values: x, oldValues: x, returns: x, mask: x }, { clipRangeValue: 0 }), 'ppoValueLoss: expected clipRangeValue to be a number > 0; got 0'],
      [() => ppoValueLoss({ values: x, oldValues: x, returns: x, mask: x }, { clipRangeValue: -1 }), 'ppoValueLoss: expected clipRangeValue to be a number > 0; got -1'],
    ];
    for (const [fn, message] of cases) {
      const e = thrown(fn);
      expect(isPosttrainError(e) && e.code).toBe('INVALID_OPTION');
      expect(e.message).toBe(message);
    }
    tf.dispose(x);
  });

  it('rejects inputs that are not one [B, T] shape, listing every shape', () => {
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([2]);
    const c = tf.zeros([3, 2]);
    let e = thrown(() => ppoPolicyLoss({ logprobs: a, oldLogprobs: a, advantages: b, mask: a }));
    expect(isPosttrainError(e) && e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toContain('ppoPolicyLoss: expected logprobs, oldLogprobs, advantages, mask to share one shape [B, T]; got logprobs [2, 3], oldLogprobs [2, 3], advantages [2], mask [2, 3]');
    expect(e.message).toContain('help:');
    e = thrown(() => ppoValueLoss({ values: a, oldValues: a, returns: a, mask: c }));
    expect(e.message).toContain('got values [2, 3], oldValues [2, 3], returns [2, 3], mask [3, 2]');
    e = thrown(() => ppoPolicyLoss({ logprobs: a, advantages: a, mask: a } as unknown as PpoPolicyInputs));
    expect(isPosttrainError(e) && e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toBe('ppoPolicyLoss: expected oldLogprobs to be a [B, T] tensor; got undefined');
    tf.dispose([a, b, c]);
  });
});
