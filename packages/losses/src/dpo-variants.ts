// The DPO family, part 2: the losses of the chosen and rejected log-ratios a = policyChosen −
// refChosen and b = policyRejected − refRejected taken separately: BCO, NCA, SPPO (hard label),
// APO-zero and APO-down. The losses of the margin z = a − b alone are in dpo.ts.
import { checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { checkBeta, pairwisePreferenceLoss } from './dpo.js';
import type { PreferenceLogps, PreferenceLossOutput } from './preference-types.js';

/** Options of {@link bcoPairLoss}. */
export interface BcoPairLossOptions {
  /** β, the scale of the implicit reward βa; TRL's default 0.1. */
  beta: number;
  /**
   * δ, the reward shift subtracted from both rewards. The paper uses a moving average of the
   * rewards; a pure function keeps no state, so the trainer passes its running mean here. Default 0
   * (TRL 1.x).
   */
  delta: number;
}

/** β = 0.1 (TRL), δ = 0 (TRL 1.x, which keeps no running mean). */
export const defaultBcoPairLossOptions: Readonly<BcoPairLossOptions> = Object.freeze({ beta: 0.1, delta: 0 });

/**
 * The pairwise BCO loss (Jung et al. 2024, arXiv 2404.04656: binary cross-entropy on the implicit
 * rewards r = β·log πθ/πref, chosen labelled 1 and rejected 0, with the reward shift δ; TRL
 * `loss_type="bco_pair"`):
 *
 *   losses = −log σ(βa − δ) − log σ(−(βb − δ)).
 *
 * δ: the paper shifts by a moving average of the rewards, and TRL 0.x kept it in `self.running`
 * (RunningMoments: after each batch, the running mean of the batch means of
 * concat(βa, βb), updated before use; its count starts at 1e-24, so the first step uses the batch's
 * own mean). TRL 1.x uses δ = 0. Here δ is the `delta` option, default 0; for the paper's shift keep
 * the running mean in the trainer, e.g. after step t with batch mean m_t = (mean(chosenRewards) +
 * mean(rejectedRewards)) / 2: δ ← δ + (m_t − δ) / t, and pass it to the next call. δ is a constant
 * here, so it takes no gradient (TRL detaches it too).
 *
 * @example
 * ```ts
 * let delta = 0; // running mean of the rewards, kept by the trainer
 * const { loss, losses, chosenRewards, rejectedRewards } = bcoPairLoss(logps, { beta: 0.1, delta }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function bcoPairLoss(inputs: PreferenceLogps, options?: Partial<BcoPairLossOptions>): PreferenceLossOutput {
  const owner = 'bcoPairLoss';
  const { beta, delta } = resolveOptions(owner, options, defaultBcoPairLossOptions);
  checkBeta(owner, beta);
  checkNumber(owner, 'delta', delta, 'a finite number (the running mean of the rewards)', () => true);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => {
    const chosen = tf.softplus(tf.neg(tf.sub(tf.mul(a, beta), delta))); // −log σ(βa − δ)
    const rejected = tf.softplus(tf.sub(tf.mul(b, beta), delta)); // −log σ(−(βb − δ))
    return tf.add(chosen, rejected);
  });
}

/** Options of {@link ncaPairLoss}. */
export interface NcaPairLossOptions {
  /** β, the scale of the implicit reward; TRL's default 0.1. */
  beta: number;
}

/** TRL's default: β = 0.1. */
export const defaultNcaPairLossOptions: Readonly<NcaPairLossOptions> = Object.freeze({ beta: 0.1 });

/**
 * The pairwise NCA loss (Chen et al. 2024, arXiv 2402.05369: Noise Contrastive Alignment for
 * preference pairs, K = 2; TRL `loss_type="nca_pair"`), which pushes the chosen likelihood up in
 * absolute terms rather than only relative to the rejected one:
 *
 *   losses = −log σ(βa) − ½·log σ(−βa) − ½·log σ(−βb).
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = ncaPairLoss(logps, { beta: 0.1 }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function ncaPairLoss(inputs: PreferenceLogps, options?: Partial<NcaPairLossOptions>): PreferenceLossOutput {
  const owner = 'ncaPairLoss';
  const { beta } = resolveOptions(owner, options, defaultNcaPairLossOptions);
  checkBeta(owner, beta);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => {
    const ra = tf.mul(a, beta); // [B] chosen reward
    const rb = tf.mul(b, beta); // [B] rejected reward
    return tf.add(tf.softplus(tf.neg(ra)), tf.mul(tf.add(tf.softplus(ra), tf.softplus(rb)), 0.5));
  });
}

/** Options of {@link sppoHardLoss}. */
export interface SppoHardLossOptions {
  /** β, with η = 1/β the paper's step size: the targets are a = +1/(2β), b = −1/(2β); TRL's default 0.1. */
  beta: number;
}

/** TRL's default: β = 0.1. */
export const defaultSppoHardLossOptions: Readonly<SppoHardLossOptions> = Object.freeze({ beta: 0.1 });

/**
 * SPPO with hard labels (Wu et al. 2024, arXiv 2405.00675, eq. 4.7 of Algorithm 1,
 * (log πθ(y)/πt(y) − η(P̂(y ≻ πt) − ½))², with P̂ = 1 for the winner and 0 for the loser and
 * η = 1/β; TRL `loss_type="sppo_hard"`):
 *
 *   losses = (a − 1/(2β))² + (b + 1/(2β))².
 *
 * The paper's P̂ is a soft win rate estimated with PairRM outside the trainer; this is TRL's hard
 * version, and the reference plays the paper's πt (the previous iterate).
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = sppoHardLoss(logps, { beta: 0.1 }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function sppoHardLoss(inputs: PreferenceLogps, options?: Partial<SppoHardLossOptions>): PreferenceLossOutput {
  const owner = 'sppoHardLoss';
  const { beta } = resolveOptions(owner, options, defaultSppoHardLossOptions);
  checkBeta(owner, beta);
  const half = 0.5 / beta;
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => tf.add(tf.square(tf.sub(a, half)), tf.square(tf.add(b, half))));
}

/** Options of {@link apoZeroLoss}. */
export interface ApoZeroLossOptions {
  /** β, the scale of the implicit reward; TRL's default 0.1. */
  beta: number;
}

/** TRL's default: β = 0.1. */
export const defaultApoZeroLossOptions: Readonly<ApoZeroLossOptions> = Object.freeze({ beta: 0.1 });

/**
 * APO-zero (D'Oosterlinck et al. 2024, arXiv 2408.06266, eq. 7; TRL `loss_type="apo_zero"`): raise
 * the chosen likelihood and lower the rejected one, each anchored to the reference. For when the
 * chosen outputs are better than the model's own:
 *
 *   losses = 1 − σ(βa) + σ(βb)   (computed as σ(−βa) + σ(βb)).
 *
 * The paper's eq. 7 is −σ(βa) + σ(βb); TRL adds the constant 1 so that losses lie in [0, 2]. We
 * follow TRL: same gradient, and the logged loss matches TRL's.
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = apoZeroLoss(logps, { beta: 0.1 }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function apoZeroLoss(inputs: PreferenceLogps, options?: Partial<ApoZeroLossOptions>): PreferenceLossOutput {
  const owner = 'apoZeroLoss';
  const { beta } = resolveOptions(owner, options, defaultApoZeroLossOptions);
  checkBeta(owner, beta);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => tf.add(tf.sigmoid(tf.mul(a, -beta)), tf.sigmoid(tf.mul(b, beta))));
}

/** Options of {@link apoDownLoss}. */
export interface ApoDownLossOptions {
  /** β, the scale of the implicit reward; TRL's default 0.1. */
  beta: number;
}

/** TRL's default: β = 0.1. */
export const defaultApoDownLossOptions: Readonly<ApoDownLossOptions> = Object.freeze({ beta: 0.1 });

/**
 * APO-down (D'Oosterlinck et al. 2024, arXiv 2408.06266, eq. 8; TRL `loss_type="apo_down"`): lower
 * the chosen likelihood, and the rejected one more. For when the model's own outputs are already
 * better than the chosen ones:
 *
 *   losses = σ(βa) + 1 − σ(β(a − b))   (computed as σ(βa) + σ(−β(a − b))).
 *
 * The paper's eq. 8 is σ(βa) − σ(β(a − b)); TRL adds the constant 1 (losses in [0, 2]). We follow
 * TRL: same gradient, and the logged loss matches TRL's.
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = apoDownLoss(logps, { beta: 0.1 }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function apoDownLoss(inputs: PreferenceLogps, options?: Partial<ApoDownLossOptions>): PreferenceLossOutput {
  const owner = 'apoDownLoss';
  const { beta } = resolveOptions(owner, options, defaultApoDownLossOptions);
  checkBeta(owner, beta);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => tf.add(tf.sigmoid(tf.mul(a, beta)), tf.sigmoid(tf.mul(tf.sub(a, b), -beta))));
}
