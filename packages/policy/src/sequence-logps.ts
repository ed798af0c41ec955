// Completion log-probs of token sequences under a model: per token, summed and averaged, with the
// gradient (inside a training step) or without it (reference scores, old log-probs), chunked over
// the batch so no more than `chunkSize` rows of [rows, T, V] logits exist at once.
import { PosttrainError, checkNumber, resolveOptions, stopGradient, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, type LabeledExample } from '@posttrain/data';
import { entropyFromLogits, tokenLogprobs } from '@posttrain/losses';

/**
 * Options of {@link sequenceLogps}.
 *
 * @example
 * ```ts
 * const options: Partial<SequenceLogpsOptions> = { average: true, chunkSize: 8 };
 * ```
 */
export interface SequenceLogpsOptions {
  /** `logps` holds per-token means instead of sums (default false; IPO, SimPO and ORPO average). */
  average: boolean;
  /** Keep the gradient to the model's parameters (default false: the results are constants). */
  gradient: boolean;
  /** Rows per forward pass; null (the default) runs the whole batch at once. */
  chunkSize: number | null;
  /** Divide the logits by this before the log-softmax, as TRL's GRPO scores sampled tokens (default 1). */
  temperature: number;
  /** Also return `tokenEntropy`, the entropy of each scored token's predictive distribution (default false; TRL's GRPO logs its mean as `entropy`). */
  entropy: boolean;
}

/**
 * The defaults of {@link sequenceLogps}.
 *
 * @example
 * ```ts
 * sequenceLogps(model, batch, { ...defaultSequenceLogpsOptions, average: true });
 * ```
 */
export const defaultSequenceLogpsOptions: Readonly<SequenceLogpsOptions> = Object.freeze({ average: false, gradient: false, chunkSize: null, temperature: 1, entropy: false });

/**
 * A batch to score: int32 `[B, T]` ids, mask and labels (−100 where a position is not scored, as
 * `collateForTraining` makes them).
 *
 * @example
 * ```ts
 * const batch: ScoredBatch = collateForTraining(examples, { padTokenId: 0 });
 * ```
 */
export interface ScoredBatch {
  inputIds: tf.Tensor;
  attentionMask: tf.Tensor;
  labels: tf.Tensor;
}

/**
 * What {@link sequenceLogps} returns; the caller disposes the tensors.
 *
 * @example
 * ```ts
 * const { logps, tokenLogps, tokens } = sequenceLogps(model, batch); // [B], [B, T], [B]
 * ```
 */
export interface SequenceLogpsResult {
  /** `[B]` Σ (or mean, with `average`) of the scored tokens' log-probs. */
  logps: tf.Tensor1D;
  /** `[B, T]` log p(labels[t] | tokens before t) at each scored position t, 0 elsewhere (t = 0, prompt, padding). */
  tokenLogps: tf.Tensor2D;
  /** `[B]` scored tokens per row. */
  tokens: tf.Tensor1D;
  /** With `entropy: true`, `[B, T]` the entropy (nats, after `temperature`) of the distribution that predicted labels[t], at each scored t; 0 elsewhere. Never carries a gradient. */
  tokenEntropy?: tf.Tensor2D;
}

/**
 * Per-token, summed and averaged log-probs of each row's scored tokens under `model`: the logits
 * at t − 1 score `labels[t]`, for every t where `labels[t] ≠ −100` and the mask is 1 — log π(y | x)
 * of DPO (Rafailov et al. 2023, eq. 7) and the per-token log-probs of PPO and GRPO. Runs the
 * model in chunks of `chunkSize` rows (memory bounded by one chunk's logits). With `gradient:
 * false` the results carry no gradient (safe inside a training step; outside one, nothing is kept
 * for a backward pass at all); the model's train/eval mode is left as the caller set it.
 *
 * @example
 * ```ts
 * const batch = collateForTraining(examples, { padTokenId: padTokenIdOf(tokenizer) });
 * const { logps, tokens } = sequenceLogps(model, batch, { chunkSize: 16 });
 * tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
 * ```
 */
export function sequenceLogps(model: CausalLM, batch: ScoredBatch, options?: Partial<SequenceLogpsOptions>): SequenceLogpsResult {
  const o = resolveOptions('sequenceLogps', options, defaultSequenceLogpsOptions);
  for (const flag of ['average', 'gradient', 'entropy'] as const) {
    if (typeof o[flag] !== 'boolean') throw new PosttrainError('INVALID_OPTION', `sequenceLogps: expected ${flag} to be true or false; got ${JSON.stringify(o[flag])}`);
  }
  if (o.chunkSize !== null) checkNumber('sequenceLogps', 'chunkSize', o.chunkSize, 'a positive integer or null', (v) => Number.isInteger(v) && v > 0);
  checkNumber('sequenceLogps', 'temperature', o.temperature, 'a number > 0', (v) => v > 0);
  const { inputIds, attentionMask, labels } = batch;
  const shape = `[${inputIds.shape.join(', ')}]`;
  if (inputIds.rank !== 2 || inputIds.dtype !== 'int32') throw new PosttrainError('SHAPE_MISMATCH', `sequenceLogps: expected inputIds [B, T] int32; got ${shape} ${inputIds.dtype}`);
  for (const [name, t] of [
    ['attentionMask', attentionMask],
    ['labels', labels],
  ] as const) {
    if (t?.rank !== 2 || t.shape[0] !== inputIds.shape[0] || t.shape[1] !== inputIds.shape[1]) {
      throw new PosttrainError('SHAPE_MISMATCH', `sequenceLogps: expected ${name} ${shape} like inputIds; got ${t ? `[${t.shape.join(', ')}]` : 'none'}`, {
        help: 'collateForTraining from @posttrain/data makes inputIds, attentionMask and labels together',
      });
    }
  }
  const [B, T] = inputIds.shape as [number, number];
  const chunk = o.chunkSize ?? Math.max(B, 1);
  return tf.tidy(() => {
    const parts: tf.Tensor2D[] = [];
    const entropies: tf.Tensor2D[] = [];
    for (let start = 0; start < B; start += chunk) {
      const size = Math.min(chunk, B - start);
      const rows = (t: tf.Tensor) => (size === B ? t : tf.slice(t, [start, 0], [size, T]));
      const part = tf.tidy(() => {
        const mask = rows(attentionMask);
        const { logits } = model.forward(rows(inputIds), { attentionMask: mask });
        const scaled = o.temperature === 1 ? logits : tf.div(logits, o.temperature);
        // Shift: position t − 1 predicts labels[t]; position 0 scores nothing.
        const targets = tf.where(tf.greater(mask, 0), rows(labels), tf.fill([size, T], -100, 'int32'));
        const shifted = tf.concat([tf.slice(targets, [0, 1], [size, T - 1]), tf.fill([size, 1], -100, 'int32')], 1);
        const perToken = tokenLogprobs(scaled, shifted).logps as tf.Tensor2D; // [size, T], position t − 1 holds label t's
        // Align with the labels: label t's log-prob at column t.
        const align = (x: tf.Tensor) => tf.concat([tf.zeros([size, 1]), tf.slice(x, [0, 0], [size, T - 1])], 1) as tf.Tensor2D;
        if (!o.entropy) return { logps: align(perToken) };
        const scoredAt = tf.cast(tf.notEqual(shifted, tf.scalar(-100, 'int32')), 'float32');
        return { logps: align(perToken), entropy: align(tf.mul(entropyFromLogits(stopGradient(scaled)), scoredAt)) };
      });
      parts.push(part.logps);
      if (part.entropy) entropies.push(part.entropy);
    }
    let tokenLogps = (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor2D;
    if (!o.gradient) tokenLogps = stopGradient(tokenLogps) as tf.Tensor2D;
    const scored = tf.logicalAnd(tf.notEqual(labels, tf.scalar(-100, 'int32')), tf.greater(attentionMask, 0));
    const counted = tf.concat([tf.zeros([B, 1], 'bool'), tf.slice(scored, [0, 1], [B, T - 1])], 1);
    const tokens = tf.sum(tf.cast(counted, 'float32'), 1) as tf.Tensor1D;
    const sum = tf.sum(tokenLogps, 1) as tf.Tensor1D;
    const result: SequenceLogpsResult = { logps: o.average ? (tf.div(sum, tf.maximum(tokens, 1)) as tf.Tensor1D) : sum, tokenLogps, tokens };
    if (o.entropy) result.tokenEntropy = (entropies.length === 1 ? entropies[0] : tf.concat(entropies, 0)) as tf.Tensor2D;
    return result as unknown as tf.TensorContainer;
  }) as unknown as SequenceLogpsResult;
}

/**
 * Options of {@link exampleLogps}.
 *
 * @example
 * ```ts
 * const options: ExampleLogpsOptions = { batchSize: 32, average: false, padTokenId: 0 };
 * ```
 */
export interface ExampleLogpsOptions {
  /** Examples per forward pass. */
  batchSize: number;
  /** Per-token means instead of sums. */
  average: boolean;
  /** Id written on padding ({@link padTokenIdOf}). */
  padTokenId: number;
}

/**
 * Completion log-probs of tokenized examples (labels −100 where not scored) under `model`, in
 * batches of `batchSize`, with no gradient, read back to the host: a reference model's cache, or
 * a model's own preference between answers. The model's mode is left as the caller set it (put it
 * in eval mode for dropout-free scores).
 *
 * @example
 * ```ts
 * const chosen = await exampleLogps(model, pairs.map((p) => p.chosen), { batchSize: 32, average: false, padTokenId: 0 });
 * ```
 */
export async function exampleLogps(model: CausalLM, examples: readonly LabeledExample[], options: ExampleLogpsOptions): Promise<Float32Array> {
  checkNumber('exampleLogps', 'batchSize', options.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  const out = new Float32Array(examples.length);
  for (let start = 0; start < examples.length; start += options.batchSize) {
    const batch = collateForTraining(examples.slice(start, start + options.batchSize), { padTokenId: options.padTokenId });
    const { logps, tokenLogps, tokens } = sequenceLogps(model, batch, { average: options.average });
    try {
      out.set(await logps.data(), start);
    } finally {
      tf.dispose([logps, tokenLogps, tokens, batch.inputIds, batch.attentionMask, batch.labels]);
    }
  }
  return out;
}
