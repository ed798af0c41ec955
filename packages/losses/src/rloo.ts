// RLOO: REINFORCE with the leave-one-out baseline of each completion's group.
import { checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { centre, checkGroupedRewards } from './grpo.js';

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
