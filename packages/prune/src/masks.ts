// Masks that last: writing pruning masks into a model, and layers whose pruned weights stay at zero
// through any fine-tuning (full or LoRA), whatever trainer and optimiser run it.
import { Conv1D, Linear, Module, PosttrainError, Rng, describeValue, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';

/**
 * The masks of a model's pruned layers, keyed by module path (`model.layers.0.mlp.up_proj`; a key
 * ending in `.weight` names the same layer). Each mask is a `Uint8Array` of `out·in` entries,
 * row-major over the PyTorch layout `[out, in]`, 1 = kept, 0 = pruned — also for GPT-2's
 * `Conv1D`, whose weight is stored `[in, out]`.
 *
 * @example
 * ```ts
 * const masks: LayerMasks = new Map([['model.layers.0.mlp.up_proj', Uint8Array.from([1, 0, 0, 1])]]);
 * ```
 */
export type LayerMasks = ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>;

/** The dense layers a mask applies to: {@link Linear} (`[out, in]`) and GPT-2's {@link Conv1D} (`[in, out]`). */
type DenseLayer = Linear | Conv1D;

function isDense(module: unknown): module is DenseLayer {
  return module instanceof Linear || module instanceof Conv1D;
}

/** True when the layer stores its weight `[in, out]` (GPT-2's Conv1D). */
function storedInOut(layer: DenseLayer): boolean {
  return layer instanceof Conv1D;
}

/** A `[out, in]` row-major mask as a float32 tensor in the layer's stored layout. */
function maskTensor(layer: DenseLayer, mask: Uint8Array): tf.Tensor2D {
  const { outFeatures: out, inFeatures: inF } = layer;
  const values = new Float32Array(out * inF);
  if (storedInOut(layer)) {
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) values[i * out + o] = mask[o * inF + i];
  } else {
    for (let k = 0; k < values.length; k++) values[k] = mask[k];
  }
  return tf.tensor2d(values, storedInOut(layer) ? [inF, out] : [out, inF]);
}

/** `x ⊙ m` with +0 (not −0) at the pruned places, so saved zeros are plain zeros. */
function keepWhere(x: tf.Tensor, m: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.where(tf.cast(m, 'bool'), x, tf.zerosLike(x)));
}

/**
 * The mask of a weight's zeros: 1 where the entry is non-zero, 0 where it is exactly zero, as an
 * `out·in` row-major `Uint8Array` over `[out, in]` (a `Conv1D`'s `[in, out]` weight is read
 * transposed). What {@link keepMasks} uses when it is given no masks.
 *
 * @example
 * ```ts
 * const layer = new Linear(2, 2, { bias: false });
 * layer.weight.assign(tf.tensor2d([[0, 1], [2, 0]]));
 * maskFromZeros(layer); // Uint8Array [0, 1, 1, 0]
 * ```
 */
export function maskFromZeros(layer: Linear | Conv1D): Uint8Array {
  checkDense('maskFromZeros', layer, 'layer');
  const data = layer.weight.dataSync();
  const { outFeatures: out, inFeatures: inF } = layer;
  const mask = new Uint8Array(out * inF);
  if (storedInOut(layer)) {
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) mask[o * inF + i] = data[i * out + o] === 0 ? 0 : 1;
  } else {
    for (let k = 0; k < mask.length; k++) mask[k] = data[k] === 0 ? 0 : 1;
  }
  return mask;
}

function checkDense(owner: string, layer: unknown, what: string): asserts layer is DenseLayer {
  if (!isDense(layer)) {
    const got = describeLayer(layer);
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${what} to be a Linear or a Conv1D; got ${got}`, {
      help: 'masks apply to dense linear layers; name the Linear layers (q_proj, up_proj, …), not the blocks around them',
    });
  }
}

/**
 * A {@link Linear} whose pruned weights stay at zero while it trains: the forward pass multiplies
 * by `weight` as a Linear does, while the gradient reaching `weight` is multiplied by the mask
 * (`∂L/∂W ⊙ M`). The pruned entries are zero when the layer is made, get a zero gradient, and an
 * optimiser step leaves a zero weight with a zero gradient at zero — AdamW's moments stay zero and
 * its decoupled weight decay scales zero, SGD's momentum too — so after any number of steps with
 * any posttrain trainer they are still exactly zero, and the forward pass and the saved weight are
 * `W ⊙ M` without a multiplication. Its parameters and state-dict keys are a Linear's (`weight`,
 * `bias`; the mask is a non-persistent buffer), so `saveModel` writes a plain Hugging Face
 * checkpoint, and LoRA's dispatch wraps it as the Linear it is (merging writes into `weight`).
 *
 * @example
 * ```ts
 * const layer = MaskedLinear.fromLinear(model.model.layers.at(0).mlp.upProj, mask);
 * model.replaceModule('model.layers.0.mlp.up_proj', layer); // what keepMasks does for every pruned layer
 * layer.sparsity; // the fraction of entries the mask prunes
 * ```
 */
export class MaskedLinear extends Linear {
  /** The mask, `out·in` row-major over `[out, in]`, 1 = kept. */
  readonly mask: Uint8Array;
  private readonly maskedGradient: (weight: tf.Tensor) => tf.Tensor;

  constructor(inFeatures: number, outFeatures: number, mask: Uint8Array, options: { bias?: boolean } = {}) {
    // A private generator: the throwaway initial values must not advance the shared one.
    super(inFeatures, outFeatures, { bias: options.bias ?? true, rng: new Rng(0), std: 0 });
    checkMask('MaskedLinear', 'mask', mask, outFeatures, inFeatures);
    this.mask = Uint8Array.from(mask);
    const m = this.registerBuffer('mask', maskTensor(this, this.mask), { persistent: false });
    this.maskedGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: tf.clone(args[0] as tf.Tensor),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => keepWhere(dy as tf.Tensor, m),
    })) as (weight: tf.Tensor) => tf.Tensor;
    tf.tidy(() => this.weight.assign(keepWhere(this.weight, m)));
  }

  /**
   * A MaskedLinear with `linear`'s weight times the mask and its bias (copies: `linear` is left as
   * it was and stays the caller's).
   */
  static fromLinear(linear: Linear, mask: Uint8Array): MaskedLinear {
    if (!(linear instanceof Linear)) {
      throw new PosttrainError('INVALID_ARGUMENT', `MaskedLinear.fromLinear: expected a Linear; got ${describeLayer(linear)}`, {
        help: 'a Conv1D takes MaskedConv1D.fromConv1D; keepMasks(model) picks the right one',
      });
    }
    const layer = new MaskedLinear(linear.inFeatures, linear.outFeatures, mask, { bias: linear.bias !== undefined });
    copyInto(layer, linear);
    layer.train(linear.training);
    return layer;
  }

  /** Fraction of entries the mask prunes. */
  get sparsity(): number {
    return zerosOf(this.mask) / this.mask.length;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => denseForward('MaskedLinear', x, { inFeatures: this.inFeatures, outFeatures: this.outFeatures, weight: this.maskedGradient(this.weight), bias: this.bias }, true));
  }
}

/**
 * GPT-2's {@link Conv1D} (weight `[in, out]`) with its pruned weights kept at zero, as
 * {@link MaskedLinear} does for a Linear. The mask is still `out·in` row-major over `[out, in]`.
 *
 * @example
 * ```ts
 * const layer = MaskedConv1D.fromConv1D(gpt2.transformer.h.at(0).mlp.cFc, mask);
 * ```
 */
export class MaskedConv1D extends Conv1D {
  /** The mask, `out·in` row-major over `[out, in]`, 1 = kept. */
  readonly mask: Uint8Array;
  private readonly maskedGradient: (weight: tf.Tensor) => tf.Tensor;

  constructor(inFeatures: number, outFeatures: number, mask: Uint8Array, options: { bias?: boolean } = {}) {
    super(inFeatures, outFeatures, { bias: options.bias ?? true, rng: new Rng(0), std: 0 });
    checkMask('MaskedConv1D', 'mask', mask, outFeatures, inFeatures);
    this.mask = Uint8Array.from(mask);
    const m = this.registerBuffer('mask', maskTensor(this, this.mask), { persistent: false });
    this.maskedGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: tf.clone(args[0] as tf.Tensor),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => keepWhere(dy as tf.Tensor, m),
    })) as (weight: tf.Tensor) => tf.Tensor;
    tf.tidy(() => this.weight.assign(keepWhere(this.weight, m)));
  }

  /** A MaskedConv1D with `conv`'s weight times the mask and its bias (copies; `conv` stays the caller's). */
  static fromConv1D(conv: Conv1D, mask: Uint8Array): MaskedConv1D {
    if (!(conv instanceof Conv1D)) throw new PosttrainError('INVALID_ARGUMENT', `MaskedConv1D.fromConv1D: expected a Conv1D; got ${describeLayer(conv)}`);
    const layer = new MaskedConv1D(conv.inFeatures, conv.outFeatures, mask, { bias: conv.bias !== undefined });
    copyInto(layer, conv);
    layer.train(conv.training);
    return layer;
  }

  /** Fraction of entries the mask prunes. */
  get sparsity(): number {
    return zerosOf(this.mask) / this.mask.length;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => denseForward('MaskedConv1D', x, { inFeatures: this.inFeatures, outFeatures: this.outFeatures, weight: this.maskedGradient(this.weight), bias: this.bias }, false));
  }
}

/** `x [..., in]` → `[..., out]` through a weight stored `[out, in]` (`transposed`) or `[in, out]`, bias fused. */
function denseForward(owner: string, x: tf.Tensor, layer: { inFeatures: number; outFeatures: number; weight: tf.Tensor; bias: tf.Tensor | undefined }, transposed: boolean): tf.Tensor {
  if (x.shape[x.shape.length - 1] !== layer.inFeatures) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected input [..., ${layer.inFeatures}]; got ${formatShape(x.shape)}`);
  }
  const a = x.reshape([-1, layer.inFeatures]) as tf.Tensor2D;
  const y = tf.fused.matMul({ a, b: layer.weight as tf.Tensor2D, transposeB: transposed, bias: layer.bias });
  return y.reshape([...x.shape.slice(0, -1), layer.outFeatures]);
}

function describeLayer(value: unknown): string {
  return value instanceof Module ? `a ${value.constructor.name}` : describeValue(value);
}

/** Copies weight ⊙ mask and bias from `source` into a fresh masked layer. */
function copyInto(layer: MaskedLinear | MaskedConv1D, source: DenseLayer): void {
  const m = layer.namedBuffers().get('mask') as tf.Tensor;
  tf.tidy(() => {
    layer.weight.assign(keepWhere(source.weight, m));
    if (layer.bias && source.bias) layer.bias.assign(source.bias);
  });
}

function zerosOf(mask: Uint8Array): number {
  let zeros = 0;
  for (const v of mask) if (v === 0) zeros++;
  return zeros;
}

function checkMask(owner: string, what: string, mask: unknown, out: number, inF: number): asserts mask is Uint8Array {
  if (!(mask instanceof Uint8Array)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${what} to be a Uint8Array of ${out}·${inF} = ${out * inF} entries (0 pruned, 1 kept); got ${describeValue(mask)}`, {
      help: 'masks are row-major over the weight [out, in]: Uint8Array.from(values, (v) => (v === 0 ? 0 : 1))',
    });
  }
  if (mask.length !== out * inF) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${what} to have ${out}·${inF} = ${out * inF} entries (the weight [out, in] = ${formatShape([out, inF])}); got ${mask.length}`, {
      help: 'a mask has one entry per weight, row-major over [out, in], also for a Conv1D stored [in, out]',
    });
  }
  const bad = mask.findIndex((v) => v !== 0 && v !== 1);
  if (bad >= 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${what} to hold only 0 (pruned) and 1 (kept); got ${mask[bad]} at index ${bad}`);
  }
}

/**
 * Every masked layer ({@link MaskedLinear}, {@link MaskedConv1D}) of `model`, by module path.
 *
 * @example
 * ```ts
 * keepMasks(model);
 * maskedLayers(model).size; // the number of pruned layers
 * ```
 */
export function maskedLayers(model: Module): Map<string, MaskedLinear | MaskedConv1D> {
  const out = new Map<string, MaskedLinear | MaskedConv1D>();
  for (const [path, m] of model.namedModules()) if (m instanceof MaskedLinear || m instanceof MaskedConv1D) out.set(path, m);
  return out;
}

/** The masks as a Map keyed by module path (a trailing `.weight` dropped), each checked against its layer. */
function resolveMasks(owner: string, model: Module, masks: LayerMasks): Map<string, [DenseLayer, Uint8Array]> {
  const entries = masks instanceof Map ? [...masks] : masks !== null && typeof masks === 'object' ? Object.entries(masks) : undefined;
  if (entries === undefined) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected masks to be a Map or record of module path → Uint8Array; got ${describeValue(masks)}`);
  }
  const modules = model.namedModules();
  const out = new Map<string, [DenseLayer, Uint8Array]>();
  for (const [key, mask] of entries) {
    const path = modules.has(key) ? key : key.replace(/\.weight$/, '');
    const layer = modules.get(path);
    if (!layer) {
      const linear = [...modules].filter(([, m]) => isDense(m)).map(([p]) => p);
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: masks name "${key}", which is no module of the model`, {
        help: `mask keys are module paths of linear layers, such as ${linear.slice(0, 3).join(', ') || '(the model has none)'}`,
      });
    }
    checkDense(owner, layer, `the module at "${path}"`);
    checkMask(owner, `the mask of "${path}"`, mask, layer.outFeatures, layer.inFeatures);
    out.set(path, [layer, mask]);
  }
  return out;
}

/**
 * Writes masks into a model's weights, `W ← W ⊙ M`, leaving its layers as they are (plain
 * Linears whose pruned weights are zero). Every mask is checked before any weight changes.
 * Returns the paths it wrote.
 *
 * @example
 * ```ts
 * applyMasks(model, new Map([['model.layers.0.mlp.up_proj', mask]]));
 * ```
 */
export function applyMasks(model: Module, masks: LayerMasks): string[] {
  const resolved = resolveMasks('applyMasks', model, masks);
  for (const [layer, mask] of resolved.values()) {
    tf.tidy(() => layer.weight.assign(keepWhere(layer.weight, maskTensor(layer, mask))));
  }
  return [...resolved.keys()];
}

/** Options of {@link keepMasks}. */
export interface KeepMasksOptions {
  /**
   * The masks to keep, by module path ({@link LayerMasks}); their zeros are written into the
   * weights. Default: the zeros already in the weights — every Linear and Conv1D (`lm_head`
   * included) with at least one weight exactly zero.
   */
  masks: LayerMasks | undefined;
}

/**
 * The defaults of {@link KeepMasksOptions}: masks from the zeros in the weights.
 *
 * @example
 * ```ts
 * keepMasks(model, { ...defaultKeepMasksOptions, masks: result.masks });
 * ```
 */
export const defaultKeepMasksOptions: Readonly<KeepMasksOptions> = Object.freeze({ masks: undefined });

/**
 * Makes a pruned model's sparsity last through fine-tuning: each pruned Linear (Conv1D) is
 * replaced by a {@link MaskedLinear} ({@link MaskedConv1D}) holding its weight times the mask, so
 * any trainer — `sftTrain`, `fineTune`, `train` with any optimiser, full fine-tuning or LoRA —
 * keeps the pruned weights at exactly zero. Call it before the optimiser is made (it replaces
 * the weight variables). The model's state-dict keys do not change, so `saveModel` writes a plain
 * checkpoint of the sparse weights; {@link removeMasks} puts plain layers back. Layers already
 * masked are left alone. Throws when nothing is pruned. Returns the masked layers by path.
 *
 * @example
 * ```ts
 * const layers = keepMasks(model);                  // masks from the zeros pruning left
 * await sftTrain({ model, tokenizer, train: records, maxSteps: 200 });
 * removeMasks(model);                               // plain Linears again, pruned entries still 0
 * await saveModel(model, 'out/pruned-recovered');
 * ```
 */
export function keepMasks(model: Module, options: Partial<KeepMasksOptions> = {}): Map<string, MaskedLinear | MaskedConv1D> {
  const o = resolveOptions('keepMasks', options, defaultKeepMasksOptions);
  let plan: Map<string, [DenseLayer, Uint8Array]>;
  if (o.masks !== undefined) {
    plan = resolveMasks('keepMasks', model, o.masks);
  } else {
    plan = new Map();
    for (const [path, m] of model.namedModules()) {
      if (!isDense(m) || m instanceof MaskedLinear || m instanceof MaskedConv1D) continue;
      const mask = maskFromZeros(m);
      if (zerosOf(mask) > 0) plan.set(path, [m, mask]);
    }
  }
  const out = maskedLayers(model);
  const fresh = [...plan].filter(([path]) => !out.has(path));
  if (fresh.length === 0 && out.size === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', 'keepMasks: found no pruned layer: no Linear or Conv1D of the model has a weight exactly zero, and no masks were given', {
      help: 'prune the model first (pruneModel), or pass the masks: keepMasks(model, { masks })',
    });
  }
  for (const [path, [layer, mask]] of fresh) {
    const masked = layer instanceof Linear ? MaskedLinear.fromLinear(layer, mask) : MaskedConv1D.fromConv1D(layer, mask);
    if (!layer.weight.trainable) masked.weight.trainable = false;
    if (layer.bias && masked.bias && !layer.bias.trainable) masked.bias.trainable = false;
    model.replaceModule(path, masked);
    layer.dispose();
    out.set(path, masked);
  }
  return new Map([...model.namedModules()].filter(([path]) => out.has(path)).map(([path]) => [path, out.get(path)!]));
}

/**
 * Puts a plain {@link Linear} ({@link Conv1D}) back for every masked layer, with weight `W ⊙ M`
 * (the pruned entries exactly zero) and the same bias, trainability and mode: the model after
 * recovery fine-tuning, as `saveModel` and every other package expect it. A masked layer that is
 * the base of a LoRA layer is refused (`NOT_SUPPORTED`, nothing changed): unload the adapters
 * first. Returns the paths it replaced.
 *
 * @example
 * ```ts
 * keepMasks(model);
 * await sftTrain({ model, tokenizer, train: records, maxSteps: 100 });
 * removeMasks(model); // ['model.layers.0.self_attn.q_proj', …]
 * ```
 */
export function removeMasks(model: Module): string[] {
  const layers = maskedLayers(model);
  const wrapped = [...layers.keys()].filter((path) => path.split('.').pop() === 'base_layer');
  if (wrapped.length > 0) {
    throw new PosttrainError(
      'NOT_SUPPORTED',
      `removeMasks: the masked layer at "${wrapped[0]}" is the base of a LoRA layer${wrapped.length > 1 ? ` (and ${wrapped.length - 1} more)` : ''}; nothing was changed`,
      {
        help: 'fold the adapters in first with mergeAndUnload(model, { keepSparsity: true }) from @posttrain/lora, then removeMasks(model)',
      },
    );
  }
  const replaced: string[] = [];
  for (const [path, masked] of layers) {
    const plain =
      masked instanceof MaskedLinear
        ? new Linear(masked.inFeatures, masked.outFeatures, { bias: masked.bias !== undefined, rng: new Rng(0), std: 0 })
        : new Conv1D(masked.inFeatures, masked.outFeatures, { bias: masked.bias !== undefined, rng: new Rng(0), std: 0 });
    const m = masked.namedBuffers().get('mask') as tf.Tensor;
    tf.tidy(() => {
      plain.weight.assign(keepWhere(masked.weight, m));
      if (plain.bias && masked.bias) plain.bias.assign(masked.bias);
    });
    plain.weight.trainable = masked.weight.trainable;
    if (plain.bias && masked.bias) plain.bias.trainable = masked.bias.trainable;
    plain.train(masked.training);
    model.replaceModule(path, plain);
    masked.dispose();
    replaced.push(path);
  }
  return replaced;
}
