import { describe, expect, it, beforeAll } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown } from './testing/reference.js';
import { defaultOrpoLossOptions, orpoLoss, type OrpoInputs, type OrpoLossOptions } from './orpo.js';

const cases = Object.entries(loadReference('preference_free_ref')).filter(([, c]) => c.fn === 'orpoLoss');

/** log(odds(c) / odds(r)) in float64. */
function logOdds(c: number, r: number): number {
  return c - r - (Math.log(-Math.expm1(c)) - Math.log(-Math.expm1(r)));
}

describe.each(BACKENDS)('orpoLoss on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('has reference cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(4);
  });

  it.each(cases)('%s matches PyTorch (values and gradients)', (_name, c) => {
    checkCase(c, (inputs, options) => ({ ...orpoLoss(inputs as unknown as OrpoInputs, options as Partial<OrpoLossOptions>) }));
  });

  it('stays finite, with finite gradients, at log-probs 0, -0, 1e-30 and -1e4', () => {
    const before = tf.memory().numTensors;
    const c = tf.tensor1d([0, -0, -1e-30, -1e4, 0, -1e-7]);
    const r = tf.tensor1d([-1, 0, -1e4, -1e-30, 0, -1e-7]);
    const nll = tf.scalar(1);
    const [values, grads] = tf.tidy(() => {
      const out = orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r, chosenNll: nll });
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => orpoLoss({ policyChosenLogps: a, policyRejectedLogps: b, chosenNll: nll }).loss)([c, r]);
      return [[out.loss, out.losses, out.logOdds, out.oddsRatioLosses].map((t) => Array.from(t.dataSync())), g.map((t) => Array.from(t.dataSync()))];
    });
    expect(values.flat().every(Number.isFinite)).toBe(true);
    expect(grads.flat().every(Number.isFinite)).toBe(true);
    // a certain chosen completion: the clamp at −1e-7 gives log-odds log(1/(1 − e^−1e-7)) − log(1/(1 − e^−1)) ≈ 16.12 − 0.46 − 1
    expect(values[2][0]).toBeCloseTo(logOdds(-1e-7, -1), 3);
    // both at the clamp: even odds
    expect(values[2][4]).toBeCloseTo(0, 5);
    expect(values[2][5]).toBeCloseTo(0, 5);
    tf.dispose([c, r, nll]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives loss 0 for an empty batch', () => {
    const e = tf.tensor1d([]);
    const out = orpoLoss({ policyChosenLogps: e, policyRejectedLogps: e, chosenNll: e });
    expect(out.loss.dataSync()[0]).toBe(0);
    expect(out.losses.shape).toEqual([0]);
    tf.dispose([e, ...Object.values(out)]);
  });
});

describe('orpoLoss options and shapes', () => {
  const c = tf.tensor1d([-0.4, -0.9]);
  const r = tf.tensor1d([-1.2, -0.8]);

  it("defaults to TRL's β = λ = 0.1", () => {
    expect(defaultOrpoLossOptions).toEqual({ beta: 0.1 });
    expect(Object.isFrozen(defaultOrpoLossOptions)).toBe(true);
  });

  it('computes NLL + β·(−log σ(log odds)), per pair or with a scalar NLL', () => {
    const nll = tf.tensor1d([0.4, 0.9]);
    const mean = tf.scalar(0.65);
    const perPair = orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r, chosenNll: nll }, { beta: 0.2 });
    const scalar = orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r, chosenNll: mean }, { beta: 0.2 });
    const lo = [logOdds(-0.4, -1.2), logOdds(-0.9, -0.8)];
    const orl = lo.map((x) => Math.log1p(Math.exp(-x)));
    Array.from(perPair.logOdds.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(lo[i], 5));
    Array.from(perPair.oddsRatioLosses.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(orl[i], 5));
    Array.from(perPair.losses.dataSync()).forEach((v, i) => expect(v).toBeCloseTo([0.4, 0.9][i] + 0.2 * orl[i], 5));
    expect(perPair.loss.dataSync()[0]).toBeCloseTo(0.65 + 0.1 * (orl[0] + orl[1]), 5);
    expect(scalar.loss.dataSync()[0]).toBeCloseTo(perPair.loss.dataSync()[0], 6); // same mean
    expect(Array.from(scalar.chosenRewards.dataSync())).toEqual([-0.4, -0.9].map((x) => Math.fround(Math.fround(x) * Math.fround(0.2))));
    tf.dispose([nll, mean, ...Object.values(perPair), ...Object.values(scalar)]);
  });

  it.each([
    [{ beta: 0 }, 'orpoLoss: expected beta to be a number > 0; got 0'],
    [{ beta: -0.1 }, 'orpoLoss: expected beta to be a number > 0; got -0.1'],
    [{ beta: Infinity }, 'orpoLoss: expected beta to be a number > 0; got Infinity'],
    [{ lambda: 0.1 }, 'orpoLoss: unknown option "lambda"; known options are beta'],
  ])('rejects %j', (options, message) => {
    const nll = tf.scalar(1);
    const e = thrown(() => orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r, chosenNll: nll }, options as Partial<OrpoLossOptions>));
    nll.dispose();
    expect(isPosttrainError(e)).toBe(true);
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toBe(message);
  });

  it('rejects mismatched shapes, naming the inputs', () => {
    const before = tf.memory().numTensors;
    const short = tf.tensor1d([-1]);
    const nll = tf.tensor1d([1, 2, 3]);
    const e1 = thrown(() => orpoLoss({ policyChosenLogps: c, policyRejectedLogps: short, chosenNll: short }));
    expect(e1.code).toBe('SHAPE_MISMATCH');
    expect(e1.message).toContain('orpoLoss: expected policyChosenLogps, policyRejectedLogps to share one shape [B]; got policyChosenLogps [2], policyRejectedLogps [1]');
    const e2 = thrown(() => orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r, chosenNll: nll }));
    expect(e2.code).toBe('SHAPE_MISMATCH');
    expect(e2.message).toBe(
      'orpoLoss: expected chosenNll of shape [2] (one per pair) or [] (a batch mean); got [3]\n' +
        "help: pass the chosen completions' NLL per pair, e.g. policyChosenLogps.neg(), or one scalar such as causalLmLoss(...).loss",
    );
    const e3 = thrown(() => orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r } as OrpoInputs));
    expect(e3.code).toBe('INVALID_ARGUMENT');
    expect(e3.message).toBe('orpoLoss: expected chosenNll to be a [B] or [] tensor; got undefined');
    tf.dispose([short, nll]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
