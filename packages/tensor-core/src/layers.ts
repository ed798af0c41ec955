import { tf } from './tf.js';
import { Module } from './module.js';
import { Rng } from './rng.js';
import { PosttrainError, formatShape } from './errors.js';
import { checkNumber, resolveOptions } from './options.js';

let sharedRng = new Rng(0);

/**
 * Re-seeds the generator layers use when no `rng` is passed, like `torch.manual_seed`.
 *
 * @example
 * ```ts
 * manualSeed(1); const a = new Linear(4, 4);
 * manualSeed(1); const b = new Linear(4, 4); // same weights as a
 * ```
 */
export function manualSeed(seed: number): void {
  sharedRng = new Rng(seed);
}

/** The generator layers use when no `rng` is passed. */
export function defaultRng(): Rng {
  return sharedRng;
}

let dropoutOverride: Rng | undefined;

/**
 * Runs `fn` with every {@link Dropout} drawing its masks from `rng` instead of its own generator,
 * so the masks depend only on `rng`'s seed: the trainer seeds one per (seed, step, micro-batch),
 * which makes a resumed run draw the masks an uninterrupted one would. Nests; restores on throw.
 *
 * @example
 * ```ts
 * const y = withDropoutRng(new Rng(7), () => model.forward(ids)); // same masks for the same seed
 * ```
 */
export function withDropoutRng<T>(rng: Rng, fn: () => T): T {
  const previous = dropoutOverride;
  dropoutOverride = rng;
  try {
    return fn();
  } finally {
    dropoutOverride = previous;
  }
}

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Add a bias (default true). */
  bias: boolean;
  /** Generator for initialisation (default: the shared one, see {@link manualSeed}). */
  rng: Rng | undefined;
  /**
   * Standard deviation of a normal initialisation, as Hugging Face models use (0.02). Undefined
   * (the default) is PyTorch's `nn.Linear` init: uniform in ±1/√inFeatures for weight and bias.
   */
  std: number | undefined;
}

export const defaultLinearOptions: Readonly<LinearOptions> = Object.freeze({ bias: true, rng: undefined, std: undefined });

/**
 * The interface every linear layer satisfies: the dense {@link Linear} and the LoRA, quantised
 * and sparse replacements that later packages put in its place with `replaceModule`.
 */
export interface LinearLike extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** `[..., inFeatures]` → `[..., outFeatures]`. */
  forward(x: tf.Tensor): tf.Tensor;
}

/**
 * `y = x Wᵀ + b` with `weight` stored `[out, in]` as in PyTorch, so Hugging Face keys and shapes
 * load unchanged.
 *
 * @example
 * ```ts
 * const proj = new Linear(16, 32, { bias: false, std: 0.02 });
 * const y = proj.forward(tf.ones([2, 5, 16])); // [2, 5, 32]
 * ```
 */
export class Linear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: tf.Variable; // [out, in]
  readonly bias: tf.Variable | undefined; // [out]

  constructor(inFeatures: number, outFeatures: number, options: Partial<LinearOptions> = {}) {
    super();
    const o = resolveOptions('Linear', options, defaultLinearOptions);
    checkNumber('Linear', 'inFeatures', inFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    checkNumber('Linear', 'outFeatures', outFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const rng = o.rng ?? sharedRng;
    const bound = 1 / Math.sqrt(inFeatures);
    const init = (shape: number[]): tf.Tensor => (o.std === undefined ? rng.uniformTensor(shape, -bound, bound) : rng.normalTensor(shape, o.std));
    this.weight = this.registerParameter('weight', init([outFeatures, inFeatures]));
    this.bias = o.bias ? this.registerParameter('bias', o.std === undefined ? init([outFeatures]) : tf.zeros([outFeatures])) : undefined;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return denseForward('Linear', x, this, true);
  }
}

/**
 * `x [..., in]` → `[..., out]` through a weight stored `[out, in]` (`transposed`, Linear) or
 * `[in, out]` (Conv1D), with the optional bias fused into the matmul.
 */
export function denseForward(owner: string, x: tf.Tensor, layer: { inFeatures: number; outFeatures: number; weight: tf.Tensor; bias: tf.Tensor | undefined }, transposed: boolean): tf.Tensor {
  if (x.shape[x.shape.length - 1] !== layer.inFeatures) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected input [..., ${layer.inFeatures}]; got ${formatShape(x.shape)}`);
  }
  return tf.tidy(() => {
    const a = x.reshape([-1, layer.inFeatures]) as tf.Tensor2D;
    const y = tf.fused.matMul({ a, b: layer.weight as tf.Tensor2D, transposeB: transposed, bias: layer.bias });
    return y.reshape([...x.shape.slice(0, -1), layer.outFeatures]);
  });
}

/** Options of {@link Embedding}. */
export interface EmbeddingOptions {
  /** Generator for initialisation (default: the shared one). */
  rng: Rng | undefined;
  /** Standard deviation of the normal initialisation (PyTorch: 1; Hugging Face models: 0.02). */
  std: number;
}

export const defaultEmbeddingOptions: Readonly<EmbeddingOptions> = Object.freeze({ rng: undefined, std: 1 });

/**
 * A lookup table `weight [numEmbeddings, dim]`; `forward(ids)` gathers rows. Its gradient is a
 * scatter-add (`UnsortedSegmentSum`), which tensor-core registers for the wasm backend.
 *
 * @example
 * ```ts
 * const emb = new Embedding(256, 64, { std: 0.02 });
 * const h = emb.forward(tf.tensor2d([[1, 2, 3]], [1, 3], 'int32')); // [1, 3, 64]
 * ```
 */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly dim: number;
  readonly weight: tf.Variable;

  constructor(numEmbeddings: number, dim: number, options: Partial<EmbeddingOptions> = {}) {
    super();
    const o = resolveOptions('Embedding', options, defaultEmbeddingOptions);
    checkNumber('Embedding', 'numEmbeddings', numEmbeddings, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    checkNumber('Embedding', 'dim', dim, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    this.weight = this.registerParameter('weight', (o.rng ?? sharedRng).normalTensor([numEmbeddings, dim], o.std));
  }

  /** `ids [...]` int32 → `[..., dim]`. */
  forward(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== 'int32') {
      throw new PosttrainError('DTYPE_MISMATCH', `Embedding: expected int32 token ids; got ${ids.dtype}`, {
        help: "create ids with tf.tensor(values, shape, 'int32')",
      });
    }
    return tf.tidy(() => tf.gather(this.weight, ids.reshape([-1])).reshape([...ids.shape, this.dim]));
  }
}

/**
 * Inverted dropout: in training, zeroes each element with probability `p` and scales the rest by
 * 1/(1−p); in eval mode, the identity. Masks come from a seeded {@link Rng}: the layer's own, or
 * the one {@link withDropoutRng} sets for a step.
 *
 * @example
 * ```ts
 * const drop = new Dropout(0.1, new Rng(0));
 * const y = drop.forward(x); // identity after drop.eval()
 * ```
 */
export class Dropout extends Module {
  readonly p: number;
  private readonly rng: Rng;

  constructor(p: number, rng: Rng = sharedRng) {
    super();
    this.p = checkNumber('Dropout', 'p', p, 'in [0, 1)', (v) => v >= 0 && v < 1);
    this.rng = rng;
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (!this.training || this.p === 0) return x.clone();
    const seed = (dropoutOverride ?? this.rng).nextUint32();
    return tf.tidy(() => {
      const keep = tf.randomUniform(x.shape, 0, 1, 'float32', seed).greaterEqual(this.p);
      return x.mul(keep.cast(x.dtype)).mul(1 / (1 - this.p));
    });
  }
}
