import { tf } from './tf.js';
import { PosttrainError, formatShape } from './errors.js';
import { checkNumber, describe } from './options.js';

/**
 * Clips gradients by their global L2 norm, as torch.nn.utils.clip_grad_norm_: the norm of all
 * gradients together (as if concatenated), `coef = min(1, maxNorm / (total + 1e-6))`, and every
 * gradient multiplied by `coef`. The map's entries are replaced in place by the clipped tensors
 * (the originals are disposed), and the pre-clip total norm is returned as a number, read from
 * the device once. On WebGPU in Node, where synchronous reads are unavailable, use
 * {@link clipGradNormAsync}. A non-finite norm is returned as is (and turns the gradients into NaN,
 * as in PyTorch): check it before stepping.
 *
 * @example
 * ```ts
 * const { value, grads } = valueAndGrads(() => model.loss(batch), params);
 * const totalNorm = clipGradNorm(grads, 1.0); // grads now have a global norm ≤ 1
 * optimizer.step(grads);
 * ```
 */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): number {
  const total = clipInPlace('clipGradNorm', grads, maxNorm);
  try {
    return total.dataSync()[0];
  } catch (error) {
    throw new PosttrainError('NOT_SUPPORTED', `clipGradNorm: the ${tf.getBackend()} backend cannot read the norm synchronously (the gradients were clipped)`, {
      cause: error,
      help: 'use `await clipGradNormAsync(grads, maxNorm)` on this backend',
    });
  } finally {
    total.dispose();
  }
}

/**
 * {@link clipGradNorm} with an asynchronous read of the norm, for backends without synchronous
 * reads (WebGPU in Node). The gradients are clipped before the first `await`.
 *
 * @example
 * ```ts
 * const totalNorm = await clipGradNormAsync(grads, 1.0);
 * ```
 */
export async function clipGradNormAsync(grads: Map<string, tf.Tensor>, maxNorm: number): Promise<number> {
  const total = clipInPlace('clipGradNormAsync', grads, maxNorm);
  try {
    return (await total.data())[0];
  } finally {
    total.dispose();
  }
}

/** Clips the map's tensors in place and returns the pre-clip total norm as a scalar tensor. */
function clipInPlace(owner: string, grads: Map<string, tf.Tensor>, maxNorm: number): tf.Scalar {
  if (!(grads instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected gradients as a Map of path → tf.Tensor; got ${describe(grads)}`);
  }
  checkNumber(owner, 'maxNorm', maxNorm, '> 0', (v) => v > 0);
  for (const [path, g] of grads) {
    if (!(g instanceof tf.Tensor) || g.isDisposed) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected the gradient of "${path}" to be a live tf.Tensor; got ${g instanceof tf.Tensor ? 'a disposed tensor' : describe(g)}`);
    }
    if (g.dtype !== 'float32') {
      throw new PosttrainError('DTYPE_MISMATCH', `${owner}: expected float32 gradients; "${path}" is ${g.dtype} ${formatShape(g.shape)}`);
    }
  }
  if (grads.size === 0) return tf.scalar(0);
  const entries = [...grads];
  const { total, clipped } = tf.tidy(() => {
    // Per-tensor norms, then the norm of the norms: torch's order of summation.
    const norms = entries.map(([, g]) => tf.sqrt(tf.sum(tf.square(g))));
    const totalNorm = tf.sqrt(tf.sum(tf.square(tf.stack(norms)))) as tf.Scalar;
    const coef = tf.minimum(tf.div(maxNorm, tf.add(totalNorm, 1e-6)), 1);
    return { total: totalNorm, clipped: entries.map(([, g]) => tf.mul(g, coef)) };
  });
  entries.forEach(([path, g], i) => {
    g.dispose();
    grads.set(path, clipped[i]);
  });
  return total;
}
