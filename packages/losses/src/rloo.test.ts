import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import { defaultRlooAdvantagesOptions, rlooAdvantages } from './rloo.js';

const cases = Object.entries(loadReference('rl_ref')).filter(([, c]) => c.fn === 'rlooAdvantages');

describe('rlooAdvantages: fixture coverage and defaults', () => {
  it('covers k = 2 (the default), 3, 4 and 8 (binary rewards, one group all equal)', () => {
    expect(cases.map(([n]) => n).sort()).toEqual(['rloo_binary_k8', 'rloo_defaults', 'rloo_k4', 'rloo_large_k3']);
  });
  it("has TRL's default k = 2, frozen", () => {
    expect(defaultRlooAdvantagesOptions).toEqual({ groupSize: 2 });
    expect(Object.isFrozen(defaultRlooAdvantagesOptions)).toBe(true);
  });
});

describe.each(BACKENDS)('rlooAdvantages on %s', (backend) => {
  useBackend(backend);

  it.each(cases)('%s matches PyTorch', (_, c) => {
    checkCase(c, ({ rewards }, options) => ({ ...rlooAdvantages(rewards, options) }));
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
