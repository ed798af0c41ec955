import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { SGD, defaultSGDOptions, sgdUpdate } from './sgd.js';
import { thrown } from './testing/assert.js';
import { makeParams } from './testing/optim-fixture.js';

// SGD on its own; the 20-step comparison with torch.optim.SGD, resuming and memory are in optim.test.ts.
describe('SGD', () => {
  it("has torch.optim.SGD's defaults and validates options", () => {
    expect(defaultSGDOptions).toEqual({ lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false });
    const params = makeParams();
    const cases: [Record<string, unknown>, string][] = [
      [{ momentun: 0.9 }, 'unknown option "momentun"; known options are lr, momentum, dampening, weightDecay, nesterov'],
      [{ lr: -0.1 }, 'expected lr to be ≥ 0; got -0.1'],
      [{ momentum: -0.5 }, 'expected momentum to be ≥ 0'],
      [{ dampening: 2 }, 'expected dampening to be in [0, 1]'],
      [{ nesterov: true }, 'Nesterov momentum needs momentum > 0 and dampening 0; got momentum 0 and dampening 0'],
      [{ nesterov: true, momentum: 0.9, dampening: 0.1 }, 'Nesterov momentum needs momentum > 0 and dampening 0'],
      [{ nesterov: 1 }, 'expected nesterov to be a boolean; got 1'],
    ];
    for (const [options, message] of cases) {
      const error = thrown(() => new SGD(params, options));
      expect(isPosttrainError(error)).toBe(true);
      expect(error.message).toContain(message);
    }
    tf.dispose([...params.values()]);
  });

  it('computes momentum steps by hand', () => {
    // p = 1, g = 1, lr 0.1, μ 0.9, wd 0.5: d = 1.5, b = 1.5 (first step), p = 1 − 0.15 = 0.85;
    // step 2 with g = 1: d = 1 + 0.425 = 1.425, b = 0.9·1.5 + 1.425 = 2.775, nesterov d' = 1.425 + 0.9·2.775.
    const h = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0.5, nesterov: false };
    const [p1, b1, p2, b2, p2n] = tf.tidy(() => {
      const s1 = sgdUpdate(tf.ones([1]), tf.ones([1]), undefined, h);
      const s2 = sgdUpdate(s1.param, tf.ones([1]), s1.momentumBuffer, h);
      const s2n = sgdUpdate(s1.param, tf.ones([1]), s1.momentumBuffer, { ...h, nesterov: true });
      return [s1.param, s1.momentumBuffer as tf.Tensor, s2.param, s2.momentumBuffer as tf.Tensor, s2n.param].map((t) => t.dataSync()[0]);
    });
    expect(p1).toBeCloseTo(0.85, 6);
    expect(b1).toBeCloseTo(1.5, 6);
    expect(b2).toBeCloseTo(2.775, 6);
    expect(p2).toBeCloseTo(0.85 - 0.1 * 2.775, 6);
    expect(p2n).toBeCloseTo(0.85 - 0.1 * (1.425 + 0.9 * 2.775), 6);
  });

  it('keeps no state without momentum', () => {
    const params = makeParams();
    const sgd = new SGD(params, { lr: 0.1 });
    const grads = new Map([...params].map(([p, v]) => [p, tf.onesLike(v)]));
    sgd.step(grads);
    expect(sgd.stateDict()).toEqual({});
    tf.dispose([...grads.values(), ...params.values()]);
  });
});
