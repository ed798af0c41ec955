import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '@posttrain/tensor-core';
import { createModel } from '@posttrain/models';
import { dpoTrain, ktoTrain } from './index.js';
import { rejected, tokenizer } from './testing/fixtures.js';

// A tokenizer larger than the model is named, by record and with both vocabulary sizes, before any
// step (not a GatherV2 error from inside the first forward).

const smallModel = () =>
  createModel({ modelType: 'llama', vocabSize: 258, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true }, { seed: 1 }); // no room for EOS (258)

beforeAll(async () => {
  await initBackend('cpu');
});

describe('token ids outside the model', () => {
  it('dpoTrain names the record and both vocabulary sizes', async () => {
    const model = smallModel();
    const error = await rejected(dpoTrain({ model, tokenizer, train: [{ prompt: 'ab>', chosen: 'ba', rejected: 'ab' }], maxSteps: 1, progress: 'none' }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain("train record 0 (chosen): expected token ids below the model's vocabSize 258; got id 258");
    expect(error.message).toContain("the tokenizer's vocabulary has 260 ids, the model's 258");
    model.dispose();
  });

  it('ktoTrain names the record and both vocabulary sizes', async () => {
    const model = smallModel();
    const train = [
      { prompt: 'ab>', completion: 'ba', label: true },
      { prompt: 'ab>', completion: 'ab', label: false },
    ];
    const error = await rejected(ktoTrain({ model, tokenizer, train, maxSteps: 1, progress: 'none' }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain("train record 0: expected token ids below the model's vocabSize 258; got id 258");
    model.dispose();
  });
});
