import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { collateForTraining, tokenizePreference } from '@posttrain/data';
import { sequenceLogprobs } from '@posttrain/losses';
import { preferenceLogps } from './index.js';
import { rejected, reversalPairs, tinyModel, tokenizer } from './testing/fixtures.js';

describe('preferenceLogps', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('scores each completion as training does, in eval mode, and counts the pairs the model ranks right', async () => {
    const model = tinyModel(2);
    const pairs = reversalPairs(3, 10);
    const before = tf.memory().numTensors;
    const result = await preferenceLogps(model, tokenizer, pairs, { batchSize: 4 });
    expect(tf.memory().numTensors).toBe(before);
    expect(model.training).toBe(true); // restored
    pairs.forEach((pair, i) => {
      const { chosen } = tokenizePreference(tokenizer, pair);
      const alone = tf.tidy(() => {
        const b = collateForTraining([chosen], { padTokenId: tokenizer.padTokenId! });
        return sequenceLogprobs(model.forward(b.inputIds, { attentionMask: b.attentionMask }).logits, b.labels, b.attentionMask).logps.dataSync()[0];
      });
      expect(Math.abs(result.chosen[i] - alone)).toBeLessThan(1e-4);
    });
    expect(result.accuracy).toBe(Array.from(result.chosen).filter((c, i) => c > result.rejected[i]).length / 10);
    const averaged = await preferenceLogps(model, tokenizer, pairs, { average: true });
    expect(averaged.chosen[0]).toBeCloseTo(result.chosen[0] / (tokenizePreference(tokenizer, pairs[0]).chosen.inputIds.length - tokenizePreference(tokenizer, pairs[0]).chosen.promptLength), 5);
    expect((await rejected(preferenceLogps(model, tokenizer, pairs, { batchSize: 0 }))).message).toBe('preferenceLogps: expected batchSize to be an integer ≥ 1; got 0');
    model.dispose();
  });
});
