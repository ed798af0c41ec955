// SimPO: the reference-free, length-normalised preference loss with a target reward margin.
import { checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { checkBatchVectors, type PreferenceLossOutput } from './preference-types.js';

/** The policy's per-token average completion log-probs of a batch of preference pairs. */
export interface SimpoInputs {
  /** `[B]` the chosen completions' per-token average log-probs, (1/|y_w|)·log π(y_w|x). */
  policyChosenLogps: tf.Tensor;
  /** `[B]` the rejected completions' per-token average log-probs, (1/|y_l|)·log π(y_l|x). */
  policyRejectedLogps: tf.Tensor;
}

export interface SimpoLossOptions {
  /** Reward scale β > 0 (the paper's β; TRL's `beta`). */
  beta: number;
  /**
   * Target reward margin γ ≥ 0, in reward units: the loss is −log σ(β·(c − r) − γ). This is the
   * paper's γ and TRL's `simpo_gamma` (TRL writes β·((c − r) − γ/β), the same thing). The SimPO
   * authors' own code takes the ratio γ/β (`gamma_beta_ratio`) instead: pass `gamma: ratio · beta`.
   */
  gamma: number;
  /** Label smoothing ε ∈ [0, 0.5] (TRL's conservative variant, as cDPO); 0 is the paper's loss. */
  labelSmoothing: number;
}

/**
 * SimPO's defaults: β = 2 from the paper (it recommends β 2.0–2.5) and γ = 0.5, TRL's
 * `simpo_gamma`; no label smoothing. TRL itself runs SimPO through `CPOConfig(loss_type='simpo')`
 * whose β defaults to CPO's 0.1: with γ = 0.5 that asks for a margin of γ/β = 5 nats of per-token
 * average log-prob, far outside the paper's regime, so β is not TRL's here. (torchtune's
 * `SimPOLoss` uses the same β 2, γ 0.5.)
 *
 * @example
 * ```ts
 * simpoLoss(inputs, { ...defaultSimpoLossOptions, gamma: 0.55 * defaultSimpoLossOptions.beta });
 * ```
 */
export const defaultSimpoLossOptions: Readonly<SimpoLossOptions> = Object.freeze({ beta: 2, gamma: 0.5, labelSmoothing: 0 });

/**
 * SimPO, Meng, Xia & Chen 2024 ("SimPO: Simple Preference Optimization with a Reference-Free
 * Reward", arXiv:2405.14734), eq. 6: with c and r the per-token average log-probs of the chosen and
 * the rejected completion (eq. 4's length-normalised reward is β·c),
 *
 *     losses = −log σ(β·(c − r) − γ)                                    (ε = 0)
 *     losses = −(1 − ε)·log σ(z) − ε·log σ(−z),  z = β·(c − r) − γ    (TRL's label smoothing)
 *
 * computed as softplus, finite for any margin. `loss` is the mean over the batch (0 for B = 0).
 * `chosenRewards` = β·c and `rejectedRewards` = β·r, as TRL's CPOTrainer logs them; they are
 * computed beside the loss, not from it, so differentiating `loss` never reaches them (tfjs-core
 * 4.22 has no stopGradient: do not differentiate them yourself). No reference model: pass averages,
 * e.g. `sequenceLogprobs(..., { average: true })`, not sums. Every tensor returned is new; the
 * caller disposes them.
 *
 * @example
 * ```ts
 * const c = tf.tensor1d([-0.9, -1.1]); // [B] average log-probs of the chosen completions
 * const r = tf.tensor1d([-1.4, -1.0]); // [B] … of the rejected ones
 * const { loss, losses, chosenRewards, rejectedRewards } = simpoLoss({ policyChosenLogps: c, policyRejectedLogps: r });
 * // losses ≈ [0.474, 1.103] with β 2, γ 0.5
 * ```
 */
export function simpoLoss(inputs: SimpoInputs, options?: Partial<SimpoLossOptions>): PreferenceLossOutput {
  const owner = 'simpoLoss';
  const o = resolveOptions(owner, options, defaultSimpoLossOptions);
  checkNumber(owner, 'beta', o.beta, 'a number > 0', (v) => v > 0);
  checkNumber(owner, 'gamma', o.gamma, 'a number ≥ 0 (a target reward margin)', (v) => v >= 0);
  checkNumber(owner, 'labelSmoothing', o.labelSmoothing, 'a number in [0, 0.5]', (v) => v >= 0 && v <= 0.5);
  const { policyChosenLogps, policyRejectedLogps } = inputs ?? ({} as SimpoInputs);
  const batch = checkBatchVectors(owner, { policyChosenLogps, policyRejectedLogps });
  return tf.tidy(() => {
    const chosen = policyChosenLogps.toFloat(); // [B]
    const rejected = policyRejectedLogps.toFloat(); // [B]
    const z = chosen.sub(rejected).mul(o.beta).sub(o.gamma); // [B]
    // −log σ(z) = softplus(−z); −log σ(−z) = softplus(z)
    let losses = tf.softplus(z.neg()) as tf.Tensor1D; // [B]
    if (o.labelSmoothing > 0) losses = losses.mul(1 - o.labelSmoothing).add(tf.softplus(z).mul(o.labelSmoothing)) as tf.Tensor1D;
    // tfjs-wasm's sum of an empty tensor reads uninitialised memory: B = 0 is spelled out.
    const loss = (batch === 0 ? tf.scalar(0) : losses.mean()) as tf.Scalar;
    return { loss, losses, chosenRewards: chosen.mul(o.beta) as tf.Tensor1D, rejectedRewards: rejected.mul(o.beta) as tf.Tensor1D };
  });
}
