// KTO: unpaired (desirable / undesirable) alignment against a KL reference point.
import { PosttrainError, checkNumber, resolveOptions, stopGradient, tf } from '@posttrain/tensor-core';
import { checkBatchVectors } from './preference-types.js';

/** One completion per example, each labelled desirable or not, and the KL pairs of the reference point. */
export interface KtoInputs {
  /** `[B]` the policy's summed completion log-probs, log π_θ(y|x). */
  policyLogps: tf.Tensor;
  /** `[B]` the frozen reference's, log π_ref(y|x). */
  refLogps: tf.Tensor;
  /**
   * `[B]` which completions are desirable: a bool tensor, or a float32 (or int32) tensor of 0/1.
   * Other float values are not checked (that would read the tensor) and mix the two losses linearly.
   */
  desirable: tf.Tensor;
  /**
   * `[B_KL]` the policy's log-probs of mismatched pairs (x_i with another example's completion), from
   * which the reference point z₀ is estimated; no gradient flows into them. Give both KL inputs, or
   * neither and `options.kl`.
   */
  policyKlLogps?: tf.Tensor;
  /** `[B_KL]` the reference's log-probs of the same mismatched pairs. */
  refKlLogps?: tf.Tensor;
}

export interface KtoLossOptions {
  /** β > 0, the scale of the implied reward β·(log π_θ − log π_ref). */
  beta: number;
  /** λ_D ≥ 0, the weight of the desirable examples' losses. */
  desirableWeight: number;
  /** λ_U ≥ 0, the weight of the undesirable examples' losses. */
  undesirableWeight: number;
  /**
   * A precomputed KL estimate to use as z₀ instead of the KL inputs (e.g. the mean over devices or
   * micro-batches, as TRL gathers it before clamping), clamped at 0 like the estimate; `null` (the
   * default) estimates it from `policyKlLogps` and `refKlLogps`.
   */
  kl: number | null;
}

/**
 * KTO's defaults, TRL's `KTOConfig`: β 0.1, both weights 1; z₀ estimated from the KL inputs.
 * The paper recommends λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3] for n_D desirable and n_U undesirable examples.
 *
 * @example
 * ```ts
 * ktoLoss(inputs, { ...defaultKtoLossOptions, undesirableWeight: 1.33 });
 * ```
 */
export const defaultKtoLossOptions: Readonly<KtoLossOptions> = Object.freeze({ beta: 0.1, desirableWeight: 1, undesirableWeight: 1, kl: null });

/** What {@link ktoLoss} returns; every tensor is new and the caller disposes it. */
export interface KtoLossOutput {
  /** Scalar: the mean of `losses` over the whole batch (TRL concatenates both groups and takes the mean). */
  loss: tf.Scalar;
  /** `[B]` per-example losses, in input order. */
  losses: tf.Tensor1D;
  /** Scalar: the reference point z₀ = max(0, KL estimate) that was used, no gradient. */
  kl: tf.Scalar;
  /**
   * `[B]` β·(policyLogps − refLogps) for desirable examples, 0 for the others. TRL's
   * `rewards/chosen` is sum(chosenRewards) / (number desirable); an empty group gives all zeros.
   */
  chosenRewards: tf.Tensor1D;
  /** `[B]` β·(policyLogps − refLogps) for undesirable examples, 0 for the others. */
  rejectedRewards: tf.Tensor1D;
}

/**
 * KTO, Ethayarajh, Xu, Muennighoff, Jurafsky & Kiela 2024 ("KTO: Model Alignment as Prospect
 * Theoretic Optimization", arXiv:2402.01306), eq. 7. Unpaired: each example is one completion,
 * desirable or not. With ρ = log π_θ(y|x) − log π_ref(y|x) and the reference point
 *
 *     z₀ = max(0, mean(policyKlLogps − refKlLogps))    (no gradient: the paper does not backpropagate it)
 *
 *     losses = λ_D·(1 − σ(β(ρ − z₀)))   desirable
 *     losses = λ_U·(1 − σ(β(z₀ − ρ)))   undesirable
 *
 * i.e. w(y)·(1 − v_KTO(x, y; β)) of eq. 7 (= λ_y − v(x, y) with v = λ_y·σ(·); eq. 8 is the weight
 * guideline λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3]), computed as σ(−·), finite for any ρ. z₀ comes from the
 * mismatched KL pairs or, given, from `options.kl` (then clamped at 0 too). `loss` is the mean of `losses`
 * over the batch, both groups together (0 for B = 0). The rewards are computed beside the loss and
 * not detached (do not differentiate them); `kl` carries no gradient.
 *
 * @example
 * ```ts
 * const out = ktoLoss({
 *   policyLogps: tf.tensor1d([-42, -57]), refLogps: tf.tensor1d([-43, -55]), // [B] summed log-probs
 *   desirable: tf.tensor1d([true, false], 'bool'),                             // [B]
 *   policyKlLogps: tf.tensor1d([-61, -48]), refKlLogps: tf.tensor1d([-61.5, -48.3]), // [B_KL] mismatched pairs
 * });
 * // out.kl ≈ 0.4; out.losses ≈ [0.4850, 0.4403]
 * ```
 */
export function ktoLoss(inputs: KtoInputs, options?: Partial<KtoLossOptions>): KtoLossOutput {
  const owner = 'ktoLoss';
  const o = resolveOptions(owner, options, defaultKtoLossOptions);
  checkNumber(owner, 'beta', o.beta, 'a number > 0', (v) => v > 0);
  checkNumber(owner, 'desirableWeight', o.desirableWeight, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'undesirableWeight', o.undesirableWeight, 'a number ≥ 0', (v) => v >= 0);
  if (o.kl !== null) checkNumber(owner, 'kl', o.kl, 'null or a finite number (a precomputed KL estimate)', () => true);
  const { policyLogps, refLogps, desirable, policyKlLogps, refKlLogps } = inputs ?? ({} as KtoInputs);
  const batch = checkBatchVectors(owner, { policyLogps, refLogps, desirable });
  const klGiven = [policyKlLogps, refKlLogps].filter((t) => t !== undefined).length;
  if (o.kl === null && klGiven !== 2) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${owner}: expected policyKlLogps and refKlLogps (the reference point's mismatched pairs) or options.kl; got ${klGiven === 0 ? 'neither' : `only ${policyKlLogps ? 'policyKlLogps' : 'refKlLogps'}`}`,
      {
        help: "pair each prompt with another example's completion and pass both models' log-probs of those pairs, or pass { kl: 0 } to drop the reference point",
      },
    );
  }
  if (o.kl !== null && klGiven > 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected either the KL inputs or options.kl; got both`, {
      help: 'drop policyKlLogps and refKlLogps when you pass a precomputed kl, or drop options.kl',
    });
  }
  if (o.kl === null) {
    const klBatch = checkBatchVectors(owner, { policyKlLogps, refKlLogps });
    if (klBatch === 0) {
      throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected at least one KL pair in policyKlLogps and refKlLogps; got shape [0]`, {
        help: 'the reference point is the mean over the KL pairs; pass { kl: 0 } to drop it',
      });
    }
  }
  return tf.tidy(() => {
    const kl = (o.kl === null ? stopGradient(tf.maximum(policyKlLogps!.toFloat().sub(refKlLogps!.toFloat()).mean(), 0)) : tf.scalar(Math.max(o.kl, 0))) as tf.Scalar;
    const d = desirable.toFloat(); // [B] 1 desirable, 0 undesirable
    const logRatios = policyLogps.toFloat().sub(refLogps.toFloat()); // [B] ρ
    const margin = kl.sub(logRatios).mul(o.beta); // [B] β(z₀ − ρ)
    // 1 − σ(β(ρ − z₀)) = σ(β(z₀ − ρ)); 1 − σ(β(z₀ − ρ)) = σ(β(ρ − z₀))
    const desirableLosses = tf.sigmoid(margin).mul(o.desirableWeight);
    const undesirableLosses = tf.sigmoid(margin.neg()).mul(o.undesirableWeight);
    const losses = d.mul(desirableLosses).add(tf.onesLike(d).sub(d).mul(undesirableLosses)) as tf.Tensor1D;
    // tfjs-wasm's sum of an empty tensor reads uninitialised memory: B = 0 is spelled out.
    const loss = (batch === 0 ? tf.scalar(0) : losses.mean()) as tf.Scalar;
    const rewards = logRatios.mul(o.beta); // [B]
    return { loss, losses, kl, chosenRewards: rewards.mul(d) as tf.Tensor1D, rejectedRewards: rewards.mul(tf.onesLike(d).sub(d)) as tf.Tensor1D };
  });
}
