import { tf } from './tf.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

/**
 * GELU with the tanh approximation, GPT-2's `gelu_new` (Hendrycks & Gimpel 2016, eq. in §2):
 * `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. The gradient is written out by hand so the
 * backward pass costs a few element-wise kernels instead of tfjs's generic `pow` gradient.
 *
 * @example
 * ```ts
 * const y = geluTanh(tf.tensor([-1, 0, 1])); // ≈ [-0.1588, 0, 0.8412]
 * ```
 */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  const f = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    const inner = input.mul(input.square().mul(GELU_C).add(1)).mul(SQRT_2_OVER_PI);
    const t = inner.tanh();
    save([input, t]);
    return {
      value: input.mul(t.add(1)).mul(0.5),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ts] = saved;
        // d/dx = 0.5(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3c·x²)
        const dInner = xs
          .square()
          .mul(3 * GELU_C)
          .add(1)
          .mul(SQRT_2_OVER_PI);
        const grad = ts
          .add(1)
          .add(xs.mul(ts.square().neg().add(1)).mul(dInner))
          .mul(0.5);
        return dy.mul(grad);
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x);
}

/**
 * SiLU (swish), `x·σ(x)`, the gate activation of Llama's SwiGLU MLP, with a hand-written
 * gradient `σ(x)·(1 + x·(1 − σ(x)))`.
 *
 * @example
 * ```ts
 * const y = silu(tf.tensor([-1, 0, 1])); // ≈ [-0.2689, 0, 0.7311]
 * ```
 */
export function silu(x: tf.Tensor): tf.Tensor {
  const f = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    const s = input.sigmoid();
    save([input, s]);
    return {
      value: input.mul(s),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ss] = saved;
        return dy.mul(ss.mul(xs.mul(ss.neg().add(1)).add(1)));
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x);
}
