// torch's .detach() for tfjs, which has no stopGradient op.
import { tf } from './tf.js';

const identityWithZeroGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.zerosLike(dy as tf.Tensor),
})) as (x: tf.Tensor) => tf.Tensor;

/**
 * A new tensor with `x`'s values through which no gradient flows (PyTorch's `x.detach()`,
 * TensorFlow's `tf.stop_gradient`): a gradient taken through it is zero. For statistics computed
 * beside a loss, reference log-probs, old log-probs and advantages.
 *
 * @example
 * ```ts
 * const reward = stopGradient(tf.mul(logRatio, beta)); // logged, never differentiated
 * ```
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return identityWithZeroGradient(x) as T;
}
