// Autoregressive decoding of any CausalLM: batched left-padded prompts, a KV cache, greedy or
// sampled tokens (temperature, top-k, top-p, min-p), stop tokens per row, several samples per prompt.
import { PosttrainError, Rng, checkNumber, resolveOptions, tf, type CausalLM, type KVCache } from '@posttrain/tensor-core';
import { argMax, logSoftmaxAt, sampleToken, type SamplingFilters } from './sampling.js';

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Tokens to generate per row at most (default 32). */
  maxNewTokens: number;
  /** Pick the most likely token (default false: sample). */
  greedy: boolean;
  /** Divides the logits before sampling (default 1); 0 means greedy. */
  temperature: number;
  /** Sample only among the k most likely tokens (0, the default, means all). */
  topK: number;
  /** Sample only among the most likely tokens whose probabilities sum to at least p, in (0, 1] (1, the default, means all). */
  topP: number;
  /** Sample only among tokens at least minP times as likely as the most likely one, in [0, 1] (0, the default, means all). */
  minP: number;
  /** Sequences generated per prompt row (default 1): row i of the prompts gives result rows i·n … i·n + n − 1. */
  numReturnSequences: number;
  /** Return the log-prob of each generated token in `logprobs` (default false). */
  returnLogprobs: boolean;
  /** A row stops when it produces one of these (default: the config's EOS ids). */
  stopTokenIds: number[] | undefined;
  /** `[B, T]` 1 for prompt tokens, 0 for left padding; default all ones. */
  attentionMask: tf.Tensor | undefined;
  /** Token fed to rows that have stopped (default: the config's pad id, else the first stop id, else 0). */
  padTokenId: number | undefined;
  /** Seed of the sampler: the same seed gives the same tokens (default 0). */
  seed: number;
  /** Reuse keys and values of earlier positions (default true); false recomputes the whole sequence each step. */
  useCache: boolean;
}

/**
 * The defaults of {@link generate}.
 *
 * @example
 * ```ts
 * const { maxNewTokens } = defaultGenerateOptions; // 32
 * ```
 */
export const defaultGenerateOptions: Readonly<GenerateOptions> = Object.freeze({
  maxNewTokens: 32,
  greedy: false,
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  numReturnSequences: 1,
  returnLogprobs: false,
  stopTokenIds: undefined,
  attentionMask: undefined,
  padTokenId: undefined,
  seed: 0,
  useCache: true,
});

/** Why a row stopped: it produced a stop token, or reached `maxNewTokens`. */
export type FinishReason = 'stop' | 'length';

/**
 * What {@link generate} returns, per generated row: B · numReturnSequences rows, the samples of
 * prompt row i at i · n … i · n + n − 1.
 *
 * @example
 * ```ts
 * const { tokens, finishReasons } = await generate(model, prompt, { maxNewTokens: 8, greedy: true });
 * tokens[0];        // the new token ids of row 0, e.g. [104, 101, 2]
 * finishReasons[0]; // 'stop' when it produced a stop token (included in tokens), else 'length'
 * ```
 */
export interface GenerateResult {
  /** The new tokens of each row, the stop token included when there is one. */
  tokens: number[][];
  /**
   * With `returnLogprobs: true`, log p(token) of each new token under the model itself — the
   * softmax of the raw logits (temperature 1, before top-k/top-p/min-p), which is what a policy
   * gradient scores; undefined otherwise.
   */
  logprobs?: number[][];
  finishReasons: FinishReason[];
}

/**
 * Autoregressive decoding with a KV cache: greedy, or sampling with temperature, top-k, top-p and
 * min-p (applied in that order, as Hugging Face transformers does; see {@link samplingDistribution})
 * from a seeded generator; batched prompts are left-padded, with an `attentionMask` marking the
 * padding (`collateForGeneration` from `@posttrain/data` makes both). Each row stops at its first
 * stop token or after `maxNewTokens`, or when the next position would pass the model's
 * `maxPositions` (finish reason 'length'). Reads one row of logits per step from the device
 * asynchronously, so it runs on every backend, WebGPU included. Prompt ids are checked against the
 * vocabulary, and a prompt longer than the context is refused.
 *
 * @example
 * ```ts
 * const prompt = tf.tensor2d([[0, 0, 5, 6], [7, 8, 9, 10]], undefined, 'int32');
 * const attentionMask = tf.tensor2d([[0, 0, 1, 1], [1, 1, 1, 1]], undefined, 'int32');
 * const { tokens, finishReasons } = await generate(model, prompt, { attentionMask, maxNewTokens: 16, temperature: 0.7, topP: 0.9, seed: 1 });
 * const samples = await generate(model, prompt, { attentionMask, numReturnSequences: 4, returnLogprobs: true }); // 8 rows with their log-probs
 * ```
 */
export async function generate(model: CausalLM, inputIds: tf.Tensor, options: Partial<GenerateOptions> = {}): Promise<GenerateResult> {
  const o = resolveOptions('generate', options, defaultGenerateOptions);
  checkNumber('generate', 'maxNewTokens', o.maxNewTokens, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber('generate', 'temperature', o.temperature, '≥ 0', (v) => v >= 0);
  checkNumber('generate', 'topK', o.topK, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  checkNumber('generate', 'topP', o.topP, 'in (0, 1]', (v) => v > 0 && v <= 1);
  checkNumber('generate', 'minP', o.minP, 'in [0, 1]', (v) => v >= 0 && v <= 1);
  checkNumber('generate', 'numReturnSequences', o.numReturnSequences, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber('generate', 'seed', o.seed, 'an integer', Number.isInteger);
  if (o.stopTokenIds !== undefined && !(Array.isArray(o.stopTokenIds) && o.stopTokenIds.every((id) => Number.isInteger(id)))) {
    throw new PosttrainError('INVALID_OPTION', `generate: expected stopTokenIds to be an array of integer token ids; got ${JSON.stringify(o.stopTokenIds)}`);
  }
  if (o.padTokenId !== undefined && !Number.isInteger(o.padTokenId)) {
    throw new PosttrainError('INVALID_OPTION', `generate: expected padTokenId to be an integer token id; got ${JSON.stringify(o.padTokenId)}`);
  }
  for (const flag of ['greedy', 'useCache', 'returnLogprobs'] as const) {
    if (typeof o[flag] !== 'boolean') throw new PosttrainError('INVALID_OPTION', `generate: expected ${flag} to be true or false; got ${JSON.stringify(o[flag])}`);
  }
  if (inputIds.rank !== 2 || inputIds.dtype !== 'int32') {
    throw new PosttrainError('SHAPE_MISMATCH', `generate: expected inputIds [B, T] int32; got [${inputIds.shape.join(', ')}] ${inputIds.dtype}`);
  }
  const [prompts, promptLength] = inputIds.shape as [number, number];
  if (o.attentionMask && (o.attentionMask.rank !== 2 || o.attentionMask.shape[0] !== prompts || o.attentionMask.shape[1] !== promptLength)) {
    throw new PosttrainError('SHAPE_MISMATCH', `generate: expected attentionMask [${prompts}, ${promptLength}] like inputIds; got [${o.attentionMask.shape.join(', ')}]`);
  }
  // A hand-written CausalLM may leave these out: then nothing is checked against them.
  const vocabSize = model.config.vocabSize ?? Infinity;
  const maxPositions = model.config.maxPositions ?? Infinity;
  if (promptLength > maxPositions) {
    throw new PosttrainError('INVALID_OPTION', `generate: expected inputIds of at most the model's context, maxPositions = ${maxPositions} tokens; got prompts of ${promptLength}`, {
      help: 'shorten the prompts (left-truncate them) or use a model with a longer context',
    });
  }
  if (promptLength === 0) {
    throw new PosttrainError('SHAPE_MISMATCH', `generate: expected inputIds with at least one token per row; got [${prompts}, 0]`, {
      help: 'start each prompt with at least one token, e.g. the BOS token',
    });
  }
  await checkTokenIds(inputIds, vocabSize);
  for (const [name, ids] of [
    ['stopTokenIds', o.stopTokenIds ?? []],
    ['padTokenId', o.padTokenId === undefined ? [] : [o.padTokenId]],
  ] as const) {
    const bad = ids.find((id) => id < 0 || id >= vocabSize);
    if (bad !== undefined) throw new PosttrainError('INVALID_OPTION', `generate: expected ${name} in [0, ${vocabSize}) (the model's vocabSize); got ${bad}`);
  }
  const eos = model.config.eosTokenId;
  const stop = new Set(o.stopTokenIds ?? (eos === null ? [] : Array.isArray(eos) ? eos : [eos]));
  const pad = o.padTokenId ?? model.config.padTokenId ?? [...stop][0] ?? 0;
  const greedy = o.greedy || o.temperature === 0;
  const filters: SamplingFilters = { temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP };
  const rng = new Rng(o.seed);
  // The last token fed back sits at position promptLength + step − 1 < maxPositions.
  const maxNewTokens = Math.min(o.maxNewTokens, maxPositions - promptLength + 1);

  const n = o.numReturnSequences;
  const batch = prompts * n;
  const repeat = (t: tf.Tensor): tf.Tensor =>
    n === 1
      ? t.clone()
      : tf.tidy(() =>
          tf.gather(
            t,
            tf.tensor1d(
              Array.from({ length: batch }, (_, r) => Math.floor(r / n)),
              'int32',
            ),
          ),
        );
  const result: GenerateResult = { tokens: Array.from({ length: batch }, () => []), finishReasons: new Array(batch).fill('length') };
  const logprobs: number[][] | undefined = o.returnLogprobs ? Array.from({ length: batch }, () => []) : undefined;
  if (logprobs) result.logprobs = logprobs;
  const done = new Array<boolean>(batch).fill(false);
  const prompt = repeat(inputIds);
  let mask = o.attentionMask ? tf.tidy(() => repeat(o.attentionMask as tf.Tensor).cast('int32')) : tf.ones([batch, promptLength], 'int32');
  let sequence = prompt.clone(); // only grows without a cache
  let cache: KVCache | undefined;
  let next: tf.Tensor = prompt;
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      const out = o.useCache ? model.forward(next, { attentionMask: mask, cache, useCache: true }) : model.forward(sequence, { attentionMask: mask });
      if (o.useCache && !out.cache) {
        tf.dispose([out.logits, out.hidden]);
        throw new PosttrainError('NOT_SUPPORTED', 'generate: the model returned no KV cache for useCache: true', {
          help: 'pass useCache: false to recompute the whole sequence at each step',
        });
      }
      cache = out.cache;
      const last = tf.tidy(() => {
        const t = out.logits.shape[1] as number;
        return out.logits.slice([0, t - 1, 0], [batch, 1, -1]).reshape([batch, -1]);
      });
      tf.dispose([out.logits, out.hidden]);
      const logits = (await last.data()) as Float32Array;
      last.dispose();
      const vocab = logits.length / batch;
      const chosen: number[] = [];
      for (let row = 0; row < batch; row++) {
        if (done[row]) {
          chosen.push(pad);
          continue;
        }
        const rowLogits = logits.subarray(row * vocab, (row + 1) * vocab);
        const token = greedy ? argMax(rowLogits) : sampleToken(rowLogits, filters, rng);
        result.tokens[row].push(token);
        logprobs?.[row].push(logSoftmaxAt(rowLogits, token));
        chosen.push(token);
        if (stop.has(token)) {
          done[row] = true;
          result.finishReasons[row] = 'stop';
        }
      }
      if (done.every(Boolean) || step === maxNewTokens - 1) break;
      const nextIds = tf.tensor2d(chosen, [batch, 1], 'int32');
      const grown = tf.tidy(() => tf.concat([mask, tf.ones([batch, 1], 'int32')], 1));
      mask.dispose();
      mask = grown;
      if (o.useCache) {
        if (next !== prompt) next.dispose();
        next = nextIds;
      } else {
        const longer = tf.concat([sequence, nextIds], 1);
        tf.dispose([sequence, nextIds]);
        sequence = longer;
      }
    }
  } finally {
    cache?.dispose();
    tf.dispose([mask, sequence, prompt]);
    if (next !== prompt) next.dispose();
  }
  return result;
}

/** Rejects token ids outside [0, vocabSize) with the first offending id and the vocabulary size. */
async function checkTokenIds(inputIds: tf.Tensor, vocabSize: number): Promise<void> {
  const ids = await inputIds.data();
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= vocabSize) {
      const [, t] = inputIds.shape as [number, number];
      throw new PosttrainError('INVALID_ARGUMENT', `generate: expected token ids in [0, ${vocabSize}) (the model's vocabSize); got ${ids[i]} in inputIds row ${Math.floor(i / t)}, column ${i % t}`, {
        help: "encode prompts with the model's own tokenizer: a tokenizer larger than the model's vocabulary produces ids it has no embedding for",
      });
    }
  }
}
