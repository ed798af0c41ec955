import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import { defaultGrpoAdvantagesOptions, defaultGrpoLossOptions, grpoAdvantages, grpoLoss, type GrpoLossInputs } from './grpo.js';

const reference = Object.entries(loadReference('rl_ref'));
const advantageCases = reference.filter(([, c]) => c.fn === 'grpoAdvantages');
const lossCases = reference.filter(([, c]) => c.fn === 'grpoLoss');

describe('GRPO: fixture coverage and defaults', () => {
  it('covers every scale and every normalisation, β > 0, on-policy, ±20 log-ratios and T = 96', () => {
    const scales = new Set(advantageCases.map(([, c]) => c.options.scale ?? 'group'));
    expect([...scales].sort()).toEqual(['batch', 'group', 'none']);
    const norms = new Set(lossCases.map(([, c]) => c.options.normalization ?? 'dapo'));
    expect([...norms].sort()).toEqual(['bnpo', 'dapo', 'dr_grpo', 'grpo']);
    const names = lossCases.map(([n]) => n);
    for (const n of ['grpo_loss_beta_grpo', 'grpo_loss_on_policy', 'grpo_loss_extreme', 'grpo_loss_long', 'grpo_loss_defaults']) expect(names).toContain(n);
  });
  it('covers GSPO (sequence level) with every normalisation, with and without oldLogprobs, with β > 0 and with both clips hit', () => {
    const gspo = lossCases.filter(([, c]) => c.options.importanceSamplingLevel === 'sequence');
    for (const norm of ['grpo', 'bnpo', 'dr_grpo', 'dapo']) {
      const of = gspo.filter(([, c]) => (c.options.normalization ?? 'dapo') === norm);
      expect(
        of.some(([, c]) => (c.options.beta ?? 0) === 0 && 'oldLogprobs' in c.inputs),
        `${norm} with oldLogprobs`,
      ).toBe(true);
      expect(
        of.some(([, c]) => (c.options.beta as number) > 0),
        `${norm} with beta > 0`,
      ).toBe(true);
      expect(
        of.some(([, c]) => !('oldLogprobs' in c.inputs)),
        `${norm} on-policy`,
      ).toBe(norm === 'grpo' || norm === 'dapo');
    }
    expect(gspo.some(([, c]) => c.outputs.clipRatioLow.data[0] > 0 && c.outputs.clipRatioHigh.data[0] > 0)).toBe(true);
  });
  it("has TRL's defaults, frozen", () => {
    expect(defaultGrpoAdvantagesOptions).toEqual({ groupSize: 8, scale: 'group', epsilon: 1e-4 });
    expect(defaultGrpoLossOptions).toEqual({ epsilonLow: 0.2, epsilonHigh: 0.2, beta: 0, normalization: 'dapo', maxCompletionLength: 256, importanceSamplingLevel: 'token' });
    expect(Object.isFrozen(defaultGrpoAdvantagesOptions) && Object.isFrozen(defaultGrpoLossOptions)).toBe(true);
  });
});

describe.each(BACKENDS)('GRPO on %s', (backend) => {
  useBackend(backend);

  it.each(advantageCases)('%s matches PyTorch', (_, c) => {
    checkCase(c, ({ rewards }, options) => ({ ...grpoAdvantages(rewards, options) }));
  });

  it.each(lossCases)('%s matches PyTorch (values and d loss / d logprobs)', (_, c) => {
    checkCase(c, (inputs, options) => ({ ...grpoLoss(inputs as unknown as GrpoLossInputs, options) }));
  });

  it('gives a group of equal rewards advantages of exactly 0 (no rounding residue amplified by 1/ε)', () => {
    const rewards = tf.tensor1d([0.3, 0.3, 0.3, 0.7, 0.7, 0.7]);
    for (const scale of ['group', 'batch', 'none'] as const) {
      const out = grpoAdvantages(rewards, { groupSize: 3, scale });
      expect(
        Array.from(out.advantages.dataSync()).every((a) => a === 0),
        scale,
      ).toBe(true);
      tf.dispose(Object.values(out));
    }
    tf.dispose(rewards);
  });

  it('normalises as TRL: grpo averages per completion, bnpo and dapo per token, dr_grpo by B · maxCompletionLength', () => {
    // ratio 1 (on-policy), A = [1, −1]: per-token losses −1 on row 0 (3 tokens), +1 on row 1 (1 token)
    const logprobs = tf.tensor2d([
      [-1, -2, -3, -4],
      [-1, -2, -3, -4],
    ]);
    const advantages = tf.tensor1d([1, -1]);
    const mask = tf.tensor2d([
      [1, 1, 1, 0],
      [1, 0, 0, 0],
    ]);
    const expected = { grpo: 0, bnpo: -0.5, dapo: -0.5, dr_grpo: -2 / (2 * 8) };
    for (const [normalization, value] of Object.entries(expected)) {
      const out = grpoLoss({ logprobs, advantages, mask }, { normalization: normalization as 'grpo', maxCompletionLength: 8 });
      expect(out.loss.dataSync()[0], normalization).toBeCloseTo(value, 6);
      expect(out.kl, 'no kl when beta = 0').toBeUndefined();
      tf.dispose(Object.values(out));
    }
    tf.dispose([logprobs, advantages, mask]);
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
    const refLogprobs = tf.tensor2d([
      [-1e4, 1e4],
      [0, 0],
    ]);
    const advantages = tf.tensor1d([1, -1]);
    const mask = tf.zeros([2, 2]);
    const levels = ['token', 'sequence'] as const;
    for (const [normalization, importanceSamplingLevel] of (['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const).flatMap((n) => levels.map((l) => [n, l] as const))) {
      const options = { normalization, beta: 0.1, importanceSamplingLevel };
      const out = grpoLoss({ logprobs, oldLogprobs, refLogprobs, advantages, mask }, options);
      for (const [name, t] of Object.entries(out)) expect((t as tf.Tensor).dataSync()[0], `${normalization} ${name}`).toBe(0);
      const grad = tf.grad((lp: tf.Tensor) => grpoLoss({ logprobs: lp, oldLogprobs, refLogprobs, advantages, mask }, options).loss)(logprobs);
      expect(
        Array.from(grad.dataSync()).every((g) => g === 0),
        normalization,
      ).toBe(true);
      tf.dispose([grad, ...(Object.values(out) as tf.Tensor[])]);
    }
    tf.dispose([logprobs, oldLogprobs, refLogprobs, advantages, mask]);
  });

  it('GSPO weighs a completion by the geometric mean of its token ratios, clipped once, and counts clipped completions', () => {
    // row 0: log-ratios [ln 2, 0] then garbage under the mask: s = √2 > 1.28, A = 1 → clipped at 1.28
    // row 1: log-ratios [ln 0.25, ln 4, 0] (mean 0): s = 1, A = −1, not clipped, though its token ratio 0.25 is
    const oldLogprobs = tf.tensor2d([
      [-1, -1, 0],
      [-2, -2, -2],
    ]);
    const logprobs = tf.tensor2d([
      [-1 + Math.LN2, -1, 1e4],
      [-2 - 2 * Math.LN2, -2 + 2 * Math.LN2, -2],
    ]);
    const advantages = tf.tensor1d([1, -1]);
    const mask = tf.tensor2d([
      [1, 1, 0],
      [1, 1, 1],
    ]);
    const inputs = { logprobs, oldLogprobs, advantages, mask };
    const options = { importanceSamplingLevel: 'sequence', epsilonLow: 0.2, epsilonHigh: 0.28 } as const;
    const expected = { grpo: (-1.28 + 1) / 2, dapo: (-1.28 * 2 + 1 * 3) / 5, dr_grpo: (-1.28 * 2 + 1 * 3) / (2 * 4) };
    for (const [normalization, value] of Object.entries(expected)) {
      const out = grpoLoss(inputs, { ...options, normalization: normalization as 'grpo', maxCompletionLength: 4 });
      expect(out.loss.dataSync()[0], normalization).toBeCloseTo(value, 5);
      expect([out.clipRatioHigh.dataSync()[0], out.clipRatioLow.dataSync()[0], out.clipRatio.dataSync()[0]], normalization).toEqual([0.5, 0, 0.5]);
      tf.dispose(Object.values(out));
    }
    // the token level counts tokens instead: ratio 2 in row 0 (A > 0) and 0.25 in row 1 (A < 0), two of five
    const token = grpoLoss(inputs, { ...options, importanceSamplingLevel: 'token' });
    expect(token.clipRatio.dataSync()[0]).toBeCloseTo(2 / 5, 6);
    tf.dispose([...Object.values(token), logprobs, oldLogprobs, advantages, mask]);
  });

  it('on-policy (no oldLogprobs) GSPO gives the same loss and gradient as GRPO for every normalisation', () => {
    const logprobs = tf.tensor2d([
      [-0.5, -1.5, -2.5, -3.5],
      [-1, -2, 7, 7],
      [-0.1, 9, 9, 9],
    ]);
    const refLogprobs = tf.tensor2d([
      [-0.7, -1.2, -2.9, -3],
      [-1.3, -1.8, 0, 0],
      [-0.4, 0, 0, 0],
    ]);
    const advantages = tf.tensor1d([0.8, -1.1, 0.3]);
    const mask = tf.tensor2d([
      [1, 1, 1, 1],
      [1, 1, 0, 0],
      [1, 0, 0, 0],
    ]);
    for (const normalization of ['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const) {
      const at = (importanceSamplingLevel: 'token' | 'sequence') => {
        const options = { normalization, beta: 0.05, maxCompletionLength: 6, importanceSamplingLevel };
        const loss = (lp: tf.Tensor) => grpoLoss({ logprobs: lp, refLogprobs, advantages, mask }, options).loss;
        const value = tf.tidy(() => loss(logprobs));
        const grad = tf.grad(loss)(logprobs);
        const result = { value: value.dataSync()[0], grad: Array.from(grad.dataSync()) };
        tf.dispose([value, grad]);
        return result;
      };
      const token = at('token');
      const sequence = at('sequence');
      expect(sequence.value, normalization).toBeCloseTo(token.value, 6);
      sequence.grad.forEach((g, i) => expect(g, `${normalization} grad ${i}`).toBeCloseTo(token.grad[i], 6));
      expect(token.grad.some((g) => Math.abs(g) > 0.01)).toBe(true);
    }
    tf.dispose([logprobs, refLogprobs, advantages, mask]);
  });

  it('needs refLogprobs when beta > 0, and says so', () => {
    const x = tf.zeros([2, 3]);
    const a = tf.zeros([2]);
    const e = thrown(() => grpoLoss({ logprobs: x, advantages: a, mask: x }, { beta: 0.04 }));
    expect(isPosttrainError(e) && e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain("grpoLoss: beta = 0.04 needs refLogprobs, the reference model's log-probs of the completion tokens; got none");
    expect(e.message).toContain('help: pass refLogprobs [B, T], or set beta: 0');
    tf.dispose([x, a]);
  });

  it('rejects meaningless options and unknown keys, naming them', () => {
    const x = tf.zeros([4, 3]);
    const a = tf.zeros([4]);
    const loss = { logprobs: x, advantages: a, mask: x };
    const cases: Array<[() => unknown, string]> = [
      [() => grpoAdvantages(a, { groupSize: 1 }), 'grpoAdvantages: expected groupSize to be an integer ≥ 2; got 1'],
      [() => grpoAdvantages(a, { groupSize: 2.5 }), 'grpoAdvantages: expected groupSize to be an integer ≥ 2; got 2.5'],
      [() => grpoAdvantages(a, { groupSize: 2, epsilon: 0 }), 'grpoAdvantages: expected epsilon to be a number > 0; got 0'],
      [() => grpoAdvantages(a, { groupSize: 2, scale: 'global' as 'group' }), "grpoAdvantages: expected scale to be 'group', 'batch' or 'none'; got \"global\""],
      [() => grpoAdvantages(a, { num_generations: 2 } as never), 'grpoAdvantages: unknown option "num_generations"; known options are groupSize, scale, epsilon'],
      [() => grpoLoss(loss, { epsilonLow: 1 }), 'grpoLoss: expected epsilonLow to be a number in (0, 1); got 1'],
      [() => grpoLoss(loss, { epsilonLow: 0 }), 'grpoLoss: expected epsilonLow to be a number in (0, 1); got 0'],
      [() => grpoLoss(loss, { epsilonHigh: -0.28 }), 'grpoLoss: expected epsilonHigh to be a number > 0; got -0.28'],
      [() => grpoLoss(loss, { beta: -0.1 }), 'grpoLoss: expected beta to be a number ≥ 0; got -0.1'],
      [() => grpoLoss(loss, { normalization: 'token' as 'grpo' }), "grpoLoss: expected normalization to be one of 'grpo', 'bnpo', 'dr_grpo', 'dapo'; got \"token\""],
      [() => grpoLoss(loss, { maxCompletionLength: 0 }), 'grpoLoss: expected maxCompletionLength to be an integer ≥ 1; got 0'],
      [
        () => grpoLoss(loss, { epsilon: 0.2 } as never),
        'grpoLoss: unknown option "epsilon"; known options are epsilonLow, epsilonHigh, beta, normalization, maxCompletionLength, importanceSamplingLevel',
      ],
    ];
    for (const [fn, message] of cases) {
      const e = thrown(fn);
      expect(isPosttrainError(e) && e.code, message).toBe('INVALID_OPTION');
      expect(e.message).toBe(message);
    }
    tf.dispose([x, a]);
  });

  it('rejects an unknown importanceSamplingLevel, naming the option and the two levels', () => {
    const x = tf.zeros([2, 3]);
    const a = tf.zeros([2]);
    const e = thrown(() => grpoLoss({ logprobs: x, advantages: a, mask: x }, { importanceSamplingLevel: 'seq' as 'token' }));
    expect(isPosttrainError(e) && e.code).toBe('INVALID_OPTION');
    expect(e.message).toBe(
      "grpoLoss: expected importanceSamplingLevel to be 'token' or 'sequence'; got \"seq\"\nhelp: 'token' weighs each token by its own ratio (GRPO); 'sequence' weighs a whole completion by one ratio (GSPO)",
    );
    tf.dispose([x, a]);
  });

  it('rejects wrong shapes: rewards not [B] or not a multiple of groupSize, token tensors not [B, T], advantages not [B]', () => {
    const r6 = tf.zeros([6]);
    const r23 = tf.zeros([2, 3]);
    const x = tf.zeros([2, 3]);
    const y = tf.zeros([2, 4]);
    const a3 = tf.zeros([3]);
    const a2 = tf.zeros([2]);
    const cases: Array<[() => unknown, string]> = [
      [() => grpoAdvantages(r6, { groupSize: 4 }), 'grpoAdvantages: expected the batch size B to be a multiple of groupSize 4; got rewards [6]'],
      [() => grpoAdvantages(r23, { groupSize: 3 }), 'grpoAdvantages: expected rewards of shape [B]; got [2, 3]'],
      [
        () => grpoLoss({ logprobs: x, oldLogprobs: y, advantages: a2, mask: x }),
        'grpoLoss: expected logprobs, oldLogprobs, mask to share one shape [B, T]; got logprobs [2, 3], oldLogprobs [2, 4], mask [2, 3]',
      ],
      [() => grpoLoss({ logprobs: x, refLogprobs: y, advantages: a2, mask: x }, { beta: 0.1 }), 'got logprobs [2, 3], refLogprobs [2, 4], mask [2, 3]'],
      [() => grpoLoss({ logprobs: x, advantages: a3, mask: x }), 'grpoLoss: expected advantages of shape [2] (one per completion, B from logprobs [2, 3]); got [3]'],
      [() => grpoLoss({ logprobs: x, advantages: x, mask: x }), 'grpoLoss: expected advantages of shape [2] (one per completion, B from logprobs [2, 3]); got [2, 3]'],
    ];
    for (const [fn, message] of cases) {
      const e = thrown(fn);
      expect(isPosttrainError(e) && e.code, message).toBe('SHAPE_MISMATCH');
      expect(e.message).toContain(message);
      expect(e.message).toContain('help:');
    }
    const e = thrown(() => grpoLoss({ logprobs: x, advantages: a2 } as unknown as GrpoLossInputs));
    expect(isPosttrainError(e) && e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toBe('grpoLoss: expected mask to be a [B, T] tensor; got undefined');
    tf.dispose([r6, r23, x, y, a3, a2]);
  });
});
