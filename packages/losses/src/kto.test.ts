import { describe, expect, it, beforeAll } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown } from './testing/reference.js';
import { defaultKtoLossOptions, ktoLoss, type KtoInputs, type KtoLossOptions } from './kto.js';

const cases = Object.entries(loadReference('preference_free_ref')).filter(([, c]) => c.fn === 'ktoLoss');

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

describe.each(BACKENDS)('ktoLoss on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend);
  });

  it('has reference cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(8);
  });

  it.each(cases)('%s matches PyTorch (values and gradients)', (_name, c) => {
    checkCase(c, (inputs, options) => ({ ...ktoLoss(inputs as unknown as KtoInputs, options as Partial<KtoLossOptions>) }));
  });

  it('passes no gradient into the KL pairs (z₀ is detached)', () => {
    const before = tf.memory().numTensors;
    const p = tf.tensor1d([-10, -20]);
    const ref = tf.tensor1d([-11, -19]);
    const d = tf.tensor1d([true, false], 'bool');
    const pkl = tf.tensor1d([-30, -31]);
    const rkl = tf.tensor1d([-32, -31.5]);
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, policyKlLogps: a, refKlLogps: b }).loss)([pkl, rkl]);
    expect(grads.flatMap((g) => Array.from(g.dataSync())).map(Math.abs)).toEqual([0, 0, 0, 0]);
    tf.dispose([p, ref, d, pkl, rkl, ...grads]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives loss 0 for an empty batch', () => {
    const e = tf.tensor1d([]);
    const kl = tf.tensor1d([-1]);
    const out = ktoLoss({ policyLogps: e, refLogps: e, desirable: e, policyKlLogps: kl, refKlLogps: kl });
    expect(out.loss.dataSync()[0]).toBe(0);
    expect(out.losses.shape).toEqual([0]);
    tf.dispose([e, kl, ...Object.values(out)]);
  });
});

describe('ktoLoss options and shapes', () => {
  const p = tf.tensor1d([-42, -57]);
  const ref = tf.tensor1d([-43, -55]);
  const d = tf.tensor1d([true, false], 'bool');
  const pkl = tf.tensor1d([-61, -48]);
  const rkl = tf.tensor1d([-61.5, -48.3]);

  it("defaults to TRL's β 0.1 and weights 1, z₀ from the KL inputs", () => {
    expect(defaultKtoLossOptions).toEqual({ beta: 0.1, desirableWeight: 1, undesirableWeight: 1, kl: null });
    expect(Object.isFrozen(defaultKtoLossOptions)).toBe(true);
  });

  it('computes λ_D(1 − σ(β(ρ − z₀))) and λ_U(1 − σ(β(z₀ − ρ))), with masked rewards', () => {
    const out = ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, policyKlLogps: pkl, refKlLogps: rkl }, { desirableWeight: 2, undesirableWeight: 3 });
    expect(out.kl.shape).toEqual([]);
    expect(out.kl.dataSync()[0]).toBeCloseTo(0.4, 5);
    const expected = [2 * (1 - sigmoid(0.1 * (1 - 0.4))), 3 * (1 - sigmoid(0.1 * (0.4 + 2)))];
    Array.from(out.losses.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
    expect(out.loss.dataSync()[0]).toBeCloseTo((expected[0] + expected[1]) / 2, 6);
    expect(Array.from(out.chosenRewards.dataSync()).map((v) => +v.toFixed(6))).toEqual([0.1, 0]);
    expect(Array.from(out.rejectedRewards.dataSync()).map((v) => +v.toFixed(6))).toEqual([0, -0.2]);
    tf.dispose(Object.values(out));
  });

  it('takes labels as bool, float 0/1 or int32 alike', () => {
    const asFloat = tf.tensor1d([1, 0]);
    const asInt = tf.tensor1d([1, 0], 'int32');
    const losses = [d, asFloat, asInt].map((desirable) => {
      const out = ktoLoss({ policyLogps: p, refLogps: ref, desirable, policyKlLogps: pkl, refKlLogps: rkl });
      const v = Array.from(out.losses.dataSync());
      tf.dispose(Object.values(out));
      return v;
    });
    expect(losses[1]).toEqual(losses[0]);
    expect(losses[2]).toEqual(losses[0]);
    tf.dispose([asFloat, asInt]);
  });

  it('uses options.kl as z₀ (clamped at 0) without KL inputs', () => {
    for (const [kl, z0] of [
      [0.4, 0.4],
      [-3, 0],
    ]) {
      const out = ktoLoss({ policyLogps: p, refLogps: ref, desirable: d }, { kl });
      expect(out.kl.dataSync()[0]).toBeCloseTo(z0, 6);
      expect(out.losses.dataSync()[0]).toBeCloseTo(1 - sigmoid(0.1 * (1 - z0)), 6);
      tf.dispose(Object.values(out));
    }
  });

  it.each([
    [{ beta: 0 }, 'ktoLoss: expected beta to be a number > 0; got 0'],
    [{ beta: -0.1 }, 'ktoLoss: expected beta to be a number > 0; got -0.1'],
    [{ desirableWeight: -1 }, 'ktoLoss: expected desirableWeight to be a number ≥ 0; got -1'],
    [{ undesirableWeight: Number.NaN }, 'ktoLoss: expected undesirableWeight to be a number ≥ 0; got NaN'],
    [{ kl: Infinity }, 'ktoLoss: expected kl to be null or a finite number (a precomputed KL estimate); got Infinity'],
    [{ kl: '0.1' }, 'ktoLoss: expected kl to be null or a finite number (a precomputed KL estimate); got "0.1"'],
    [{ klWeight: 1 }, 'ktoLoss: unknown option "klWeight"; known options are beta, desirableWeight, undesirableWeight, kl'],
  ])('rejects %j', (options, message) => {
    const e = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, policyKlLogps: pkl, refKlLogps: rkl }, options as unknown as Partial<KtoLossOptions>));
    expect(isPosttrainError(e)).toBe(true);
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toBe(message);
  });

  it('asks for exactly one source of z₀', () => {
    const neither = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d }));
    expect(neither.code).toBe('INVALID_ARGUMENT');
    expect(neither.message).toBe(
      "ktoLoss: expected policyKlLogps and refKlLogps (the reference point's mismatched pairs) or options.kl; got neither\n" +
        "help: pair each prompt with another example's completion and pass both models' log-probs of those pairs, or pass { kl: 0 } to drop the reference point",
    );
    const one = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, refKlLogps: rkl }));
    expect(one.message).toContain('got only refKlLogps');
    const both = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, policyKlLogps: pkl, refKlLogps: rkl }, { kl: 0.1 }));
    expect(both.code).toBe('INVALID_ARGUMENT');
    expect(both.message).toContain('ktoLoss: expected either the KL inputs or options.kl; got both');
  });

  it('rejects mismatched shapes, naming the inputs', () => {
    const before = tf.memory().numTensors;
    const three = tf.tensor1d([1, 0, 1]);
    const e1 = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: three, policyKlLogps: pkl, refKlLogps: rkl }));
    expect(e1.code).toBe('SHAPE_MISMATCH');
    expect(e1.message).toContain('ktoLoss: expected policyLogps, refLogps, desirable to share one shape [B]; got policyLogps [2], refLogps [2], desirable [3]');
    expect(e1.message).toContain('help:');
    const e2 = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, policyKlLogps: three, refKlLogps: rkl }));
    expect(e2.code).toBe('SHAPE_MISMATCH');
    expect(e2.message).toContain('ktoLoss: expected policyKlLogps, refKlLogps to share one shape [B]; got policyKlLogps [3], refKlLogps [2]');
    const empty = tf.tensor1d([]);
    const e3 = thrown(() => ktoLoss({ policyLogps: p, refLogps: ref, desirable: d, policyKlLogps: empty, refKlLogps: empty }));
    expect(e3.code).toBe('SHAPE_MISMATCH');
    expect(e3.message).toContain('ktoLoss: expected at least one KL pair in policyKlLogps and refKlLogps; got shape [0]');
    tf.dispose([three, empty]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
