import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { bradleyTerryLoss, type BradleyTerryLossOptions } from './reward.js';
import { BACKENDS, checkCase, expectError, loadReference, useBackend } from './testing/reference.js';

// PyTorch references: packages/losses/fixtures/token_ref.json (scripts/reference/losses_token.py):
// loss, losses, accuracy, margin and d loss / d chosenScores, d loss / d rejectedScores. A case's
// `margin` input is passed as the `margin` option (a constant: no gradient).
const reference = loadReference('token_ref');
const cases = Object.keys(reference).filter((name) => reference[name].fn === 'bradleyTerryLoss');

const run = ({ chosenScores, rejectedScores, margin }: Record<string, tf.Tensor>, options: Record<string, unknown>) => ({
  ...bradleyTerryLoss(chosenScores, rejectedScores, { ...(options as Partial<BradleyTerryLossOptions>), margin }),
});

describe.each(BACKENDS)('bradleyTerryLoss on %s', (backend) => {
  useBackend(backend);

  it.each(cases)('%s: values and gradients match torch', (name) => {
    checkCase(reference[name], run);
  });

  it('ties give log 2 and count as wrong; a huge gap stays finite', () => {
    const chosen = tf.tensor1d([1, 0, 200]);
    const rejected = tf.tensor1d([1, 200, 0]);
    const out = bradleyTerryLoss(chosen, rejected);
    const losses = Array.from(out.losses.dataSync());
    expect(losses[0]).toBeCloseTo(Math.log(2), 6);
    expect(losses[1]).toBeCloseTo(200, 4);
    expect(losses[2]).toBeCloseTo(0, 6);
    expect(out.accuracy.dataSync()[0]).toBeCloseTo(1 / 3, 6);
    expect(Array.from(out.margin.dataSync())).toEqual([0, -200, 200]);
    const [dc, dr] = tf.grads((c: tf.Tensor, r: tf.Tensor) => bradleyTerryLoss(c, r).loss)([chosen, rejected]);
    expect(Array.from(dc.dataSync()).every(Number.isFinite)).toBe(true);
    expect(dc.dataSync()[1]).toBeCloseTo(-1 / 3, 6); // −σ(−(r_c − r_r)) / B with σ(200) = 1
    tf.dispose([chosen, rejected, dc, dr, ...Object.values(out)]);
  });

  it('accuracy and margin add nothing to the gradient (only loss does)', () => {
    const chosen = tf.tensor1d([0.5, -1]);
    const rejected = tf.tensor1d([0, 2]);
    const margin = tf.tensor1d([1, 0]);
    const [dc, dr] = tf.grads((c: tf.Tensor, r: tf.Tensor) => bradleyTerryLoss(c, r, { margin }).loss)([chosen, rejected]);
    const sigma = (x: number) => 1 / (1 + Math.exp(-x));
    expect(dc.dataSync()[0]).toBeCloseTo(-sigma(-(0.5 - 0 - 1)) / 2, 6);
    expect(dc.dataSync()[1]).toBeCloseTo(-sigma(-(-1 - 2)) / 2, 6);
    expect(Array.from(dr.dataSync()).map((g, i) => g + dc.dataSync()[i])).toEqual([0, 0]); // d/dr = −d/dc
    tf.dispose([chosen, rejected, margin, dc, dr]);
  });

  it.each([
    [[3], [4], undefined, 'chosenScores, rejectedScores to share one shape [B]; got chosenScores [3], rejectedScores [4]'],
    [[3, 1], [3, 1], undefined, 'chosenScores, rejectedScores to share one shape [B]; got chosenScores [3, 1], rejectedScores [3, 1]'],
    [[3], [3], [2], 'chosenScores, rejectedScores, margin to share one shape [B]; got chosenScores [3], rejectedScores [3], margin [2]'],
  ])('rejects chosen %j, rejected %j, margin %j', (c, r, m, message) => {
    const chosen = tf.zeros(c);
    const rejected = tf.zeros(r);
    const margin = m ? tf.zeros(m) : undefined;
    expectError(
      () => bradleyTerryLoss(chosen, rejected, { margin }),
      'SHAPE_MISMATCH',
      `bradleyTerryLoss: expected ${message}\nhelp: pass one scalar reward per pair, e.g. the reward head output [B, 1] reshaped to [B]; chosenScores sets B`,
    );
    tf.dispose([chosen, rejected, ...(margin ? [margin] : [])]);
  });

  it('rejects unknown and meaningless options, naming them', () => {
    const chosen = tf.zeros([2]);
    const rejected = tf.zeros([2]);
    expectError(() => bradleyTerryLoss(chosen, rejected, { centerCoefficient: -0.01 }), 'INVALID_OPTION', 'bradleyTerryLoss: expected centerCoefficient to be a number ≥ 0; got -0.01');
    expectError(() => bradleyTerryLoss(chosen, rejected, { centerCoefficient: Infinity }), 'INVALID_OPTION', 'bradleyTerryLoss: expected centerCoefficient to be a number ≥ 0; got Infinity');
    expectError(() => bradleyTerryLoss(chosen, rejected, { margin: 0.5 as unknown as tf.Tensor }), 'INVALID_OPTION', 'bradleyTerryLoss: expected margin to be a [B] tensor or undefined; got number');
    expectError(
      () => bradleyTerryLoss(chosen, rejected, { center_rewards_coefficient: 0.01 } as Partial<BradleyTerryLossOptions>),
      'INVALID_OPTION',
      'bradleyTerryLoss: unknown option "center_rewards_coefficient"; known options are margin, centerCoefficient',
    );
    tf.dispose([chosen, rejected]);
  });
});
