// Reward modelling: the Bradley-Terry pairwise loss with an optional margin and reward centring.
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';

/** Options of {@link bradleyTerryLoss}. */
export interface BradleyTerryLossOptions {
  /**
   * `[B]` float32 margin m by which the chosen reward should beat the rejected one (Llama 2's m(r),
   * TRL's dataset column `margin`); a constant, no gradient flows into it. Default none (m = 0).
   */
  margin: tf.Tensor | undefined;
  /** Weight c of the centring term c·(r_c + r_r)² (TRL's `center_rewards_coefficient`, 0.01 recommended). Default 0: off. */
  centerCoefficient: number;
}

/** Defaults of {@link bradleyTerryLoss}: no margin, no centring (TRL's `center_rewards_coefficient=None`). */
export const defaultBradleyTerryLossOptions: Readonly<BradleyTerryLossOptions> = Object.freeze({ margin: undefined, centerCoefficient: 0 });

/** What {@link bradleyTerryLoss} returns; every tensor is new and the caller disposes it. */
export interface BradleyTerryLossOutput {
  /** Scalar: the mean of `losses`. */
  loss: tf.Scalar;
  /** `[B]` softplus(−(r_c − r_r − m)) + c·(r_c + r_r)² per pair. */
  losses: tf.Tensor1D;
  /** Scalar: the fraction of pairs with r_c > r_r (a tie counts as wrong, as in TRL); logging only. */
  accuracy: tf.Scalar;
  /** `[B]` r_c − r_r, the reward margin TRL logs as `margin` (without the option's m); logging only. */
  margin: tf.Tensor1D;
}

function checkScores(inputs: Record<string, tf.Tensor | undefined>): void {
  const entries = Object.entries(inputs).filter((e): e is [string, tf.Tensor] => e[1] !== undefined);
  for (const [name, t] of entries) {
    if (!(t instanceof tf.Tensor)) {
      throw new PosttrainError('INVALID_ARGUMENT', `bradleyTerryLoss: expected ${name} to be a [B] tensor; got ${typeof t}`);
    }
  }
  const B = entries[0][1].shape[0];
  if (entries.some(([, t]) => t.rank !== 1 || t.shape[0] !== B)) {
    throw new PosttrainError(
      'SHAPE_MISMATCH',
      `bradleyTerryLoss: expected ${entries.map(([n]) => n).join(', ')} to share one shape [B]; got ${entries.map(([n, t]) => `${n} ${formatShape(t.shape)}`).join(', ')}`,
      {
        help: 'pass one scalar reward per pair, e.g. the reward head output [B, 1] reshaped to [B]; chosenScores sets B',
      },
    );
  }
}

/**
 * The Bradley-Terry loss of a reward model on preference pairs (Bradley & Terry 1952; Ouyang et al.
 * 2022, eq. 1; TRL's `RewardTrainer`): −log σ(r_c − r_r − m), computed as softplus(−(r_c − r_r − m))
 * so it stays finite for reward gaps of ±100. With `margin` it is Llama 2's margin loss (Touvron et al.
 * 2023, eq. 2); with `centerCoefficient` c > 0 each pair adds c·(r_c + r_r)², the auxiliary term that
 * pushes rewards towards mean zero (Eisenstein et al. 2023, eq. 2; TRL adds c·mean((r_c + r_r)²) to the
 * mean loss, the same number). `loss` is the mean over the batch; `accuracy` and `margin` are logging
 * statistics the loss does not use, so they add nothing to its gradient.
 *
 * @example
 * ```ts
 * const chosen = tf.tensor1d([1.5, 0.2, -0.3]);   // [B] reward head outputs
 * const rejected = tf.tensor1d([0.5, 0.9, -1.0]); // [B]
 * const { loss, accuracy } = bradleyTerryLoss(chosen, rejected, { centerCoefficient: 0.01 }); // accuracy 2/3
 * const withMargin = bradleyTerryLoss(chosen, rejected, { margin: tf.tensor1d([1, 0, 0.5]) });
 * ```
 */
export function bradleyTerryLoss(chosenScores: tf.Tensor, rejectedScores: tf.Tensor, options?: Partial<BradleyTerryLossOptions>): BradleyTerryLossOutput {
  const { margin, centerCoefficient } = resolveOptions('bradleyTerryLoss', options, defaultBradleyTerryLossOptions);
  checkNumber('bradleyTerryLoss', 'centerCoefficient', centerCoefficient, 'a number ≥ 0', (v) => v >= 0);
  if (margin !== undefined && !(margin instanceof tf.Tensor)) {
    throw new PosttrainError('INVALID_OPTION', `bradleyTerryLoss: expected margin to be a [B] tensor or undefined; got ${typeof margin}`);
  }
  checkScores({ chosenScores, rejectedScores, margin });
  return tf.tidy(() => {
    const diff = tf.sub(chosenScores, rejectedScores); // [B]
    let losses = tf.softplus(tf.neg(margin ? tf.sub(diff, margin) : diff)); // −log σ(r_c − r_r − m)
    if (centerCoefficient > 0) losses = tf.add(losses, tf.mul(tf.square(tf.add(chosenScores, rejectedScores)), centerCoefficient));
    return {
      loss: tf.mean(losses) as tf.Scalar,
      losses: losses as tf.Tensor1D,
      accuracy: tf.mean(tf.cast(tf.greater(chosenScores, rejectedScores), 'float32')) as tf.Scalar,
      margin: tf.sub(chosenScores, rejectedScores) as tf.Tensor1D,
    };
  });
}
