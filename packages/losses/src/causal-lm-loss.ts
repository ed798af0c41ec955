// Next-token cross-entropy of a causal LM (the SFT loss), with the sums gradient accumulation needs.
import { PosttrainError, checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { asIds, checkTokenShapes, entropyFromLogits, pickLogprobs, zerosFrom } from './token-logprobs.js';

/** Options of {@link causalLmLoss}. */
export interface CausalLmLossOptions {
  /** 'mean': lossSum / tokens (0 when no token counts), Hugging Face's default; 'sum': lossSum. */
  reduction: 'mean' | 'sum';
  /** Labels equal to this are skipped. Default −100, PyTorch's `ignore_index`. */
  ignoreIndex: number;
}

/** Defaults of {@link causalLmLoss}: `reduction: 'mean'`, `ignoreIndex: -100`. */
export const defaultCausalLmLossOptions: Readonly<CausalLmLossOptions> = Object.freeze({ reduction: 'mean', ignoreIndex: -100 });

/** What {@link causalLmLoss} returns: scalars the caller disposes. */
export interface CausalLmLossOutput {
  /** The loss to differentiate: `lossSum / max(tokens, 1)` for 'mean', `lossSum` for 'sum'. */
  loss: tf.Scalar;
  /** Σ −log p(label) over the counted positions (labels ≠ ignoreIndex after the shift). */
  lossSum: tf.Scalar;
  /** How many positions count (float32). */
  tokens: tf.Scalar;
  /** How many of them the argmax of the logits predicts (logging only; ties go to the first index). */
  correctSum: tf.Scalar;
  /** Σ entropy of the predicted distribution at those positions, in nats (logging only). */
  entropySum: tf.Scalar;
}

/**
 * Next-token cross-entropy of a causal LM (Radford et al. 2018, eq. 1; Hugging Face's
 * `ForCausalLMLoss`, TRL's SFT loss): logits at position t predict the label at t + 1, so
 * `logits[:, :-1]` meets `labels[:, 1:]`, and labels equal to `ignoreIndex` (−100) are skipped. The
 * label's log-prob is logit − logsumexp with the max subtracted, by a gather (see {@link tokenLogprobs}):
 * finite for logits of ±100, −∞ entries and large vocabularies, no [B, T, V] one-hot or copy. Other
 * labels must lie in [0, V) (not checked: that would read them back from the device). `loss` is the
 * mean over counted tokens (0, not NaN, when there are none) or the sum; `lossSum` and `tokens` are
 * always returned so gradient accumulation can divide the summed loss of all micro-batches by their
 * total tokens. `correctSum` and `entropySum` are for logging: nothing the loss uses depends on them,
 * so they add nothing to its gradient. T < 2 has no next token: every sum is 0.
 *
 * @example
 * ```ts
 * const logits = tf.randomNormal([2, 4, 50]);                                         // [B, T, V]
 * const labels = tf.tensor2d([[-100, -100, 7, 8], [-100, 3, 4, 1]], [2, 4], 'int32'); // [B, T], −100 skipped
 * const { loss, tokens } = causalLmLoss(logits, labels);                              // mean over 5 tokens
 * const { lossSum } = causalLmLoss(logits, labels, { reduction: 'sum' });             // accumulate, divide later
 * ```
 */
export function causalLmLoss(logits: tf.Tensor, labels: tf.Tensor, options?: Partial<CausalLmLossOptions>): CausalLmLossOutput {
  const { reduction, ignoreIndex } = resolveOptions('causalLmLoss', options, defaultCausalLmLossOptions);
  if (reduction !== 'mean' && reduction !== 'sum') {
    throw new PosttrainError('INVALID_OPTION', `causalLmLoss: expected reduction to be 'mean' or 'sum'; got ${JSON.stringify(reduction) ?? String(reduction)}`);
  }
  checkNumber('causalLmLoss', 'ignoreIndex', ignoreIndex, 'an integer', (v) => Number.isInteger(v));
  checkTokenShapes('causalLmLoss', logits, { labels }, 'pass the model output logits and the collator labels of the same batch (−100 where no loss is wanted); the shift happens inside');
  const [B, T] = labels.shape as [number, number];
  const used = T - 1;
  return tf.tidy(() => {
    if (T < 2) {
      const zero = () => tf.scalar(0);
      return { loss: tf.sum(zerosFrom(logits)) as tf.Scalar, lossSum: tf.sum(zerosFrom(logits)) as tf.Scalar, tokens: zero(), correctSum: zero(), entropySum: zero() };
    }
    const targets = tf.slice(asIds(labels), [0, 1], [B, used]); // [B, T − 1]
    const keep = tf.notEqual(targets, tf.scalar(ignoreIndex, 'int32'));
    const mask = tf.cast(keep, 'float32');
    const lossSum = tf.neg(tf.sum(pickLogprobs(logits, targets, keep))) as tf.Scalar;
    const tokens = tf.sum(mask) as tf.Scalar;
    const loss = reduction === 'mean' ? (tf.div(lossSum, tf.maximum(tokens, 1)) as tf.Scalar) : (tf.clone(lossSum) as tf.Scalar); // its own tensor
    // Statistics over all T positions (no copy of the logits), then the first T − 1.
    const predicted = tf.slice(tf.argMax(logits, -1), [0, 0], [B, used]); // [B, T − 1] int32
    const correctSum = tf.sum(tf.mul(tf.cast(tf.equal(predicted, targets), 'float32'), mask)) as tf.Scalar;
    const entropy = tf.slice(entropyFromLogits(logits), [0, 0], [B, used]); // [B, T − 1]
    const entropySum = tf.sum(tf.where(keep, entropy, tf.zerosLike(entropy))) as tf.Scalar;
    return { loss, lossSum, tokens, correctSum, entropySum };
  });
}
