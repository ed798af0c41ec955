import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromHf, parseSafetensorsHeader, tf } from '@posttrain/tensor-core';
import { createModel, saveModel } from './index.js';
import { expectPosttrainError, rejection, thrown } from './testing/assert.js';

const tinyGpt2 = { modelType: 'gpt2', vocabSize: 16, hiddenSize: 8, numLayers: 1, numHeads: 2, maxPositions: 6 } as const;

describe('inputs are checked before they reach tfjs', () => {
  it('a hidden size that is not a multiple of the head count names both', () => {
    expectPosttrainError(
      thrown(() => configFromHf({ model_type: 'gpt2', vocab_size: 10, n_embd: 10, n_layer: 1, n_head: 3, n_positions: 8 })),
      'INVALID_ARGUMENT',
      'n_embd (10)',
      'n_head (3)',
    );
    const llama = { model_type: 'llama', vocab_size: 10, hidden_size: 12, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 4 };
    expectPosttrainError(
      thrown(() => configFromHf({ ...llama, hidden_size: 10 })),
      'INVALID_ARGUMENT',
      'hidden_size (10)',
      'num_attention_heads (4)',
    );
    expectPosttrainError(
      thrown(() => configFromHf({ ...llama, num_attention_heads: 4, hidden_size: 12 })),
      'INVALID_ARGUMENT',
      'even head dimension',
      'got 3',
    );
  });

  it('GPT-2 beyond n_positions is an error naming n_positions', async () => {
    const model = createModel(tinyGpt2);
    const before = tf.memory().numTensors;
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7]], undefined, 'int32');
    expectPosttrainError(
      thrown(() => model.forward(ids)),
      'INVALID_ARGUMENT',
      'n_positions = 6',
      'got a sequence of 7',
    );
    ids.dispose();
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('createModel rejects an unknown config key or option by name', () => {
    expectPosttrainError(
      thrown(() => createModel({ ...tinyGpt2, numKVHeads: 2 } as never)),
      'INVALID_OPTION',
      'unknown config key "numKVHeads"',
      'numKvHeads',
    );
    expectPosttrainError(
      thrown(() => createModel(tinyGpt2, { sed: 1 } as never)),
      'INVALID_OPTION',
      '"sed"',
    );
  });
});

describe('saveModel options', () => {
  it('floatDtype BF16 stores BF16 weights; an unknown option is rejected by name', async () => {
    const model = createModel(tinyGpt2);
    const dir = await mkdtemp(join(tmpdir(), 'posttrain-save-'));
    try {
      await saveModel(model, dir, { floatDtype: 'BF16' });
      const header = parseSafetensorsHeader(new Uint8Array(await readFile(join(dir, 'model.safetensors'))));
      expect(new Set([...header.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['BF16']));
      expectPosttrainError(await rejection(saveModel(model, dir, { dtype: 'BF16' } as never)), 'INVALID_OPTION', '"dtype"');
    } finally {
      await rm(dir, { recursive: true, force: true });
      model.dispose();
    }
  });
});
