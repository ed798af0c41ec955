import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { dpoHingeLoss, dpoSigmoidLoss, ipoLoss, orpoLoss, simpoLoss } from '@posttrain/losses';
import { dpoObjective, orpoObjective, simpoObjective, toObjective, type ObjectiveInputs } from './objective.js';
import { thrown } from './testing/fixtures.js';

const values = {
  policyChosenLogps: [-12.5, -40.1, -3.2],
  policyRejectedLogps: [-15.0, -38.2, -9.9],
  refChosenLogps: [-13.0, -40.0, -4.0],
  refRejectedLogps: [-14.0, -39.0, -8.0],
  chosenTokens: [5, 12, 2],
  rejectedTokens: [5, 12, 3],
};
const inputs = (): ObjectiveInputs => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, tf.tensor1d(v)])) as unknown as ObjectiveInputs;
const read = (t: tf.Tensor) => Array.from(t.dataSync());

describe('preference objectives', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('dpoObjective runs the loss as given, on sums, with β 0.1 by default; IPO gets per-token averages', () => {
    const objective = dpoObjective();
    expect(objective).toMatchObject({ name: 'dpoSigmoidLoss', usesReference: true, averageLogps: false, beta: 0.1 });
    expect(dpoObjective(ipoLoss, { beta: 0.5 })).toMatchObject({ name: 'ipoLoss', averageLogps: true, beta: 0.5 });
    expect(dpoObjective(ipoLoss, { averageLogps: false }).averageLogps).toBe(false);
    expect(dpoObjective(dpoHingeLoss, { beta: 0.3 })).toMatchObject({ name: 'dpoHingeLoss', averageLogps: false, beta: 0.3 });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = inputs();
      const ours = dpoObjective(dpoSigmoidLoss, { beta: 0.2, labelSmoothing: 0.1 }).compute(x);
      const direct = dpoSigmoidLoss(x as Required<ObjectiveInputs>, { beta: 0.2, labelSmoothing: 0.1 });
      expect(read(ours.losses)).toEqual(read(direct.losses));
      expect(read(ours.chosenRewards)).toEqual(read(direct.chosenRewards));
      expect(ours.metrics).toEqual({});
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rpoAlpha adds α times each chosen completion's mean token NLL (RPO) and logs nll_loss", () => {
    tf.tidy(() => {
      const x = inputs();
      const out = dpoObjective(dpoSigmoidLoss, { rpoAlpha: 0.5 }).compute(x);
      const dpo = read(dpoSigmoidLoss(x as Required<ObjectiveInputs>).losses);
      const nll = values.policyChosenLogps.map((l, i) => -l / values.chosenTokens[i]);
      read(out.losses).forEach((v, i) => expect(v).toBeCloseTo(dpo[i] + 0.5 * nll[i], 5));
      expect(out.loss.dataSync()[0]).toBeCloseTo(read(out.losses).reduce((a, b) => a + b) / 3, 5);
      expect(out.metrics.nll_loss.dataSync()[0]).toBeCloseTo(nll.reduce((a, b) => a + b) / 3, 5);
      // With averaged log-probs the NLL is the log-prob itself.
      const averaged = dpoObjective(ipoLoss, { rpoAlpha: 1 }).compute(x);
      expect(averaged.metrics.nll_loss.dataSync()[0]).toBeCloseTo(-values.policyChosenLogps.reduce((a, b) => a + b) / 3, 4);
    });
  });

  it("simpoObjective and orpoObjective run their losses on the policy alone, ORPO with the chosen NLL and its metrics under TRL's names", () => {
    expect(simpoObjective()).toMatchObject({ name: 'simpoLoss', usesReference: false, averageLogps: true, beta: 2 });
    expect(orpoObjective()).toMatchObject({ name: 'orpoLoss', usesReference: false, averageLogps: true, beta: 0.1 });
    tf.tidy(() => {
      const x = { ...inputs(), policyChosenLogps: tf.tensor1d([-0.4, -0.9, -1.5]), policyRejectedLogps: tf.tensor1d([-1.2, -0.8, -2.0]) };
      expect(read(simpoObjective({ gamma: 0.3 }).compute(x).losses)).toEqual(read(simpoLoss(x, { gamma: 0.3 }).losses));
      const orpo = orpoObjective({ beta: 0.25 }).compute(x);
      const direct = orpoLoss({ ...x, chosenNll: tf.neg(x.policyChosenLogps) }, { beta: 0.25 });
      expect(read(orpo.losses)).toEqual(read(direct.losses));
      expect(orpo.metrics.nll_loss.dataSync()[0]).toBeCloseTo((0.4 + 0.9 + 1.5) / 3, 6);
      expect(orpo.metrics.log_odds_chosen.dataSync()[0]).toBeCloseTo(read(direct.logOdds).reduce((a, b) => a + b) / 3, 6);
      expect(orpo.metrics.log_odds_ratio.dataSync()[0]).toBeCloseTo(-read(direct.oddsRatioLosses).reduce((a, b) => a + b) / 3, 6);
    });
  });

  it('orpoObjective.compute leaves behind no tensor it does not return', () => {
    const objective = orpoObjective();
    const base = inputs();
    tf.dispose([base.policyChosenLogps, base.policyRejectedLogps]);
    const x = { ...base, policyChosenLogps: tf.tensor1d([-0.4, -0.9, -1.5]), policyRejectedLogps: tf.tensor1d([-1.2, -0.8, -2.0]) };
    const before = tf.memory().numTensors;
    const out = objective.compute(x);
    const returned = [out.loss, out.losses, out.chosenRewards, out.rejectedRewards, ...Object.values(out.metrics)];
    expect(tf.memory().numTensors - before).toBe(returned.length);
    tf.dispose(returned);
    tf.dispose(Object.values(x));
  });

  it("checks a loss's options when the objective is made, naming the loss", () => {
    expect(thrown(() => dpoObjective(dpoSigmoidLoss, { beta: -1 })).message).toBe('dpoSigmoidLoss: expected beta to be a number > 0; got -1');
    expect(thrown(() => dpoObjective(dpoSigmoidLoss, { gamma: 1 } as never)).message).toMatch(/^dpoSigmoidLoss: unknown option "gamma"; known options are beta, labelSmoothing/);
    expect(thrown(() => simpoObjective({ gamma: -1 })).message).toBe('simpoLoss: expected gamma to be a number ≥ 0 (a target reward margin); got -1');
    expect(thrown(() => dpoObjective(dpoSigmoidLoss, { rpoAlpha: -1 })).message).toBe('dpoObjective: expected rpoAlpha to be a number ≥ 0 (the weight of the chosen NLL; 0 leaves it out); got -1');
    expect(thrown(() => dpoObjective('sigmoid' as never)).message).toMatch(/^dpoObjective: expected loss to be a preference loss function; got string/);
    const bad = thrown(() => dpoObjective((() => ({ loss: tf.scalar(0) })) as never));
    expect(bad.message).toMatch(
      /^dpoObjective\(preferenceLoss\): expected the loss to return \{ loss, losses, chosenRewards, rejectedRewards \} \(a PreferenceLossOutput\); got keys \[loss\]\nhelp: /,
    );
    expect(isPosttrainError(bad)).toBe(true);
  });

  it('toObjective wraps a bare loss with beta, keeps an objective, and refuses a second β', () => {
    expect(toObjective('t', undefined, 0.3, true)).toMatchObject({ name: 'dpoSigmoidLoss', beta: 0.3 });
    expect(toObjective('t', ipoLoss, 0.5, true)).toMatchObject({ name: 'ipoLoss', beta: 0.5, averageLogps: true });
    const simpo = simpoObjective();
    expect(toObjective('t', simpo, 0.1, false)).toBe(simpo);
    expect(thrown(() => toObjective('t', simpo, 0.1, true)).message).toMatch(/^t: expected beta once; got beta 0.1 and an objective \(simpoLoss\) with β 2/);
    expect(thrown(() => toObjective('t', 42, 0.1, false)).code).toBe('INVALID_OPTION');
  });
});
