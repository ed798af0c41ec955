import { loraLayers } from '@posttrain/lora';
import { Conv1D, Linear, type LinearLike, Module, PosttrainError, describeValue, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';
import { DYNAMIC_MAP, NF4_BLOCK_SIZE, NF4_CODE, NF4_NESTED_BLOCK_SIZE } from './nf4.js';
import { MIN_SCALE, qRange } from './qparams.js';
import { QuantizedLinear, type QuantScheme, type QuantizeOptions, resolveQuantizeOptions } from './quantized-linear.js';
import { type QuantizeModelOptions, defaultQuantizeModelOptions } from './quantize-model.js';

/**
 * Quantisation-aware training (QAT), torchao's prepare → train → convert
 * (`torchao.quantization.qat`: `FakeQuantizedLinear`, `IntxFakeQuantizeConfig`,
 * `Int4WeightOnlyQATQuantizer`). While training, each linear layer's weight is fake-quantised in
 * every forward — quantised and dequantised with qparams computed from the current weight, the
 * very grid {@link QuantizedLinear.fromWeight} will use — so the loss sees the rounding error and
 * the weights learn to live with it. The rounding has no useful gradient, so the backward pass is
 * the straight-through estimator: `w_fq = w + stopGradient(fakeQuant(w) − w)`, the gradient reaches
 * `w` unchanged and the qparams get none (torchao's `_GenericFakeQuantize` returns no gradient for
 * scale and zero-point). torchao also zeroes the gradient of values whose `round(w / scale + zero)`
 * falls outside [qmin, qmax] before the clamp; with min/max qparams that is at most the largest
 * positive value of a symmetric group (x / scale = 7.5 rounds to 8), whose gradient passes here.
 *
 * Grids, the same as `QuantizedLinear`'s and computed in float32 with the same operations, so the
 * converted model's forward equals the fake-quantised one:
 * - int8 / int4: compressed-tensors' `calculate_qparams` (see qparams.ts) per output channel (int8)
 *   or per group of 32, 64 or 128 input columns (int4, symmetric or with zero-points);
 * - nf4: bitsandbytes' NF4 over blocks of 64 of the flattened `[out, in]` weight, with double
 *   quantisation of the block absmax values (offset = their mean, 8-bit dynamic-map codes per 256),
 *   so the fake weight is `NF4[q] · absmax'` with the double-quantised absmax' that convert stores.
 */

/** Options of {@link prepareQat}: those of `quantizeModel` (scheme, groupSize, symmetric, exclude). */
export type QatOptions = QuantizeModelOptions;

/**
 * Defaults of {@link QatOptions}: int8, int4 groups of 128 symmetric, `lm_head` left in float.
 *
 * @example
 * ```ts
 * prepareQat(model, { ...defaultQatOptions, scheme: 'int4', groupSize: 32 });
 * ```
 */
export const defaultQatOptions: Readonly<QatOptions> = defaultQuantizeModelOptions;

/** What {@link prepareQat} or {@link convertQat} did. */
export interface QatSummary {
  scheme: QuantScheme;
  /** Paths of the layers replaced, in module order. */
  layers: string[];
  /** Paths of Linear / Conv1D layers left in float (prepareQat: by `exclude`). */
  excluded: string[];
}

const f32 = (values: ArrayLike<number>) => tf.tensor1d(Float32Array.from(values));

/**
 * Fake quantisation of a weight `[out, in]` (no gradient): the values {@link QuantizedLinear}
 * would dequantise to, computed with tf ops from the weight itself. `options` must be resolved.
 */
function fakeQuantize(w: tf.Tensor2D, o: QuantizeOptions): tf.Tensor2D {
  return tf.tidy(() => (o.scheme === 'nf4' ? fakeNf4(w) : fakeAffine(w, o)));
}

function fakeAffine(w: tf.Tensor2D, o: QuantizeOptions): tf.Tensor2D {
  const [out, inn] = w.shape;
  const bits = o.scheme === 'int8' ? 8 : 4;
  const groupSize = o.scheme === 'int8' ? inn : o.groupSize;
  const symmetric = o.scheme === 'int8' ? true : o.symmetric;
  const { qmin, qmax } = qRange(bits);
  const range = qmax - qmin;
  const g = w.reshape([out, inn / groupSize, groupSize]);
  // compressed-tensors calculate_qparams: the range always includes 0
  const lo = tf.minimum(g.min(2, true), 0);
  const hi = tf.maximum(g.max(2, true), 0);
  let scale: tf.Tensor;
  let zero: tf.Tensor | undefined;
  if (symmetric) {
    scale = tf.maximum(tf.div(tf.maximum(tf.neg(lo), hi), range / 2), MIN_SCALE);
  } else {
    scale = tf.maximum(tf.div(tf.sub(hi, lo), range), MIN_SCALE);
    zero = tf.round(tf.clipByValue(tf.sub(qmin, tf.div(lo, scale)), qmin, qmax));
  }
  // _quantize: round(clamp(w / scale + zero)); _dequantize: (q - zero) · scale
  const scaled = tf.div(g, scale);
  const q = tf.round(tf.clipByValue(zero ? tf.add(scaled, zero) : scaled, qmin, qmax));
  return tf.mul(zero ? tf.sub(q, zero) : q, scale).reshape([out, inn]) as tf.Tensor2D;
}

/** `torch.bucketize` of every value: the number of `bounds` strictly below it, as int32. */
function bucketizeTensor(x: tf.Tensor1D, bounds: Float32Array): tf.Tensor1D {
  return tf.greater(x.reshape([-1, 1]), f32(bounds).reshape([1, -1])).sum(1, false) as tf.Tensor1D;
}

function midpoints(code: Float32Array): Float32Array {
  const out = new Float32Array(code.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(Math.fround((code[i] as number) + (code[i + 1] as number)) / 2);
  return out;
}
const NF4_BOUNDS = midpoints(NF4_CODE);
const DYNAMIC_BOUNDS = midpoints(DYNAMIC_MAP);

/**
 * bitsandbytes' blockwise quantise + dequantise with tf ops (nf4.ts's `blockwise`): per block the
 * absmax, full blocks scaled by `x · (1 / max(absmax, 1e-38))`, a trailing partial block by
 * `x / max(absmax, 1e-38)` (whose stored absmax is the clamped one), clamp to [-1, 1], bucketize on
 * the table's midpoints. Returns the table values (not yet times absmax) and the stored absmax.
 */
function blockwiseTensor(x: tf.Tensor1D, code: Float32Array, bounds: Float32Array, blockSize: number): { values: tf.Tensor2D; absmax: tf.Tensor1D } {
  const n = x.shape[0];
  const blocks = Math.ceil(n / blockSize);
  const fullBlocks = Math.floor(n / blockSize);
  const padded = (blocks * blockSize > n ? tf.pad(x, [[0, blocks * blockSize - n]]) : x).reshape([blocks, blockSize]);
  const am = tf.abs(padded).max(1, true); // [blocks, 1]
  const safe = tf.maximum(am, Math.fround(1e-38));
  let scaled: tf.Tensor = tf.mul(padded, tf.reciprocal(safe));
  let absmax: tf.Tensor = am;
  if (fullBlocks < blocks) {
    const partial = tf.range(0, blocks).greaterEqual(fullBlocks).reshape([blocks, 1]);
    scaled = tf.where(partial.tile([1, blockSize]), tf.div(padded, safe), scaled);
    absmax = tf.where(partial, safe, am);
  }
  const codes = bucketizeTensor(tf.clipByValue(scaled, -1, 1).reshape([-1]) as tf.Tensor1D, bounds);
  return { values: tf.gather(f32(code), codes).reshape([blocks, blockSize]) as tf.Tensor2D, absmax: absmax.reshape([-1]) as tf.Tensor1D };
}

function fakeNf4(w: tf.Tensor2D): tf.Tensor2D {
  const [out, inn] = w.shape;
  const n = out * inn;
  const { values, absmax } = blockwiseTensor(w.reshape([-1]) as tf.Tensor1D, NF4_CODE, NF4_BOUNDS, NF4_BLOCK_SIZE);
  // double quantisation (quantize_4bit with compress_statistics): offset = mean absmax, then the
  // centred absmax in 8-bit dynamic-map codes per 256, dequantised as dynamic[c] · absmax2 + offset
  const blocks = absmax.shape[0];
  const offset = tf.div(tf.sum(absmax), blocks);
  const nested = blockwiseTensor(tf.sub(absmax, offset) as tf.Tensor1D, DYNAMIC_MAP, DYNAMIC_BOUNDS, NF4_NESTED_BLOCK_SIZE);
  const b2 = nested.absmax.shape[0];
  const absmaxDq = nested.values
    .mul(nested.absmax.reshape([b2, 1]))
    .reshape([-1])
    .slice(0, blocks)
    .add(offset);
  return values
    .mul(absmaxDq.reshape([blocks, 1]))
    .reshape([-1])
    .slice(0, n)
    .reshape([out, inn]) as tf.Tensor2D;
}

/** The float layer a fake-quantised one replaces, and converts back into. */
type Origin = 'linear' | 'conv1d';

/**
 * A linear layer trained with fake-quantised weights (torchao's `FakeQuantizedLinear`, weight only):
 * `y = x · w_fqᵀ + b` where `w_fq = w + stopGradient(fakeQuant(w) − w)` — in the forward the exact
 * values {@link QuantizedLinear.fromWeight} would store (qparams from the current weight), in the
 * backward the straight-through estimator (the gradient reaches `w` unchanged). Its parameters are
 * those of the {@link Linear} (`weight [out, in]`, `bias`) or GPT-2 {@link Conv1D} (`weight [in, out]`)
 * it replaces, with the same names, shapes and trainable flags, so optimisers, LoRA (it is a
 * {@link LinearLike}), `stateDict` and `saveModel` see the float model. {@link convertQat} turns it
 * into a {@link QuantizedLinear} whose forward equals this one's.
 *
 * @example
 * ```ts
 * const fq = FakeQuantizedLinear.fromLinear(new Linear(128, 64), { scheme: 'int4', groupSize: 32 });
 * const y = fq.forward(tf.ones([2, 128])); // [2, 64], through the int4 grid
 * const q = fq.toQuantized(); // QuantizedLinear with the same forward
 * ```
 */
export class FakeQuantizedLinear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** `[out, in]` (replacing a Linear) or `[in, out]` (replacing a Conv1D), as the float layer stored it. */
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | undefined;
  /** The scheme and grid, resolved (int8: per channel; int4: `groupSize` and `symmetric`; nf4: blocks of 64). */
  readonly options: Readonly<QuantizeOptions>;
  /** The layer type this one replaces (a Conv1D keeps its `[in, out]` weight). */
  readonly origin: Origin;
  private readonly ste: (w: tf.Tensor) => tf.Tensor;

  private constructor(linear: Linear | Conv1D, options: QuantizeOptions) {
    super();
    this.inFeatures = linear.inFeatures;
    this.outFeatures = linear.outFeatures;
    this.origin = linear instanceof Conv1D ? 'conv1d' : 'linear';
    this.options = Object.freeze({ ...options });
    this.weight = this.registerParameter('weight', linear.weight.clone(), { trainable: linear.weight.trainable });
    this.bias = linear.bias ? this.registerParameter('bias', linear.bias.clone(), { trainable: linear.bias.trainable }) : undefined;
    // The STE as one op: forward fakeQuant(w), backward the identity (equal to w + stopGradient(fq − w),
    // whose float32 sum is exactly fq since |fq − w| ≤ |w| wherever fq ≠ 0, but without taping fq's ops).
    this.ste = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: fakeQuantize(args[0] as tf.Tensor2D, this.options),
      gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.clone(dy as tf.Tensor),
    })) as (w: tf.Tensor) => tf.Tensor;
  }

  /**
   * A fake-quantised copy of a float {@link Linear} or {@link Conv1D} (its weight and bias cloned;
   * the caller still owns `linear`). Throws, naming the layer, when the int4 group size does not
   * divide its input size or the layer is not a float linear layer.
   *
   * @example
   * ```ts
   * const fq = FakeQuantizedLinear.fromLinear(new Linear(64, 32), { scheme: 'nf4' });
   * ```
   */
  static fromLinear(linear: Linear | Conv1D, options: Partial<QuantizeOptions> = {}, name?: string): FakeQuantizedLinear {
    const o = resolveQuantizeOptions(options, 'FakeQuantizedLinear.fromLinear');
    checkLayer(linear, o, name);
    return new FakeQuantizedLinear(linear, o);
  }

  /** `[..., inFeatures]` → `[..., outFeatures]` through the fake-quantised weight. */
  forward(x: tf.Tensor): tf.Tensor {
    if (x.shape[x.shape.length - 1] !== this.inFeatures) {
      throw new PosttrainError('SHAPE_MISMATCH', `FakeQuantizedLinear: expected input [..., ${this.inFeatures}]; got ${formatShape(x.shape)}`);
    }
    return tf.tidy(() => {
      const w = this.origin === 'conv1d' ? this.weight.transpose() : this.weight; // [out, in]
      const a = x.reshape([-1, this.inFeatures]) as tf.Tensor2D;
      const y = tf.fused.matMul({ a, b: this.ste(w) as tf.Tensor2D, transposeB: true, bias: this.bias });
      return y.reshape([...x.shape.slice(0, -1), this.outFeatures]);
    });
  }

  /**
   * The fake-quantised weight `[out, in]` (whatever the origin's layout; the caller disposes it):
   * what the forward multiplies by, and what the converted layer dequantises to.
   *
   * @example
   * ```ts
   * const wq = fq.fakeQuantizedWeight(); // [out, in]
   * wq.dispose();
   * ```
   */
  fakeQuantizedWeight(): tf.Tensor2D {
    return tf.tidy(() => fakeQuantize((this.origin === 'conv1d' ? this.weight.transpose() : this.weight) as tf.Tensor2D, this.options));
  }

  /**
   * The real quantised layer, {@link QuantizedLinear.fromWeight} of the current weight with this
   * layer's options (reads the weight synchronously: cpu, wasm; {@link convertQat} reads asynchronously).
   *
   * @example
   * ```ts
   * const q = fq.toQuantized(); // q.forward(x) equals fq.forward(x)
   * ```
   */
  toQuantized(name?: string): QuantizedLinear {
    return quantizedFrom(this, name, (t) => t.dataSync() as Float32Array);
  }
}

function quantizedFrom(layer: FakeQuantizedLinear, name: string | undefined, read: (t: tf.Tensor) => Float32Array): QuantizedLinear {
  const [inn, out] = [layer.inFeatures, layer.outFeatures];
  const stored = read(layer.weight);
  const weight = Float32Array.from(stored);
  if (layer.origin === 'conv1d') {
    // Conv1D keeps [in, out]; the quantised layouts are [out, in]
    for (let i = 0; i < inn; i++) for (let o = 0; o < out; o++) weight[o * inn + i] = stored[i * out + o] as number;
  }
  const bias = layer.bias ? Float32Array.from(read(layer.bias)) : undefined;
  const { scheme, groupSize, symmetric } = layer.options;
  const options: Partial<QuantizeOptions> = scheme === 'int4' ? { scheme, groupSize, symmetric } : { scheme };
  return QuantizedLinear.fromWeight(weight, out, inn, options, { bias, origin: layer.origin, name });
}

function checkLayer(linear: Linear | Conv1D, o: QuantizeOptions, name: string | undefined): void {
  const where = name === undefined ? '' : ` layer "${name}"`;
  if (!(linear instanceof Linear) && !(linear instanceof Conv1D)) {
    const got = (linear as object | null)?.constructor?.name ?? typeof linear;
    throw new PosttrainError('NOT_SUPPORTED', `prepareQat:${where} expected a float Linear or Conv1D; got ${got}`, {
      help:
        got === 'QuantizedLinear'
          ? 'the layer is already quantised; QAT starts from a float model (dequantizeModel first)'
          : got === 'FakeQuantizedLinear'
            ? 'the layer is already prepared for QAT; convertQat(model) ends QAT'
            : undefined,
    });
  }
  if (o.scheme === 'int4' && linear.inFeatures % o.groupSize !== 0) {
    throw new PosttrainError('INVALID_OPTION', `prepareQat:${where} inFeatures ${linear.inFeatures} is not divisible by groupSize ${o.groupSize}`, {
      help: `choose a groupSize that divides ${linear.inFeatures} (32, 64 or 128), or exclude the layer`,
    });
  }
}

function isExcluded(exclude: readonly string[] | RegExp, path: string): boolean {
  if (exclude instanceof RegExp) return new RegExp(`^(?:${exclude.source})$`, exclude.flags.replace(/[gy]/g, '')).test(path);
  return exclude.some((name) => path === name || path.endsWith(`.${name}`));
}

/**
 * Prepares `model` for quantisation-aware training (torchao's prepare step): every {@link Linear}
 * and GPT-2 {@link Conv1D} but the `exclude`d paths is replaced in place by a
 * {@link FakeQuantizedLinear} of the scheme, holding the same parameters under the same names. Then
 * train it with any posttrain trainer (the parameters to optimise are `model.trainableParameters()`
 * after this call: the variables are new), and {@link convertQat} it. Everything is checked before
 * anything is replaced: an error (a LoRA adapter present, a layer already quantised or prepared, an
 * int4 group size that does not divide a layer's input size) names the layer and leaves the model
 * as it was. The float layers replaced are disposed.
 *
 * @example
 * ```ts
 * prepareQat(model, { scheme: 'int4', groupSize: 128 });
 * model.unfreeze();
 * await train({ model, parameters: model.trainableParameters(), optimizer, batches, step }); // any trainer
 * await convertQat(model); // QuantizedLinear layers, the forward the training saw
 * ```
 */
export function prepareQat(model: Module, options: Partial<QatOptions> = {}): QatSummary {
  const owner = 'prepareQat';
  const { exclude } = resolveOptions(owner, options, defaultQatOptions as QatOptions);
  const { exclude: _, ...schemeOptions } = options ?? {};
  const o = resolveQuantizeOptions(schemeOptions, owner);
  if (!(exclude instanceof RegExp) && !(Array.isArray(exclude) && exclude.every((s) => typeof s === 'string' && s !== ''))) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected exclude to be an array of module names or a RegExp; got ${describeValue(exclude)}`, { help: "exclude: ['lm_head']" });
  }
  const lora = [...loraLayers(model).keys()];
  if (lora.length > 0) {
    throw new PosttrainError('NOT_SUPPORTED', `${owner}: the model has LoRA adapters (at "${lora[0]}"); expected a model without adapters`, {
      help: 'prepareQat the base model first and applyLora after it, or mergeAndUnload the adapters first',
    });
  }
  const targets: [string, Linear | Conv1D][] = [];
  const skipped: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (path === '') continue;
    const candidate = m instanceof Linear || m instanceof Conv1D || m instanceof QuantizedLinear || m instanceof FakeQuantizedLinear;
    if (!candidate) continue;
    if (isExcluded(exclude, path)) {
      skipped.push(path);
      continue;
    }
    checkLayer(m as Linear | Conv1D, o, path);
    targets.push([path, m as Linear | Conv1D]);
  }
  const built = targets.map(([path, layer]) => FakeQuantizedLinear.fromLinear(layer, schemeOptions, path));
  targets.forEach(([path], i) => model.replaceModule(path, built[i] as FakeQuantizedLinear).dispose());
  return { scheme: o.scheme, layers: targets.map(([path]) => path), excluded: skipped };
}

/**
 * Ends quantisation-aware training (torchao's convert step): every {@link FakeQuantizedLinear} of
 * `model` is replaced in place by {@link QuantizedLinear.fromWeight} of its trained weight with the
 * same options, whose forward equals the fake-quantised forward (to float32 rounding of the
 * matmul), and is disposed. Reads weights asynchronously, so it runs on WebGPU too. `excluded`
 * lists the float Linear / Conv1D layers left in the model.
 *
 * @example
 * ```ts
 * const { layers } = await convertQat(model); // ['model.layers.0.self_attn.q_proj', …]
 * ```
 */
export async function convertQat(model: Module): Promise<QatSummary> {
  const found: [string, FakeQuantizedLinear][] = [];
  const floats: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (m instanceof FakeQuantizedLinear) found.push([path, m]);
    else if (path !== '' && (m instanceof Linear || m instanceof Conv1D)) floats.push(path);
  }
  if (found.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', 'convertQat: expected a model prepared by prepareQat (FakeQuantizedLinear layers); got none', {
      help: 'call prepareQat(model, options) before training, then convertQat(model)',
    });
  }
  const data = new Map<tf.Tensor, Float32Array>();
  for (const [, layer] of found) for (const t of [layer.weight, layer.bias]) if (t) data.set(t, (await t.data()) as Float32Array);
  const built: QuantizedLinear[] = [];
  try {
    for (const [path, layer] of found) built.push(quantizedFrom(layer, path, (t) => data.get(t) as Float32Array));
  } catch (error) {
    for (const q of built) q.dispose();
    throw error;
  }
  found.forEach(([path], i) => model.replaceModule(path, built[i] as QuantizedLinear).dispose());
  const first = found[0] as [string, FakeQuantizedLinear];
  return { scheme: first[1].options.scheme, layers: found.map(([path]) => path), excluded: floats };
}
