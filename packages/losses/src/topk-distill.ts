// Distillation from a teacher cached as its top-K log-probs per token ("sparse" KD): the forward KL
// from the teacher's renormalised top-K distribution to the student's full one.
import { PosttrainError, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';
import { checkDistillOptions, defaultDistillOptions, reduce, type DistillOptions, type DistillOutput } from './distill.js';
import { topKKlKernel } from './distill-kernels.js';

const owner = 'topKForwardKl';

function checkTopKInputs(studentLogits: tf.Tensor, teacherIds: tf.Tensor, teacherLogprobs: tf.Tensor, mask: tf.Tensor): void {
  const all: Record<string, tf.Tensor> = { studentLogits, teacherIds, teacherLogprobs, mask };
  for (const [name, t] of Object.entries(all)) {
    if (!(t instanceof tf.Tensor)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} to be a tensor; got ${t === null ? 'null' : typeof t}`);
    }
  }
  const [B, T, V] = studentLogits.shape;
  const K = teacherIds.shape[2] as number;
  const isBT = (x: tf.Tensor) => x.rank === 2 && x.shape[0] === B && x.shape[1] === T;
  const ok =
    studentLogits.rank === 3 &&
    V > 0 &&
    teacherIds.rank === 3 &&
    teacherIds.shape[0] === B &&
    teacherIds.shape[1] === T &&
    teacherLogprobs.rank === 3 &&
    teacherIds.shape.every((d, i) => d === teacherLogprobs.shape[i]) &&
    isBT(mask);
  if (!ok) {
    const got = Object.entries(all)
      .map(([n, t]) => `${n} ${formatShape(t.shape)}`)
      .join(', ');
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected studentLogits [B, T, V], teacherIds and teacherLogprobs [B, T, K] and mask [B, T]; got ${got}`, {
      help: "cache the teacher's top-K ids and log-probs at the student's positions (same batch, same tokenizer); the mask is float32 1 where a token counts and 0 elsewhere",
    });
  }
  if (K < 1 || K > V) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected 1 ≤ K ≤ V (K teacher ids per token, into the student's vocabulary of V); got K = ${K}, V = ${V}`, {
      help: 'teacher and student must share one vocabulary; K = V (every id once) is the full forwardKl',
    });
  }
  if (B * T * V >= 2 ** 31) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected B·T·V < 2³¹ (the ids are read through int32 indices into the flattened logits); got ${formatShape(studentLogits.shape)}`, {
      help: 'split the batch into smaller micro-batches',
    });
  }
  const dtypes: [string, tf.Tensor, tf.DataType, string][] = [
    ['studentLogits', studentLogits, 'float32', 'float32 logits'],
    ['teacherIds', teacherIds, 'int32', 'int32 token ids'],
    ['teacherLogprobs', teacherLogprobs, 'float32', 'float32 log-probs'],
  ];
  for (const [name, t, dtype, what] of dtypes) {
    if (t.dtype !== dtype) {
      throw new PosttrainError('DTYPE_MISMATCH', `${owner}: expected ${name} to be ${what}; got ${t.dtype}`, { help: `tf.cast(${name}, '${dtype}')` });
    }
  }
}

/**
 * Forward KL from a teacher cached as its top-K next-token log-probs, for distillation without
 * the teacher's full `[B, T, V]` logits (the "sparse" or top-k KD of logit caches). Per token, with
 * ids_k = `teacherIds[b, t, k]` and ℓ_k = `teacherLogprobs[b, t, k]` (the teacher's log-probs at T = 1):
 *
 * - q_k = softmax_k(ℓ_k / T): the teacher's distribution restricted to its K tokens and renormalised,
 *   re-tempered from the cached T = 1 log-probs (ℓ_k / T differs from the teacher's logits / T by a
 *   per-token constant, which the softmax removes);
 * - log p_s(v) = log softmax(studentLogits / T)(v) over all V tokens, read at the ids;
 * - KL = Σ_k q_k (log q_k − log p_s(id_k)), times T² when `scaleByTemperatureSquared` (as
 *   {@link forwardKl}, Hinton et al. 2015, arXiv 1503.02531, §2), 0 where the mask is 0;
 * - loss = Σ perToken / max(Σ mask, 1), the same {@link DistillOutput} as {@link forwardKl}.
 *
 * Restricting the teacher to its top K and renormalising is this package's choice (the mass outside
 * the top K is dropped, not spread over the other tokens); the student keeps its full normalisation,
 * so its mass outside the ids is pushed down. With K = V and every id once this is exactly
 * {@link forwardKl} (bit for bit with ids 0 … V − 1 and the teacher's logits or log-probs as
 * `teacherLogprobs`). K = 1 is the cross-entropy −log p_s(id_1) (times T²).
 *
 * Inputs: ids must lie in [0, V) in every row, masked ones included (not checked: that would read
 * them back from the device) and must be distinct within each unmasked row (not checked either: a
 * repeated id gives a wrong gradient). A cached row with fewer than K tokens can be padded with
 * unused ids and log-probs of −∞ (q = 0, they add nothing); each row needs one finite log-prob.
 * Gradient: only to `studentLogits` (the teacher's tensors are constants), (p_s − q at the ids) / T
 * per token. Stability: the student's log-softmax subtracts the max, so logits of ±100 and beyond
 * are fine; an all-masked batch gives 0 with a zero gradient. Memory: one tape node keeping the
 * student's logits (which wasm copies) and `[B, T, K]` tensors; the ids are gathered from the
 * flattened log-softmax, so no one-hot `[B, T, K, V]` and at most two `[B, T, V]` temporaries exist
 * at once, forward or backward. B·T·V must stay below 2³¹ (int32 indices).
 *
 * @example
 * ```ts
 * const student = tf.randomNormal([2, 5, 32]);                                   // [B, T, V]
 * // The cache: the teacher's top 8 ids and log-probs at T = 1 per token, [B, T, K] each.
 * const { indices: teacherIds, values: teacherLogprobs } = tf.tidy(() => tf.topk(tf.logSoftmax(tf.randomNormal([2, 5, 32], 0, 3)), 8));
 * const mask = tf.ones([2, 5]);                                                   // [B, T] float32 0/1
 * const { loss, perToken } = topKForwardKl(student, teacherIds, teacherLogprobs, mask, { temperature: 2 });
 * tf.dispose([loss, perToken, student, teacherIds, teacherLogprobs, mask]);
 * ```
 */
export function topKForwardKl(studentLogits: tf.Tensor, teacherIds: tf.Tensor, teacherLogprobs: tf.Tensor, mask: tf.Tensor, options?: Partial<DistillOptions>): DistillOutput {
  const o = resolveOptions(owner, options, defaultDistillOptions);
  checkDistillOptions(owner, o);
  checkTopKInputs(studentLogits, teacherIds, teacherLogprobs, mask);
  const { temperature, scaleByTemperatureSquared } = o;
  const [B, T, V] = studentLogits.shape as [number, number, number];
  return tf.tidy(() => {
    // flat[b, t, k] = (b·T + t)·V + id: the index of the student's logit for id in its [B·T·V] array.
    const row = tf.add(tf.mul(tf.reshape(tf.range(0, B, 1, 'int32'), [B, 1, 1]), tf.scalar(T, 'int32')), tf.reshape(tf.range(0, T, 1, 'int32'), [1, T, 1])); // [B, T, 1]
    const flat = tf.add(tf.mul(row, tf.scalar(V, 'int32')), teacherIds); // [B, T, K] int32
    const kl = topKKlKernel(temperature, flat, teacherLogprobs)(studentLogits); // [B, T]
    return { ...reduce(kl, mask, scaleByTemperatureSquared ? temperature * temperature : 1) };
  });
}
