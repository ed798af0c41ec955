// The DPO family, part 1: the losses of the margin z = (policyChosen − refChosen) − (policyRejected −
// refRejected) alone: DPO/cDPO, hinge, IPO, robust DPO, EXO. The losses of the two log-ratios
// separately (BCO, NCA, SPPO, APO) are in dpo-variants.ts.
import { PosttrainError, checkNumber, resolveOptions, stopGradient, tf } from '@posttrain/tensor-core';
import { checkBatchVectors, type PreferenceLogps, type PreferenceLossOutput } from './preference-types.js';

/**
 * log σ(x) as −softplus(−x): finite for every finite x (a naive log(sigmoid(x)) is −∞ below about
 * −104 in float32, and its gradient NaN).
 *
 * @example
 * ```ts
 * logSigmoid(tf.tensor1d([-300, 0, 300])); // [-300, -0.693…, -0]
 * ```
 */
export function logSigmoid(x: tf.Tensor): tf.Tensor {
  return tf.neg(tf.softplus(tf.neg(x)));
}

/**
 * The shared plumbing of the pairwise preference losses (internal: not exported from index.ts).
 * Checks the four `[B]` inputs, forms the log-ratios a = policyChosen − refChosen and
 * b = policyRejected − refRejected inside one `tf.tidy`, and returns `losses = lossesOf(a, b)`,
 * their mean (0 for B = 0, with a zero gradient) and the detached rewards βa, βb.
 *
 * @example
 * ```ts
 * const out = pairwisePreferenceLoss('myLoss', logps, 0.1, (a, b) => tf.softplus(tf.mul(tf.sub(b, a), 0.1)));
 * ```
 */
export function pairwisePreferenceLoss(owner: string, inputs: PreferenceLogps, beta: number, lossesOf: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): PreferenceLossOutput {
  if (!inputs || typeof inputs !== 'object') {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${owner}: expected inputs { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps }, each a [B] tensor; got ${inputs === null ? 'null' : typeof inputs}`,
    );
  }
  const { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps } = inputs;
  const B = checkBatchVectors(owner, { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps });
  return tf.tidy(() => {
    const a = tf.sub(policyChosenLogps, refChosenLogps); // [B] log πθ(y_w)/πref(y_w)
    const b = tf.sub(policyRejectedLogps, refRejectedLogps); // [B] log πθ(y_l)/πref(y_l)
    const losses = lossesOf(a, b) as tf.Tensor1D; // [B]
    // The mean, 0 for B = 0. A trailing zero keeps the sum off an empty tensor (the wasm backend's
    // sum of [0] is uninitialised memory) and the gradient path to the inputs intact.
    const loss = tf.div(tf.sum(tf.concat([losses, tf.zeros([1])])), Math.max(B, 1)) as tf.Scalar;
    return {
      loss,
      losses,
      chosenRewards: stopGradient(tf.mul(a, beta)) as tf.Tensor1D,
      rejectedRewards: stopGradient(tf.mul(b, beta)) as tf.Tensor1D,
    };
  });
}

/**
 * Throws INVALID_OPTION unless β is a finite number > 0; returns it.
 *
 * @example
 * ```ts
 * checkBeta('dpoSigmoidLoss', 0); // throws "dpoSigmoidLoss: expected beta to be a number > 0; got 0"
 * ```
 */
export function checkBeta(owner: string, beta: unknown): number {
  return checkNumber(owner, 'beta', beta, 'a number > 0', (v) => v > 0);
}

/** Options of {@link dpoSigmoidLoss}. */
export interface DpoSigmoidLossOptions {
  /** β, the strength of the KL constraint to the reference; TRL's default 0.1. */
  beta: number;
  /** ε of conservative DPO (cDPO): the probability that a label is flipped, in [0, 0.5); 0 is plain DPO. */
  labelSmoothing: number;
}

/** TRL's defaults: β = 0.1, ε = 0 (plain DPO). */
export const defaultDpoSigmoidLossOptions: Readonly<DpoSigmoidLossOptions> = Object.freeze({ beta: 0.1, labelSmoothing: 0 });

/**
 * The DPO loss (Rafailov et al. 2023, arXiv 2305.18290, eq. 7), with the label smoothing of
 * conservative DPO (cDPO, Mitchell 2023, "A note on DPO with noisy preferences"):
 *
 *   losses = −(1 − ε)·log σ(βz) − ε·log σ(−βz),  z = (log πθ(y_w) − log πref(y_w)) − (log πθ(y_l) − log πref(y_l)).
 *
 * TRL 0.x `loss_type="sigmoid"`; TRL 1.x dropped ε from this loss (its `label_smoothing` now feeds
 * only "robust" and "exo_pair"), ε = 0 matches both. Log-sigmoids are −softplus(−x), finite for
 * any margin.
 *
 * @example
 * ```ts
 * const logps = {
 *   policyChosenLogps: tf.tensor1d([-12.5, -40.1]), policyRejectedLogps: tf.tensor1d([-15.0, -38.2]), // [B]
 *   refChosenLogps: tf.tensor1d([-13.0, -40.0]), refRejectedLogps: tf.tensor1d([-14.0, -39.0]),       // [B]
 * };
 * const { loss, losses, chosenRewards, rejectedRewards } = dpoSigmoidLoss(logps, { beta: 0.1 });
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function dpoSigmoidLoss(inputs: PreferenceLogps, options?: Partial<DpoSigmoidLossOptions>): PreferenceLossOutput {
  const owner = 'dpoSigmoidLoss';
  const { beta, labelSmoothing } = resolveOptions(owner, options, defaultDpoSigmoidLossOptions);
  checkBeta(owner, beta);
  checkNumber(owner, 'labelSmoothing', labelSmoothing, 'a number in [0, 0.5) (the label flip probability of cDPO)', (v) => v >= 0 && v < 0.5);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => {
    const x = tf.mul(tf.sub(a, b), beta); // [B] βz
    const clean = tf.softplus(tf.neg(x)); // −log σ(βz)
    return labelSmoothing === 0 ? clean : tf.add(tf.mul(clean, 1 - labelSmoothing), tf.mul(tf.softplus(x), labelSmoothing));
  });
}

/** Options of {@link dpoHingeLoss}. */
export interface DpoHingeLossOptions {
  /** β, the reciprocal of the hinge margin; TRL's default 0.1. */
  beta: number;
}

/** TRL's default: β = 0.1. */
export const defaultDpoHingeLossOptions: Readonly<DpoHingeLossOptions> = Object.freeze({ beta: 0.1 });

/**
 * The hinge loss on the reference-normalised likelihood margin (SLiC, Zhao et al. 2023,
 * arXiv 2305.10425, the rank-calibration loss max(0, δ − log πθ(y_w) + log πθ(y_l)); normalised by
 * the reference as in RSO, Liu et al. 2023, arXiv 2309.06657; TRL `loss_type="hinge"`):
 *
 *   losses = max(0, 1 − βz) = β·max(0, 1/β − z),
 *
 * i.e. SLiC's margin δ = 1/β applied to z, scaled by β. We follow TRL (reference-normalised);
 * SLiC-HF's own loss uses raw log-probs (pass zeros as the reference log-probs for that).
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = dpoHingeLoss(logps, { beta: 0.5 }); // logps: PreferenceLogps, each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function dpoHingeLoss(inputs: PreferenceLogps, options?: Partial<DpoHingeLossOptions>): PreferenceLossOutput {
  const owner = 'dpoHingeLoss';
  const { beta } = resolveOptions(owner, options, defaultDpoHingeLossOptions);
  checkBeta(owner, beta);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => tf.relu(tf.sub(1, tf.mul(tf.sub(a, b), beta))));
}

/** Options of {@link ipoLoss}. */
export interface IpoLossOptions {
  /** τ of the paper, the regularisation strength: the loss pulls z towards 1/(2τ); TRL's default 0.1. */
  beta: number;
}

/** TRL's default: β (τ) = 0.1. */
export const defaultIpoLossOptions: Readonly<IpoLossOptions> = Object.freeze({ beta: 0.1 });

/**
 * The IPO loss (Azar et al. 2023, arXiv 2310.12036, eq. 17; TRL `loss_type="ipo"`), with β in the
 * role of the paper's τ:
 *
 *   losses = (z − 1/(2β))².
 *
 * Pass length-averaged log-probs (`sequenceLogprobs(..., { average: true })`): TRL divides each
 * summed log-ratio by its completion's token count before this loss (confirmed with the IPO
 * authors, per TRL), so that the target 1/(2β) does not depend on length. With summed log-probs
 * the same β means a much stronger pull.
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = ipoLoss(averagedLogps, { beta: 0.1 }); // each [B], per-token means
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function ipoLoss(inputs: PreferenceLogps, options?: Partial<IpoLossOptions>): PreferenceLossOutput {
  const owner = 'ipoLoss';
  const { beta } = resolveOptions(owner, options, defaultIpoLossOptions);
  checkBeta(owner, beta);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => tf.square(tf.sub(tf.sub(a, b), 1 / (2 * beta))));
}

/** Options of {@link robustDpoLoss}. */
export interface RobustDpoLossOptions {
  /** β, as in DPO; TRL's default 0.1. */
  beta: number;
  /** ε, the probability that a preference label is flipped, in [0, 0.5); TRL's default 0 (the paper suggests e.g. 0.1). */
  labelSmoothing: number;
}

/** TRL's defaults: β = 0.1, ε = 0 (which is plain DPO). */
export const defaultRobustDpoLossOptions: Readonly<RobustDpoLossOptions> = Object.freeze({ beta: 0.1, labelSmoothing: 0 });

/**
 * Robust DPO, rDPO (Chowdhury et al. 2024, arXiv 2403.00409: the unbiased loss under labels
 * flipped with probability ε, ((1 − ε)·ℓ(y_w, y_l) − ε·ℓ(y_l, y_w)) / (1 − 2ε) with ℓ the DPO loss;
 * TRL `loss_type="robust"`):
 *
 *   losses = (−(1 − ε)·log σ(βz) + ε·log σ(−βz)) / (1 − 2ε).
 *
 * Unlike cDPO ({@link dpoSigmoidLoss} with `labelSmoothing`), a pair's loss can be negative.
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = robustDpoLoss(logps, { labelSmoothing: 0.1 }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function robustDpoLoss(inputs: PreferenceLogps, options?: Partial<RobustDpoLossOptions>): PreferenceLossOutput {
  const owner = 'robustDpoLoss';
  const { beta, labelSmoothing } = resolveOptions(owner, options, defaultRobustDpoLossOptions);
  checkBeta(owner, beta);
  checkNumber(owner, 'labelSmoothing', labelSmoothing, 'a number in [0, 0.5) (the label flip probability; 0.5 divides by zero)', (v) => v >= 0 && v < 0.5);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => {
    const x = tf.mul(tf.sub(a, b), beta); // [B] βz
    const clean = tf.mul(tf.softplus(tf.neg(x)), 1 - labelSmoothing); // −(1 − ε)·log σ(βz)
    const flipped = tf.mul(tf.softplus(x), labelSmoothing); // −ε·log σ(−βz)
    return tf.div(tf.sub(clean, flipped), 1 - 2 * labelSmoothing);
  });
}

/** Options of {@link exoPairLoss}. */
export interface ExoPairLossOptions {
  /** β (the paper's β_π); TRL's default 0.1. */
  beta: number;
  /** ε, the smoothed target p(y_w ≻ y_l) = 1 − ε, in (0, 0.5); the paper's and TRL's recommended 1e-3. */
  labelSmoothing: number;
}

/** β = 0.1 (TRL), ε = 1e-3 (the value TRL recommends and, before 1.0, substituted for 0). */
export const defaultExoPairLossOptions: Readonly<ExoPairLossOptions> = Object.freeze({ beta: 0.1, labelSmoothing: 1e-3 });

/**
 * The pairwise EXO loss (Ji et al. 2024, arXiv 2402.00856, eq. 16; TRL `loss_type="exo_pair"`):
 * the reverse KL from the model's preference q = σ(βz) to the smoothed label (1 − ε, ε),
 *
 *   losses = σ(βz)·(log σ(βz) − log(1 − ε)) + σ(−βz)·(log σ(−βz) − log ε).
 *
 * Finite for any margin: a saturated σ is an exact 0 multiplying a finite log-sigmoid.
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = exoPairLoss(logps, { beta: 0.1, labelSmoothing: 1e-3 }); // each [B]
 * tf.dispose([loss, losses, chosenRewards, rejectedRewards]);
 * ```
 */
export function exoPairLoss(inputs: PreferenceLogps, options?: Partial<ExoPairLossOptions>): PreferenceLossOutput {
  const owner = 'exoPairLoss';
  const { beta, labelSmoothing } = resolveOptions(owner, options, defaultExoPairLossOptions);
  checkBeta(owner, beta);
  checkNumber(owner, 'labelSmoothing', labelSmoothing, 'a number in (0, 0.5) (log ε must be finite; the paper uses 1e-3)', (v) => v > 0 && v < 0.5);
  return pairwisePreferenceLoss(owner, inputs, beta, (a, b) => {
    const x = tf.mul(tf.sub(a, b), beta); // [B] βz
    const chosen = tf.mul(tf.sigmoid(x), tf.sub(logSigmoid(x), Math.log1p(-labelSmoothing)));
    const rejected = tf.mul(tf.sigmoid(tf.neg(x)), tf.sub(logSigmoid(tf.neg(x)), Math.log(labelSmoothing)));
    return tf.add(chosen, rejected);
  });
}
