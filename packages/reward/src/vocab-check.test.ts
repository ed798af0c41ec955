import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@posttrain/tensor-core';
import { ByteTokenizer } from '@posttrain/data';
import { createModel } from '@posttrain/models';
import { RewardModel, rewardTrain } from './index.js';

// A tokenizer larger than the backbone is named, by record and with both vocabulary sizes, before
// any step (not a GatherV2 error from inside the first forward).

beforeAll(async () => {
  await initBackend('cpu');
});

describe('token ids outside the backbone', () => {
  it('rewardTrain names the record and both vocabulary sizes', async () => {
    const tokenizer = new ByteTokenizer(); // 260 ids, EOS 258
    const backbone = createModel(
      { modelType: 'llama', vocabSize: 258, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true },
      { seed: 1 },
    );
    const model = new RewardModel(backbone, { seed: 1 });
    const error = await rewardTrain({ model, tokenizer, train: [{ prompt: 'ab>', chosen: 'ba', rejected: 'ab' }], maxSteps: 1, progress: 'none' }).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(error?.code).toBe('INVALID_ARGUMENT');
    expect(error?.message).toContain("record 0 (chosen): expected token ids below the model's vocabSize 258; got id 258");
    expect(error?.message).toContain("the tokenizer's vocabulary has 260 ids, the model's 258");
    model.dispose();
  });
});
