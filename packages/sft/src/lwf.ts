// Learning without forgetting for fine-tuning: the `lwf` option of sftTrain — the model before
// fine-tuning as a frozen teacher on the new data, and the softened KL that keeps the student near it.
import { PosttrainError, checkNumber, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { forwardKl } from '@posttrain/losses';
import { createReference, type Reference } from '@posttrain/policy';

/**
 * The `lwf` option of `sftTrain`: learning without forgetting (Li & Hoiem 2016, arXiv 1606.09282,
 * eq. 2 and §3): λ·T²·KL(p_old,T ‖ p_new,T) of the next-token distributions softened by T, averaged
 * over the new data's counted positions ({@link LwfOption.tokens}) and added to each step's loss,
 * where "old" is the model before fine-tuning.
 *
 * @example
 * ```ts
 * const teacher = await loadModel(baseDir); // a second copy of the starting model, for full fine-tuning
 * const lwf: LwfOption = { lambda: 1, temperature: 2, teacher };
 * ```
 */
export interface LwfOption {
  /** λ ≥ 0, the weight of the KL term next to the new task's cross-entropy (λ = 0 trains as without it). */
  lambda: number;
  /** T > 0 of the softened distributions (default 2, Li & Hoiem's); the KL is multiplied by T² (Hinton et al. 2015). */
  temperature?: number;
  /**
   * The model before fine-tuning, a separate frozen copy (same vocabulary), run on every batch.
   * Leave out with `lora`: the policy with its adapters disabled is the old model, at the cost of
   * one extra forward pass per batch and no second copy. Left out without LoRA, the policy's own
   * logits at the counted positions are computed once before the first step and kept, as float32,
   * in memory (records × positions × vocabulary × 4 bytes: fine for small vocabularies, pass a
   * teacher for large ones).
   */
  teacher?: CausalLM;
  /**
   * Which positions of the new data count (default 'all'): 'all', every position whose next token is
   * part of the example (prompt and completion; measured in docs/forgetting.md to protect the old
   * skill more at the same cost to the new one), or 'completion', the positions the cross-entropy
   * trains on.
   */
  tokens?: 'all' | 'completion';
}

/** Defaults of the optional fields of {@link LwfOption}. */
const LWF_DEFAULTS = { temperature: 2, teacher: undefined as CausalLM | undefined, tokens: 'all' as 'all' | 'completion' };

/** A checked `lwf` option with its defaults. @internal */
export type ResolvedLwf = Required<Omit<LwfOption, 'teacher'>> & { teacher: CausalLM | undefined };

/**
 * Checks an `lwf` option: λ a number ≥ 0, T > 0, `tokens` 'all' or 'completion', `teacher` a
 * separate `CausalLM` with the policy's vocabulary (checked by `createReference`). Throws
 * INVALID_OPTION naming `owner`, the field, the expected and the received value. @internal
 */
export function resolveLwfOption(owner: string, lwf: unknown): ResolvedLwf {
  if (typeof lwf !== 'object' || lwf === null || Array.isArray(lwf)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lwf to be { lambda, temperature?, teacher?, tokens? }; got ${describeValue(lwf)}`, {
      help: 'lwf: { lambda: 1, temperature: 2, teacher: frozenCopyOfTheStartingModel } (or lwf: { lambda: 1 } with lora)',
    });
  }
  const o = resolveOptions(`${owner}: lwf`, lwf as Partial<LwfOption>, { lambda: undefined as unknown as number, ...LWF_DEFAULTS });
  checkNumber(owner, 'lwf.lambda', o.lambda, 'a number ≥ 0', (v) => Number.isFinite(v) && v >= 0);
  checkNumber(owner, 'lwf.temperature', o.temperature, 'a number > 0', (v) => Number.isFinite(v) && v > 0);
  if (o.tokens !== 'all' && o.tokens !== 'completion') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lwf.tokens to be 'all' or 'completion'; got ${describeValue(o.tokens)}`);
  }
  return o as ResolvedLwf;
}

/**
 * Where the old model's logits come from: the teacher, the policy with adapters disabled, or the
 * policy before training (precomputed). `createReference` checks the teacher. @internal
 */
export function lwfReference(owner: string, model: CausalLM, lwf: ResolvedLwf, hasLora: boolean): Reference {
  if (lwf.teacher !== undefined && (typeof lwf.teacher !== 'object' || lwf.teacher === null || typeof lwf.teacher.forward !== 'function')) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lwf.teacher to be a CausalLM (a frozen copy of the model before fine-tuning); got ${describeValue(lwf.teacher)}`, {
      help: 'load a second copy of the starting model (loadModel(dir)), or use lora, whose adapters-disabled policy is the old model',
    });
  }
  try {
    return createReference(model, lwf.teacher === undefined ? undefined : { model: lwf.teacher }, { owner, hasLora });
  } catch (error) {
    // createReference names its option `reference`; here it is lwf.teacher.
    if (error instanceof PosttrainError) throw new PosttrainError(error.code, error.message.replace('reference.model', 'lwf.teacher'), { help: error.help, cause: error.cause });
    throw error;
  }
}

/**
 * `[B, T]` float32 mask of the positions whose KL counts: t counts when the token at t + 1 is part
 * of the example ('all': attention mask 1) or is trained on ('completion': label ≠ −100); the last
 * position never does. @internal
 */
export function lwfMask(tokens: ResolvedLwf['tokens'], attentionMask: tf.Tensor2D, labels: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [B, T] = attentionMask.shape;
    const next = tokens === 'all' ? tf.cast(attentionMask, 'float32') : tf.cast(tf.notEqual(labels, tf.scalar(-100, 'int32')), 'float32');
    if (T < 2) return tf.zeros([B, T]) as tf.Tensor2D;
    return tf.concat([tf.slice(next, [0, 1], [B, T - 1]), tf.zeros([B, 1])], 1) as tf.Tensor2D;
  });
}

/**
 * The LwF term of one micro-batch: `lossSum` = λ·Σ_t T²·KL_t · units / max(Σ mask, 1) (so that
 * after the trainer divides by the step's units it is λ × the mean KL over the counted positions),
 * and `value` = λ × that mean, logged as `lwf_loss`. @internal
 */
export function lwfTerm(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor2D, units: tf.Scalar, lwf: ResolvedLwf): { lossSum: tf.Scalar; value: tf.Scalar } {
  return tf.tidy(() => {
    const { loss } = forwardKl(studentLogits, teacherLogits, mask, { temperature: lwf.temperature, scaleByTemperatureSquared: true }); // mean over the mask, T² included
    const value = tf.mul(loss, lwf.lambda) as tf.Scalar;
    return { lossSum: tf.mul(value, units) as tf.Scalar, value };
  });
}
