import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { causalLmLoss } from './loss.js';

// Reference values from PyTorch (fixtures/sft_ref.json, written by scripts/reference/sft_ref.py):
// logits drawn in float32, lossSum, entropySum and d lossSum / d logits computed in float64.
// Sums and gradients must agree within max|ours − ref| ≤ 1e-5 · max(1, max|ref|); counts exactly.
const TOLERANCE = 1e-5;

interface Encoded {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: number[];
}

interface LossCase {
  description: string;
  inputs: { logits: Encoded; labels: Encoded };
  lossSum: number;
  tokens: number;
  correctSum: number;
  entropySum: number;
  grads: { logits: Encoded };
}

const reference = JSON.parse(readFileSync(new URL('../fixtures/sft_ref.json', import.meta.url), 'utf8')) as { cases: Record<string, LossCase> };

const decode = (e: Encoded) => tf.tensor(e.data, e.shape, e.dtype);

/** Expects max|actual − expected| ≤ TOLERANCE · max(1, max|expected|); a NaN in `actual` fails. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let error = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    error = Math.max(error, Number.isNaN(actual[i]) ? Infinity : Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  expect(error, `${what}: max|ours − torch| = ${error.toExponential(2)} > ${(TOLERANCE * scale).toExponential(2)}`).toBeLessThanOrEqual(TOLERANCE * scale);
}

/** lossSum, tokens, correctSum and entropySum as numbers, and d lossSum / d logits; disposes what it made. */
function run(logits: tf.Tensor, labels: tf.Tensor): { sums: { lossSum: number; tokens: number; correctSum: number; entropySum: number }; grad: tf.Tensor } {
  const out = causalLmLoss(logits, labels);
  const sums = {
    lossSum: out.lossSum.dataSync()[0],
    tokens: out.tokens.dataSync()[0],
    correctSum: out.correctSum.dataSync()[0],
    entropySum: out.entropySum.dataSync()[0],
  };
  tf.dispose(Object.values(out));
  const grad = tf.grad((x: tf.Tensor) => causalLmLoss(x, labels).lossSum)(logits);
  return { sums, grad };
}

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected the call to throw');
}

describe.each(['cpu', 'wasm'] as const)('causalLmLoss on %s', (backend) => {
  let before = 0;
  beforeAll(async () => {
    await initBackend(backend);
  });
  afterAll(async () => {
    await initBackend('cpu');
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors left behind by the test').toBe(before);
  });

  it.each(Object.keys(reference.cases))('%s: sums and d lossSum / d logits match torch', (name) => {
    const c = reference.cases[name];
    const logits = decode(c.inputs.logits); // [B, T, V]
    const labels = decode(c.inputs.labels); // [B, T]
    const { sums, grad } = run(logits, labels);
    expectClose([sums.lossSum], [c.lossSum], 'lossSum');
    expectClose([sums.entropySum], [c.entropySum], 'entropySum');
    expect(sums.tokens).toBe(c.tokens);
    expect(sums.correctSum).toBe(c.correctSum);
    expect(grad.shape).toEqual(c.grads.logits.shape);
    expectClose(grad.dataSync(), c.grads.logits.data, 'd lossSum / d logits');
    tf.dispose([logits, labels, grad]);
  });

  it('an all-masked batch gives zero sums and a zero, finite gradient', () => {
    const logits = tf.randomNormal([2, 4, 5], 0, 2, 'float32', 7);
    const labels = tf.fill([2, 4], -100, 'int32');
    const { sums, grad } = run(logits, labels);
    // lossSum is −0 here (the negated sum of zeros), which equals 0 but not under Object.is.
    expect({ ...sums, lossSum: sums.lossSum + 0 }).toEqual({ lossSum: 0, tokens: 0, correctSum: 0, entropySum: 0 });
    expect(grad.shape).toEqual([2, 4, 5]);
    expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true); // NaN !== 0
    tf.dispose([logits, labels, grad]);
  });

  it('stays finite with a −∞ logit (a masked-out vocabulary entry), in a counted and an ignored row', () => {
    // Row 0 predicts label 1 from logits [0, 1, −∞]: loss = log(1 + e) − 1, entropy of softmax([0, 1]).
    const logits = tf.tensor3d([[[0, 1, -Infinity], [2, -Infinity, 1], [0, 0, 0]]]);
    const labels = tf.tensor2d([[-100, 1, -100]], [1, 3], 'int32');
    const { sums, grad } = run(logits, labels);
    const p1 = Math.E / (1 + Math.E);
    expect(sums.lossSum).toBeCloseTo(Math.log(1 + Math.E) - 1, 6);
    expect(sums.entropySum).toBeCloseTo(-(p1 * Math.log(p1) + (1 - p1) * Math.log(1 - p1)), 6);
    expect(sums.tokens).toBe(1);
    expect(Array.from(grad.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([logits, labels, grad]);
  });

  it('T = 1 has no next token: zero sums and a zero gradient', () => {
    const logits = tf.randomNormal([2, 1, 5], 0, 2, 'float32', 8);
    const labels = tf.tensor2d([[3], [1]], [2, 1], 'int32');
    const { sums, grad } = run(logits, labels);
    expect(sums).toEqual({ lossSum: 0, tokens: 0, correctSum: 0, entropySum: 0 });
    expect(grad.shape).toEqual([2, 1, 5]);
    expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true);
    tf.dispose([logits, labels, grad]);
  });

  it.each([
    [[2, 3, 4], [2, 4]],
    [[3, 3, 4], [2, 3]],
    [[2, 3], [2, 3]],
    [[2, 3, 4], [2, 3, 1]],
  ])('rejects logits %j with labels %j, naming both shapes', (logitsShape, labelsShape) => {
    const logits = tf.zeros(logitsShape);
    const labels = tf.zeros(labelsShape, 'int32');
    const error = thrown(() => causalLmLoss(logits, labels));
    expect(isPosttrainError(error) && error.code, String(error)).toBe('SHAPE_MISMATCH');
    expect(error.message).toBe(`causalLmLoss: expected logits [B, T, V] and labels [B, T]; got [${logitsShape.join(', ')}] and [${labelsShape.join(', ')}]\nhelp: pass the model output logits and the collator labels of the same batch (−100 where no loss is wanted)`);
    tf.dispose([logits, labels]);
  });
});
