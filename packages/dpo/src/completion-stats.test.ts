import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { collateForTraining, tokenizePreference } from '@posttrain/data';
import { dpoSigmoidLoss, sequenceLogprobs } from '@posttrain/losses';
import { collatePairs } from '@posttrain/policy';
import { preferenceStep } from './dpo-train.js';
import type { ObjectiveInputs, PreferenceObjective } from './objective.js';
import { tinyModel, tokenizer } from './testing/fixtures.js';

const records = [
  { prompt: 'abc>', chosen: 'cba', rejected: 'abc' },
  { prompt: 'hgfe>', chosen: 'efgh', rejected: 'efhg' },
  { prompt: 'ab>', chosen: 'ba', rejected: 'ab' },
];
const tokenized = records.map((r) => tokenizePreference(tokenizer, r));
const PAD = tokenizer.padTokenId!;

describe('the concatenated [2B, T] forward', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('splits the log-probs back into pairs: each equals the sequence scored alone, and the logits metrics are the mean over completion positions and vocabulary', () => {
    const model = tinyModel(3);
    model.eval();
    let captured: { chosen: number[]; rejected: number[]; chosenTokens: number[]; refChosen: number[] } | undefined;
    const capturing: PreferenceObjective = {
      name: 'capture',
      usesReference: true,
      averageLogps: false,
      beta: 0.1,
      compute(inputs: ObjectiveInputs) {
        captured = {
          chosen: Array.from(inputs.policyChosenLogps.dataSync()),
          rejected: Array.from(inputs.policyRejectedLogps.dataSync()),
          chosenTokens: Array.from(inputs.chosenTokens.dataSync()),
          refChosen: Array.from(inputs.refChosenLogps!.dataSync()),
        };
        return { ...dpoSigmoidLoss(inputs as Required<ObjectiveInputs>), metrics: {} };
      },
    };
    const batch = collatePairs(tokenized, { padTokenId: PAD });
    const refLogps = tf.tensor1d([10, 11, 12, 20, 21, 22]); // [2B]: chosen refs, then rejected refs
    const metrics = tf.tidy(() => {
      const { metrics: m } = preferenceStep(model, capturing, { ...batch, refLogps });
      return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, v.dataSync()[0]]));
    });
    expect(captured!.refChosen).toEqual([10, 11, 12]);
    // Each sequence alone: its log-prob, and the mean logit over the positions that predict its completion.
    const alone = (example: (typeof tokenized)[number]['chosen']) =>
      tf.tidy(() => {
        const b = collateForTraining([example], { padTokenId: PAD });
        const { logits } = model.forward(b.inputIds, { attentionMask: b.attentionMask }); // [1, T, V]
        const logp = sequenceLogprobs(logits, b.labels, b.attentionMask).logps.dataSync()[0];
        const T = example.inputIds.length;
        const P = example.promptLength;
        const predicting = tf.slice(logits, [0, P - 1, 0], [1, T - P, logits.shape[2]!]); // positions P − 1 … T − 2 predict tokens P … T − 1
        return { logp, logitSum: tf.sum(predicting).dataSync()[0] / logits.shape[2]!, tokens: T - P };
      });
    const chosen = tokenized.map((p) => alone(p.chosen));
    const rejectedAlone = tokenized.map((p) => alone(p.rejected));
    chosen.forEach((c, i) => expect(Math.abs(captured!.chosen[i] - c.logp)).toBeLessThan(1e-4));
    rejectedAlone.forEach((r, i) => expect(Math.abs(captured!.rejected[i] - r.logp)).toBeLessThan(1e-4));
    expect(captured!.chosenTokens).toEqual(chosen.map((c) => c.tokens)); // completion + EOS: 4, 5, 3
    const meanLogit = (xs: typeof chosen) => xs.reduce((s, x) => s + x.logitSum, 0) / xs.reduce((s, x) => s + x.tokens, 0);
    expect(metrics['logits/chosen']).toBeCloseTo(meanLogit(chosen), 5);
    expect(metrics['logits/rejected']).toBeCloseTo(meanLogit(rejectedAlone), 5);
    expect(metrics['logps/chosen']).toBeCloseTo(chosen.reduce((s, c) => s + c.logp, 0) / 3, 4);
    const rewards = (policy: number[], ref: number[]) => policy.map((p, i) => 0.1 * (p - ref[i]));
    const rc = rewards(captured!.chosen, [10, 11, 12]);
    const rr = rewards(captured!.rejected, [20, 21, 22]);
    expect(metrics['rewards/chosen']).toBeCloseTo(rc.reduce((a, b) => a + b) / 3, 5);
    expect(metrics['rewards/accuracies']).toBeCloseTo(rc.filter((c, i) => c > rr[i]).length / 3, 6);
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels, refLogps]);
    model.dispose();
  });
});
