import { describe, expect, it, beforeAll } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown } from './testing/reference.js';
import { defaultSimpoLossOptions, simpoLoss, type SimpoInputs, type SimpoLossOptions } from './simpo.js';

const cases = Object.entries(loadReference('preference_free_ref')).filter(([, c]) => c.fn === 'simpoLoss');

describe.each(BACKENDS)('simpoLoss on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('has reference cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(5);
  });

  it.each(cases)('%s matches PyTorch (values and gradients)', (_name, c) => {
    checkCase(c, (inputs, options) => ({ ...simpoLoss(inputs as unknown as SimpoInputs, options as Partial<SimpoLossOptions>) }));
  });

  it('stays finite with a margin of ±1e4', () => {
    const before = tf.memory().numTensors;
    const c = tf.tensor1d([0, -5000]);
    const r = tf.tensor1d([-5000, 0]);
    const [out, grads] = tf.tidy(() => {
      const out = simpoLoss({ policyChosenLogps: c, policyRejectedLogps: r }, { labelSmoothing: 0.1 });
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => simpoLoss({ policyChosenLogps: a, policyRejectedLogps: b }).loss)([c, r]);
      return [Array.from(out.losses.dataSync()), g.map((t) => Array.from(t.dataSync()))];
    });
    expect(out.every(Number.isFinite)).toBe(true);
    expect(out[1]).toBeCloseTo(0.9 * 10000.5, 0); // 0.9·(−log σ(−10000.5)) + 0.1·(−log σ(10000.5))
    expect(out[0]).toBeCloseTo(0.1 * 9999.5, 0);
    expect(grads.flat().every(Number.isFinite)).toBe(true);
    tf.dispose([c, r]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives loss 0 for an empty batch', () => {
    const c = tf.tensor1d([]);
    const out = simpoLoss({ policyChosenLogps: c, policyRejectedLogps: c });
    expect(out.loss.dataSync()[0]).toBe(0);
    expect(out.losses.shape).toEqual([0]);
    tf.dispose([c, ...Object.values(out)]);
  });
});

describe('simpoLoss options and shapes', () => {
  const c = tf.tensor1d([-1, -2]);
  const r = tf.tensor1d([-1.5, -1]);

  it('defaults to β 2, γ 0.5, no label smoothing', () => {
    expect(defaultSimpoLossOptions).toEqual({ beta: 2, gamma: 0.5, labelSmoothing: 0 });
    expect(Object.isFrozen(defaultSimpoLossOptions)).toBe(true);
  });

  it('computes −log σ(β(c − r) − γ) and β·c rewards', () => {
    const out = simpoLoss({ policyChosenLogps: c, policyRejectedLogps: r }, { beta: 2.5, gamma: 1 });
    const z = [2.5 * 0.5 - 1, 2.5 * -1 - 1];
    Array.from(out.losses.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(Math.log1p(Math.exp(-z[i])), 6));
    expect(Array.from(out.chosenRewards.dataSync())).toEqual([-2.5, -5]);
    expect(Array.from(out.rejectedRewards.dataSync())).toEqual([-3.75, -2.5]);
    tf.dispose(Object.values(out));
  });

  it('equals TRL: β·((c − r) − γ/β) with simpo_gamma = γ', () => {
    const out = simpoLoss({ policyChosenLogps: c, policyRejectedLogps: r }, { beta: 0.1, gamma: 0.5 });
    const trl = [0.5, -1].map((d) => Math.log1p(Math.exp(-(0.1 * (d - 0.5 / 0.1)))));
    Array.from(out.losses.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(trl[i], 6));
    tf.dispose(Object.values(out));
  });

  it.each([
    [{ beta: 0 }, 'simpoLoss: expected beta to be a number > 0; got 0'],
    [{ beta: -2 }, 'simpoLoss: expected beta to be a number > 0; got -2'],
    [{ beta: Number.NaN }, 'simpoLoss: expected beta to be a number > 0; got NaN'],
    [{ gamma: -0.5 }, 'simpoLoss: expected gamma to be a number ≥ 0 (a target reward margin); got -0.5'],
    [{ labelSmoothing: 0.6 }, 'simpoLoss: expected labelSmoothing to be a number in [0, 0.5]; got 0.6'],
    [{ labelSmoothing: -0.1 }, 'simpoLoss: expected labelSmoothing to be a number in [0, 0.5]; got -0.1'],
    [{ gama: 1 }, 'simpoLoss: unknown option "gama"; known options are beta, gamma, labelSmoothing'],
  ])('rejects %j', (options, message) => {
    const e = thrown(() => simpoLoss({ policyChosenLogps: c, policyRejectedLogps: r }, options as Partial<SimpoLossOptions>));
    expect(isPosttrainError(e)).toBe(true);
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toBe(message);
  });

  it('rejects mismatched shapes, naming the inputs', () => {
    const before = tf.memory().numTensors;
    const short = tf.tensor1d([-1]);
    const e = thrown(() => simpoLoss({ policyChosenLogps: c, policyRejectedLogps: short }));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toContain('simpoLoss: expected policyChosenLogps, policyRejectedLogps to share one shape [B]; got policyChosenLogps [2], policyRejectedLogps [1]');
    expect(e.message).toContain('help:');
    const matrix = tf.zeros([2, 1]);
    expect(thrown(() => simpoLoss({ policyChosenLogps: matrix, policyRejectedLogps: matrix })).code).toBe('SHAPE_MISMATCH');
    expect(thrown(() => simpoLoss({ policyChosenLogps: c } as SimpoInputs)).code).toBe('INVALID_ARGUMENT');
    tf.dispose([short, matrix]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
