// The per-row statistics of TRL's concatenated_forward over a [2B, T] pair batch (`collatePairs`
// from @posttrain/policy): completion log-probs, token counts and the sums behind `logits/*`.
import { tf } from '@posttrain/tensor-core';
import { sequenceLogprobs } from '@posttrain/losses';

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
