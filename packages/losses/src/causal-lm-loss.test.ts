import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { causalLmLoss, type CausalLmLossOptions } from './causal-lm-loss.js';
import { BACKENDS, checkCase, expectError, loadReference, useBackend } from './testing/reference.js';

// PyTorch references: packages/losses/fixtures/token_ref.json (scripts/reference/losses_token.py),
// the cases of the former packages/sft sft_ref.py in both reductions plus ignoreIndex and no-token cases:
// loss, lossSum, tokens, correctSum, entropySum and d loss / d logits.
const reference = loadReference('token_ref');
const cases = Object.keys(reference).filter((name) => reference[name].fn === 'causalLmLoss');

const run = ({ logits, labels }: Record<string, tf.Tensor>, options: Record<string, unknown>) => ({ ...causalLmLoss(logits, labels, options as Partial<CausalLmLossOptions>) });

/** Every output as a number, and d loss / d logits; disposes what it made. */
function evaluate(logits: tf.Tensor, labels: tf.Tensor, options?: Partial<CausalLmLossOptions>) {
  const out = causalLmLoss(logits, labels, options);
  const values = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.dataSync()[0] + 0])); // + 0: −0 → 0
  tf.dispose(Object.values(out));
  const grad = tf.grad((x: tf.Tensor) => causalLmLoss(x, labels, options).loss)(logits);
  return { values, grad };
}

describe.each(BACKENDS)('causalLmLoss on %s', (backend) => {
  useBackend(backend);

  it.each(cases)('%s: values and d loss / d logits match torch', (name) => {
    checkCase(reference[name], run);
  });

  it('an all-masked batch: every output 0 and a zero, finite gradient, in both reductions', () => {
    const logits = tf.randomNormal([2, 4, 5], 0, 2, 'float32', 7);
    const labels = tf.fill([2, 4], -100, 'int32');
    for (const reduction of ['mean', 'sum'] as const) {
      const { values, grad } = evaluate(logits, labels, { reduction });
      expect(values).toEqual({ loss: 0, lossSum: 0, tokens: 0, correctSum: 0, entropySum: 0 });
      expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true); // NaN !== 0
      grad.dispose();
    }
    tf.dispose([logits, labels]);
  });

  it('stays finite with a −∞ logit, in a counted and an ignored row', () => {
    // Position 0 predicts label 1 from logits [0, 1, −∞]: loss = log(1 + e) − 1.
    const logits = tf.tensor3d([
      [
        [0, 1, -Infinity],
        [2, -Infinity, 1],
        [0, 0, 0],
      ],
    ]);
    const labels = tf.tensor2d([[-100, 1, -100]], [1, 3], 'int32');
    const { values, grad } = evaluate(logits, labels);
    const p1 = Math.E / (1 + Math.E);
    expect(values.loss).toBeCloseTo(Math.log(1 + Math.E) - 1, 6);
    expect(values.entropySum).toBeCloseTo(-(p1 * Math.log(p1) + (1 - p1) * Math.log(1 - p1)), 6);
    expect(values.tokens).toBe(1);
    expect(values.correctSum).toBe(1);
    expect(Array.from(grad.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([logits, labels, grad]);
  });

  it('T = 1 has no next token: zero outputs and a zero gradient', () => {
    const logits = tf.randomNormal([2, 1, 5], 0, 2, 'float32', 8);
    const labels = tf.tensor2d([[3], [1]], [2, 1], 'int32');
    const { values, grad } = evaluate(logits, labels);
    expect(values).toEqual({ loss: 0, lossSum: 0, tokens: 0, correctSum: 0, entropySum: 0 });
    expect(grad.shape).toEqual([2, 1, 5]);
    expect(Array.from(grad.dataSync()).every((g) => g === 0)).toBe(true);
    tf.dispose([logits, labels, grad]);
  });

  it("'sum' returns loss and lossSum as separate tensors (disposing one keeps the other)", () => {
    const logits = tf.randomNormal([1, 3, 4], 0, 1, 'float32', 9);
    const labels = tf.tensor2d([[0, 1, 2]], [1, 3], 'int32');
    const out = causalLmLoss(logits, labels, { reduction: 'sum' });
    expect(out.loss).not.toBe(out.lossSum);
    out.loss.dispose();
    expect(out.lossSum.dataSync()[0]).toBeGreaterThan(0);
    tf.dispose([logits, labels, ...Object.values(out)]);
  });

  it.each([
    [
      [2, 3, 4],
      [2, 4],
    ],
    [
      [3, 3, 4],
      [2, 3],
    ],
    [
      [2, 3],
      [2, 3],
    ],
    [
      [2, 3, 4],
      [2, 3, 1],
    ],
  ])('rejects logits %j with labels %j, naming both shapes', (logitsShape, labelsShape) => {
    const logits = tf.zeros(logitsShape);
    const labels = tf.zeros(labelsShape, 'int32');
    expectError(
      () => causalLmLoss(logits, labels),
      'SHAPE_MISMATCH',
      `causalLmLoss: expected logits [B, T, V] and labels [B, T]; got [${logitsShape.join(', ')}] and [${labelsShape.join(', ')}]\nhelp: pass the model output logits and the collator labels of the same batch (−100 where no loss is wanted); the shift happens inside`,
    );
    tf.dispose([logits, labels]);
  });

  it('rejects unknown and meaningless options, naming them', () => {
    const logits = tf.zeros([1, 2, 3]);
    const labels = tf.zeros([1, 2], 'int32');
    expectError(() => causalLmLoss(logits, labels, { reduction: 'avg' as 'mean' }), 'INVALID_OPTION', `causalLmLoss: expected reduction to be 'mean' or 'sum'; got "avg"`);
    expectError(() => causalLmLoss(logits, labels, { ignoreIndex: Number.NaN }), 'INVALID_OPTION', 'causalLmLoss: expected ignoreIndex to be an integer; got NaN');
    expectError(
      () => causalLmLoss(logits, labels, { ignore_index: -100 } as Partial<CausalLmLossOptions>),
      'INVALID_OPTION',
      'causalLmLoss: unknown option "ignore_index"; known options are reduction, ignoreIndex',
    );
    tf.dispose([logits, labels]);
  });
});
