import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import { defaultRlooAdvantagesOptions, defaultRlooLossOptions, rlooAdvantages, rlooLoss, type RlooLossInputs } from './rloo.js';

const cases = Object.entries(loadReference('rl_ref')).filter(([, c]) => c.fn === 'rlooAdvantages');
const lossCases = Object.entries(loadReference('rl_ref')).filter(([, c]) => c.fn === 'rlooLoss');

describe('rlooAdvantages: fixture coverage and defaults', () => {
  it('covers k = 2 (the default), 3, 4 and 8 (binary rewards, one group all equal)', () => {
    expect(cases.map(([n]) => n).sort()).toEqual(['rloo_binary_k8', 'rloo_defaults', 'rloo_k4', 'rloo_large_k3']);
  });
  it("has TRL's default k = 2, frozen", () => {
    expect(defaultRlooAdvantagesOptions).toEqual({ groupSize: 2 });
    expect(Object.isFrozen(defaultRlooAdvantagesOptions)).toBe(true);
  });
  it('covers the loss with and without oldLogprobs, clip-higher, garbage under the mask, both clips hit and T = 96', () => {
    expect(lossCases.map(([n]) => n).sort()).toEqual(['rloo_loss_clip_higher', 'rloo_loss_defaults', 'rloo_loss_extreme', 'rloo_loss_long', 'rloo_loss_on_policy']);
    const extreme = lossCases.find(([n]) => n === 'rloo_loss_extreme')![1];
    expect(extreme.outputs.clipRatioLow.data[0] > 0 && extreme.outputs.clipRatioHigh.data[0] > 0).toBe(true);
    expect(lossCases.some(([, c]) => !('oldLogprobs' in c.inputs))).toBe(true);
    expect(defaultRlooLossOptions).toEqual({ epsilonLow: 0.2, epsilonHigh: 0.2 });
    expect(Object.isFrozen(defaultRlooLossOptions)).toBe(true);
  });
});

describe.each(BACKENDS)('rlooAdvantages on %s', (backend) => {
  useBackend(backend);

  it.each(cases)('%s matches PyTorch', (_, c) => {
    checkCase(c, ({ rewards }, options) => ({ ...rlooAdvantages(rewards, options) }));
  });

  it.each(lossCases)('%s matches PyTorch (values and d loss / d logprobs)', (_, c) => {
    checkCase(c, (inputs, options) => ({ ...rlooLoss(inputs as unknown as RlooLossInputs, options) }));
  });

  it('on-policy, the loss is −mean(A) with the gradient −A_i on every unmasked token of completion i (REINFORCE)', () => {
    const logprobs = tf.tensor2d([
      [-1, -2, 7],
      [-0.5, -0.1, -3],
    ]);
    const mask = tf.tensor2d([
      [1, 1, 0],
      [1, 1, 1],
    ]);
    const advantages = tf.tensor1d([0.5, -2]);
    const out = rlooLoss({ logprobs, advantages, mask });
    expect(out.loss.dataSync()[0]).toBeCloseTo(0.75, 6);
    const grad = tf.grad((lp: tf.Tensor) => rlooLoss({ logprobs: lp, advantages, mask }).loss)(logprobs);
    expect(Array.from(grad.dataSync())).toEqual([-0.25, -0.25, 0, 1, 1, 1]);
    tf.dispose([logprobs, mask, advantages, grad, ...(Object.values(out) as tf.Tensor[])]);
  });

  it('rejects mismatched shapes, a bad ε and unknown options', () => {
    const lp = tf.zeros([2, 3]);
    const m = tf.ones([2, 3]);
    const a = tf.zeros([3]);
    const a2 = tf.zeros([2]);
    const shape = thrown(() => rlooLoss({ logprobs: lp, advantages: a, mask: m }));
    expect(isPosttrainError(shape) && shape.code).toBe('SHAPE_MISMATCH');
    expect(shape.message).toContain('rlooLoss: expected advantages of shape [2] (one per completion, B from logprobs [2, 3]); got [3]');
    const eps = thrown(() => rlooLoss({ logprobs: lp, advantages: a2, mask: m }, { epsilonLow: 1 }));
    expect(eps.message).toContain('rlooLoss: expected epsilonLow to be a number in (0, 1); got 1');
    const unknown = thrown(() => rlooLoss({ logprobs: lp, advantages: a2, mask: m }, { epsilon: 0.2 } as never));
    expect(unknown.message).toContain('rlooLoss: unknown option "epsilon"; known options are epsilonLow, epsilonHigh');
    tf.dispose([lp, m, a, a2]);
  });

  it('subtracts the mean of the other completions of the same prompt', () => {
    const rewards = tf.tensor1d([1, 2, 6, 0.3, 0.3, 0.3]);
    const { advantages, baseline } = rlooAdvantages(rewards, { groupSize: 3 });
    const a = advantages.dataSync();
    expect(a[0]).toBeCloseTo(1 - 4, 5);
    expect(a[1]).toBeCloseTo(2 - 3.5, 5);
    expect(a[2]).toBeCloseTo(6 - 1.5, 5);
    expect([a[3], a[4], a[5]]).toEqual([0, 0, 0]); // exactly, for equal rewards
    expect(baseline.dataSync()[0]).toBeCloseTo(4, 5);
    tf.dispose([rewards, advantages, baseline]);
  });

  it('rejects k < 2, a B that k does not divide, and unknown options', () => {
    const r = tf.zeros([6]);
    const options: Array<[Record<string, unknown>, string, string]> = [
      [{ groupSize: 1 }, 'INVALID_OPTION', 'rlooAdvantages: expected groupSize to be an integer ≥ 2 (the leave-one-out baseline needs another completion); got 1'],
      [{ groupSize: 4 }, 'SHAPE_MISMATCH', 'rlooAdvantages: expected the batch size B to be a multiple of groupSize 4; got rewards [6]'],
      [{ rlooK: 2 }, 'INVALID_OPTION', 'rlooAdvantages: unknown option "rlooK"; known options are groupSize'],
    ];
    for (const [option, code, message] of options) {
      const e = thrown(() => rlooAdvantages(r, option));
      expect(isPosttrainError(e) && e.code).toBe(code);
      expect(e.message).toContain(message);
    }
    tf.dispose(r);
  });
});
