import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { createModel, type ModelConfigInput, type PretrainedModel } from './index.js';
import { checkTokenIds } from './inputs.js';
import { expectPosttrainError, thrown } from './testing/assert.js';

// Every forward checks its inputs before they reach tfjs: token ids within the vocabulary (one
// shared check for GPT-2 and Llama) and the sequence within the context (n_positions for GPT-2,
// max_position_embeddings for the Llama family).

const configs: Record<string, ModelConfigInput> = {
  gpt2: { modelType: 'gpt2', vocabSize: 260, hiddenSize: 8, numLayers: 1, numHeads: 2, maxPositions: 6 },
  llama: { modelType: 'llama', vocabSize: 260, hiddenSize: 8, intermediateSize: 16, numLayers: 1, numHeads: 2, maxPositions: 6 },
  qwen2: { modelType: 'qwen2', vocabSize: 260, hiddenSize: 8, intermediateSize: 16, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 6 },
};
const positionsKey: Record<string, string> = { gpt2: 'n_positions', llama: 'max_position_embeddings', qwen2: 'max_position_embeddings' };

let before: number;
beforeAll(async () => {
  await initBackend('cpu');
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

describe.each(Object.keys(configs))('%s forward', (name) => {
  const withModel = (fn: (model: PretrainedModel) => void) => {
    const model = createModel(configs[name]);
    try {
      fn(model);
    } finally {
      model.dispose();
    }
  };
  const ids = (rows: number[][]) => tf.tensor2d(rows, undefined, 'int32');

  it('an id at or above the vocabulary is INVALID_ARGUMENT naming the id, where it is and vocab_size (not a raw GatherV2 error)', () =>
    withModel((model) => {
      const input = ids([
        [1, 2, 3],
        [4, 504, 5],
      ]);
      const error = thrown(() => model.forward(input));
      expectPosttrainError(error, 'INVALID_ARGUMENT', 'expected token ids in [0, 260)', 'vocab_size 260', 'got id 504 at [1, 1]');
      expect(error.message).not.toMatch(/GatherV2/);
      expect(error.message).toMatch(/help: .*tokenizer/);
      const edge = ids([[259, 260]]);
      expectPosttrainError(
        thrown(() => model.forward(edge)),
        'INVALID_ARGUMENT',
        'got id 260 at [0, 1]',
      );
      tf.dispose([input, edge]);
    }));

  it('a negative id (a −100 label passed as input) is refused with a help line', () =>
    withModel((model) => {
      const input = ids([[1, -100, 3]]);
      expectPosttrainError(
        thrown(() => model.forward(input)),
        'INVALID_ARGUMENT',
        'got the negative id -100 at [0, 1]',
        'help: a negative id is usually a label',
      );
      input.dispose();
    }));

  it(`a sequence beyond ${name === 'gpt2' ? 'n_positions' : 'max_position_embeddings'} is INVALID_ARGUMENT naming both lengths, counting cached positions`, () =>
    withModel((model) => {
      const long = ids([[1, 2, 3, 4, 5, 6, 7]]);
      expectPosttrainError(
        thrown(() => model.forward(long)),
        'INVALID_ARGUMENT',
        `${positionsKey[name]} = 6`,
        'got a sequence of 7',
      );
      const prompt = ids([[1, 2, 3, 4, 5]]);
      const first = model.forward(prompt, { useCache: true });
      const next = ids([[6, 7]]);
      expect(first.cache?.length).toBe(5);
      expectPosttrainError(
        thrown(() => model.forward(next, { cache: first.cache })),
        'INVALID_ARGUMENT',
        'got a sequence of 7 (5 cached + 2 new)',
      );
      first.cache!.dispose();
      tf.dispose([long, prompt, next, first.logits, first.hidden]);
    }));

  it('ids within range and a full context still run', () =>
    withModel((model) => {
      const input = ids([[0, 259, 7, 1, 2, 3]]);
      const { logits, hidden } = model.forward(input);
      expect(logits.shape).toEqual([1, 6, 260]);
      tf.dispose([input, logits, hidden]);
    }));
});

describe('checkTokenIds', () => {
  const limits = { architecture: 'llama', vocabSize: 260, maxPositions: 8, positionsKey: 'max_position_embeddings' };

  it('names the first bad id, where it is and the range of the ids; accepts ids in range', () => {
    const input = tf.tensor2d(
      [
        [1, 2],
        [300, -1],
      ],
      undefined,
      'int32',
    );
    const good = tf.tensor2d([[0, 259]], undefined, 'int32');
    expectPosttrainError(
      thrown(() => checkTokenIds(input, limits)),
      'INVALID_ARGUMENT',
      'got id 300 at [1, 0] (ids range over [-1, 300])',
    );
    checkTokenIds(good, limits);
    tf.dispose([input, good]);
  });

  it('runs on wasm too', async () => {
    await initBackend('wasm');
    try {
      const input = tf.tensor2d([[1, 504]], undefined, 'int32');
      expectPosttrainError(
        thrown(() => checkTokenIds(input, limits)),
        'INVALID_ARGUMENT',
        'got id 504 at [0, 1]',
      );
      input.dispose();
    } finally {
      await initBackend('cpu');
    }
  });
});
