import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf, type CausalLM } from '@posttrain/tensor-core';
import { createModel, loadModel, type PretrainedModel } from '@posttrain/models';
import { generate, type GenerateOptions, type GenerateResult } from './index.js';
import { expectClose, expectPosttrainError, failure, fixtureDir, greedyReference, int2d, logitsOf } from './testing/helpers.js';

// What generate promises: seeded sampling, the greedy equivalences (temperature 0, topK 1, a tiny
// topP), stop tokens per row, left-padded batches decoding each row as if alone, logprobs that are
// the full forward's log-softmax (within 1e-4 · max(1, |x|)), named option errors, no leaks.
const TOL = 1e-4;

/** Left-pads `prompts` with 0 and generates; disposes the tensors it made. */
async function run(model: PretrainedModel, prompts: number[][], options: Partial<GenerateOptions> = {}): Promise<GenerateResult> {
  const width = Math.max(...prompts.map((p) => p.length));
  const ids = int2d(prompts.map((p) => [...new Array<number>(width - p.length).fill(0), ...p]));
  const attentionMask = int2d(prompts.map((p) => [...new Array<number>(width - p.length).fill(0), ...new Array<number>(p.length).fill(1)]));
  try {
    return await generate(model, ids, { ...options, attentionMask });
  } finally {
    tf.dispose([ids, attentionMask]);
  }
}

function argMax(values: number[]): number {
  return values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
}

function logSoftmaxAt(values: number[], index: number): number {
  const max = Math.max(...values);
  return values[index] - max - Math.log(values.reduce((sum, v) => sum + Math.exp(v - max), 0));
}

let before: number;
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by generate or the test').toBe(before);
});

describe('generate on the llama fixture', () => {
  let model: PretrainedModel;
  const prompt = greedyReference('llama').prompt; // 5 tokens, greedy margins ≥ 0.046
  const short = [23, 71];

  beforeAll(async () => {
    await initBackend('cpu');
    model = await loadModel(fixtureDir('llama'));
  });
  afterAll(() => model?.dispose());

  it('greedy picks the argmax of the full forward at each step, and temperature 0 gives the same tokens', async () => {
    const greedy = await run(model, [prompt], { greedy: true, maxNewTokens: 6, stopTokenIds: [] });
    const full = logitsOf(model, [[...prompt, ...greedy.tokens[0]]])[0];
    greedy.tokens[0].forEach((token, i) => expect(token, `step ${i}`).toBe(argMax(full[prompt.length - 1 + i])));
    const zero = await run(model, [prompt], { temperature: 0, maxNewTokens: 6, stopTokenIds: [] });
    expect(zero.tokens).toEqual(greedy.tokens);
  });

  it('topK 1 and topP 1e-6 sample the greedy tokens whatever the seed', async () => {
    const options = { maxNewTokens: 6, stopTokenIds: [] };
    const greedy = await run(model, [prompt, short], { ...options, greedy: true });
    for (const seed of [1, 2, 3]) {
      expect((await run(model, [prompt, short], { ...options, topK: 1, seed })).tokens).toEqual(greedy.tokens);
      expect((await run(model, [prompt, short], { ...options, topP: 1e-6, seed })).tokens).toEqual(greedy.tokens);
    }
  });

  it('a left-padded batch gives each row the greedy tokens of that row alone, with and without the cache', async () => {
    const options = { greedy: true, maxNewTokens: 6, stopTokenIds: [] };
    const aloneLong = await run(model, [prompt], options);
    const aloneShort = await run(model, [short], options);
    for (const useCache of [true, false]) {
      const batch = await run(model, [prompt, short], { ...options, useCache });
      expect(batch.tokens, `useCache ${useCache}`).toEqual([aloneLong.tokens[0], aloneShort.tokens[0]]);
      expect(batch.finishReasons).toEqual(['length', 'length']);
    }
  });

  it('a stop token ends its row with finishReason "stop" and the stop token included; the other row runs to "length"', async () => {
    const options = { greedy: true, maxNewTokens: 8 };
    const free = await run(model, [prompt, short], { ...options, stopTokenIds: [] });
    // A token row 0 produces first at step i ≥ 1 and row 1 never produces.
    const i = free.tokens[0].findIndex((t, k) => k >= 1 && !free.tokens[0].slice(0, k).includes(t) && !free.tokens[1].includes(t));
    expect(i, `no usable stop token in ${JSON.stringify(free.tokens)}`).toBeGreaterThanOrEqual(1);
    const stop = free.tokens[0][i];
    const stopped = await run(model, [prompt, short], { ...options, stopTokenIds: [stop] });
    expect(stopped.tokens[0]).toEqual(free.tokens[0].slice(0, i + 1));
    expect(stopped.tokens[0].at(-1)).toBe(stop);
    expect(stopped.tokens[0]).toHaveLength(i + 1);
    expect(stopped.tokens[1], 'the stopped row does not disturb the other').toEqual(free.tokens[1]);
    expect(stopped.finishReasons).toEqual(['stop', 'length']);
  });

  it('generation ends when every row has stopped', async () => {
    const free = await run(model, [prompt, short], { greedy: true, maxNewTokens: 4, stopTokenIds: [] });
    const result = await run(model, [prompt, short], { greedy: true, maxNewTokens: 4, stopTokenIds: [free.tokens[0][0], free.tokens[1][0]] });
    expect(result.tokens).toEqual([[free.tokens[0][0]], [free.tokens[1][0]]]);
    expect(result.finishReasons).toEqual(['stop', 'stop']);
  });

  it('the config eos id stops a row by default', async () => {
    const free = await run(model, [prompt], { greedy: true, maxNewTokens: 4, stopTokenIds: [] });
    const first = free.tokens[0][0];
    const withEos = await loadModel(fixtureDir('llama'));
    (withEos.config as { eosTokenId: number | number[] | null }).eosTokenId = [95, first];
    const result = await run(withEos, [prompt], { greedy: true, maxNewTokens: 4 });
    withEos.dispose();
    expect(result.tokens).toEqual([[first]]);
    expect(result.finishReasons).toEqual(['stop']);
  });

  it('logprobs are ≤ 0 and equal the log-softmax of the full forward at each position (sampled, padded batch, within 1e-4)', async () => {
    // temperature and topK change what is sampled, not the reported log p (temperature 1, unfiltered).
    const result = await run(model, [prompt, short], { maxNewTokens: 6, temperature: 0.8, topK: 10, seed: 5, stopTokenIds: [], returnLogprobs: true });
    const logprobs = result.logprobs as number[][];
    [prompt, short].forEach((p, row) => {
      const full = logitsOf(model, [[...p, ...result.tokens[row]]])[0];
      const expected = result.tokens[row].map((token, i) => logSoftmaxAt(full[p.length - 1 + i], token));
      expect(logprobs[row]).toHaveLength(result.tokens[row].length);
      for (const lp of logprobs[row]) expect(lp).toBeLessThanOrEqual(0);
      expectClose(logprobs[row], expected, TOL, `row ${row} logprobs`);
    });
    const without = await run(model, [prompt, short], { maxNewTokens: 6, temperature: 0.8, topK: 10, seed: 5, stopTokenIds: [] });
    expect(without.logprobs, 'log-probs only on request').toBeUndefined();
    expect(without.tokens, 'asking for log-probs does not change the draws').toEqual(result.tokens);
  });

  it.each([
    ['maxNewTokens', { maxNewTokens: 0 }],
    ['topP', { topP: 0 }],
    ['temperature', { temperature: -1 }],
    ['topK', { topK: 1.5 }],
    ['minP', { minP: 1.5 }],
    ['numReturnSequences', { numReturnSequences: 0 }],
    ['returnLogprobs', { returnLogprobs: 'yes' }],
    ['maxTokens', { maxTokens: 4 }],
  ])('an invalid option (%s) rejects with INVALID_OPTION naming it', async (option, options) => {
    const ids = int2d([prompt]);
    const error = await failure(() => generate(model, ids, options as Partial<GenerateOptions>));
    ids.dispose();
    expectPosttrainError(error, 'INVALID_OPTION', option);
    if (option === 'maxTokens') expect(error.message).toContain('maxNewTokens'); // lists the known options
  });

  it('float inputIds reject with SHAPE_MISMATCH naming inputIds', async () => {
    const ids = tf.tensor2d([prompt]);
    const error = await failure(() => generate(model, ids, { maxNewTokens: 2 }));
    ids.dispose();
    expectPosttrainError(error, 'SHAPE_MISMATCH', 'inputIds');
  });

  it('token ids outside the vocabulary reject with INVALID_ARGUMENT naming the vocabulary size', async () => {
    const vocab = model.config.vocabSize;
    for (const bad of [vocab, -1]) {
      const ids = int2d([[...prompt.slice(0, 2), bad]]);
      const error = await failure(() => generate(model, ids, { maxNewTokens: 2 }));
      ids.dispose();
      expectPosttrainError(error, 'INVALID_ARGUMENT', `[0, ${vocab})`, String(bad), 'vocabSize');
    }
  });

  it('stop and pad ids outside the vocabulary reject with INVALID_OPTION naming them; an empty prompt with SHAPE_MISMATCH', async () => {
    const vocab = model.config.vocabSize;
    const ids = int2d([prompt]);
    expectPosttrainError(await failure(() => generate(model, ids, { stopTokenIds: [3, vocab] })), 'INVALID_OPTION', 'stopTokenIds', `[0, ${vocab})`, String(vocab));
    expectPosttrainError(await failure(() => generate(model, ids, { padTokenId: -1 })), 'INVALID_OPTION', 'padTokenId', '-1');
    ids.dispose();
    const empty = tf.zeros([2, 0], 'int32');
    expectPosttrainError(await failure(() => generate(model, empty, { maxNewTokens: 2 })), 'SHAPE_MISMATCH', 'at least one token', '[2, 0]');
    empty.dispose();
  });

  it('numReturnSequences n gives n rows per prompt, prompt i at rows i·n … i·n + n − 1, each decoding that prompt', async () => {
    const options = { maxNewTokens: 5, stopTokenIds: [], seed: 4 };
    const greedy = await run(model, [prompt, short], { ...options, greedy: true, numReturnSequences: 3 });
    const alone = await run(model, [prompt, short], { ...options, greedy: true });
    expect(greedy.tokens).toEqual([alone.tokens[0], alone.tokens[0], alone.tokens[0], alone.tokens[1], alone.tokens[1], alone.tokens[1]]);
    const sampled = await run(model, [prompt, short], { ...options, numReturnSequences: 3, returnLogprobs: true });
    expect(sampled.tokens).toHaveLength(6);
    expect(new Set(sampled.tokens.slice(0, 3).map((t) => t.join(','))).size, 'three samples of one prompt differ').toBeGreaterThan(1);
    // Each sample's log-probs are its own prompt's: row 4 belongs to `short`.
    const full = logitsOf(model, [[...short, ...sampled.tokens[4]]])[0];
    expectClose(
      (sampled.logprobs as number[][])[4],
      sampled.tokens[4].map((t, i) => logSoftmaxAt(full[short.length - 1 + i], t)),
      TOL,
      'row 4 logprobs',
    );
  });
});

describe.each(['gpt2', 'llama', 'qwen2'] as const)('generate against PyTorch on the %s fixture', (name) => {
  let model: PretrainedModel;
  beforeAll(async () => {
    await initBackend('cpu');
    model = await loadModel(fixtureDir(name));
  });
  afterAll(() => model?.dispose());

  it('greedy continuation equals PyTorch token for token, log-probs within 1e-4, with and without the cache', async () => {
    const reference = greedyReference(name);
    const n = reference.new_tokens.length;
    for (const useCache of [true, false]) {
      const result = await run(model, [reference.prompt], { greedy: true, maxNewTokens: n, stopTokenIds: [], useCache, returnLogprobs: true });
      expect(result.tokens[0]).toEqual(reference.new_tokens);
      expectClose((result.logprobs as number[][])[0], reference.logprobs, TOL, `logprobs (useCache ${useCache})`);
      expect(result.finishReasons).toEqual(['length']);
    }
  });
});

describe('generate within the context and with bad inputs', () => {
  const tinyGpt2 = { modelType: 'gpt2', vocabSize: 16, hiddenSize: 8, numLayers: 1, numHeads: 2, maxPositions: 6 } as const;
  let model: PretrainedModel;

  beforeAll(async () => {
    await initBackend('cpu');
    model = createModel(tinyGpt2);
  });
  afterAll(() => model?.dispose());

  it('a prompt longer than the context rejects with INVALID_OPTION naming maxPositions; a full context stops rows with "length"', async () => {
    const long = int2d([[1, 2, 3, 4, 5, 6, 7]]);
    expectPosttrainError(await failure(() => generate(model, long, { maxNewTokens: 2 })), 'INVALID_OPTION', 'maxPositions = 6', 'prompts of 7');
    long.dispose();
    const prompt = int2d([[1, 2, 3, 4]]);
    // Positions 0–3 are the prompt; new tokens 1 and 2 are fed at positions 4 and 5; the third is the last one predicted.
    const result = await generate(model, prompt, { greedy: true, maxNewTokens: 5, stopTokenIds: [] });
    prompt.dispose();
    expect(result.tokens[0]).toHaveLength(3);
    expect(result.finishReasons).toEqual(['length']);
  });

  it('checks the types of stopTokenIds, padTokenId, greedy and the mask shape', async () => {
    const prompt = int2d([[1, 2]]);
    const mask = int2d([[1, 1, 1]]);
    expectPosttrainError(await failure(() => generate(model, prompt, { stopTokenIds: 5 as never })), 'INVALID_OPTION', 'stopTokenIds');
    expectPosttrainError(await failure(() => generate(model, prompt, { padTokenId: 1.5 })), 'INVALID_OPTION', 'padTokenId');
    expectPosttrainError(await failure(() => generate(model, prompt, { greedy: 'yes' as never })), 'INVALID_OPTION', 'greedy');
    expectPosttrainError(await failure(() => generate(model, prompt, { attentionMask: mask })), 'SHAPE_MISMATCH', 'attentionMask [1, 2]', 'got [1, 3]');
    tf.dispose([prompt, mask]);
  });

  it('a model that returns no cache is NOT_SUPPORTED with useCache, and decodes with useCache: false', async () => {
    const withoutCache = { config: model.config, forward: (ids: tf.Tensor) => model.forward(ids) } as unknown as CausalLM;
    const prompt = int2d([[1, 2]]);
    expectPosttrainError(await failure(() => generate(withoutCache, prompt, { maxNewTokens: 2 })), 'NOT_SUPPORTED', 'no KV cache', 'useCache: false');
    const result = await generate(withoutCache, prompt, { maxNewTokens: 2, useCache: false, greedy: true, stopTokenIds: [] });
    expect(result.tokens[0]).toHaveLength(2);
    prompt.dispose();
  });
});

describe('sampling on a random model', () => {
  let model: PretrainedModel;
  const prompts = [
    [3, 14, 15],
    [9, 26],
  ];
  const options = { maxNewTokens: 16, temperature: 1, stopTokenIds: [] };

  beforeAll(async () => {
    await initBackend('cpu');
    // initializerRange 0.5 gives peaked but not one-hot next-token distributions.
    model = createModel({ modelType: 'llama', vocabSize: 64, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, initializerRange: 0.5 }, { seed: 7 });
  });
  afterAll(() => model?.dispose());

  it('the same seed gives the same tokens and logprobs', async () => {
    const first = await run(model, prompts, { ...options, seed: 11, returnLogprobs: true });
    const second = await run(model, prompts, { ...options, seed: 11, returnLogprobs: true });
    expect(second.tokens).toEqual(first.tokens);
    expect(second.logprobs).toEqual(first.logprobs);
    expect(first.tokens.map((t) => t.length)).toEqual([16, 16]);
  });

  it('different seeds give different tokens, and sampling differs from greedy', async () => {
    const a = await run(model, prompts, { ...options, seed: 11 });
    const b = await run(model, prompts, { ...options, seed: 12 });
    const greedy = await run(model, prompts, { ...options, greedy: true });
    expect(b.tokens).not.toEqual(a.tokens);
    expect(a.tokens).not.toEqual(greedy.tokens);
  });

  it('sampled tokens follow the model: their mean logprob is far above that of uniform choice', async () => {
    // Uniform over 64 tokens would give ln(1/64) ≈ −4.16 on average.
    const result = await run(model, prompts, { ...options, seed: 3, returnLogprobs: true });
    const all = (result.logprobs as number[][]).flat();
    const mean = all.reduce((s, v) => s + v, 0) / all.length;
    expect(mean).toBeGreaterThan(Math.log(1 / 64) + 1);
  });
});
