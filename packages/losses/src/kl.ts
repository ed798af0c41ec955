// Per-token estimators of KL(π‖π_ref) from log-probs of tokens sampled from π (Schulman 2020).
import { PosttrainError, formatShape, tf } from '@posttrain/tensor-core';

/**
 * Checks that `logprobs` and `refLogprobs` are tensors of one shape; throws SHAPE_MISMATCH naming
 * both shapes otherwise.
 */
function checkPair(owner: string, logprobs: tf.Tensor, refLogprobs: tf.Tensor): void {
  for (const [name, t] of [
    ['logprobs', logprobs],
    ['refLogprobs', refLogprobs],
  ] as const) {
    if (!(t instanceof tf.Tensor)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} to be a tensor; got ${t === undefined ? 'undefined' : typeof t}`);
    }
  }
  if (logprobs.shape.length !== refLogprobs.shape.length || logprobs.shape.some((d, i) => d !== refLogprobs.shape[i])) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected logprobs and refLogprobs of the same shape; got ${formatShape(logprobs.shape)} and ${formatShape(refLogprobs.shape)}`, {
      help: 'pass the per-token log-probs of the same sampled tokens under the policy and under the reference, e.g. both [B, T]',
    });
  }
}

/** log r = refLogprobs − logprobs, as float32. */
function logRatio(logprobs: tf.Tensor, refLogprobs: tf.Tensor): tf.Tensor {
  return tf.sub(tf.cast(refLogprobs, 'float32'), tf.cast(logprobs, 'float32'));
}

/**
 * k1 = −log r = log π(x) − log π_ref(x), elementwise (Schulman 2020, "Approximating KL
 * Divergence", joschu.net/blog/kl-approx.html, k1). With x sampled from the policy π, its mean is an unbiased estimate of
 * KL(π‖π_ref); single values are negative half the time and the variance is high. This is the
 * per-token KL TRL's PPO trainer subtracts from the reward (`kl_estimator="k1"`, its default).
 *
 * `logprobs` are the policy's log-probs of the sampled tokens and `refLogprobs` the reference's,
 * same shape (any, typically `[B, T]`); returns a new tensor of that shape. No mask: apply one
 * to the result (e.g. `maskedMean`).
 *
 * @example
 * ```ts
 * const kl = k1(logprobs, refLogprobs); // [B, T] → [B, T]
 * const perSequence = tf.sum(tf.mul(kl, mask), -1); // [B]
 * ```
 */
export function k1(logprobs: tf.Tensor, refLogprobs: tf.Tensor): tf.Tensor {
  checkPair('k1', logprobs, refLogprobs);
  return tf.tidy(() => tf.neg(logRatio(logprobs, refLogprobs)));
}

/**
 * k2 = (log r)² / 2 with log r = log π_ref(x) − log π(x), elementwise (Schulman 2020, k2). With
 * x sampled from π its mean estimates KL(π‖π_ref) with a bias (small when π ≈ π_ref) and low
 * variance; every value is ≥ 0. It is also PPO's `approxKl` (TRL logs 0.5·mean((log π − log π_old)²)).
 *
 * Same inputs and output as {@link k1}.
 *
 * @example
 * ```ts
 * const kl = k2(logprobs, refLogprobs); // [B, T], ≥ 0
 * ```
 */
export function k2(logprobs: tf.Tensor, refLogprobs: tf.Tensor): tf.Tensor {
  checkPair('k2', logprobs, refLogprobs);
  return tf.tidy(() => tf.mul(tf.square(logRatio(logprobs, refLogprobs)), 0.5));
}

/**
 * k3 = (r − 1) − log r with r = π_ref(x) / π(x), elementwise (Schulman 2020, k3). With x sampled
 * from π its mean is an unbiased estimate of KL(π‖π_ref) with low variance, and every value is
 * ≥ 0. This is the KL term of GRPO (Shao et al. 2024, eq. 4) and of TRL's GRPO trainer.
 *
 * Computed as `expm1(log r) − log r`, which keeps its accuracy when π ≈ π_ref (where r − 1 and
 * log r nearly cancel). For log r above ~88 (float32's exp range) the value is +∞: the estimate
 * itself is that large, so no clamp is applied. Same inputs and output as {@link k1}.
 *
 * @example
 * ```ts
 * const kl = k3(logprobs, refLogprobs); // [B, T], ≥ 0
 * ```
 */
export function k3(logprobs: tf.Tensor, refLogprobs: tf.Tensor): tf.Tensor {
  checkPair('k3', logprobs, refLogprobs);
  return tf.tidy(() => {
    const d = logRatio(logprobs, refLogprobs);
    return tf.sub(tf.expm1(d), d);
  });
}
