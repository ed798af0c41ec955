import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSafetensorsHeader, tf, type CausalLM } from '@posttrain/tensor-core';
import { configFromHf, createModel, generate, saveModel } from './index.js';
import { expectPosttrainError, rejection, thrown } from './testing/assert.js';

const tinyGpt2 = { modelType: 'gpt2', vocabSize: 16, hiddenSize: 8, numLayers: 1, numHeads: 2, maxPositions: 6 } as const;

describe('inputs are checked before they reach tfjs', () => {
  it('a hidden size that is not a multiple of the head count names both', () => {
    expectPosttrainError(thrown(() => configFromHf({ model_type: 'gpt2', vocab_size: 10, n_embd: 10, n_layer: 1, n_head: 3, n_positions: 8 })), 'INVALID_ARGUMENT', 'n_embd (10)', 'n_head (3)');
    const llama = { model_type: 'llama', vocab_size: 10, hidden_size: 12, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 4 };
    expectPosttrainError(thrown(() => configFromHf({ ...llama, hidden_size: 10 })), 'INVALID_ARGUMENT', 'hidden_size (10)', 'num_attention_heads (4)');
    expectPosttrainError(thrown(() => configFromHf({ ...llama, num_attention_heads: 4, hidden_size: 12 })), 'INVALID_ARGUMENT', 'even head dimension', 'got 3');
  });

  it('GPT-2 beyond n_positions is an error naming n_positions, for a forward and for generate', async () => {
    const model = createModel(tinyGpt2);
    const before = tf.memory().numTensors;
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7]], undefined, 'int32');
    expectPosttrainError(thrown(() => model.forward(ids)), 'INVALID_ARGUMENT', 'n_positions = 6', 'got a sequence of 7');
    const prompt = tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32');
    expectPosttrainError(await rejection(generate(model, prompt, { greedy: true, maxNewTokens: 5, stopTokenIds: [] })), 'INVALID_ARGUMENT', 'n_positions = 6');
    tf.dispose([ids, prompt]);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('createModel rejects an unknown config key or option by name', () => {
    expectPosttrainError(thrown(() => createModel({ ...tinyGpt2, numKVHeads: 2 } as never)), 'INVALID_OPTION', 'unknown config key "numKVHeads"', 'numKvHeads');
    expectPosttrainError(thrown(() => createModel(tinyGpt2, { sed: 1 } as never)), 'INVALID_OPTION', '"sed"');
  });

  it('generate checks the types of stopTokenIds, padTokenId, greedy and the mask shape', async () => {
    const model = createModel(tinyGpt2);
    const prompt = tf.tensor2d([[1, 2]], undefined, 'int32');
    const mask = tf.tensor2d([[1, 1, 1]], undefined, 'int32');
    expectPosttrainError(await rejection(generate(model, prompt, { stopTokenIds: 5 as never })), 'INVALID_OPTION', 'stopTokenIds');
    expectPosttrainError(await rejection(generate(model, prompt, { padTokenId: 1.5 })), 'INVALID_OPTION', 'padTokenId');
    expectPosttrainError(await rejection(generate(model, prompt, { greedy: 'yes' as never })), 'INVALID_OPTION', 'greedy');
    expectPosttrainError(await rejection(generate(model, prompt, { attentionMask: mask })), 'SHAPE_MISMATCH', 'attentionMask [1, 2]', 'got [1, 3]');
    tf.dispose([prompt, mask]);
    model.dispose();
  });

  it('generate with a model that returns no cache says so instead of decoding from one token', async () => {
    const model = createModel(tinyGpt2);
    const withoutCache = { config: model.config, forward: (ids: tf.Tensor) => model.forward(ids) } as unknown as CausalLM;
    const prompt = tf.tensor2d([[1, 2]], undefined, 'int32');
    const before = tf.memory().numTensors;
    expectPosttrainError(await rejection(generate(withoutCache, prompt, { maxNewTokens: 2 })), 'NOT_SUPPORTED', 'no KV cache', 'useCache: false');
    expect(tf.memory().numTensors).toBe(before);
    const result = await generate(withoutCache, prompt, { maxNewTokens: 2, useCache: false, greedy: true, stopTokenIds: [] });
    expect(result.tokens[0]).toHaveLength(2);
    prompt.dispose();
    model.dispose();
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
