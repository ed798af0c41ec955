// RLOO: REINFORCE with the leave-one-out baseline of each completion's group, and TRL's clipped
// sequence-level loss.
import { PosttrainError, checkNumber, formatShape, resolveOptions, stopGradient, tf } from '@posttrain/tensor-core';
import { centre, checkGroupedRewards } from './grpo.js';
import { checkTokenMatrices } from './ppo.js';

/** Options of {@link rlooAdvantages}. */
export interface RlooAdvantagesOptions {
  /** Completions per prompt k, an integer ≥ 2, dividing B. TRL's RLOO `num_generations` (formerly `rloo_k`), default 2. */
  groupSize: number;
}

export const defaultRlooAdvantagesOptions: Readonly<RlooAdvantagesOptions> = Object.freeze({ groupSize: 2 });

/** What {@link rlooAdvantages} returns: new `[B]` tensors the caller disposes. */
export interface RlooAdvantagesOutput {
  /** r_i − baseline_i. */
  advantages: tf.Tensor1D;
  /** The mean reward of the other k − 1 completions of the same prompt. */
  baseline: tf.Tensor1D;
}

/**
 * REINFORCE leave-one-out advantages (Ahmadian et al. 2024, "Back to Basics: Revisiting
 * REINFORCE Style Optimization for Learning from Human Feedback in LLMs", arXiv 2402.14740, the
 * RLOO estimator; Kool et al. 2019): each completion's reward minus the mean reward of the other k − 1 completions of its
 * prompt, `A_i = r_i − (Σ_j r_j − r_i)/(k − 1) = k/(k − 1)·(r_i − mean)`, an unbiased baseline.
 *
 * `rewards` is `[B]` with the k completions of each prompt consecutive (as TRL's current
 * RLOOTrainer and {@link grpoAdvantages}; TRL's older trainer interleaved them instead). Apply any
 * KL penalty to the rewards first (TRL: r − β·Σ_t (log π_old − log π_ref)). A group of equal
 * rewards gets advantages of exactly 0.
 *
 * @example
 * ```ts
 * const { advantages } = rlooAdvantages(tf.tensor1d([1, 0, 0, 1]), { groupSize: 2 }); // [1, −1, −1, 1]
 * ```
 */
export function rlooAdvantages(rewards: tf.Tensor, options?: Partial<RlooAdvantagesOptions>): RlooAdvantagesOutput {
  const owner = 'rlooAdvantages';
  const { groupSize } = resolveOptions(owner, options, defaultRlooAdvantagesOptions);
  checkNumber(owner, 'groupSize', groupSize, 'an integer ≥ 2 (the leave-one-out baseline needs another completion)', (v) => Number.isInteger(v) && v >= 2);
  const B = checkGroupedRewards(owner, rewards, groupSize);
  return tf.tidy(() => {
    const r = tf.cast(rewards, 'float32');
    const { deviation } = centre(tf.reshape(r, [B / groupSize, groupSize])); // r − mean, [G, k]
    const advantages = tf.reshape(tf.mul(deviation, groupSize / (groupSize - 1)), [B]);
    return { advantages: advantages as tf.Tensor1D, baseline: tf.sub(r, advantages) as tf.Tensor1D };
  });
}

/** The inputs of {@link rlooLoss}. */
export interface RlooLossInputs {
  /** `[B, T]` log-probs of the completion tokens under the policy being trained (the gradient flows here). */
  logprobs: tf.Tensor;
  /** `[B, T]` their log-probs under the policy that sampled them. Leave out when on-policy: the ratio is then exp(Σ logprobs − stopGradient(Σ logprobs)) = 1 with the gradient of Σ logprobs. */
  oldLogprobs?: tf.Tensor;
  /** `[B]` one advantage per completion, e.g. {@link rlooAdvantages}' (constants). */
  advantages: tf.Tensor;
  /** `[B, T]` 1 on completion tokens, 0 on padding (float32 0/1; bool is cast). */
  mask: tf.Tensor;
}

/** Options of {@link rlooLoss}. */
export interface RlooLossOptions {
  /** Lower clip ε_low of the sequence ratio, in (0, 1). TRL's RLOO `epsilon`, default 0.2. */
  epsilonLow: number;
  /** Upper clip ε_high, > 0. TRL's `epsilon_high`, default = epsilon = 0.2. */
  epsilonHigh: number;
}

export const defaultRlooLossOptions: Readonly<RlooLossOptions> = Object.freeze({ epsilonLow: 0.2, epsilonHigh: 0.2 });

/** What {@link rlooLoss} returns: scalars the caller disposes. Only `loss` is meant for gradients. */
export interface RlooLossOutput {
  /** Mean over the B completions of the clipped surrogate. */
  loss: tf.Scalar;
  /** Fraction of the B completions with ρ < 1 − ε_low and A < 0 (TRL's `clip_ratio/low_mean`). */
  clipRatioLow: tf.Scalar;
  /** The smallest of those 0/1 flags over the batch: 1 only when every completion is clipped low (TRL's `clip_ratio/low_min`). */
  clipRatioLowMin: tf.Scalar;
  /** Fraction with ρ > 1 + ε_high and A > 0 (TRL's `clip_ratio/high_mean`). */
  clipRatioHigh: tf.Scalar;
  /** The largest of those flags: 1 when any completion is clipped high (TRL's `clip_ratio/high_max`). */
  clipRatioHighMax: tf.Scalar;
  /** Fraction clipped on either side (TRL's `clip_ratio/region_mean`). */
  clipRatio: tf.Scalar;
}

/**
 * The RLOO policy loss as TRL's RLOOTrainer computes it (Ahmadian et al. 2024, arXiv 2402.14740,
 * the REINFORCE estimator with the leave-one-out baseline, §3.2, made safe for several updates per
 * rollout by PPO's clip, Schulman et al. 2017, eq. 7). Each completion is one action: its
 * log-probability is the sum of its tokens' (`Σ_t m_t·logprobs_t`), its ratio is
 * `ρ_i = exp(Σ_t m_t·(logprobs_t − oldLogprobs_t))` (the full sequence ratio π_θ(y_i)/π_old(y_i), not
 * GSPO's per-token geometric mean), and `loss = mean_i −min(ρ_i·A_i, clip(ρ_i, 1 − ε_low, 1 + ε_high)·A_i)`
 * over the B completions. There is no KL term: RLOO puts β·KL into the reward before the advantages
 * (TRL: `r_i − β·Σ_t (log π_old − log π_ref)`, see {@link rlooAdvantages}).
 *
 * On-policy (one update per rollout) ρ = 1 and the gradient is REINFORCE's, −mean_i A_i·∇ Σ_t log π(y_i,t).
 * Masked positions may hold anything (their log-ratios are set to 0 before the sum). A long
 * completion's summed log-ratio can be large: ρ overflows to Infinity in float32 past ~88, as in
 * TRL, so keep `numIterations` small. The clip fractions count completions, as TRL logs them.
 *
 * @example
 * ```ts
 * const { advantages } = rlooAdvantages(rewards, { groupSize: 4 });            // [B]
 * const { loss, clipRatio } = rlooLoss({ logprobs, oldLogprobs, advantages, mask }); // [B, T] and [B]
 * ```
 */
export function rlooLoss(inputs: RlooLossInputs, options?: Partial<RlooLossOptions>): RlooLossOutput {
  const owner = 'rlooLoss';
  const { epsilonLow, epsilonHigh } = resolveOptions(owner, options, defaultRlooLossOptions);
  checkNumber(owner, 'epsilonLow', epsilonLow, 'a number in (0, 1)', (v) => v > 0 && v < 1);
  checkNumber(owner, 'epsilonHigh', epsilonHigh, 'a number > 0', (v) => v > 0);
  const { logprobs, oldLogprobs, advantages, mask } = inputs ?? ({} as RlooLossInputs);
  const help = 'pass per-token tensors [B, T] of one batch of completions and one advantage per completion [B]';
  const [B] = checkTokenMatrices(owner, { logprobs, oldLogprobs, mask }, help, ['oldLogprobs']);
  if (!(advantages instanceof tf.Tensor) || advantages.rank !== 1 || advantages.shape[0] !== B) {
    const got = advantages instanceof tf.Tensor ? formatShape(advantages.shape) : typeof advantages;
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected advantages of shape [${B}] (one per completion, B from logprobs ${formatShape(logprobs.shape)}); got ${got}`, { help });
  }
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32'); // [B, T]
    const lp = tf.cast(logprobs, 'float32');
    const old = oldLogprobs === undefined ? stopGradient(lp) : tf.cast(oldLogprobs, 'float32');
    const logRatio = tf.sum(tf.where(tf.greater(m, 0), tf.sub(lp, old), tf.zerosLike(m)), 1); // [B]
    const ratio = tf.exp(logRatio);
    const A = tf.cast(advantages, 'float32');
    const loss = tf.mean(tf.neg(tf.minimum(tf.mul(ratio, A), tf.mul(tf.clipByValue(ratio, 1 - epsilonLow, 1 + epsilonHigh), A)))) as tf.Scalar;
    const low = tf.cast(tf.logicalAnd(tf.less(ratio, 1 - epsilonLow), tf.less(A, 0)), 'float32');
    const high = tf.cast(tf.logicalAnd(tf.greater(ratio, 1 + epsilonHigh), tf.greater(A, 0)), 'float32');
    const out: RlooLossOutput = {
      loss,
      clipRatioLow: tf.mean(low) as tf.Scalar,
      clipRatioLowMin: tf.min(low) as tf.Scalar,
      clipRatioHigh: tf.mean(high) as tf.Scalar,
      clipRatioHighMax: tf.max(high) as tf.Scalar,
      clipRatio: tf.mean(tf.maximum(low, high)) as tf.Scalar,
    };
    return out as unknown as tf.TensorContainer;
  }) as unknown as RlooLossOutput;
}
