// Distillation: divergences between a teacher's and a student's next-token distributions over
// masked tokens, and Hinton's soft-target loss mixed with cross-entropy.
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';
import { asIds, pickLogprobs } from './token-logprobs.js';
import { jsdKernel, klKernel, tvKernel, type Kernel } from './distill-kernels.js';

/**
 * Options of {@link forwardKl}, {@link reverseKl} and {@link totalVariation}.
 * @example `const options: DistillOptions = { temperature: 2, scaleByTemperatureSquared: true };`
 */
export interface DistillOptions {
  /** T > 0: both distributions are softmax(logits / T). Default 1 (TRL's GKD). */
  temperature: number;
  /**
   * Multiply the divergence by T² (Hinton et al. 2015, §2: the soft targets' gradients scale as
   * 1/T², so T² keeps their size comparable across temperatures and next to a hard-label loss).
   * Default true; false gives TRL's `generalized_jsd_loss`, which applies no T². At T = 1 it changes nothing.
   */
  scaleByTemperatureSquared: boolean;
}

/**
 * Defaults of {@link forwardKl}, {@link reverseKl} and {@link totalVariation}: T = 1 (TRL's
 * `generalized_jsd_loss`), T² scaling on (a no-op at T = 1).
 *
 * @example
 * ```ts
 * forwardKl(student, teacher, mask, { ...defaultDistillOptions, temperature: 2 });
 * ```
 */
export const defaultDistillOptions: Readonly<DistillOptions> = Object.freeze({ temperature: 1, scaleByTemperatureSquared: true });

/**
 * Options of {@link generalizedJsd}.
 * @example `const options: GeneralizedJsdOptions = { beta: 0.5, temperature: 1, scaleByTemperatureSquared: true };`
 */
export interface GeneralizedJsdOptions extends DistillOptions {
  /** β ∈ [0, 1], the teacher's weight in the mixture; 0 is forward KL, 1 reverse KL (as TRL). Default 0.5. */
  beta: number;
}

/**
 * Defaults of {@link generalizedJsd}: TRL's `GKDConfig` β = 0.5 and `generalized_jsd_loss` T = 1.
 *
 * @example
 * ```ts
 * generalizedJsd(student, teacher, mask, { ...defaultGeneralizedJsdOptions, beta: 0.9 });
 * ```
 */
export const defaultGeneralizedJsdOptions: Readonly<GeneralizedJsdOptions> = Object.freeze({ beta: 0.5, temperature: 1, scaleByTemperatureSquared: true });

/**
 * What a distillation divergence returns; every tensor is new and the caller disposes it.
 * @example `const { loss, perToken }: DistillOutput = forwardKl(student, teacher, mask);`
 */
export interface DistillOutput {
  /** Scalar: Σ perToken / max(Σ mask, 1), the mean over the batch's unmasked tokens (TRL's 'batchmean' over labelled tokens). */
  loss: tf.Scalar;
  /** `[B, T]` the divergence of each token (T² included when scaled), 0 where the mask is 0; with gradient. */
  perToken: tf.Tensor2D;
}

/**
 * Options of {@link hintonKdLoss}.
 * @example `const options: HintonKdLossOptions = { temperature: 2, alpha: 0.5 };`
 */
export interface HintonKdLossOptions {
  /** T > 0 of the soft targets (the cross-entropy uses the student's logits at T = 1). Default 2. */
  temperature: number;
  /** α ∈ [0, 1], the weight of the soft-target term; 1 − α weighs the cross-entropy. Default 0.5. */
  alpha: number;
}

/**
 * Defaults of {@link hintonKdLoss}: T = 2 and α = 0.5, DistilBERT/DistilGPT-2's (Sanh et al. 2019:
 * `--temperature 2.0`, soft-target and LM weights 0.5 each). TRL has no Hinton KD loss.
 *
 * @example
 * ```ts
 * hintonKdLoss(student, teacher, labels, mask, { ...defaultHintonKdLossOptions, alpha: 0.9 });
 * ```
 */
export const defaultHintonKdLossOptions: Readonly<HintonKdLossOptions> = Object.freeze({ temperature: 2, alpha: 0.5 });

/**
 * What {@link hintonKdLoss} returns; every tensor is a new scalar the caller disposes.
 * @example `const { loss, kd, ce }: HintonKdOutput = hintonKdLoss(student, teacher, labels, mask);`
 */
export interface HintonKdOutput {
  /** α·kd + (1 − α)·ce. */
  loss: tf.Scalar;
  /** T²·KL(teacher_T ‖ student_T), the token mean over the mask ({@link forwardKl}'s loss). With gradient, so it can be reweighted. */
  kd: tf.Scalar;
  /** Mean −log p_student(label) over tokens with mask 1 and label ≠ −100 (0 if none). With gradient. */
  ce: tf.Scalar;
}

/** @internal the distillation functions, as named in their errors. */
export type Owner = 'forwardKl' | 'reverseKl' | 'generalizedJsd' | 'totalVariation' | 'hintonKdLoss' | 'topKForwardKl';

function checkInputs(owner: Owner, studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor, labels?: tf.Tensor): void {
  const all: Record<string, tf.Tensor | undefined> = { studentLogits, teacherLogits, ...(labels === undefined ? {} : { labels }), mask };
  for (const [name, t] of Object.entries(all)) {
    if (!(t instanceof tf.Tensor)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} to be a tensor; got ${t === null ? 'null' : typeof t}`);
    }
  }
  const [B, T, V] = studentLogits.shape;
  const isBT = (x: tf.Tensor) => x.rank === 2 && x.shape[0] === B && x.shape[1] === T;
  const logitsOk = studentLogits.rank === 3 && V > 0 && teacherLogits.rank === 3 && studentLogits.shape.every((d, i) => d === teacherLogits.shape[i]);
  if (!logitsOk || !isBT(mask) || (labels !== undefined && !isBT(labels))) {
    const got = Object.entries(all)
      .map(([n, t]) => `${n} ${formatShape(t!.shape)}`)
      .join(', ');
    const expected = labels === undefined ? 'studentLogits and teacherLogits [B, T, V] and mask [B, T]' : 'studentLogits and teacherLogits [B, T, V], labels and mask [B, T]';
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${expected}; got ${got}`, {
      help: 'run student and teacher on the same batch (same tokenizer, same positions); the mask is float32 1 where a token counts and 0 elsewhere',
    });
  }
}

/** @internal shared with topk-distill.ts; not exported from index.ts. */
export function checkDistillOptions(owner: Owner, o: DistillOptions): void {
  checkNumber(owner, 'temperature', o.temperature, 'a positive number', (v) => v > 0);
  if (typeof o.scaleByTemperatureSquared !== 'boolean') {
    const got = typeof o.scaleByTemperatureSquared === 'string' ? JSON.stringify(o.scaleByTemperatureSquared) : String(o.scaleByTemperatureSquared);
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected scaleByTemperatureSquared to be true or false; got ${got}`);
  }
}

/** Σ of every element; 0 for an empty tensor (wasm's sum of an empty tensor is uninitialised memory). */
const total = (x: tf.Tensor): tf.Tensor => (x.size > 0 ? tf.sum(x) : tf.sum(tf.concat([tf.reshape(x, [0]), tf.zeros([1])])));

/**
 * perToken = divergence · scale · mask and its mean over the unmasked tokens (0 when none).
 * @internal shared with topk-distill.ts; not exported from index.ts.
 */
export function reduce(divergence: tf.Tensor, mask: tf.Tensor, scale: number): DistillOutput {
  const m = tf.cast(mask, 'float32');
  const perToken = tf.mul(divergence, scale === 1 ? m : tf.mul(m, scale)) as tf.Tensor2D; // [B, T]
  const loss = tf.div(total(perToken), tf.maximum(total(m), 1)) as tf.Scalar;
  return { loss, perToken };
}

function divergence(
  owner: Owner,
  kind: 'forward' | 'reverse' | 'tv',
  studentLogits: tf.Tensor,
  teacherLogits: tf.Tensor,
  mask: tf.Tensor,
  options: Partial<DistillOptions> | undefined,
): DistillOutput {
  const o = resolveOptions(owner, options, defaultDistillOptions);
  checkDistillOptions(owner, o);
  checkInputs(owner, studentLogits, teacherLogits, mask);
  const { temperature } = o;
  const kernel: Kernel = kind === 'forward' ? (s, t) => klKernel(temperature)(t, s) : kind === 'reverse' ? klKernel(temperature) : tvKernel(temperature);
  return tf.tidy(() => ({ ...reduce(kernel(studentLogits, teacherLogits), mask, o.scaleByTemperatureSquared ? temperature * temperature : 1) }));
}

/**
 * Forward KL, KL(p_teacher ‖ p_student), of the temperature-softened next-token distributions
 * (Hinton et al. 2015, arXiv 1503.02531, §2: soft targets softmax(z / T), eq. 1, and the T² factor):
 * per token Σ_v p_t (log p_t − log p_s) · T², averaged over the tokens where the mask is 1. The
 * "mode-covering" divergence of word-level KD, and TRL's `generalized_jsd_loss` at β = 0.
 *
 * `mask` is a float32 `[B, T]` of 0/1 (1 = the token counts); a row of zeros adds nothing and a
 * batch of zeros gives loss 0 with a zero gradient, no NaN. Log-probs are computed with the max
 * subtracted, so finite logits of any size (±100 and beyond) are fine; the logits must be finite.
 * Memory: one tape node with a hand-written gradient (as all four divergences here), so the backward
 * pass keeps no `[B, T, V]` intermediate, only the two logits (which the wasm backend copies when
 * saving); at most three `[B, T, V]` temporaries exist at once in the forward, and two besides the
 * two gradients in the backward. The teacher's gradient is always computed (tfjs custom gradients
 * return one per input) and held until the backward pass ends.
 *
 * @example
 * ```ts
 * const student = tf.randomNormal([2, 5, 32]); // [B, T, V]
 * const teacher = tf.randomNormal([2, 5, 32]); // [B, T, V]
 * const mask = tf.ones([2, 5]);                 // [B, T] float32 0/1
 * const { loss, perToken } = forwardKl(student, teacher, mask, { temperature: 2 });
 * tf.dispose([loss, perToken]);
 * ```
 */
export function forwardKl(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor, options?: Partial<DistillOptions>): DistillOutput {
  return divergence('forwardKl', 'forward', studentLogits, teacherLogits, mask, options);
}

/**
 * Reverse KL, KL(p_student ‖ p_teacher), of the temperature-softened distributions: per token
 * Σ_v p_s (log p_s − log p_t) · T², averaged over masked tokens: the "mode-seeking" divergence,
 * the token-level form of MiniLLM's objective (Gu et al. 2024, arXiv 2306.08543, eq. 1) and GKD's
 * reverse KL (Agarwal et al. 2024, §2), TRL's `generalized_jsd_loss` at β = 1. Mask, stability,
 * memory and T² as {@link forwardKl}.
 *
 * @example
 * ```ts
 * const { loss, perToken } = reverseKl(student, teacher, mask); // [B, T, V], [B, T, V], [B, T]
 * tf.dispose([loss, perToken]);
 * ```
 */
export function reverseKl(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor, options?: Partial<DistillOptions>): DistillOutput {
  return divergence('reverseKl', 'reverse', studentLogits, teacherLogits, mask, options);
}

/**
 * Total variation distance ½ Σ_v |p_t − p_s| of the temperature-softened distributions, per token,
 * averaged over masked tokens (the TVD of f-distill, Wen et al. 2023, arXiv 2307.15190, §3, at the
 * token level). Bounded by 1 (times T²). The T² factor is applied as for the KLs for one rule across
 * these functions, though TV's gradient shrinks only as 1/T; pass `scaleByTemperatureSquared: false`
 * for the bare distance. At p_t = p_s exactly the gradient of |·| is taken as 0 (as PyTorch).
 *
 * @example
 * ```ts
 * const { loss, perToken } = totalVariation(student, teacher, mask); // [B, T, V], [B, T, V], [B, T]
 * tf.dispose([loss, perToken]);
 * ```
 */
export function totalVariation(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor, options?: Partial<DistillOptions>): DistillOutput {
  return divergence('totalVariation', 'tv', studentLogits, teacherLogits, mask, options);
}

/**
 * Generalized Jensen–Shannon divergence of GKD (Agarwal et al. 2024, arXiv 2306.13649, eq. 1):
 * with the mixture m = β·p_t + (1 − β)·p_s, per token
 * JSD(β) = β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m), times T², averaged over masked tokens.
 *
 * β = 0 and β = 1 are exactly {@link forwardKl} and {@link reverseKl}, as TRL's
 * `GKDTrainer.generalized_jsd_loss` special-cases them. The formula itself goes to 0 at both ends
 * (JSD(β) ≈ β·KL(p_t ‖ p_s) as β → 0 and (1 − β)·KL(p_s ‖ p_t) as β → 1), so the special cases are a
 * jump in scale, not a limit: TRL's and GKD's convention that β interpolates forward ↔ reverse KL.
 *
 * The mixture is never formed in probability space: with x = log p_s − log p_t + log((1 − β)/β),
 * log p_t − log m = −log β − softplus(x) and log p_s − log m = −log(1 − β) − softplus(−x), each
 * exact where it is weighted by a non-negligible probability, so logits of ±100 (log-probs of −200)
 * lose nothing. Mask and T² as {@link forwardKl}; `scaleByTemperatureSquared: false` reproduces
 * TRL's loss at any temperature.
 *
 * @example
 * ```ts
 * const student = tf.randomNormal([2, 5, 32]); // [B, T, V]
 * const teacher = tf.randomNormal([2, 5, 32]); // [B, T, V]
 * const mask = tf.ones([2, 5]);                 // [B, T]
 * const { loss, perToken } = generalizedJsd(student, teacher, mask, { beta: 0.5 });
 * tf.dispose([loss, perToken]);
 * ```
 */
export function generalizedJsd(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor, options?: Partial<GeneralizedJsdOptions>): DistillOutput {
  const owner = 'generalizedJsd';
  const o = resolveOptions(owner, options, defaultGeneralizedJsdOptions);
  checkNumber(owner, 'beta', o.beta, 'a number in [0, 1] (0 = forward KL, 1 = reverse KL)', (v) => v >= 0 && v <= 1);
  checkDistillOptions(owner, o);
  checkInputs(owner, studentLogits, teacherLogits, mask);
  const { beta, temperature, scaleByTemperatureSquared } = o;
  if (beta === 0) return forwardKl(studentLogits, teacherLogits, mask, { temperature, scaleByTemperatureSquared });
  if (beta === 1) return reverseKl(studentLogits, teacherLogits, mask, { temperature, scaleByTemperatureSquared });
  return tf.tidy(() => ({ ...reduce(jsdKernel(temperature, beta)(studentLogits, teacherLogits), mask, scaleByTemperatureSquared ? temperature * temperature : 1) }));
}

/**
 * Hinton's knowledge-distillation loss (Hinton et al. 2015, arXiv 1503.02531, §2): a weighted sum
 * of the soft-target term, T²·KL(p_teacher,T ‖ p_student,T) ({@link forwardKl} at `temperature`),
 * and the hard-label cross-entropy of the student at T = 1:
 * loss = α·kd + (1 − α)·ce.
 *
 * `labels` `[B, T]` are aligned with the logits: `labels[b, t]` is the token `logits[b, t]` should
 * predict (already shifted, as TRL's GKD slices `logits[:, :-1]` against `labels[:, 1:]`); labels
 * of −100 are ignored, others must lie in [0, V) (not checked). From a causal-LM collator's
 * unshifted labels, pass `logits[:, :-1]` and `labels[:, 1:]`. `ce` is the mean over tokens with
 * mask 1 and label ≠ −100, the token mean of the package's causal-LM loss; `kd` is the mean over
 * tokens with mask 1. Either is 0 (no NaN) when it has no tokens.
 *
 * @example
 * ```ts
 * const student = tf.randomNormal([2, 5, 32]);                 // [B, T, V]
 * const teacher = tf.randomNormal([2, 5, 32]);                 // [B, T, V]
 * const labels = tf.tensor2d([[3, 1, 4, 1, -100], [5, 9, 2, 6, 5]], [2, 5], 'int32'); // [B, T], next tokens
 * const mask = tf.ones([2, 5]);                                // [B, T]
 * const { loss, kd, ce } = hintonKdLoss(student, teacher, labels, mask, { temperature: 2, alpha: 0.5 });
 * tf.dispose([loss, kd, ce]);
 * ```
 */
export function hintonKdLoss(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor, options?: Partial<HintonKdLossOptions>): HintonKdOutput {
  const owner = 'hintonKdLoss';
  const o = resolveOptions(owner, options, defaultHintonKdLossOptions);
  checkNumber(owner, 'temperature', o.temperature, 'a positive number', (v) => v > 0);
  checkNumber(owner, 'alpha', o.alpha, 'a number in [0, 1] (the weight of the soft-target term)', (v) => v >= 0 && v <= 1);
  checkInputs(owner, studentLogits, teacherLogits, mask, labels);
  return tf.tidy(() => {
    const { temperature, alpha } = o;
    const m = tf.cast(mask, 'float32'); // [B, T]
    const kd = reduce(klKernel(temperature)(teacherLogits, studentLogits), m, temperature * temperature).loss;
    // −log p(label) as logsumexp − logit, the label's logit by a gather (the package's pickLogprobs):
    // no [B, T, V] log-softmax, one-hot or copy.
    const targets = asIds(labels); // [B, T] int32
    const keep = tf.notEqual(targets, tf.scalar(-100, 'int32')); // [B, T]
    const weight = tf.mul(m, tf.cast(keep, 'float32')); // [B, T]
    const nll = tf.neg(pickLogprobs(studentLogits, targets, keep)); // [B, T], 0 where the label is −100
    const ce = tf.div(total(tf.mul(nll, weight)), tf.maximum(total(weight), 1)) as tf.Scalar; // +0 with no tokens
    const loss = tf.add(tf.mul(kd, alpha), tf.mul(ce, 1 - alpha)) as tf.Scalar;
    return { loss, kd, ce };
  });
}
