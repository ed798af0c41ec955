// ORPO: supervised fine-tuning plus an odds-ratio preference term, no reference model.
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';
import { checkBatchVectors } from './preference-types.js';

/** The policy's per-token average log-probs of a batch of preference pairs, and the SFT term. */
export interface OrpoInputs {
  /** `[B]` the chosen completions' per-token average log-probs, log P_θ(y_w|x) of the paper (eq. 3). */
  policyChosenLogps: tf.Tensor;
  /** `[B]` the rejected completions' per-token average log-probs. */
  policyRejectedLogps: tf.Tensor;
  /**
   * The supervised term L_SFT on the chosen completions: `[B]` one NLL per pair (the paper's
   * per-example L_SFT, usually −policyChosenLogps), or a scalar `[]` (TRL adds one token-mean
   * cross-entropy over the whole chosen batch, prompt included). Either way it is added as given.
   */
  chosenNll: tf.Tensor;
}

export interface OrpoLossOptions {
  /** The odds-ratio weight λ > 0 of eq. 6 (TRL's `beta`). */
  beta: number;
}

/**
 * ORPO's defaults: TRL's `ORPOConfig` β (= the paper's λ) of 0.1.
 *
 * @example
 * ```ts
 * orpoLoss(inputs, { ...defaultOrpoLossOptions, beta: 0.25 });
 * ```
 */
export const defaultOrpoLossOptions: Readonly<OrpoLossOptions> = Object.freeze({ beta: 0.1 });

/** What {@link orpoLoss} returns; every tensor is new and the caller disposes it. */
export interface OrpoLossOutput {
  /** Scalar: the mean of `losses`, i.e. mean NLL + β·mean(oddsRatioLosses). */
  loss: tf.Scalar;
  /** `[B]` chosenNll + β·oddsRatioLosses per pair (a scalar chosenNll is added to each). */
  losses: tf.Tensor1D;
  /** `[B]` log(odds(y_w) / odds(y_l)); its mean is what TRL logs as `log_odds_chosen`. */
  logOdds: tf.Tensor1D;
  /** `[B]` L_OR = −log σ(logOdds) (eq. 7); TRL logs −mean(oddsRatioLosses) as `log_odds_ratio`. */
  oddsRatioLosses: tf.Tensor1D;
  /** `[B]` β·policyChosenLogps, as TRL logs `rewards/chosen`. */
  chosenRewards: tf.Tensor1D;
  /** `[B]` β·policyRejectedLogps. */
  rejectedRewards: tf.Tensor1D;
}

/**
 * The largest x at which log(1 − e^x) is evaluated: x is clamped to ≤ −1e-7 there (and only there),
 * so a completion the policy is certain of (average log-prob 0 in float32) gives log(1 − e^x) ≈ −16.1
 * and a finite log-odds and gradient instead of ∓∞ and NaN. At x ∈ (−1e-7, 0] the log(1 − e^x) term
 * passes no gradient; at x ≤ −1e-7 the clamp changes nothing.
 */
const LOG1MEXP_MAX = -1e-7;

/** log(1 − e^x) for x < 0, Mächler's two branches, both finite on x ≤ −1e-7 (so where() passes no NaN). */
function log1mexp(x: tf.Tensor): tf.Tensor {
  const clamped = tf.minimum(x, LOG1MEXP_MAX);
  const nearZero = clamped.greaterEqual(-Math.LN2); // GreaterEqual has a (zero) gradient registered, Greater has none
  return tf.where(nearZero, clamped.expm1().neg().log(), clamped.exp().neg().log1p());
}

/**
 * ORPO, Hong, Lee & Thorne 2024 ("ORPO: Monolithic Preference Optimization without Reference
 * Model", arXiv:2403.07691), eq. 6–7: with c and r the per-token average log-probs of the chosen
 * and the rejected completion and odds(y) = P/(1 − P) (eq. 4),
 *
 *     logOdds = log(odds(y_w) / odds(y_l)) = (c − r) − (log(1 − e^c) − log(1 − e^r))   (eq. 5)
 *     oddsRatioLosses = −log σ(logOdds)                                                (eq. 7)
 *     losses = chosenNll + β·oddsRatioLosses                                           (eq. 6, β = λ)
 *
 * log(1 − e^x) is computed as log(−expm1(x)) for x ≥ −ln 2 and log1p(−e^x) below, on x clamped to
 * ≤ −1e-7 (see the clamp's note in the source: an average log-prob of exactly 0 stays finite, and a
 * rejected completion near 0 gives a large but finite loss and gradient, ≈ β/|r|). Log-probs > 0 are
 * not valid input and are treated as the clamp. `−log σ` is a softplus, finite for any log-odds.
 * `loss` is the mean of `losses` (0 for B = 0), which for a scalar `chosenNll` is TRL's
 * `nll − β·mean(log σ(logOdds))`. The statistics are computed beside the loss and not detached
 * (tfjs-core 4.22 has no stopGradient): do not differentiate them.
 *
 * @example
 * ```ts
 * const c = tf.tensor1d([-0.4, -0.9]); // [B] average log-probs of the chosen completions
 * const r = tf.tensor1d([-1.2, -0.8]); // [B] … of the rejected ones
 * const { loss, logOdds } = orpoLoss({ policyChosenLogps: c, policyRejectedLogps: r, chosenNll: c.neg() });
 * // logOdds ≈ [1.551, -0.175]
 * ```
 */
export function orpoLoss(inputs: OrpoInputs, options?: Partial<OrpoLossOptions>): OrpoLossOutput {
  const owner = 'orpoLoss';
  const o = resolveOptions(owner, options, defaultOrpoLossOptions);
  checkNumber(owner, 'beta', o.beta, 'a number > 0', (v) => v > 0);
  const { policyChosenLogps, policyRejectedLogps, chosenNll } = inputs ?? ({} as OrpoInputs);
  const batch = checkBatchVectors(owner, { policyChosenLogps, policyRejectedLogps });
  if (!chosenNll || !Array.isArray((chosenNll as tf.Tensor).shape)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected chosenNll to be a [B] or [] tensor; got ${chosenNll === undefined ? 'undefined' : typeof chosenNll}`);
  }
  if (!(chosenNll.rank === 0 || (chosenNll.rank === 1 && chosenNll.shape[0] === batch))) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected chosenNll of shape [${batch}] (one per pair) or [] (a batch mean); got ${formatShape(chosenNll.shape)}`, {
      help: "pass the chosen completions' NLL per pair, e.g. policyChosenLogps.neg(), or one scalar such as causalLmLoss(...).loss",
    });
  }
  return tf.tidy(() => {
    const chosen = policyChosenLogps.toFloat(); // [B]
    const rejected = policyRejectedLogps.toFloat(); // [B]
    const logOdds = chosen.sub(rejected).sub(log1mexp(chosen).sub(log1mexp(rejected))) as tf.Tensor1D; // [B]
    const oddsRatioLosses = tf.softplus(logOdds.neg()) as tf.Tensor1D; // [B] −log σ(logOdds)
    const losses = chosenNll.toFloat().add(oddsRatioLosses.mul(o.beta)) as tf.Tensor1D; // [B]
    // tfjs-wasm's sum of an empty tensor reads uninitialised memory: B = 0 is spelled out.
    const loss = (batch === 0 ? tf.scalar(0) : losses.mean()) as tf.Scalar;
    return { loss, losses, logOdds, oddsRatioLosses, chosenRewards: chosen.mul(o.beta) as tf.Tensor1D, rejectedRewards: rejected.mul(o.beta) as tf.Tensor1D };
  });
}
