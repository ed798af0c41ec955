// Means and whitening over the positions a mask selects (PPO's advantages and KL penalties).
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';

/** Options of {@link maskedMean}. */
export interface MaskedMeanOptions {
  /** The axis to average over (negative counts from the end); undefined averages every element. */
  axis: number | undefined;
}

/** Defaults of {@link maskedMean}: every element (TRL's `axis=None`). */
export const defaultMaskedMeanOptions: Readonly<MaskedMeanOptions> = Object.freeze({ axis: undefined });

/** Options of {@link maskedWhiten}. */
export interface MaskedWhitenOptions {
  /** Leave the result centred at 0 (true) or add the masked mean back (false). Default true, TRL's `shift_mean`. */
  shiftMean: boolean;
}

/** Defaults of {@link maskedWhiten}. */
export const defaultMaskedWhitenOptions: Readonly<MaskedWhitenOptions> = Object.freeze({ shiftMean: true });

/** TRL's ε under the square root of {@link maskedWhiten}. */
const WHITEN_EPSILON = 1e-8;

function checkMask(owner: string, x: tf.Tensor, mask: tf.Tensor): void {
  if (x.rank !== mask.rank || x.shape.some((d, i) => d !== mask.shape[i])) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected x and mask of the same shape; got ${formatShape(x.shape)} and ${formatShape(mask.shape)}`, {
      help: 'pass a float32 0/1 mask with one entry per element of x (1 = counted), e.g. the completion mask [B, T]',
    });
  }
}

/** Σ x·m and Σ m over `axis` (all when undefined), masked-out elements replaced by 0 first, so an ∞ or NaN there stays out. */
function maskedSums(x: tf.Tensor, m: tf.Tensor, keep: tf.Tensor, axis: number | undefined): [tf.Tensor, tf.Tensor] {
  const selected = tf.mul(tf.where(keep, x, tf.zerosLike(x)), m);
  return axis === undefined ? [tf.sum(selected), tf.sum(m)] : [tf.sum(selected, axis), tf.sum(m, axis)];
}

/**
 * The mean of `x` over the elements `mask` selects: Σ x·mask / Σ mask, over every element or along
 * `axis` — TRL's `masked_mean`, with which its PPO trainer averages per-token losses and KL over the
 * completion (a utility, no paper equation). `mask` is float32 0/1 of x's shape (bool or int32 is
 * cast). Where nothing is selected the result is 0, not NaN: the count is clamped to at least 1 (TRL
 * divides by zero). Masked-out elements of `x` never reach the result, even when they are ±∞ or NaN.
 *
 * @example
 * ```ts
 * const kl = tf.tensor2d([[0.5, 0.1, 9], [0.2, 7, 7]]);             // [B, T]
 * const completionMask = tf.tensor2d([[1, 1, 0], [1, 0, 0]]);        // [B, T] float32 0/1
 * const klMean = maskedMean(kl, completionMask);                     // scalar 0.8 / 3
 * const perRow = maskedMean(kl, completionMask, { axis: 1 });        // [B]: [0.3, 0.2]
 * ```
 */
export function maskedMean(x: tf.Tensor, mask: tf.Tensor, options?: Partial<MaskedMeanOptions>): tf.Tensor {
  const { axis } = resolveOptions('maskedMean', options, defaultMaskedMeanOptions);
  checkMask('maskedMean', x, mask);
  if (axis !== undefined) {
    checkNumber('maskedMean', 'axis', axis, `an integer in [${-x.rank}, ${x.rank})`, (v) => Number.isInteger(v) && v >= -x.rank && v < x.rank);
  }
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const [sum, count] = maskedSums(x, m, tf.greater(m, 0), axis);
    return tf.div(sum, tf.maximum(count, 1));
  });
}

/**
 * Whitens `x` with the mean and variance of the elements `mask` selects, over the whole tensor:
 * (x − μ) / sqrt(σ² + 1e-8), plus μ again when `shiftMean` is false. TRL's `masked_whiten`, which its
 * PPO trainer applies to the GAE advantages (Schulman et al. 2016, eq. 16): σ² is `masked_var` with
 * Bessel's correction, Σ (x − μ)²·m / Σ m · n / (n − 1) with n = Σ m. Where TRL fails (n = 0 raises,
 * n = 1 divides by zero) we are defined: the factor is n / max(n − 1, 1), and for n < 2 the sum of
 * squares is 0 anyway, so one selected element whitens to 0 and none gives all zeros. Masked-out
 * positions are set to 0 (TRL leaves them whitened, and its PPO trainer zeroes them right after with
 * `masked_fill`), so an all-masked row is 0 and no NaN. `mask` is float32 0/1 of x's shape (bool or
 * int32 is cast).
 *
 * @example
 * ```ts
 * const raw = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);                  // [B, T] advantages
 * const completionMask = tf.tensor2d([[1, 1, 1], [1, 1, 0]]);        // [B, T] float32 0/1
 * const advantages = maskedWhiten(raw, completionMask);             // mean 0, variance 1 on the mask, 0 off it
 * const kept = maskedWhiten(raw, completionMask, { shiftMean: false }); // the masked mean 3 added back
 * ```
 */
export function maskedWhiten(x: tf.Tensor, mask: tf.Tensor, options?: Partial<MaskedWhitenOptions>): tf.Tensor {
  const { shiftMean } = resolveOptions('maskedWhiten', options, defaultMaskedWhitenOptions);
  if (typeof shiftMean !== 'boolean') {
    throw new PosttrainError('INVALID_OPTION', `maskedWhiten: expected shiftMean to be true or false; got ${JSON.stringify(shiftMean) ?? String(shiftMean)}`);
  }
  checkMask('maskedWhiten', x, mask);
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const keep = tf.greater(m, 0);
    const [sum, n] = maskedSums(x, m, keep, undefined);
    const mean = tf.div(sum, tf.maximum(n, 1)); // scalar
    const centered = tf.sub(x, mean);
    const [squares] = maskedSums(tf.square(centered), m, keep, undefined);
    const bessel = tf.div(n, tf.maximum(tf.sub(n, 1), 1)); // Bessel's n / (n − 1) for n ≥ 2; for n < 2 the squares sum to 0
    const variance = tf.mul(tf.div(squares, tf.maximum(n, 1)), bessel);
    const scaled = tf.mul(centered, tf.rsqrt(tf.add(variance, WHITEN_EPSILON)));
    const whitened = shiftMean ? scaled : tf.add(scaled, mean);
    return tf.where(keep, whitened, tf.zerosLike(whitened));
  });
}
