import { describe, expect, it } from 'vitest';
import { isPosttrainError, tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference, thrown, useBackend } from './testing/reference.js';
import type { PreferenceLogps, PreferenceLossOutput } from './preference-types.js';
import {
  defaultDpoHingeLossOptions,
  defaultDpoSigmoidLossOptions,
  defaultExoPairLossOptions,
  defaultIpoLossOptions,
  defaultRobustDpoLossOptions,
  dpoHingeLoss,
  dpoSigmoidLoss,
  exoPairLoss,
  ipoLoss,
  robustDpoLoss,
} from './dpo.js';
import {
  apoDownLoss,
  apoZeroLoss,
  bcoPairLoss,
  defaultApoDownLossOptions,
  defaultApoZeroLossOptions,
  defaultBcoPairLossOptions,
  defaultNcaPairLossOptions,
  defaultSppoHardLossOptions,
  ncaPairLoss,
  sppoHardLoss,
} from './dpo-variants.js';

type Loss = (inputs: PreferenceLogps, options?: Record<string, unknown>) => PreferenceLossOutput;

const LOSSES: Record<string, Loss> = {
  dpoSigmoidLoss,
  dpoHingeLoss,
  ipoLoss,
  robustDpoLoss,
  bcoPairLoss,
  ncaPairLoss,
  sppoHardLoss,
  apoZeroLoss,
  apoDownLoss,
  exoPairLoss,
} as Record<string, Loss>;

const cases = loadReference('dpo_ref');

/** Four [B] tensors from plain arrays: policy chosen, policy rejected, ref chosen, ref rejected. */
function logps(pc: number[], pr: number[], rc: number[], rr: number[]): PreferenceLogps {
  return { policyChosenLogps: tf.tensor1d(pc), policyRejectedLogps: tf.tensor1d(pr), refChosenLogps: tf.tensor1d(rc), refRejectedLogps: tf.tensor1d(rr) };
}

function disposeAll(...xs: Array<PreferenceLogps | PreferenceLossOutput | tf.Tensor | tf.Tensor[]>): void {
  for (const x of xs) tf.dispose(x instanceof tf.Tensor || Array.isArray(x) ? x : (Object.values(x) as tf.Tensor[]));
}

describe('the DPO family: fixture coverage', () => {
  it('has a random, an options and an extreme case for every function', () => {
    for (const fn of Object.keys(LOSSES)) {
      for (const kind of ['random', 'options', 'extreme']) expect(cases[`${fn}/${kind}`]?.fn, `${fn}/${kind}`).toBe(fn);
    }
  });
});

describe.each(BACKENDS)('the DPO family on %s', (backend) => {
  useBackend(backend);

  it.each(Object.keys(cases))('%s: loss, losses, rewards and d loss / d each input match torch', (name) => {
    const c = cases[name];
    const fn = LOSSES[c.fn];
    checkCase(c, (inputs, options) => fn(inputs as unknown as PreferenceLogps, options) as unknown as Record<string, tf.Tensor>);
  });

  it.each(Object.keys(LOSSES))('%s: finite loss and gradients at margins of ±20,000 nats with β = 1', (name) => {
    const inputs = logps([-1, -20001, -5, -10001], [-20001, -1, -10001, -9], [-20001, -1, -10001, -5], [-1, -20001, -5, -10001]);
    const x = Object.values(inputs) as tf.Tensor[];
    const grads = tf.grads((...xs: tf.Tensor[]) => {
      const out = LOSSES[name]({ policyChosenLogps: xs[0], policyRejectedLogps: xs[1], refChosenLogps: xs[2], refRejectedLogps: xs[3] }, { beta: 1 });
      tf.dispose([out.losses, out.chosenRewards, out.rejectedRewards]);
      return out.loss;
    })(x);
    const out = LOSSES[name](inputs, { beta: 1 });
    for (const t of [out.loss, out.losses, ...grads]) expect(Array.from(t.dataSync()).every(Number.isFinite), `${name}: ${Array.from(t.dataSync())}`).toBe(true);
    disposeAll(inputs, out, grads);
  });

  it('returns detached rewards β·(policy − reference): their gradient is zero', () => {
    const inputs = logps([-3, -7], [-5, -4], [-4, -6], [-5.5, -3]);
    const x = Object.values(inputs) as tf.Tensor[];
    const grads = tf.grads((...xs: tf.Tensor[]) => {
      const out = dpoSigmoidLoss({ policyChosenLogps: xs[0], policyRejectedLogps: xs[1], refChosenLogps: xs[2], refRejectedLogps: xs[3] }, { beta: 0.5 });
      tf.dispose([out.loss, out.losses]);
      return tf.add(tf.sum(out.chosenRewards), tf.sum(out.rejectedRewards)) as tf.Scalar;
    })(x);
    const out = dpoSigmoidLoss(inputs, { beta: 0.5 });
    const values = [...grads, out.chosenRewards, out.rejectedRewards, out.loss, out.losses].map((t) => Array.from(t.dataSync()));
    const shapes = [out.loss.shape, out.losses.shape];
    disposeAll(inputs, out, grads);
    for (const g of values.slice(0, 4))
      expect(
        g.every((v) => v === 0),
        String(g),
      ).toBe(true); // ±0
    expect(values[4]).toEqual([0.5, -0.5]);
    expect(values[5]).toEqual([0.25, -0.5]);
    expect(shapes).toEqual([[], [2]]);
  });

  it.each(Object.keys(LOSSES))('%s: an empty batch (B = 0) gives loss 0 and empty gradients, not NaN', (name) => {
    const inputs = logps([], [], [], []);
    const out = LOSSES[name](inputs);
    const grads = tf.grads((...xs: tf.Tensor[]) => {
      const o = LOSSES[name]({ policyChosenLogps: xs[0], policyRejectedLogps: xs[1], refChosenLogps: xs[2], refRejectedLogps: xs[3] });
      tf.dispose([o.losses, o.chosenRewards, o.rejectedRewards]);
      return o.loss;
    })(Object.values(inputs) as tf.Tensor[]);
    const [loss, shape, gradShapes] = [out.loss.dataSync()[0], out.losses.shape, grads.map((g) => g.shape)];
    disposeAll(inputs, out, grads);
    expect(loss).toBe(0);
    expect(shape).toEqual([0]);
    expect(gradShapes).toEqual([[0], [0], [0], [0]]);
  });

  it('robust DPO with ε = 0 and cDPO with ε = 0 are plain DPO; ε > 0 moves them apart as the papers say', () => {
    const inputs = logps([-3, -7, -2], [-5, -4, -9], [-4, -6, -2.5], [-5.5, -3, -8]);
    const plain = dpoSigmoidLoss(inputs, { beta: 0.3 });
    const robust0 = robustDpoLoss(inputs, { beta: 0.3 });
    expect(Array.from(robust0.losses.dataSync())).toEqual(Array.from(plain.losses.dataSync()));
    // A single pair with βz = 0.3·(1 − (−1)) → z = 2, βz = 0.6.
    const one = logps([-1], [-3], [-2], [-2]);
    const cdpo = dpoSigmoidLoss(one, { beta: 0.3, labelSmoothing: 0.1 });
    const robust = robustDpoLoss(one, { beta: 0.3, labelSmoothing: 0.1 });
    const sp = (x: number) => Math.log1p(Math.exp(x));
    expect(cdpo.loss.dataSync()[0]).toBeCloseTo(0.9 * sp(-0.6) + 0.1 * sp(0.6), 6);
    expect(robust.loss.dataSync()[0]).toBeCloseTo((0.9 * sp(-0.6) - 0.1 * sp(0.6)) / 0.8, 6);
    disposeAll(inputs, plain, robust0, one, cdpo, robust);
  });

  it('APO-zero and APO-down lie in [0, 2] and match their closed forms at a = b = 0', () => {
    const zero = logps([-2, -9], [-3, -1], [-2, -9], [-3, -1]);
    const up = apoZeroLoss(zero);
    const down = apoDownLoss(zero);
    expect(Array.from(up.losses.dataSync())).toEqual([1, 1]); // 1 − ½ + ½
    expect(Array.from(down.losses.dataSync())).toEqual([1, 1]); // ½ + 1 − ½
    disposeAll(zero, up, down);
  });

  it('BCO shifts both rewards by δ: δ = βa = βb gives 2·log 2', () => {
    const inputs = logps([-1], [-5], [-3], [-7]); // a = b = 2
    const out = bcoPairLoss(inputs, { beta: 0.5, delta: 1 });
    expect(out.loss.dataSync()[0]).toBeCloseTo(2 * Math.LN2, 6);
    disposeAll(inputs, out);
  });
});

describe('the DPO family: options', () => {
  it('exports frozen defaults with TRL’s values', () => {
    expect(defaultDpoSigmoidLossOptions).toEqual({ beta: 0.1, labelSmoothing: 0 });
    expect(defaultDpoHingeLossOptions).toEqual({ beta: 0.1 });
    expect(defaultIpoLossOptions).toEqual({ beta: 0.1 });
    expect(defaultRobustDpoLossOptions).toEqual({ beta: 0.1, labelSmoothing: 0 });
    expect(defaultBcoPairLossOptions).toEqual({ beta: 0.1, delta: 0 });
    expect(defaultNcaPairLossOptions).toEqual({ beta: 0.1 });
    expect(defaultSppoHardLossOptions).toEqual({ beta: 0.1 });
    expect(defaultApoZeroLossOptions).toEqual({ beta: 0.1 });
    expect(defaultApoDownLossOptions).toEqual({ beta: 0.1 });
    expect(defaultExoPairLossOptions).toEqual({ beta: 0.1, labelSmoothing: 1e-3 });
    for (const d of [defaultDpoSigmoidLossOptions, defaultExoPairLossOptions, defaultBcoPairLossOptions]) expect(Object.isFrozen(d)).toBe(true);
  });

  const messages: Array<[string, Record<string, unknown>, string]> = [
    ['dpoSigmoidLoss', { beta: 0 }, 'dpoSigmoidLoss: expected beta to be a number > 0; got 0'],
    ['dpoHingeLoss', { beta: -1 }, 'dpoHingeLoss: expected beta to be a number > 0; got -1'],
    ['ipoLoss', { beta: Number.NaN }, 'ipoLoss: expected beta to be a number > 0; got NaN'],
    ['ncaPairLoss', { beta: '0.1' }, 'ncaPairLoss: expected beta to be a number > 0; got "0.1"'],
    ['sppoHardLoss', { beta: Infinity }, 'sppoHardLoss: expected beta to be a number > 0; got Infinity'],
    ['apoZeroLoss', { beta: 0 }, 'apoZeroLoss: expected beta to be a number > 0; got 0'],
    ['apoDownLoss', { beta: 0 }, 'apoDownLoss: expected beta to be a number > 0; got 0'],
    ['dpoSigmoidLoss', { labelSmoothing: 0.5 }, 'dpoSigmoidLoss: expected labelSmoothing to be a number in [0, 0.5) (the label flip probability of cDPO); got 0.5'],
    ['dpoSigmoidLoss', { labelSmoothing: -0.1 }, 'dpoSigmoidLoss: expected labelSmoothing to be a number in [0, 0.5) (the label flip probability of cDPO); got -0.1'],
    ['robustDpoLoss', { labelSmoothing: 0.5 }, 'robustDpoLoss: expected labelSmoothing to be a number in [0, 0.5) (the label flip probability; 0.5 divides by zero); got 0.5'],
    ['exoPairLoss', { labelSmoothing: 0 }, 'exoPairLoss: expected labelSmoothing to be a number in (0, 0.5) (log ε must be finite; the paper uses 1e-3); got 0'],
    ['exoPairLoss', { labelSmoothing: 1 }, 'exoPairLoss: expected labelSmoothing to be a number in (0, 0.5) (log ε must be finite; the paper uses 1e-3); got 1'],
    ['bcoPairLoss', { delta: Number.NaN }, 'bcoPairLoss: expected delta to be a finite number (the running mean of the rewards); got NaN'],
    ['ipoLoss', { tau: 0.1 }, 'ipoLoss: unknown option "tau"; known options are beta'],
    ['robustDpoLoss', { epsilon: 0.1 }, 'robustDpoLoss: unknown option "epsilon"; known options are beta, labelSmoothing'],
  ];
  it.each(messages)('%s(%j) throws INVALID_OPTION: %s', (name, options, message) => {
    const before = tf.memory().numTensors;
    const inputs = logps([-1], [-2], [-1], [-2]);
    const error = thrown(() => LOSSES[name](inputs, options));
    expect(isPosttrainError(error) && error.code, String(error)).toBe('INVALID_OPTION');
    expect(error.message).toBe(message);
    disposeAll(inputs);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('the DPO family: shapes', () => {
  const help = 'help: pass one summed log-prob per example, e.g. sequenceLogprobs(...).logps; policyChosenLogps sets B';
  it.each(Object.keys(LOSSES))('%s names every input and its shape when B differs', (name) => {
    const inputs = { policyChosenLogps: tf.zeros([4]), policyRejectedLogps: tf.zeros([3]), refChosenLogps: tf.zeros([4]), refRejectedLogps: tf.zeros([4]) };
    const error = thrown(() => LOSSES[name](inputs));
    expect(isPosttrainError(error) && error.code, String(error)).toBe('SHAPE_MISMATCH');
    expect(error.message).toBe(
      `${name}: expected policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps to share one shape [B]; got policyChosenLogps [4], policyRejectedLogps [3], refChosenLogps [4], refRejectedLogps [4]\n${help}`,
    );
    disposeAll(inputs);
  });

  it('rejects per-token [B, T] log-probs', () => {
    const inputs = { policyChosenLogps: tf.zeros([2, 5]), policyRejectedLogps: tf.zeros([2, 5]), refChosenLogps: tf.zeros([2, 5]), refRejectedLogps: tf.zeros([2, 5]) };
    const error = thrown(() => dpoSigmoidLoss(inputs));
    expect(isPosttrainError(error) && error.code).toBe('SHAPE_MISMATCH');
    expect(error.message).toContain('got policyChosenLogps [2, 5], policyRejectedLogps [2, 5], refChosenLogps [2, 5], refRejectedLogps [2, 5]');
    disposeAll(inputs);
  });

  it('names a missing input', () => {
    const inputs = { policyChosenLogps: tf.zeros([2]), policyRejectedLogps: tf.zeros([2]), refChosenLogps: tf.zeros([2]) };
    const error = thrown(() => ipoLoss(inputs as unknown as PreferenceLogps));
    expect(isPosttrainError(error) && error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe('ipoLoss: expected refRejectedLogps to be a [B] tensor; got undefined');
    const none = thrown(() => ipoLoss(undefined as unknown as PreferenceLogps));
    expect(none.message).toBe('ipoLoss: expected inputs { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps }, each a [B] tensor; got undefined');
    disposeAll(inputs as unknown as PreferenceLogps);
  });
});
