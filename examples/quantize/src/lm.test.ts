import { statSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ByteTokenizer } from '@posttrain/data';
import { perplexity } from '@posttrain/policy';
import { initBackend, tf } from '@posttrain/tensor-core';
import { CONTEXT, LM_DIR, LM_FIGURES, SLICE, corpusSplit, heldOutIds, lmConfig, loadLm, unigramBitsPerByte } from './lm.js';

// The committed language model: its files, the fixed split, and its held-out perplexity as
// lm/README.md reports it (on the first SLICE held-out bytes, so the test is quick).

beforeAll(async () => {
  await initBackend('wasm');
});

describe('the corpus split', () => {
  it('holds out the last 10% of the bytes, the training split is the rest, and a unigram model scores ~4.83 bits/byte', () => {
    const { train, heldOut } = corpusSplit();
    expect(train.length).toBe(1_003_854);
    expect(heldOut.length).toBe(111_540);
    expect(heldOutIds()).toBe(heldOut);
    const text = new ByteTokenizer().decode([...heldOut.subarray(0, 40)]);
    expect(text.length).toBe(40); // ASCII: one byte, one character
    expect(unigramBitsPerByte()).toBeCloseTo(LM_FIGURES.unigramBitsPerByte, 6);
  });
});

describe('the language model', () => {
  it('is the configured byte-level Llama, every linear input size a multiple of 128, in at most 4 MB', async () => {
    const { model, tokenizer } = await loadLm();
    try {
      const want = lmConfig();
      expect(model.config.hiddenSize).toBe(want.hiddenSize);
      expect(model.config.intermediateSize).toBe(want.intermediateSize);
      expect(model.config.numLayers).toBe(want.numLayers);
      expect(model.config.maxPositions).toBe(CONTEXT);
      expect(tokenizer.vocabSize).toBe(260);
      for (const size of [model.config.hiddenSize, model.config.intermediateSize]) expect(size % 128).toBe(0);
      const parameters = [...model.namedParameters().values()].reduce((n, p) => n + p.size, 0);
      expect(parameters).toBe(LM_FIGURES.parameters);
      expect(model.training).toBe(false);
      expect(statSync(`${LM_DIR}model.safetensors`).size).toBeLessThanOrEqual(4 * 1024 * 1024);
    } finally {
      model.dispose();
    }
  });

  it('has the held-out perplexity its README reports, far below the unigram baseline', async () => {
    const { model } = await loadLm();
    try {
      const before = tf.memory().numTensors;
      const got = await perplexity(model, heldOutIds().subarray(0, SLICE), { contextLength: CONTEXT, stride: CONTEXT, batchSize: 16 });
      expect(tf.memory().numTensors).toBe(before);
      expect(got.tokens).toBe(SLICE - SLICE / CONTEXT);
      expect(Math.abs(got.perplexity - LM_FIGURES.slicePerplexity) / LM_FIGURES.slicePerplexity).toBeLessThan(1e-4);
      const bitsPerByte = got.nll / Math.LN2;
      expect(bitsPerByte).toBeLessThan(LM_FIGURES.unigramBitsPerByte - 1.5);
      expect(LM_FIGURES.heldOutBitsPerByte).toBeCloseTo(Math.log2(LM_FIGURES.heldOutPerplexity), 6);
    } finally {
      model.dispose();
    }
  });
});
