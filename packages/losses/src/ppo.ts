// PPO's clipped policy and value losses over the tokens of a batch of responses.
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';

/**
 * Checks that every named input is a rank-2 tensor of one shape `[B, T]` (entries named in
 * `optional` may be undefined and are then skipped); throws SHAPE_MISMATCH listing every shape
 * otherwise, INVALID_ARGUMENT for a missing or non-tensor input. Returns `[B, T]`. Shared by the
 * token-level RL losses (ppo.ts, gae.ts, grpo.ts); not exported from the package.
 */
export function checkTokenMatrices(owner: string, inputs: Record<string, tf.Tensor | undefined>, help: string, optional: readonly string[] = []): [number, number] {
  for (const [name, t] of Object.entries(inputs)) {
    if (t === undefined && optional.includes(name)) continue;
    if (!(t instanceof tf.Tensor)) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} to be a [B, T] tensor; got ${t === undefined ? 'undefined' : typeof t}`);
  }
  const entries = Object.entries(inputs).filter((e): e is [string, tf.Tensor] => e[1] !== undefined);
  const [, first] = entries[0];
  if (first.rank !== 2 || entries.some(([, t]) => t.rank !== 2 || t.shape[0] !== first.shape[0] || t.shape[1] !== first.shape[1])) {
    const shapes = entries.map(([n, t]) => `${n} ${formatShape(t.shape)}`).join(', ');
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${entries.map(([n]) => n).join(', ')} to share one shape [B, T]; got ${shapes}`, { help });
  }
  return first.shape as [number, number];
}

/** Σ x·mask / max(Σ mask, 1): a masked token mean that is 0, not NaN, when nothing is unmasked. */
function maskedTokenMean(x: tf.Tensor, mask: tf.Tensor, count: tf.Tensor): tf.Scalar {
  return tf.div(tf.sum(tf.mul(x, mask)), count) as tf.Scalar;
}

/** The per-token inputs of {@link ppoPolicyLoss}, each `[B, T]` float32. */
export interface PpoPolicyInputs {
  /** Log-probs of the sampled tokens under the policy being trained (the gradient flows here). */
  logprobs: tf.Tensor;
  /** Their log-probs under the policy that sampled them (constants). */
  oldLogprobs: tf.Tensor;
  /** Per-token advantages, e.g. {@link gae}'s (whitened) `advantages` (constants). */
  advantages: tf.Tensor;
  /** 1 where a token counts, 0 where it is padding (float32 0/1; bool is cast). */
  mask: tf.Tensor;
}

/** Options of {@link ppoPolicyLoss}. */
export interface PpoPolicyLossOptions {
  /** ε of the ratio clip [1 − ε, 1 + ε], in (0, 1). TRL's `cliprange`, default 0.2. */
  clipRange: number;
  /** c of dual-clip PPO (Ye et al. 2020), > 1: for A < 0 the loss is capped at −c·A. `null` (default): off. */
  dualClip: number | null;
}

export const defaultPpoPolicyLossOptions: Readonly<PpoPolicyLossOptions> = Object.freeze({ clipRange: 0.2, dualClip: null });

/** What {@link ppoPolicyLoss} returns: scalars the caller disposes. Only `loss` is meant for gradients. */
export interface PpoPolicyOutput {
  /** Masked token mean of the clipped surrogate loss. */
  loss: tf.Scalar;
  /** Fraction of unmasked tokens where the clipped term is the larger one (TRL's `policy/clipfrac`). */
  clipFraction: tf.Scalar;
  /** Fraction of unmasked tokens where the dual clip caps the loss (0 when `dualClip` is null). */
  dualClipFraction: tf.Scalar;
  /** 0.5 · masked mean of (logprobs − oldLogprobs)², i.e. the k2 estimate of KL(π_old‖π) (TRL's `policy/approxkl`). */
  approxKl: tf.Scalar;
  /** Masked mean, min and max of the ratio π/π_old (0 when every token is masked). */
  ratioMean: tf.Scalar;
  ratioMin: tf.Scalar;
  ratioMax: tf.Scalar;
}

/**
 * PPO's clipped surrogate policy loss (Schulman et al. 2017, arXiv 1707.06347, eq. 7), per token and averaged over
 * the unmasked tokens of the batch, as TRL's PPO trainer does:
 * `loss = mean_t max(−A·r, −A·clip(r, 1 − ε, 1 + ε))` with `r = exp(logprobs − oldLogprobs)`.
 * With `dualClip: c` (dual-clip PPO, Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL", arXiv 1912.09729) tokens with
 * A < 0 are further capped at −c·A, so a huge ratio on a bad token cannot dominate the batch.
 *
 * Masked positions may hold anything (TRL fills them with 1.0): the log-ratio and the advantage
 * are replaced by 0 there before any `exp`, so they add nothing, not even NaN, to the loss or its
 * gradient; an all-masked batch gives a loss of 0. Statistics are computed from the same tensors
 * but are for logging: differentiate `loss` only.
 *
 * @example
 * ```ts
 * const { advantages } = gae(rewards, values, mask);          // [B, T]
 * const whitened = maskedWhiten(advantages, mask);             // as TRL does
 * const { loss, clipFraction, approxKl } = ppoPolicyLoss(
 *   { logprobs, oldLogprobs, advantages: whitened, mask },     // each [B, T]
 *   { clipRange: 0.2 },
 * );
 * ```
 */
export function ppoPolicyLoss(inputs: PpoPolicyInputs, options?: Partial<PpoPolicyLossOptions>): PpoPolicyOutput {
  const owner = 'ppoPolicyLoss';
  const { clipRange, dualClip } = resolveOptions(owner, options, defaultPpoPolicyLossOptions);
  checkNumber(owner, 'clipRange', clipRange, 'a number in (0, 1)', (v) => v > 0 && v < 1);
  if (dualClip !== null) checkNumber(owner, 'dualClip', dualClip, 'null (off) or a number > 1', (v) => v > 1);
  const { logprobs, oldLogprobs, advantages, mask } = inputs ?? ({} as PpoPolicyInputs);
  checkTokenMatrices(
    owner,
    { logprobs, oldLogprobs, advantages, mask },
    'pass per-token tensors of one batch of responses, e.g. logprobs [B, T] from tokenLogprobs and the mask of the response tokens',
  );
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32'); // [B, T]
    const keep = tf.greater(m, 0);
    const zeros = tf.zerosLike(m);
    const count = tf.maximum(tf.sum(m), 1);
    const logRatio = tf.where(keep, tf.sub(tf.cast(logprobs, 'float32'), tf.cast(oldLogprobs, 'float32')), zeros); // [B, T]
    const negAdv = tf.neg(tf.where(keep, tf.cast(advantages, 'float32'), zeros)); // −A, [B, T]
    const ratio = tf.exp(logRatio);
    const unclipped = tf.mul(negAdv, ratio);
    const clipped = tf.mul(negAdv, tf.clipByValue(ratio, 1 - clipRange, 1 + clipRange));
    let perToken = tf.maximum(unclipped, clipped); // [B, T]
    let dualClipFraction = tf.scalar(0) as tf.Scalar;
    if (dualClip !== null) {
      const cap = tf.mul(negAdv, dualClip); // −c·A
      const negative = tf.greater(negAdv, 0); // A < 0
      dualClipFraction = maskedTokenMean(tf.cast(tf.logicalAnd(negative, tf.less(cap, perToken)), 'float32'), m, count);
      perToken = tf.where(negative, tf.minimum(perToken, cap), perToken);
    }
    const any = tf.greater(tf.sum(m), 0);
    const ratioMin = tf.where(any, tf.min(tf.where(keep, ratio, tf.fill(ratio.shape, Infinity))), 0) as tf.Scalar;
    const ratioMax = tf.where(any, tf.max(tf.where(keep, ratio, tf.fill(ratio.shape, -Infinity))), 0) as tf.Scalar;
    return {
      loss: maskedTokenMean(perToken, m, count),
      clipFraction: maskedTokenMean(tf.cast(tf.greater(clipped, unclipped), 'float32'), m, count),
      dualClipFraction,
      approxKl: tf.mul(maskedTokenMean(tf.square(logRatio), m, count), 0.5) as tf.Scalar,
      ratioMean: maskedTokenMean(ratio, m, count),
      ratioMin,
      ratioMax,
    };
  });
}

/** The per-token inputs of {@link ppoValueLoss}, each `[B, T]` float32. */
export interface PpoValueInputs {
  /** The value head's predictions now (the gradient flows here). */
  values: tf.Tensor;
  /** Its predictions when the batch was sampled (constants). */
  oldValues: tf.Tensor;
  /** The regression targets, e.g. {@link gae}'s `returns` (constants). */
  returns: tf.Tensor;
  /** 1 where a value counts, 0 where it is padding (float32 0/1; bool is cast). */
  mask: tf.Tensor;
}

/** Options of {@link ppoValueLoss}. */
export interface PpoValueLossOptions {
  /** ε of the value clip [oldValues − ε, oldValues + ε], in value units, > 0. TRL's `cliprange_value`, default 0.2. */
  clipRangeValue: number;
}

export const defaultPpoValueLossOptions: Readonly<PpoValueLossOptions> = Object.freeze({ clipRangeValue: 0.2 });

/** What {@link ppoValueLoss} returns: scalars the caller disposes. */
export interface PpoValueOutput {
  /** 0.5 · masked token mean of max((v − R)², (clip(v, old ± ε) − R)²). */
  loss: tf.Scalar;
  /** Fraction of unmasked tokens where the clipped error is the larger one (TRL's `val/clipfrac`). */
  clipFraction: tf.Scalar;
}

/**
 * PPO's clipped value loss, as in OpenAI's baselines and TRL's PPO trainer (the value-clipping
 * variant discussed by Engstrom et al. 2020, "Implementation Matters in Deep RL", §3):
 * `loss = 0.5 · mean_t max((v − R)², (clip(v, v_old − ε, v_old + ε) − R)²)` over unmasked tokens.
 *
 * TRL trains the value head on one more position than the policy (its `padding_mask_p1`): pass the
 * mask you gave {@link gae}. Masked positions may hold anything; an all-masked batch gives 0.
 *
 * @example
 * ```ts
 * const { returns } = gae(rewards, oldValues, mask);
 * const { loss, clipFraction } = ppoValueLoss({ values, oldValues, returns, mask }, { clipRangeValue: 0.2 }); // [B, T] each
 * ```
 */
export function ppoValueLoss(inputs: PpoValueInputs, options?: Partial<PpoValueLossOptions>): PpoValueOutput {
  const owner = 'ppoValueLoss';
  const { clipRangeValue } = resolveOptions(owner, options, defaultPpoValueLossOptions);
  checkNumber(owner, 'clipRangeValue', clipRangeValue, 'a number > 0', (v) => v > 0);
  const { values, oldValues, returns, mask } = inputs ?? ({} as PpoValueInputs);
  checkTokenMatrices(owner, { values, oldValues, returns, mask }, 'pass per-token tensors of one batch of responses: the value head output [B, T], the values at sampling time and gae(...).returns');
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const keep = tf.greater(m, 0);
    const zeros = tf.zerosLike(m);
    const count = tf.maximum(tf.sum(m), 1);
    const [v, old, target] = [values, oldValues, returns].map((x) => tf.where(keep, tf.cast(x, 'float32'), zeros));
    const clippedValues = tf.minimum(tf.maximum(v, tf.sub(old, clipRangeValue)), tf.add(old, clipRangeValue));
    const unclipped = tf.square(tf.sub(v, target));
    const clipped = tf.square(tf.sub(clippedValues, target));
    return {
      loss: tf.mul(maskedTokenMean(tf.maximum(unclipped, clipped), m, count), 0.5) as tf.Scalar,
      clipFraction: maskedTokenMean(tf.cast(tf.greater(clipped, unclipped), 'float32'), m, count),
    };
  });
}
