// GRPO: group-relative advantages and the clipped token-level loss with its normalisations.
import { PosttrainError, checkNumber, formatShape, resolveOptions, stopGradient, tf } from '@posttrain/tensor-core';
import { checkTokenMatrices } from './ppo.js';

/**
 * Checks that `rewards` is a `[B]` tensor with B a multiple of `groupSize`; returns B. Shared with
 * rloo.ts; not exported from the package.
 */
export function checkGroupedRewards(owner: string, rewards: tf.Tensor, groupSize: number): number {
  if (!(rewards instanceof tf.Tensor)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected rewards to be a [B] tensor; got ${rewards === undefined ? 'undefined' : typeof rewards}`);
  }
  const help = `order the batch as B / groupSize groups of groupSize consecutive completions of one prompt: [p0c0, p0c1, …, p1c0, …]`;
  if (rewards.rank !== 1) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected rewards of shape [B]; got ${formatShape(rewards.shape)}`, { help });
  }
  const B = rewards.shape[0];
  if (B % groupSize !== 0) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected the batch size B to be a multiple of groupSize ${groupSize}; got rewards ${formatShape(rewards.shape)}`, { help });
  }
  return B;
}

/** Options of {@link grpoAdvantages}. */
export interface GrpoAdvantagesOptions {
  /** Completions per prompt G, an integer ≥ 2, dividing B. TRL's `num_generations`, default 8. */
  groupSize: number;
  /** What the centred rewards are divided by: the group's std ('group', TRL's default), the batch's ('batch') or nothing ('none', Dr. GRPO). */
  scale: 'group' | 'batch' | 'none';
  /** Added to the std before dividing, > 0, so a group of equal rewards gets advantages 0. TRL: 1e-4. */
  epsilon: number;
}

export const defaultGrpoAdvantagesOptions: Readonly<GrpoAdvantagesOptions> = Object.freeze({ groupSize: 8, scale: 'group', epsilon: 1e-4 });

/** What {@link grpoAdvantages} returns: new `[B]` tensors the caller disposes. */
export interface GrpoAdvantagesOutput {
  /** (r − group mean) / (std + ε), or r − group mean with scale 'none'. */
  advantages: tf.Tensor1D;
  /** Each completion's group mean reward. */
  mean: tf.Tensor1D;
  /** The std divided by: the group's (also reported with 'none', as TRL logs it) or the batch's. */
  std: tf.Tensor1D;
}

/**
 * GRPO's outcome-supervision advantages (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, §4.1.2:
 * `Â_i = (r_i − mean(r)) / std(r)` over the G completions of one prompt), as TRL's GRPO trainer
 * computes them (`scale_rewards`): the group mean is subtracted, then the result is divided by
 * `std + epsilon` where std is the group's (`'group'`), the whole batch's (`'batch'`, centred by
 * group all the same) or not at all (`'none'`, as Dr. GRPO, Liu et al. 2025, arXiv 2503.20783, recommends). std is
 * torch's default, with Bessel's correction (divides by n − 1), as TRL uses; a group of equal
 * rewards gets advantages of exactly 0.
 *
 * `rewards` is `[B]` with the completions of each prompt consecutive: B = (number of prompts) ·
 * groupSize. The result carries the rewards' gradient, if any (rewards are normally constants).
 *
 * @example
 * ```ts
 * const rewards = tf.tensor1d([1, 0, 0, 1, 1, 1, 1, 1]);                    // 2 prompts × 4 completions
 * const { advantages } = grpoAdvantages(rewards, { groupSize: 4 });         // ≈ [0.87, −0.87, −0.87, 0.87, 0, 0, 0, 0]
 * ```
 */
export function grpoAdvantages(rewards: tf.Tensor, options?: Partial<GrpoAdvantagesOptions>): GrpoAdvantagesOutput {
  const owner = 'grpoAdvantages';
  const { groupSize, scale, epsilon } = resolveOptions(owner, options, defaultGrpoAdvantagesOptions);
  checkNumber(owner, 'groupSize', groupSize, 'an integer ≥ 2', (v) => Number.isInteger(v) && v >= 2);
  if (!['group', 'batch', 'none'].includes(scale)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected scale to be 'group', 'batch' or 'none'; got ${JSON.stringify(scale)}`);
  }
  checkNumber(owner, 'epsilon', epsilon, 'a number > 0', (v) => v > 0);
  const B = checkGroupedRewards(owner, rewards, groupSize);
  return tf.tidy(() => {
    const r = tf.cast(rewards, 'float32');
    const G = B / groupSize;
    const group = centre(tf.reshape(r, [G, groupSize])); // deviation [G, k], mean and std [G, 1]
    const spread = scale === 'batch' ? centre(tf.reshape(r, [1, B])).std : group.std; // [1, 1] or [G, 1]
    const std = tf.reshape(tf.broadcastTo(spread, [G, groupSize]), [B]);
    const deviation = tf.reshape(group.deviation, [B]);
    return {
      advantages: (scale === 'none' ? deviation : tf.div(deviation, tf.add(std, epsilon))) as tf.Tensor1D,
      mean: tf.reshape(tf.broadcastTo(group.mean, [G, groupSize]), [B]) as tf.Tensor1D,
      std: std as tf.Tensor1D,
    };
  });
}

/**
 * Row-wise deviation from the mean `[G, k]`, mean `[G, 1]` and Bessel-corrected std `[G, 1]` of
 * `x` `[G, k]` (k ≥ 2), computed after shifting by each row's first value: a row of equal values
 * gets deviations of exactly 0 (no rounding residue for 1/(std + ε) to amplify), and near-equal
 * rows keep their precision. Shared with rloo.ts; not exported from the package.
 */
export function centre(x: tf.Tensor): { deviation: tf.Tensor; mean: tf.Tensor; std: tf.Tensor } {
  const [G, k] = x.shape as [number, number];
  const first = tf.slice(x, [0, 0], [G, 1]);
  const shifted = tf.sub(x, first);
  const shiftedMean = tf.mean(shifted, 1, true); // [G, 1]
  const deviation = tf.sub(shifted, shiftedMean);
  const std = tf.sqrt(tf.div(tf.sum(tf.square(deviation), 1, true), k - 1));
  return { deviation, mean: tf.add(first, shiftedMean), std };
}

/** The inputs of {@link grpoLoss}. */
export interface GrpoLossInputs {
  /** `[B, T]` log-probs of the completion tokens under the policy being trained (the gradient flows here). */
  logprobs: tf.Tensor;
  /** `[B, T]` their log-probs under the policy that sampled them. Leave out when on-policy (one step per batch, TRL's `num_iterations=1`): the ratio is then exp(logprobs − stopGradient(logprobs)) = 1 with the gradient of logprobs. */
  oldLogprobs?: tf.Tensor;
  /** `[B, T]` their log-probs under the reference model; required when beta > 0. */
  refLogprobs?: tf.Tensor;
  /** `[B]` one advantage per completion, e.g. {@link grpoAdvantages}' (constants). */
  advantages: tf.Tensor;
  /** `[B, T]` 1 on completion tokens, 0 on padding (float32 0/1; bool is cast). */
  mask: tf.Tensor;
}

/** How {@link grpoLoss} reduces the per-token losses to a scalar (TRL's `loss_type`). */
export type GrpoNormalization = 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';

/** Options of {@link grpoLoss}. */
export interface GrpoLossOptions {
  /** Lower clip ε_low: the ratio is clipped below at 1 − ε_low; in (0, 1). TRL's `epsilon`, default 0.2. */
  epsilonLow: number;
  /** Upper clip ε_high: clipped above at 1 + ε_high; > 0. TRL's `epsilon_high`, default = epsilon = 0.2; DAPO uses 0.28. */
  epsilonHigh: number;
  /** Weight β of the k3 KL to the reference, ≥ 0. TRL's default 0 (no reference model); DeepSeekMath used 0.04. */
  beta: number;
  /** The reduction; TRL's default 'dapo'. See {@link grpoLoss}. */
  normalization: GrpoNormalization;
  /** The constant of 'dr_grpo' (the generation's max completion length), an integer ≥ 1. TRL's default 256. */
  maxCompletionLength: number;
  /**
   * What the importance ratio weighs (TRL's `importance_sampling_level`): each token by its own
   * ratio (`'token'`, GRPO, the default) or every token of a completion by one ratio, the
   * geometric mean of its tokens' ratios (`'sequence'`, GSPO). See {@link grpoLoss}.
   */
  importanceSamplingLevel: 'token' | 'sequence';
}

export const defaultGrpoLossOptions: Readonly<GrpoLossOptions> = Object.freeze({
  epsilonLow: 0.2,
  epsilonHigh: 0.2,
  beta: 0,
  normalization: 'dapo',
  maxCompletionLength: 256,
  importanceSamplingLevel: 'token',
});

/** What {@link grpoLoss} returns: scalars the caller disposes. Only `loss` is meant for gradients. */
export interface GrpoLossOutput {
  loss: tf.Scalar;
  /**
   * Fraction of unmasked tokens with r < 1 − ε_low and A < 0 (TRL's `clip_ratio/low_mean`); with
   * importanceSamplingLevel 'sequence', the fraction of the B completions, as TRL counts it.
   */
  clipRatioLow: tf.Scalar;
  /** Fraction with r > 1 + ε_high and A > 0 (TRL's `clip_ratio/high_mean`); of completions with 'sequence'. */
  clipRatioHigh: tf.Scalar;
  /** Fraction in either (TRL's `clip_ratio/region_mean`); of completions with 'sequence'. */
  clipRatio: tf.Scalar;
  /** Mean k3 KL to the reference over unmasked tokens; only when beta > 0 (TRL's `kl`). */
  kl?: tf.Scalar;
}

const NORMALIZATIONS: readonly GrpoNormalization[] = ['grpo', 'bnpo', 'dr_grpo', 'dapo'];

/**
 * The GRPO loss (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, eq. 3) as TRL's
 * `GRPOTrainer._compute_loss` computes it. Per token, with r = exp(logprobs − oldLogprobs) and
 * the completion's advantage A: `ℓ_t = −min(r·A, clip(r, 1 − ε_low, 1 + ε_high)·A) + β·k3_t`,
 * the asymmetric clip being DAPO's "clip-higher" (Yu et al. 2025, arXiv 2503.14476, the DAPO
 * objective, eq. 8) and k3 the estimator of {@link k3} (log r_ref = refLogprobs − logprobs).
 * The per-token losses of unmasked tokens are reduced by `normalization`:
 * - `'grpo'`: mean over each completion's tokens, then mean over the B completions (eq. 3; an
 *   all-masked row counts as a completion with loss 0). Biased towards short correct answers.
 * - `'bnpo'`: sum over the batch / number of unmasked tokens in the batch.
 * - `'dr_grpo'`: sum over the batch / (B · maxCompletionLength), a constant (Liu et al. 2025,
 *   "Understanding R1-Zero-Like Training", arXiv 2503.20783, Dr. GRPO).
 * - `'dapo'`: token mean over the batch (DAPO's token-level loss, eq. 8), which here equals
 *   `'bnpo'`. TRL differs when it accumulates gradients: its 'dapo' divides by the unmasked
 *   tokens of the whole accumulated global batch (`num_items_in_batch`), its 'bnpo' by the
 *   local batch's (and then by the accumulation steps). To reproduce TRL's 'dapo' over
 *   micro-batches, scale this loss by (local tokens / global tokens) before accumulating.
 *
 * With `importanceSamplingLevel: 'sequence'` this is GSPO (Zheng et al. 2025, "Group Sequence
 * Policy Optimization", arXiv 2507.18071, eqs. 5–7), as TRL's `importance_sampling_level='sequence'`
 * computes it: completion i gets one ratio s_i = exp(Σ_t m_t·(logprobs − oldLogprobs) / max(Σ_t m_t, 1)),
 * the geometric mean of its token ratios (π_θ(y_i)/π_old(y_i))^(1/|y_i|), `[B, 1]`. The clipped
 * term `−min(s_i·A_i, clip(s_i, 1 − ε_low, 1 + ε_high)·A_i)` is the same for all of its tokens and
 * the per-token β·k3 is added to it, then `normalization` reduces as above; the gradient reaches
 * every token through the mean. `'grpo'` gives the paper's objective (a mean over completions);
 * `'bnpo'`, `'dr_grpo'` and `'dapo'` sum over tokens, so they weigh each completion's term by its
 * length (TRL warns about this and recommends `'grpo'` for GSPO). The clip fractions then count
 * completions (of all B, as TRL does), not tokens. The paper clips far tighter (ε_low = 3e-4,
 * ε_high = 4e-4, §5.1), since a length-normalised ratio moves little. On-policy (no
 * oldLogprobs, every ratio 1) both levels give the same loss and gradient, whatever the reduction.
 *
 * Masked positions may hold anything (their log-ratios are set to 0 before any exp); an
 * all-masked batch gives 0. `refLogprobs` is required when beta > 0 and ignored otherwise.
 *
 * @example
 * ```ts
 * const { advantages } = grpoAdvantages(rewards, { groupSize: 8 });          // [B]
 * const { loss, clipRatio } = grpoLoss(
 *   { logprobs, oldLogprobs, refLogprobs, advantages, mask },                // [B, T] and [B]
 *   { epsilonLow: 0.2, epsilonHigh: 0.28, beta: 0.04, normalization: 'dapo' },
 * );
 * // GSPO: one ratio per completion, the paper's reduction and clip range
 * const gspo = grpoLoss(
 *   { logprobs, oldLogprobs, advantages, mask },
 *   { importanceSamplingLevel: 'sequence', normalization: 'grpo', epsilonLow: 3e-4, epsilonHigh: 4e-4 },
 * );
 * ```
 */
export function grpoLoss(inputs: GrpoLossInputs, options?: Partial<GrpoLossOptions>): GrpoLossOutput {
  const owner = 'grpoLoss';
  const { epsilonLow, epsilonHigh, beta, normalization, maxCompletionLength, importanceSamplingLevel } = resolveOptions(owner, options, defaultGrpoLossOptions);
  checkNumber(owner, 'epsilonLow', epsilonLow, 'a number in (0, 1)', (v) => v > 0 && v < 1);
  checkNumber(owner, 'epsilonHigh', epsilonHigh, 'a number > 0', (v) => v > 0);
  checkNumber(owner, 'beta', beta, 'a number ≥ 0', (v) => v >= 0);
  if (!NORMALIZATIONS.includes(normalization)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected normalization to be one of ${NORMALIZATIONS.map((n) => `'${n}'`).join(', ')}; got ${JSON.stringify(normalization)}`);
  }
  checkNumber(owner, 'maxCompletionLength', maxCompletionLength, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (importanceSamplingLevel !== 'token' && importanceSamplingLevel !== 'sequence') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected importanceSamplingLevel to be 'token' or 'sequence'; got ${JSON.stringify(importanceSamplingLevel)}`, {
      help: "'token' weighs each token by its own ratio (GRPO); 'sequence' weighs a whole completion by one ratio (GSPO)",
    });
  }
  const sequence = importanceSamplingLevel === 'sequence';
  const { logprobs, oldLogprobs, refLogprobs, advantages, mask } = inputs ?? ({} as GrpoLossInputs);
  if (beta > 0 && refLogprobs === undefined) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: beta = ${beta} needs refLogprobs, the reference model's log-probs of the completion tokens; got none`, {
      help: "pass refLogprobs [B, T], or set beta: 0 to train without a KL penalty (TRL's default)",
    });
  }
  const help = 'pass per-token tensors [B, T] of one batch of completions and one advantage per completion [B]';
  const [B] = checkTokenMatrices(owner, { logprobs, oldLogprobs, refLogprobs: beta > 0 ? refLogprobs : undefined, mask }, help, ['oldLogprobs', 'refLogprobs']);
  if (!(advantages instanceof tf.Tensor) || advantages.rank !== 1 || advantages.shape[0] !== B) {
    const got = advantages instanceof tf.Tensor ? formatShape(advantages.shape) : typeof advantages;
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected advantages of shape [${B}] (one per completion, B from logprobs ${formatShape(logprobs.shape)}); got ${got}`, { help });
  }
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32'); // [B, T]
    const keep = tf.greater(m, 0);
    const zeros = tf.zerosLike(m);
    const lp = tf.cast(logprobs, 'float32');
    const old = oldLogprobs === undefined ? stopGradient(lp) : tf.cast(oldLogprobs, 'float32');
    const logRatio = tf.where(keep, tf.sub(lp, old), zeros); // [B, T]
    // GSPO: the masked mean log-ratio of each completion, one weight for all of its tokens
    const logWeight = sequence ? tf.div(tf.sum(tf.mul(logRatio, m), 1, true), tf.maximum(tf.sum(m, 1, true), 1)) : logRatio; // [B, 1] or [B, T]
    const ratio = tf.exp(logWeight);
    const A = tf.expandDims(tf.cast(advantages, 'float32'), 1); // [B, 1]
    // [B, T], or [B, 1] for 'sequence' (broadcast over T by the KL term and the mask below)
    let perToken = tf.neg(tf.minimum(tf.mul(ratio, A), tf.mul(tf.clipByValue(ratio, 1 - epsilonLow, 1 + epsilonHigh), A)));
    const count = tf.maximum(tf.sum(m), 1);
    const tokenMean = (x: tf.Tensor) => tf.div(tf.sum(tf.mul(x, m)), count) as tf.Scalar;
    const clipMean = sequence ? (x: tf.Tensor) => tf.mean(x) as tf.Scalar : tokenMean; // TRL: over the B completions
    let kl: tf.Scalar | undefined;
    if (beta > 0) {
      const d = tf.where(keep, tf.sub(tf.cast(refLogprobs!, 'float32'), lp), zeros); // log π_ref − log π
      const perTokenKl = tf.sub(tf.expm1(d), d);
      perToken = tf.add(perToken, tf.mul(perTokenKl, beta));
      kl = tokenMean(perTokenKl);
    }
    let loss: tf.Scalar;
    if (normalization === 'grpo') {
      loss = tf.mean(tf.div(tf.sum(tf.mul(perToken, m), 1), tf.maximum(tf.sum(m, 1), 1))) as tf.Scalar;
    } else if (normalization === 'dr_grpo') {
      loss = tf.div(tf.sum(tf.mul(perToken, m)), B * maxCompletionLength) as tf.Scalar;
    } else {
      loss = tokenMean(perToken); // 'bnpo' and 'dapo'
    }
    const low = tf.logicalAnd(tf.less(ratio, 1 - epsilonLow), tf.less(A, 0));
    const high = tf.logicalAnd(tf.greater(ratio, 1 + epsilonHigh), tf.greater(A, 0));
    const out: GrpoLossOutput = {
      loss,
      clipRatioLow: clipMean(tf.cast(low, 'float32')),
      clipRatioHigh: clipMean(tf.cast(high, 'float32')),
      clipRatio: clipMean(tf.cast(tf.logicalOr(low, high), 'float32')),
    };
    if (kl) out.kl = kl;
    return out as unknown as tf.TensorContainer;
  }) as unknown as GrpoLossOutput;
}
