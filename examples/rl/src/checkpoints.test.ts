import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, reversalTask } from '@posttrain/data';
import { evaluateRewardModel } from '@posttrain/reward';
import { exactMatch } from '@posttrain/eval';
import { REWARD_MODEL_FIGURES, WEAK_SFT_FIGURES, loadRewardModelCheckpoint, loadWeakSft } from './checkpoints.js';
import { heldOutPairs, reversalSplit, sampledAccuracy, scoreAnswers } from './measure.js';

// The committed starting points of the RL learning proofs still measure what their READMEs say
// (figures of the wasm run that made them; the margins allow for another backend's rounding).
describe('the RL starting checkpoints', () => {
  const { test } = reversalSplit(0);

  it('the weak SFT policy: held-out greedy exact match 25% (± 2 points), 8 samples at temperature 1 right 18.7% of the time (± 2 points), the byte tokenizer read back from its files', async () => {
    await initBackend('wasm');
    const tensorsBefore = tf.memory().numTensors;
    const { model, tokenizer } = await loadWeakSft();
    try {
      expect(tokenizer.encode('abcd>')).toEqual(new ByteTokenizer().encode('abcd>'));
      expect(tokenizer.eosTokenId).toBe(new ByteTokenizer().eosTokenId);
      const greedy = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
      const sampled = await sampledAccuracy(model, tokenizer, test, { samples: 8, temperature: 1, seed: 0 });
      console.log(`weak SFT: greedy exact match ${greedy.accuracy}, sampled ${sampled.accuracy}, ≥ 1 of 8 right ${sampled.anyCorrect}, mixed groups ${sampled.mixed}`);
      expect(Math.abs(greedy.accuracy - WEAK_SFT_FIGURES.greedyExactMatch)).toBeLessThanOrEqual(0.02);
      expect(Math.abs(sampled.accuracy - WEAK_SFT_FIGURES.sampledExactMatch)).toBeLessThanOrEqual(0.02);
      expect(sampled.mixed).toBeGreaterThanOrEqual(0.5); // GRPO groups with a reward spread: measured 68.5%
    } finally {
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('the reward model: every held-out pair ranked right (≥ 98%), right answers scored ~4.5 above the weak SFT greedy answers (± 0.2 each)', async () => {
    await initBackend('wasm');
    const tensorsBefore = tf.memory().numTensors;
    const rm = await loadRewardModelCheckpoint();
    const { model, tokenizer } = await loadWeakSft();
    try {
      const pairs = await evaluateRewardModel(rm, tokenizer, heldOutPairs(test));
      const greedy = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
      const scores = await scoreAnswers(
        rm,
        tokenizer,
        test,
        greedy.samples.map((s) => s.completion),
      );
      console.log(
        `reward model: held-out pairwise accuracy ${pairs.accuracy} (margin ${pairs.margin}); right answers ${scores.correct}, greedy answers ${scores.given}, wrong ones below ${scores.wrongRankedBelow}`,
      );
      expect(pairs.accuracy).toBeGreaterThanOrEqual(REWARD_MODEL_FIGURES.pairwiseAccuracy - 0.02);
      expect(Math.abs(scores.correct - REWARD_MODEL_FIGURES.correctScore)).toBeLessThanOrEqual(0.2);
      expect(Math.abs(scores.given - REWARD_MODEL_FIGURES.greedyScore)).toBeLessThanOrEqual(0.2);
      expect(scores.wrongRankedBelow).toBeGreaterThanOrEqual(REWARD_MODEL_FIGURES.wrongGreedyRankedBelow - 0.03);
    } finally {
      rm.dispose();
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});
