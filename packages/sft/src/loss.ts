// The SFT loss: summed next-token cross-entropy over label tokens, with accuracy and entropy.
import { PosttrainError, formatShape, tf } from '@posttrain/tensor-core';

/**
 * What {@link causalLmLoss} returns: sums over the loss tokens (divide by `tokens` for means).
 * Every tensor is a scalar the caller disposes.
 */
export interface CausalLmLossOutput {
  /** Σ −log p(label) over positions whose (shifted) label is not −100. */
  lossSum: tf.Scalar;
  /** How many positions count (labels ≠ −100 after the shift). */
  tokens: tf.Scalar;
  /** How many of them the argmax predicts right (report only). */
  correctSum: tf.Scalar;
  /** Σ entropy of the predicted distribution at those positions, in nats (report only). */
  entropySum: tf.Scalar;
}

/**
 * Next-token cross-entropy of a causal LM, summed over the label tokens (Radford et al. 2018,
 * eq. 1; TRL's SFT loss before normalisation). Logits at position t predict the label at t + 1, so
 * `logits[:, :-1]` meets `labels[:, 1:]`; labels of −100 are skipped (other labels must lie in
 * [0, V): they are not checked, which would need a read back from the device). The log-softmax is the
 * numerically stable one (max subtracted). Returns sums, so gradient accumulation can normalise
 * by the tokens of all micro-batches.
 *
 * @example
 * ```ts
 * const { logits } = model.forward(inputIds, { attentionMask }); // [B, T, V]
 * const { lossSum, tokens } = causalLmLoss(logits, labels);      // labels [B, T] int32, −100 skipped
 * ```
 */
export function causalLmLoss(logits: tf.Tensor, labels: tf.Tensor): CausalLmLossOutput {
  if (logits.rank !== 3 || labels.rank !== 2 || logits.shape[0] !== labels.shape[0] || logits.shape[1] !== labels.shape[1]) {
    throw new PosttrainError('SHAPE_MISMATCH', `causalLmLoss: expected logits [B, T, V] and labels [B, T]; got ${formatShape(logits.shape)} and ${formatShape(labels.shape)}`, {
      help: 'pass the model output logits and the collator labels of the same batch (−100 where no loss is wanted)',
    });
  }
  const [B, T, V] = logits.shape as [number, number, number];
  return tf.tidy(() => {
    if (T < 2) {
      const zero = tf.mul(tf.sum(logits), 0) as tf.Scalar;
      return { lossSum: zero, tokens: tf.scalar(0), correctSum: tf.scalar(0), entropySum: tf.scalar(0) };
    }
    const N = B * (T - 1);
    const shifted = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [N, V]); // [N, V]
    const target = tf.reshape(tf.slice(labels.toInt(), [0, 1], [B, T - 1]), [N]); // [N]
    const keep = tf.notEqual(target, -100); // [N]
    const mask = tf.cast(keep, 'float32');
    const safe = tf.where(keep, target, tf.zerosLike(target)); // [N]
    const logp = tf.logSoftmax(shifted); // [N, V], max subtracted
    // The label's log-prob by a gather on the flattened [N·V] array: no [N, V] one-hot, and a −∞
    // logit elsewhere in the row stays out of the sum (a one-hot product would give −∞·0 = NaN).
    const flat = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), safe); // [N]
    const tokenLogp = tf.gather(tf.reshape(logp, [N * V]), flat); // [N]
    const lossSum = tf.neg(tf.sum(tf.where(keep, tokenLogp, tf.zerosLike(tokenLogp)))) as tf.Scalar;
    const correct = tf.cast(tf.equal(tf.argMax(shifted, -1), safe), 'float32');
    const correctSum = tf.sum(tf.mul(correct, mask)) as tf.Scalar;
    const p = tf.exp(logp);
    const plogp = tf.where(tf.greater(p, 0), tf.mul(p, logp), tf.zerosLike(p)); // 0·log 0 = 0
    const entropy = tf.neg(tf.sum(plogp, -1)); // [N]
    const entropySum = tf.sum(tf.where(keep, entropy, tf.zerosLike(entropy))) as tf.Scalar;
    return { lossSum, tokens: tf.sum(mask) as tf.Scalar, correctSum, entropySum };
  });
}
