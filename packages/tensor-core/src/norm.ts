import { tf } from './tf.js';
import { Module } from './module.js';
import { checkNumber, resolveOptions } from './options.js';

/** Options of {@link LayerNorm}. */
export interface LayerNormOptions {
  /** Added to the variance (PyTorch and GPT-2: 1e-5). */
  eps: number;
  /** Learn a bias (default true). */
  bias: boolean;
}

export const defaultLayerNormOptions: Readonly<LayerNormOptions> = Object.freeze({ eps: 1e-5, bias: true });

/**
 * Layer normalisation over the last axis: `(x − mean) / √(var + eps) · weight + bias`, with the
 * biased variance as `torch.nn.LayerNorm` uses.
 *
 * @example
 * ```ts
 * const ln = new LayerNorm(64);
 * const y = ln.forward(x); // same shape as x [..., 64]
 * ```
 */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | undefined;

  constructor(dim: number, options: Partial<LayerNormOptions> = {}) {
    super();
    const o = resolveOptions('LayerNorm', options, defaultLayerNormOptions);
    this.dim = checkNumber('LayerNorm', 'dim', dim, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.eps = checkNumber('LayerNorm', 'eps', o.eps, 'a positive number', (v) => v > 0);
    this.weight = this.registerParameter('weight', tf.ones([dim]));
    this.bias = o.bias ? this.registerParameter('bias', tf.zeros([dim])) : undefined;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const centred = x.sub(x.mean(-1, true));
      const variance = centred.square().mean(-1, true);
      const y = centred.mul(variance.add(this.eps).rsqrt()).mul(this.weight);
      return this.bias ? y.add(this.bias) : y;
    });
  }
}

/** Options of {@link RMSNorm}. */
export interface RMSNormOptions {
  /** Added to the mean square (Llama: 1e-6 or 1e-5, read from `rms_norm_eps`). */
  eps: number;
}

export const defaultRMSNormOptions: Readonly<RMSNormOptions> = Object.freeze({ eps: 1e-6 });

/**
 * Root-mean-square normalisation over the last axis (Zhang & Sennrich 2019), as Llama uses:
 * `x / √(mean(x²) + eps) · weight`.
 *
 * @example
 * ```ts
 * const norm = new RMSNorm(64, { eps: 1e-5 });
 * const y = norm.forward(x); // same shape as x [..., 64]
 * ```
 */
export class RMSNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  readonly weight: tf.Variable;

  constructor(dim: number, options: Partial<RMSNormOptions> = {}) {
    super();
    const o = resolveOptions('RMSNorm', options, defaultRMSNormOptions);
    this.dim = checkNumber('RMSNorm', 'dim', dim, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.eps = checkNumber('RMSNorm', 'eps', o.eps, 'a positive number', (v) => v > 0);
    this.weight = this.registerParameter('weight', tf.ones([dim]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => x.mul(x.square().mean(-1, true).add(this.eps).rsqrt()).mul(this.weight));
  }
}
