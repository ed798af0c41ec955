// The language model the quantisation example measures: a byte-level Llama pretrained here on Shakespeare
// (../corpus), committed in ../lm. Where it is, how to load it, the fixed train / held-out split, and what
// it measured when it was made (npm run make-lm -w examples/quantize).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ByteTokenizer, loadTokenizer, type Tokenizer } from '@posttrain/data';
import { Rng } from '@posttrain/tensor-core';
import { loadModel, type ModelConfigInput, type PretrainedModel } from '@posttrain/models';

/** The corpus: karpathy/char-rnn's tinyshakespeare input.txt (1,115,394 bytes, ASCII; public domain, see corpus/README.md). */
export const CORPUS_PATH = fileURLToPath(new URL('../corpus/tinyshakespeare.txt', import.meta.url));

/** The committed checkpoint (Hugging Face layout: config.json, model.safetensors, tokenizer files). */
export const LM_DIR = fileURLToPath(new URL('../lm/', import.meta.url));

/** The share of the corpus, from its end, that no model here trains on. */
export const HELD_OUT_FRACTION = 0.1;

/** Context of the model, of its training windows and of every perplexity measured here. */
export const CONTEXT = 128;

/**
 * The byte-level Llama: hidden 128, SwiGLU 384, 4 layers, 4 query heads over 2 key/value heads, RoPE,
 * tied embeddings, the byte tokenizer's 260 tokens. Every linear layer's input size (128 or 384) is a
 * multiple of 128, so int4 groups of 32, 64 and 128 all divide it.
 *
 * @example
 * ```ts
 * const model = createModel(lmConfig(), { seed: 0 });
 * ```
 */
export function lmConfig(tokenizer = new ByteTokenizer()): ModelConfigInput {
  return {
    modelType: 'llama',
    vocabSize: tokenizer.vocabSize,
    hiddenSize: 128,
    intermediateSize: 384,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    maxPositions: CONTEXT,
    tieWordEmbeddings: true,
    eosTokenId: tokenizer.eosTokenId,
    padTokenId: tokenizer.padTokenId,
  };
}

/** The corpus split into its token ids (bytes; no special tokens): the first 90% to train on, the last 10% held out. */
export interface CorpusSplit {
  train: Int32Array;
  heldOut: Int32Array;
}

let cached: CorpusSplit | undefined;

/**
 * The fixed split of the corpus: its bytes as token ids (the byte tokenizer maps byte b to id b), the
 * first floor(0.9 · 1,115,394) = 1,003,854 to train on and the last 111,540 held out. The cut falls
 * inside a speech; no model here ever trains on a held-out byte.
 *
 * @example
 * ```ts
 * const { train, heldOut } = corpusSplit(); // Int32Array(1003854), Int32Array(111540)
 * ```
 */
export function corpusSplit(): CorpusSplit {
  if (cached === undefined) {
    const ids = Int32Array.from(new ByteTokenizer().encode(readFileSync(CORPUS_PATH, 'utf8'), { addSpecialTokens: false }));
    const cut = Math.floor(ids.length * (1 - HELD_OUT_FRACTION));
    cached = { train: ids.subarray(0, cut), heldOut: ids.subarray(cut) };
  }
  return cached;
}

/**
 * The held-out token ids (the last 10% of the corpus).
 *
 * @example
 * ```ts
 * const { perplexity: ppl } = await perplexity(model, heldOutIds(), { contextLength: CONTEXT });
 * ```
 */
export function heldOutIds(): Int32Array {
  return corpusSplit().heldOut;
}

/**
 * Bits per byte of the unigram baseline: byte frequencies counted on the training split (add-one over
 * the 260 tokens) scoring the held-out bytes, each on its own. A model of the text must beat it.
 *
 * @example
 * ```ts
 * unigramBitsPerByte(); // 4.83 (the model: 2.46)
 * ```
 */
export function unigramBitsPerByte(split: CorpusSplit = corpusSplit(), vocabSize = new ByteTokenizer().vocabSize): number {
  const counts = new Float64Array(vocabSize).fill(1);
  for (const id of split.train) counts[id]++;
  const total = split.train.length + vocabSize;
  let bits = 0;
  for (const id of split.heldOut) bits -= Math.log2(counts[id] / total);
  return bits / split.heldOut.length;
}

/**
 * How the model was made and what it measured (wasm); lm/README.md has the same figures.
 *
 * @example
 * ```ts
 * LM_FIGURES.heldOutPerplexity; // 5.50: exp(nats per byte) on the whole held-out split
 * ```
 */
export const LM_FIGURES = Object.freeze({
  /** Optimizer steps (batch 16 windows of 128 bytes, AdamW lr 3e-3, cosine after 50 warm-up steps, seed 0). */
  steps: 800,
  /** Parameters. */
  parameters: 820_864,
  /** Held-out perplexity, disjoint windows of 128 (stride 128), whole held-out split. */
  heldOutPerplexity: 5.502554939313344,
  /** The same in bits per byte. */
  heldOutBitsPerByte: 2.460101644529232,
  /** Unigram baseline, bits per byte ({@link unigramBitsPerByte}). */
  unigramBitsPerByte: 4.829457077920095,
  /** Held-out perplexity on the first {@link SLICE} held-out bytes (stride 128), what the test checks. */
  slicePerplexity: 4.825572176675054,
});

/** Length of the held-out slice the quick test measures. */
export const SLICE = 4096;

/**
 * Loads the model from {@link LM_DIR} (or `dir`) frozen and in eval mode, with its tokenizer (the byte
 * tokenizer, read back from the directory's tokenizer.json).
 *
 * @example
 * ```ts
 * const { model } = await loadLm();
 * const { perplexity: ppl } = await perplexity(model, heldOutIds().subarray(0, SLICE), { contextLength: CONTEXT });
 * ```
 */
export async function loadLm(dir: string = LM_DIR): Promise<{ model: PretrainedModel; tokenizer: Tokenizer }> {
  const tokenizer = await loadTokenizer(dir);
  const model = await loadModel(dir);
  model.freeze();
  model.eval();
  return { model, tokenizer };
}

/**
 * Runs `fn` on a fresh copy of the committed model ({@link loadLm}) and disposes it afterwards,
 * whatever `fn` does.
 *
 * @example
 * ```ts
 * const ppl = await withLm(async (model) => (await perplexity(model, heldOutIds(), { contextLength: CONTEXT })).perplexity);
 * ```
 */
export async function withLm<T>(fn: (model: PretrainedModel) => Promise<T>): Promise<T> {
  const { model } = await loadLm();
  try {
    return await fn(model);
  } finally {
    model.dispose();
  }
}

/**
 * `rows` windows of {@link CONTEXT} token ids at offsets drawn by `seed` from the training split:
 * the calibration set of GPTQ and of pruning (never a held-out byte).
 *
 * @example
 * ```ts
 * const rows = calibrationRows(128, 0); // 128 × 128 token ids
 * await gptqModel(model, [rows.slice(0, 64), rows.slice(64)], { bits: 4, groupSize: 128 });
 * ```
 */
export function calibrationRows(rows: number, seed: number): number[][] {
  const { train } = corpusSplit();
  const rng = new Rng(seed);
  return Array.from({ length: rows }, () => {
    const start = rng.int(train.length - CONTEXT);
    return Array.from(train.subarray(start, start + CONTEXT));
  });
}

/**
 * {@link calibrationRows} in batches of `batchSize` rows (the last may be shorter): the calibration
 * argument of `gptqModel`, `pruneModel` and the structured pruners.
 *
 * @example
 * ```ts
 * await pruneModel(model, calibrationBatches(128, 0), { method: 'wanda' }); // 8 batches of 16 × 128
 * ```
 */
export function calibrationBatches(rows: number, seed: number, batchSize = 16): number[][][] {
  const all = calibrationRows(rows, seed);
  const batches: number[][][] = [];
  for (let i = 0; i < all.length; i += batchSize) batches.push(all.slice(i, i + batchSize));
  return batches;
}
