import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf, type KVCache } from '@posttrain/tensor-core';
import { createModel, loadModel, type PretrainedModel } from './index.js';
import { expectPosttrainError, expectClose, int2d, logitsOf, thrown } from './testing/assert.js';
import { fixtureDir, referenceModels } from './testing/reference.js';

// Incremental decoding with the KV cache computes what a full forward over the whole sequence
// computes: each step's logits equal the full forward's logits at that position, within 1e-4 ·
// max(1, |logit|), as for the PyTorch parity.
const TOL = 1e-4;
const sequence = [4, 19, 33, 7, 58, 12, 71, 26]; // prompt: the first 5; then 3 decoded one at a time
const PROMPT = 5;

const ones = (n: number) => new Array<number>(n).fill(1);

/** Runs `model.forward` with a cache; returns the `[B][T][V]` logits and the cache, disposing the rest. */
function step(model: PretrainedModel, rows: number[][], options: { cache?: KVCache; mask?: number[][] }): { logits: number[][][]; cache: KVCache } {
  const ids = int2d(rows);
  const attentionMask = options.mask ? int2d(options.mask) : undefined;
  const out = model.forward(ids, { cache: options.cache, useCache: true, ...(attentionMask ? { attentionMask } : {}) });
  const logits = out.logits.arraySync() as number[][][];
  tf.dispose([ids, out.logits, out.hidden, ...(attentionMask ? [attentionMask] : [])]);
  expect(out.cache).toBeDefined();
  return { logits, cache: out.cache as KVCache };
}

describe.each(referenceModels)('%s: decoding with the KV cache equals a full forward', (name) => {
  let model: PretrainedModel;
  let before: number;

  beforeAll(async () => {
    await initBackend('cpu');
    model = await loadModel(fixtureDir(name));
  });
  afterAll(() => model?.dispose());
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
  });

  it('prefill then 3 single-token steps (with the growing attentionMask) match the full forward within 1e-4', () => {
    const full = logitsOf(model, [sequence])[0];
    const prefill = step(model, [sequence.slice(0, PROMPT)], { mask: [ones(PROMPT)] });
    const cache = prefill.cache;
    expect(cache.length).toBe(PROMPT);
    expectClose(prefill.logits[0].flat(), full.slice(0, PROMPT).flat(), TOL, 'prefill logits');
    for (let t = PROMPT; t < sequence.length; t++) {
      const out = step(model, [[sequence[t]]], { cache, mask: [ones(t + 1)] });
      expect(out.cache, 'forward extends the cache it was given').toBe(cache);
      expect(cache.length).toBe(t + 1);
      expectClose(out.logits[0][0], full[t], TOL, `step at position ${t}`);
    }
    cache.dispose();
  });

  it('decode steps without an attentionMask extend the cached mask with ones (same logits)', () => {
    const full = logitsOf(model, [sequence])[0];
    const { cache } = step(model, [sequence.slice(0, PROMPT)], {});
    for (let t = PROMPT; t < sequence.length; t++) {
      const out = step(model, [[sequence[t]]], { cache });
      expectClose(out.logits[0][0], full[t], TOL, `step at position ${t}`);
    }
    expect(cache.length).toBe(sequence.length);
    cache.dispose();
  });

  it('a left-padded batch decoded with the cache matches each row alone within 1e-4', () => {
    const rowA = sequence;
    const rowB = [40, 9, 61, 3, 17, 88]; // prompt of 3, then 3 steps
    const promptB = 3;
    const gap = PROMPT - promptB;
    const fullA = logitsOf(model, [rowA])[0];
    const fullB = logitsOf(model, [rowB])[0];
    const mask = [ones(PROMPT), [...new Array<number>(gap).fill(0), ...ones(promptB)]];
    const prefill = step(model, [rowA.slice(0, PROMPT), [0, 0, ...rowB.slice(0, promptB)]], { mask });
    const cache = prefill.cache;
    expectClose(prefill.logits[1].slice(gap).flat(), fullB.slice(0, promptB).flat(), TOL, 'row B prefill');
    for (let i = 0; i < 3; i++) {
      mask.forEach((row) => row.push(1));
      const out = step(model, [[rowA[PROMPT + i]], [rowB[promptB + i]]], { cache, mask });
      expect(cache.length).toBe(PROMPT + i + 1);
      expectClose(out.logits[0][0], fullA[PROMPT + i], TOL, `row A step ${i}`);
      expectClose(out.logits[1][0], fullB[promptB + i], TOL, `row B step ${i}`);
    }
    cache.dispose();
  });

  it('dispose() frees every tensor the cache holds and leaves length 0', () => {
    const start = tf.memory().numTensors;
    const { cache } = step(model, [sequence.slice(0, PROMPT)], { mask: [ones(PROMPT)] });
    step(model, [[sequence[PROMPT]]], { cache, mask: [ones(PROMPT + 1)] });
    // keys and values per layer, and the mask
    expect(tf.memory().numTensors).toBe(start + 2 * model.config.numLayers + 1);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(start);
    expect(cache.length).toBe(0);
  });
});

describe('misused caches are rejected by name', () => {
  let llama: PretrainedModel;
  let qwen2: PretrainedModel;
  let gpt2: PretrainedModel;
  let before: number;

  beforeAll(async () => {
    await initBackend('cpu');
    [llama, qwen2, gpt2] = await Promise.all([loadModel(fixtureDir('llama')), loadModel(fixtureDir('qwen2')), loadModel(fixtureDir('gpt2'))]);
  });
  afterAll(() => [llama, qwen2, gpt2].forEach((m) => m?.dispose()));
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
  });

  it.each(['gpt2', 'qwen2', 'another llama of the same shapes'])('a cache made by llama passed to %s throws INVALID_ARGUMENT naming the cache', (to) => {
    const other = createModel({ modelType: 'llama', vocabSize: 96, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8 });
    const target = to === 'gpt2' ? gpt2 : to === 'qwen2' ? qwen2 : other;
    const { cache } = step(llama, [[1, 2, 3]], {});
    const ids = int2d([[4]]);
    try {
      expectPosttrainError(
        thrown(() => target.forward(ids, { cache })),
        'INVALID_ARGUMENT',
        'expected a cache returned by this model',
      );
      expect(cache.length, 'the rejected call leaves the cache as it was').toBe(3);
      // The cache still works with the model that made it.
      const out = llama.forward(ids, { cache });
      expect(cache.length).toBe(4);
      tf.dispose([out.logits, out.hidden]);
    } finally {
      tf.dispose(ids);
      cache.dispose();
      other.dispose();
    }
  });

  it('segmentIds with a cache from an earlier call throws INVALID_ARGUMENT naming segmentIds', () => {
    const { cache } = step(llama, [[1, 2, 3]], {});
    const ids = int2d([[4, 5]]);
    const segmentIds = int2d([[0, 1]]);
    expectPosttrainError(
      thrown(() => llama.forward(ids, { cache, segmentIds })),
      'INVALID_ARGUMENT',
      'segmentIds',
      'cache',
    );
    expect(cache.length, 'the rejected call leaves the cache as it was').toBe(3);
    tf.dispose([ids, segmentIds]);
    cache.dispose();
  });

  it('segmentIds with useCache on the first call throws INVALID_ARGUMENT naming segmentIds', () => {
    const ids = int2d([[1, 2, 3, 4]]);
    const segmentIds = int2d([[0, 0, 1, 1]]);
    expectPosttrainError(
      thrown(() => llama.forward(ids, { useCache: true, segmentIds })),
      'INVALID_ARGUMENT',
      'segmentIds',
      'cache',
    );
    tf.dispose([ids, segmentIds]);
  });

  it('a batch of another size than the cache throws SHAPE_MISMATCH naming both sizes', () => {
    const { cache } = step(llama, [[1, 2, 3]], {});
    const ids = int2d([[4], [5]]);
    expectPosttrainError(
      thrown(() => llama.forward(ids, { cache })),
      'SHAPE_MISMATCH',
      "cache's batch of 1 rows",
      'got 2',
    );
    expect(cache.length, 'the rejected call leaves the cache as it was').toBe(3);
    tf.dispose(ids);
    cache.dispose();
  });
});
