import { PosttrainError, Rng, checkNumber, resolveOptions, tf, type CausalLM, type KVCache } from '@posttrain/tensor-core';

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
  /** Sample only among the most likely tokens whose probabilities sum to at least p (1, the default, means all). */
  topP: number;
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

export const defaultGenerateOptions: GenerateOptions = {
  maxNewTokens: 32,
  greedy: false,
  temperature: 1,
  topK: 0,
  topP: 1,
  stopTokenIds: undefined,
  attentionMask: undefined,
  padTokenId: undefined,
  seed: 0,
  useCache: true,
};

/** Why a row stopped: it produced a stop token, or reached `maxNewTokens`. */
export type FinishReason = 'stop' | 'length';

/** What {@link generate} returns, per row of the prompt batch. */
export interface GenerateResult {
  /** The new tokens of each row, the stop token included when there is one. */
  tokens: number[][];
  /** log p(token) under the model (temperature 1, before top-k/top-p), per new token. */
  logprobs: number[][];
  finishReasons: FinishReason[];
}

/**
 * Autoregressive decoding with a KV cache: greedy, or sampling with temperature, top-k and top-p,
 * from a seeded generator; batched prompts are left-padded, with an `attentionMask` marking the
 * padding. Reads one row of logits per step from the device asynchronously, so it runs on every
 * backend, WebGPU included.
 *
 * @example
 * ```ts
 * const prompt = tf.tensor2d([[0, 0, 5, 6], [7, 8, 9, 10]], undefined, 'int32');
 * const attentionMask = tf.tensor2d([[0, 0, 1, 1], [1, 1, 1, 1]], undefined, 'int32');
 * const { tokens, finishReasons } = await generate(model, prompt, { attentionMask, maxNewTokens: 16, temperature: 0.7, topP: 0.9, seed: 1 });
 * ```
 */
export async function generate(model: CausalLM, inputIds: tf.Tensor, options: Partial<GenerateOptions> = {}): Promise<GenerateResult> {
  const o = resolveOptions('generate', options, defaultGenerateOptions);
  checkNumber('generate', 'maxNewTokens', o.maxNewTokens, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber('generate', 'temperature', o.temperature, '≥ 0', (v) => v >= 0);
  checkNumber('generate', 'topK', o.topK, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  checkNumber('generate', 'topP', o.topP, 'in (0, 1]', (v) => v > 0 && v <= 1);
  if (o.stopTokenIds !== undefined && !(Array.isArray(o.stopTokenIds) && o.stopTokenIds.every((id) => Number.isInteger(id)))) {
    throw new PosttrainError('INVALID_OPTION', `generate: expected stopTokenIds to be an array of integer token ids; got ${JSON.stringify(o.stopTokenIds)}`);
  }
  if (o.padTokenId !== undefined && !Number.isInteger(o.padTokenId)) {
    throw new PosttrainError('INVALID_OPTION', `generate: expected padTokenId to be an integer token id; got ${JSON.stringify(o.padTokenId)}`);
  }
  for (const flag of ['greedy', 'useCache'] as const) {
    if (typeof o[flag] !== 'boolean') throw new PosttrainError('INVALID_OPTION', `generate: expected ${flag} to be true or false; got ${JSON.stringify(o[flag])}`);
  }
  if (inputIds.rank !== 2 || inputIds.dtype !== 'int32') {
    throw new PosttrainError('SHAPE_MISMATCH', `generate: expected inputIds [B, T] int32; got [${inputIds.shape.join(', ')}] ${inputIds.dtype}`);
  }
  const [batch, promptLength] = inputIds.shape as [number, number];
  if (o.attentionMask && (o.attentionMask.rank !== 2 || o.attentionMask.shape[0] !== batch || o.attentionMask.shape[1] !== promptLength)) {
    throw new PosttrainError('SHAPE_MISMATCH', `generate: expected attentionMask [${batch}, ${promptLength}] like inputIds; got [${o.attentionMask.shape.join(', ')}]`);
  }
  const eos = model.config.eosTokenId;
  const stop = new Set(o.stopTokenIds ?? (eos === null ? [] : Array.isArray(eos) ? eos : [eos]));
  const pad = o.padTokenId ?? model.config.padTokenId ?? [...stop][0] ?? 0;
  const greedy = o.greedy || o.temperature === 0;
  const rng = new Rng(o.seed);

  const result: GenerateResult = { tokens: Array.from({ length: batch }, () => []), logprobs: Array.from({ length: batch }, () => []), finishReasons: new Array(batch).fill('length') };
  const done = new Array<boolean>(batch).fill(false);
  let mask = o.attentionMask ? o.attentionMask.cast('int32') : tf.ones([batch, promptLength], 'int32');
  let sequence = inputIds.clone(); // only grows without a cache
  let cache: KVCache | undefined;
  let next: tf.Tensor = inputIds;
  try {
    for (let step = 0; step < o.maxNewTokens; step++) {
      const out = o.useCache
        ? model.forward(next, { attentionMask: mask, cache, useCache: true })
        : model.forward(sequence, { attentionMask: mask });
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
        const token = greedy ? argMax(rowLogits) : sample(rowLogits, o.temperature, o.topK, o.topP, rng);
        result.tokens[row].push(token);
        result.logprobs[row].push(logSoftmaxAt(rowLogits, token));
        chosen.push(token);
        if (stop.has(token)) {
          done[row] = true;
          result.finishReasons[row] = 'stop';
        }
      }
      if (done.every(Boolean) || step === o.maxNewTokens - 1) break;
      const nextIds = tf.tensor2d(chosen, [batch, 1], 'int32');
      const grown = tf.tidy(() => tf.concat([mask, tf.ones([batch, 1], 'int32')], 1));
      mask.dispose();
      mask = grown;
      if (o.useCache) {
        if (next !== inputIds) next.dispose();
        next = nextIds;
      } else {
        const longer = tf.concat([sequence, nextIds], 1);
        tf.dispose([sequence, nextIds]);
        sequence = longer;
      }
    }
  } finally {
    cache?.dispose();
    tf.dispose([mask, sequence]);
    if (next !== inputIds) next.dispose();
  }
  return result;
}

function argMax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function logSoftmaxAt(values: Float32Array, index: number): number {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return values[index] - max - Math.log(sum);
}

/** Samples from softmax(logits / temperature) restricted to the top-k, then to the top-p nucleus. */
function sample(logits: Float32Array, temperature: number, topK: number, topP: number, rng: Rng): number {
  if (topK === 0 && topP === 1) {
    // The whole vocabulary: one pass for the normaliser, one to draw, no sort.
    let max = -Infinity;
    for (const v of logits) if (v > max) max = v;
    let total = 0;
    for (const v of logits) total += Math.exp((v - max) / temperature);
    let u = rng.uniform() * total;
    for (let i = 0; i < logits.length; i++) {
      u -= Math.exp((logits[i] - max) / temperature);
      if (u < 0) return i;
    }
    return argMax(logits);
  }
  let order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  if (topK > 0) order = order.slice(0, topK);
  const max = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let kept = order.length;
  if (topP < 1) {
    let cumulative = 0;
    for (let i = 0; i < order.length; i++) {
      cumulative += weights[i] / total;
      if (cumulative >= topP) {
        kept = i + 1;
        break;
      }
    }
  }
  const keptTotal = weights.slice(0, kept).reduce((a, b) => a + b, 0);
  let u = rng.uniform() * keptTotal;
  for (let i = 0; i < kept; i++) {
    u -= weights[i];
    if (u < 0) return order[i];
  }
  return order[kept - 1];
}
