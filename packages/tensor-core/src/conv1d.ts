import { tf } from './tf.js';
import { Module } from './module.js';
import { type LinearLike, defaultRng, denseForward } from './layers.js';
import type { Rng } from './rng.js';
import { checkNumber, resolveOptions } from './options.js';

/** Options of {@link Conv1D}. */
export interface Conv1DOptions {
  /** Add a bias (default true; GPT-2 has one on every projection). */
  bias: boolean;
  /** Generator for initialisation (default: the shared one). */
  rng: Rng | undefined;
  /** Standard deviation of the normal weight initialisation (GPT-2: 0.02); biases start at 0. */
  std: number;
}

export const defaultConv1DOptions: Readonly<Conv1DOptions> = Object.freeze({ bias: true, rng: undefined, std: 0.02 });

/**
 * A linear layer with its weight stored `[in, out]`: Hugging Face's `Conv1D`, which GPT-2's
 * checkpoints use for every projection (`y = x W + b`). Keeping the stored layout means GPT-2
 * keys and shapes load unchanged; it satisfies {@link LinearLike}, so LoRA and quantised layers
 * can replace it like a {@link Linear} (PEFT's `fan_in_fan_out`).
 *
 * @example
 * ```ts
 * const cAttn = new Conv1D(768, 3 * 768);   // weight [768, 2304]
 * const qkv = cAttn.forward(x);             // [..., 768] → [..., 2304]
 * ```
 */
export class Conv1D extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: tf.Variable; // [in, out]
  readonly bias: tf.Variable | undefined; // [out]

  constructor(inFeatures: number, outFeatures: number, options: Partial<Conv1DOptions> = {}) {
    super();
    const o = resolveOptions('Conv1D', options, defaultConv1DOptions);
    this.inFeatures = checkNumber('Conv1D', 'inFeatures', inFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.outFeatures = checkNumber('Conv1D', 'outFeatures', outFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.weight = this.registerParameter('weight', (o.rng ?? defaultRng()).normalTensor([inFeatures, outFeatures], o.std));
    this.bias = o.bias ? this.registerParameter('bias', tf.zeros([outFeatures])) : undefined;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return denseForward('Conv1D', x, this, false);
  }
}
