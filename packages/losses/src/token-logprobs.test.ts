import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, expectError, loadReference, useBackend } from './testing/reference.js';
import { entropyFromLogits, sequenceLogprobs, tokenLogprobs, type SequenceLogprobsOptions, type TokenLogprobsOptions } from './token-logprobs.js';

// PyTorch references: packages/losses/fixtures/token_ref.json, written by scripts/reference/losses_token.py.
// These functions have no loss of their own: the fixture's `loss` is Σ weights ⊙ output with random
// weights, so its gradient checks the whole Jacobian against random cotangents.
const reference = loadReference('token_ref');
const casesOf = (fn: string) => Object.keys(reference).filter((name) => reference[name].fn === fn);

const weighted = (out: tf.Tensor, weights: tf.Tensor) => tf.sum(tf.mul(out, weights)) as tf.Scalar;

const runners: Record<string, (inputs: Record<string, tf.Tensor>, options: Record<string, unknown>) => Record<string, tf.Tensor>> = {
  tokenLogprobs: ({ logits, labels, weights }, options) =>
    tf.tidy(() => {
      const { logps } = tokenLogprobs(logits, labels, options as Partial<TokenLogprobsOptions>);
      return { logps, loss: weighted(logps, weights) };
    }),
  sequenceLogprobs: ({ logits, labels, mask, weights }, options) =>
    tf.tidy(() => {
      const { logps, tokens } = sequenceLogprobs(logits, labels, mask, options as Partial<SequenceLogprobsOptions>);
      return { logps, tokens, loss: weighted(logps, weights) };
    }),
  entropyFromLogits: ({ logits, weights }) =>
    tf.tidy(() => {
      const entropy = entropyFromLogits(logits);
      return { entropy, loss: weighted(entropy, weights) };
    }),
};

describe.each(BACKENDS)('token log-probs on %s', (backend) => {
  useBackend(backend);

  describe.each(Object.keys(runners))('%s against torch', (fn) => {
    it.each(casesOf(fn))('%s: values and gradients', (name) => {
      checkCase(reference[name], runners[fn]);
    });
  });

  it('tokenLogprobs does not shift: logps[b, t] scores labels[b, t] with logits[b, t]', () => {
    const logits = tf.tensor3d([
      [
        [0, Math.log(3)],
        [Math.log(3), 0],
      ],
    ]); // softmax [1/4, 3/4], [3/4, 1/4]
    const labels = tf.tensor2d([[1, 1]], [1, 2], 'int32');
    const { logps } = tokenLogprobs(logits, labels);
    const got = Array.from(logps.dataSync());
    expect(got[0]).toBeCloseTo(Math.log(3 / 4), 6);
    expect(got[1]).toBeCloseTo(Math.log(1 / 4), 6);
    tf.dispose([logits, labels, logps]);
  });

  it('all labels ignored: zeros and a zero, finite gradient', () => {
    const logits = tf.randomNormal([2, 3, 5], 0, 3, 'float32', 1);
    const labels = tf.fill([2, 3], -100, 'int32');
    const mask = tf.ones([2, 3]);
    const { logps } = tokenLogprobs(logits, labels);
    expect(Array.from(logps.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    const seq = sequenceLogprobs(logits, labels, mask, { average: true });
    expect(Array.from(seq.logps.dataSync())).toEqual([0, 0]);
    expect(Array.from(seq.tokens.dataSync())).toEqual([0, 0]);
    for (const f of [(x: tf.Tensor) => tf.sum(tokenLogprobs(x, labels).logps), (x: tf.Tensor) => tf.sum(sequenceLogprobs(x, labels, mask, { average: true }).logps)]) {
      const grad = tf.grad(f)(logits);
      expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true); // NaN !== 0
      grad.dispose();
    }
    tf.dispose([logits, labels, mask, logps, seq.logps, seq.tokens]);
  });

  it('stays finite with −∞ logits (masked vocabulary entries), values and gradients', () => {
    // Row 0: log p(1) under [0, 1, −∞] = 1 − log(1 + e); row 1: label −100 beside a −∞ logit.
    const logits = tf.tensor3d([
      [
        [0, 1, -Infinity],
        [-Infinity, 2, 1],
      ],
    ]);
    const labels = tf.tensor2d([[1, -100]], [1, 2], 'int32');
    const { logps } = tokenLogprobs(logits, labels);
    expect(logps.dataSync()[0]).toBeCloseTo(1 - Math.log(1 + Math.E), 6);
    expect(logps.dataSync()[1]).toBe(0);
    const grad = tf.grad((x: tf.Tensor) => tf.sum(tokenLogprobs(x, labels).logps))(logits);
    const p1 = Math.E / (1 + Math.E);
    const g = Array.from(grad.dataSync());
    expect(g.every(Number.isFinite)).toBe(true);
    expect(g[0]).toBeCloseTo(-(1 - p1), 6);
    expect(g[1]).toBeCloseTo(1 - p1, 6);
    expect(g.slice(2)).toEqual([0, 0, 0, 0]);
    const h = entropyFromLogits(logits);
    expect(h.dataSync()[0]).toBeCloseTo(-(p1 * Math.log(p1) + (1 - p1) * Math.log(1 - p1)), 6);
    const dh = tf.grad((x: tf.Tensor) => tf.sum(entropyFromLogits(x)))(logits);
    expect(Array.from(dh.dataSync()).every(Number.isFinite)).toBe(true);
    expect(dh.dataSync()[2]).toBe(0);
    tf.dispose([logits, labels, logps, grad, h, dh]);
  });

  it('entropy of a one-hot distribution is 0 and of a uniform one log V', () => {
    const logits = tf.tensor2d([
      [100, -100, -100, -100],
      [7, 7, 7, 7],
    ]);
    const h = entropyFromLogits(logits);
    expect(h.shape).toEqual([2]);
    expect(h.dataSync()[0]).toBeCloseTo(0, 6);
    expect(h.dataSync()[1]).toBeCloseTo(Math.log(4), 6);
    tf.dispose([logits, h]);
  });

  it('sequenceLogprobs shifts: mask[:, t] selects labels[:, t], scored by logits[:, t − 1]', () => {
    // V = 2; logits[:, 0] favours token 1 (3/4), logits[:, 1] favours token 0 (3/4).
    const logits = tf.tensor3d([
      [
        [0, Math.log(3)],
        [Math.log(3), 0],
        [0, 0],
      ],
    ]);
    const labels = tf.tensor2d([[5, 1, 1]], [1, 3], 'int32'); // label 0 is never scored (5 ≥ V on purpose)
    const mask = tf.tensor2d([[1, 1, 0]]);
    const out = sequenceLogprobs(logits, labels, mask);
    expect(out.logps.dataSync()[0]).toBeCloseTo(Math.log(3 / 4), 6);
    expect(out.tokens.dataSync()[0]).toBe(1);
    const mask2 = tf.tensor2d([[0, 1, 1]]);
    const both = sequenceLogprobs(logits, labels, mask2, { average: true });
    expect(both.logps.dataSync()[0]).toBeCloseTo((Math.log(3 / 4) + Math.log(1 / 4)) / 2, 6);
    tf.dispose([logits, labels, mask, mask2, out.logps, out.tokens, both.logps, both.tokens]);
  });

  it('T = 1 has no next token: zero log-probs, zero tokens and a zero gradient', () => {
    const logits = tf.randomNormal([2, 1, 4], 0, 1, 'float32', 3);
    const labels = tf.tensor2d([[1], [2]], [2, 1], 'int32');
    const mask = tf.ones([2, 1]);
    const out = sequenceLogprobs(logits, labels, mask);
    expect(Array.from(out.logps.dataSync())).toEqual([0, 0]);
    expect(Array.from(out.tokens.dataSync())).toEqual([0, 0]);
    const grad = tf.grad((x: tf.Tensor) => tf.sum(sequenceLogprobs(x, labels, mask).logps))(logits);
    expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true);
    tf.dispose([logits, labels, mask, out.logps, out.tokens, grad]);
  });

  it('float32 labels and bool masks are accepted (cast)', () => {
    const logits = tf.randomNormal([2, 4, 6], 0, 2, 'float32', 4);
    const ids = tf.tensor2d(
      [
        [0, 1, 2, 3],
        [4, 5, -100, 1],
      ],
      [2, 4],
      'int32',
    );
    const mask = tf.tensor2d([
      [0, 1, 1, 1],
      [0, 0, 1, 1],
    ]);
    const a = sequenceLogprobs(logits, ids, mask);
    const idsFloat = tf.cast(ids, 'float32');
    const maskBool = tf.cast(mask, 'bool');
    const b = sequenceLogprobs(logits, idsFloat, maskBool);
    expect(Array.from(b.logps.dataSync())).toEqual(Array.from(a.logps.dataSync()));
    expect(Array.from(b.tokens.dataSync())).toEqual([3, 1]);
    tf.dispose([logits, ids, mask, idsFloat, maskBool, a.logps, a.tokens, b.logps, b.tokens]);
  });

  it('makes no more than one [B, T, V] temporary at a time (forward)', async () => {
    const [B, T, V] = [2, 8, 4096];
    const logits = tf.randomNormal([B, T, V], 0, 5, 'float32', 5);
    const labels = tf.randomUniform([B, T], 0, V, 'int32', 6);
    const mask = tf.ones([B, T]);
    const full = B * T * V * 4;
    for (const run of [() => ({ ...tokenLogprobs(logits, labels) }), () => ({ ...sequenceLogprobs(logits, labels, mask) })]) {
      const start = tf.memory().numBytes;
      const profile = await tf.profile(run);
      // One temporary plus, while exp runs, its input: 2 × [B, T, V]; the rest is [B, T]-sized. A
      // log-softmax followed by a gather would hold three (x − max, its exp, the result).
      expect(profile.peakBytes - start).toBeLessThanOrEqual(2 * full + 64 * B * T * 4);
      tf.dispose(Object.values(profile.result as Record<string, tf.Tensor>));
    }
    tf.dispose([logits, labels, mask]);
  });

  it.each([
    [[2, 3, 4], [2, 4], 'tokenLogprobs: expected logits [B, T, V] and labels [B, T]; got [2, 3, 4] and [2, 4]'],
    [[2, 3], [2, 3], 'tokenLogprobs: expected logits [B, T, V] and labels [B, T]; got [2, 3] and [2, 3]'],
  ])('tokenLogprobs rejects logits %j with labels %j', (logitsShape, labelsShape, message) => {
    const logits = tf.zeros(logitsShape);
    const labels = tf.zeros(labelsShape, 'int32');
    expectError(
      () => tokenLogprobs(logits, labels),
      'SHAPE_MISMATCH',
      `${message}\nhelp: pass logits and labels of the same positions (no shift here); labels are int32 token ids, −100 where no log-prob is wanted`,
    );
    tf.dispose([logits, labels]);
  });

  it('sequenceLogprobs rejects a mask of another shape, naming all three shapes', () => {
    const logits = tf.zeros([2, 3, 4]);
    const labels = tf.zeros([2, 3], 'int32');
    const mask = tf.zeros([2, 2]);
    expectError(
      () => sequenceLogprobs(logits, labels, mask),
      'SHAPE_MISMATCH',
      'sequenceLogprobs: expected logits [B, T, V] and labels [B, T] and mask [B, T]; got [2, 3, 4] and [2, 3] and [2, 2]\nhelp: pass the unshifted input ids as labels and a completion mask of the same [B, T] (1 on completion tokens); the shift happens inside',
    );
    tf.dispose([logits, labels, mask]);
  });

  it('entropyFromLogits rejects a scalar', () => {
    const x = tf.scalar(1);
    expectError(
      () => entropyFromLogits(x),
      'SHAPE_MISMATCH',
      'entropyFromLogits: expected logits [..., V] with V ≥ 1; got []\nhelp: pass logits whose last axis is the vocabulary, e.g. a model output [B, T, V]',
    );
    x.dispose();
  });

  it('rejects unknown and meaningless options, naming them', () => {
    const logits = tf.zeros([1, 2, 3]);
    const labels = tf.zeros([1, 2], 'int32');
    const mask = tf.ones([1, 2]);
    expectError(() => tokenLogprobs(logits, labels, { ignoreIndx: 0 } as Partial<TokenLogprobsOptions>), 'INVALID_OPTION', 'tokenLogprobs: unknown option "ignoreIndx"; known options are ignoreIndex');
    expectError(() => tokenLogprobs(logits, labels, { ignoreIndex: 1.5 }), 'INVALID_OPTION', 'tokenLogprobs: expected ignoreIndex to be an integer; got 1.5');
    expectError(() => sequenceLogprobs(logits, labels, mask, { average: 'yes' as unknown as boolean }), 'INVALID_OPTION', 'sequenceLogprobs: expected average to be true or false; got "yes"');
    expectError(
      () => sequenceLogprobs(logits, labels, mask, { mean: true } as Partial<SequenceLogprobsOptions>),
      'INVALID_OPTION',
      'sequenceLogprobs: unknown option "mean"; known options are average, ignoreIndex',
    );
    tf.dispose([logits, labels, mask]);
  });
});
