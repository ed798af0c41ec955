// TRL's concatenated_forward: chosen and rejected completions of B pairs in one [2B, T] batch, one
// forward pass, then the rows split back into the two halves.
import { tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, type TokenizedExample } from '@posttrain/data';
import { sequenceLogprobs } from '@posttrain/losses';

/** A tokenized preference pair (prompt + chosen, prompt + rejected), as `tokenizePreference` returns it. */
export interface TokenizedPair {
  chosen: TokenizedExample;
  rejected: TokenizedExample;
}

/**
 * B pairs as one right-padded `[2B, T]` batch: rows 0 … B − 1 are the chosen sequences, rows
 * B … 2B − 1 the rejected ones, in the same pair order (TRL's `concatenated_inputs`). Labels are −100
 * on prompt and padding, so they double as the completion mask. The caller disposes the tensors.
 */
export interface ConcatenatedBatch {
  /** `[2B, T]` int32. */
  inputIds: tf.Tensor2D;
  /** `[2B, T]` int32, 1 on real tokens. */
  attentionMask: tf.Tensor2D;
  /** `[2B, T]` int32, the completion's ids, −100 elsewhere. */
  labels: tf.Tensor2D;
  /** B, the number of pairs. */
  pairs: number;
}

/** Collates B pairs into one `[2B, T]` batch, chosen rows first. */
export function concatenatePairs(pairs: readonly TokenizedPair[], padTokenId: number): ConcatenatedBatch {
  const batch = collateForTraining([...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)], { padTokenId });
  return { ...batch, pairs: pairs.length };
}

/** What {@link completionStats} returns for a batch of rows; the caller disposes the tensors. */
export interface CompletionStats {
  /** `[rows]` summed (or per-token averaged) completion log-probs. */
  logps: tf.Tensor1D;
  /** `[rows]` completion tokens per row (the positions scored). */
  tokens: tf.Tensor1D;
  /** `[rows]` Σ over the row's scoring positions of the mean logit over the vocabulary. */
  logitSums: tf.Tensor1D;
}

/**
 * Completion log-probs (`sequenceLogprobs` with the labels as targets: logits at t − 1 score the
 * label at t) and the sums behind TRL's mean completion logits: TRL's `logits/chosen` is
 * `logits[:B][loss_mask[:B]].mean()`, the mean over every vocabulary entry of the positions that
 * predict a completion token, i.e. Σ logitSums / Σ tokens over the chosen rows ({@link meanLogit}).
 */
export function completionStats(logits: tf.Tensor, labels: tf.Tensor2D, attentionMask: tf.Tensor2D, average: boolean): CompletionStats {
  return tf.tidy(() => {
    const { logps, tokens } = sequenceLogprobs(logits, labels, attentionMask, { average });
    const [rows, T] = labels.shape;
    const perPosition = tf.slice(tf.mean(logits, -1), [0, 0], [rows, T - 1]); // [rows, T − 1] mean over V of each predicting position
    const predicts = tf.logicalAnd(tf.notEqual(tf.slice(labels, [0, 1], [rows, T - 1]), tf.scalar(-100, 'int32')), tf.greater(tf.slice(attentionMask, [0, 1], [rows, T - 1]), 0));
    const logitSums = tf.sum(tf.where(predicts, perPosition, tf.zerosLike(perPosition)), 1) as tf.Tensor1D; // [rows]
    return { logps, tokens, logitSums };
  });
}

/** Σ weights·logitSums / Σ weights·tokens over rows `[start, start + size)` (weights: 1, or e.g. KTO's desirable mask): the mean completion logit of those rows. */
export function meanLogit(stats: CompletionStats, start: number, size: number, weights?: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const pick = (t: tf.Tensor1D) => {
      const part = tf.slice(t, [start], [size]);
      return weights ? tf.mul(part, weights) : part;
    };
    return tf.div(tf.sum(pick(stats.logitSums)), tf.maximum(tf.sum(pick(stats.tokens)), 1)) as tf.Scalar;
  });
}

/**
 * Completion log-probs of tokenized examples under `model`, in batches, with no gradient: the
 * reference's cache and {@link preferenceLogps}. The model's mode is left as the caller set it.
 */
export async function sequenceLogpsOf(model: CausalLM, examples: readonly TokenizedExample[], options: { batchSize: number; average: boolean; padTokenId: number }): Promise<Float32Array> {
  const out = new Float32Array(examples.length);
  for (let start = 0; start < examples.length; start += options.batchSize) {
    const batch = collateForTraining(examples.slice(start, start + options.batchSize), { padTokenId: options.padTokenId });
    const logps = tf.tidy(() => sequenceLogprobs(model.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits, batch.labels, batch.attentionMask, { average: options.average }).logps);
    out.set(await logps.data(), start);
    tf.dispose([logps, batch.inputIds, batch.attentionMask, batch.labels]);
  }
  return out;
}
