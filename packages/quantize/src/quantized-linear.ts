import { Conv1D, Linear, type LinearLike, Module, PosttrainError, Rng, checkNumber, describeValue, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';
import { NF4_BLOCK_SIZE, NF4_NESTED_BLOCK_SIZE, dequantizeNf4Tensor, packBytes, quantizeNf4 } from './nf4.js';
import { type PackBits, packInt32, packedColumns, unpackInt32Tensor } from './pack.js';
import { affineQParams, qRange, quantizeValue } from './qparams.js';

/** A weight-only quantisation scheme. */
export type QuantScheme = 'int8' | 'int4' | 'nf4';

/** Options of {@link QuantizedLinear.fromLinear} and `quantizeModel`. */
export interface QuantizeOptions {
  /** `'int8'`: per output channel, symmetric; `'int4'`: group-wise; `'nf4'`: QLoRA's NormalFloat4, block 64, double quantisation. */
  scheme: QuantScheme;
  /** int4 only: columns per group, 32, 64 or 128 (default 128, llm-compressor's W4A16). */
  groupSize: number;
  /** int4 only: symmetric grid (zero-point 0, the default) or `false` for per-group zero-points. */
  symmetric: boolean;
}

/**
 * Defaults of {@link QuantizeOptions}: int8; int4 takes groupSize 128, symmetric.
 *
 * @example
 * ```ts
 * QuantizedLinear.fromLinear(layer, { ...defaultQuantizeOptions, scheme: 'int4' });
 * ```
 */
export const defaultQuantizeOptions: Readonly<QuantizeOptions> = Object.freeze({ scheme: 'int8', groupSize: 128, symmetric: true });

/** What {@link QuantizedLinear.fromIntegers} takes: integer codes from any method (round-to-nearest, GPTQ). */
export interface QuantizedIntegers {
  scheme: 'int4' | 'int8';
  inFeatures: number;
  outFeatures: number;
  /** Codes, row-major `[out, in]`, in [qmin, qmax] of the scheme's bits. */
  q: Int8Array;
  /** Scales `[out, groups]`, row-major. */
  scales: Float32Array;
  /** Zero-points `[out, groups]` (asymmetric grids); omitted: all 0, symmetric. */
  zeros?: Int8Array;
  /** Group of each input column `[in]` (GPTQ's act-order); omitted: column j is in group floor(j / groupSize). */
  gIdx?: Int32Array;
  /** Columns per group; omitted: `inFeatures / groups` (so one group per row is per-channel). */
  groupSize?: number;
  /** Bias `[out]`, kept in float32. */
  bias?: Float32Array;
}

/** The float layer a quantised one was made from, restored by `toFloat`. */
type Origin = 'linear' | 'conv1d';

/**
 * The layout of a quantised layer: what {@link QuantizedLinear.empty} builds and a checkpoint records.
 *
 * @example
 * ```ts
 * const spec: QuantizedLayerSpec = { scheme: 'int4', inFeatures: 128, outFeatures: 64, groupSize: 32, symmetric: false };
 * ```
 */
export interface QuantizedLayerSpec {
  scheme: QuantScheme;
  inFeatures: number;
  outFeatures: number;
  /** int4/int8: columns per group (default: int8 `inFeatures`, per output channel; int4 128). nf4: 64, fixed. */
  groupSize?: number;
  /** false: per-group zero-points (`weight_zero_point`); default true. */
  symmetric?: boolean;
  /** true: GPTQ's act-order, the group of each column in `weight_g_idx`; default false. */
  actOrder?: boolean;
  /** Whether the layer has a bias (default false). */
  bias?: boolean;
  /** The float layer type it stands for (default `'linear'`; `'conv1d'` for GPT-2's Conv1D). */
  origin?: Origin;
}

/**
 * A weight-only quantised linear layer: a drop-in {@link LinearLike} whose weight stays packed and
 * is dequantised inside `forward` (tf ops only, so it runs on cpu, wasm and WebGPU), then
 * `y = x W'ᵀ + b` with the bias kept in float32. It has no parameters (nothing trains); its state
 * is buffers, shown by `stateDict()`:
 *
 * - int8 / int4 (compressed-tensors' pack-quantized layout, what vLLM loads): `weight_packed`
 *   int32 `[out, ceil(in · bits / 32)]`, `weight_scale` float32 `[out, groups]`,
 *   `weight_zero_point` int32 `[ceil(out · bits / 32), groups]` (asymmetric only, packed along the
 *   output dimension), `weight_g_idx` int32 `[in]` (act-order only), `bias`.
 * - nf4 (bitsandbytes' `Params4bit`): `weight` int32 `[ceil(out · in / 8)]` holding the
 *   `ceil(out · in / 2)` code bytes, `weight_absmax` int32 holding one 8-bit code per 64-block,
 *   `weight_nested_absmax` float32 `[ceil(blocks / 256)]`, `weight_nested_offset` float32 `[]`, `bias`.
 *
 * {@link QuantizedLinear.weightBytes} is the exact size of the quantised weight: the packed codes
 * (nf4: the `ceil(out · in / 2)` bytes, not their word padding), scales, zero-points, g_idx, absmax
 * codes (1 byte each), nested absmax and offset; not the bias, and not the constant code tables
 * (NF4's 16 and the dynamic map's 256 float32 values, which a bitsandbytes file repeats per layer).
 *
 * @example
 * ```ts
 * const q = QuantizedLinear.fromLinear(new Linear(128, 64), { scheme: 'int4', groupSize: 32 });
 * const y = q.forward(tf.ones([2, 128])); // [2, 64]
 * q.weightBytes; // 64·16·4 packed + 64·4·4 scales = 5120 (float: 32768)
 * ```
 */
export class QuantizedLinear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly scheme: QuantScheme;
  /** Bits per code: 8, 4 (int4 and nf4). */
  readonly bits: number;
  /** Columns per group (int8: `inFeatures`; nf4: 64 consecutive values of the flattened weight). */
  readonly groupSize: number;
  /** False when the grid has zero-points. */
  readonly symmetric: boolean;
  /** Exact bytes of the quantised weight (see the class comment). */
  readonly weightBytes: number;
  /** The layer type this one replaces: a GPT-2 `Conv1D` comes back as one, weight `[in, out]`. */
  readonly origin: Origin;
  private readonly hasBias: boolean;
  /** Read from the buffers at each use: `loadStateDict` replaces a buffer's tensor (disposing the old one). */
  private get bias(): tf.Tensor1D | undefined {
    return this.hasBias ? (this.namedBuffers().get('bias') as tf.Tensor1D) : undefined;
  }
  private readonly groups: number;
  private readonly hasGIdx: boolean;

  private constructor(init: {
    inFeatures: number;
    outFeatures: number;
    scheme: QuantScheme;
    groupSize: number;
    groups: number;
    symmetric: boolean;
    origin: Origin;
    buffers: Record<string, tf.Tensor>;
    weightBytes: number;
    bias: Float32Array | undefined;
  }) {
    super();
    this.inFeatures = init.inFeatures;
    this.outFeatures = init.outFeatures;
    this.scheme = init.scheme;
    this.bits = init.scheme === 'int8' ? 8 : 4;
    this.groupSize = init.groupSize;
    this.groups = init.groups;
    this.symmetric = init.symmetric;
    this.origin = init.origin;
    this.weightBytes = init.weightBytes;
    this.hasGIdx = 'weight_g_idx' in init.buffers;
    for (const [name, t] of Object.entries(init.buffers)) this.registerBuffer(name, t);
    this.hasBias = init.bias !== undefined;
    if (init.bias) this.registerBuffer('bias', tf.tensor1d(init.bias));
  }

  /**
   * A layer from integer codes and their scales, e.g. GPTQ's result. Codes are `[out, in]` row-major
   * in [qmin, qmax]; scales (and zero-points, for an asymmetric grid) `[out, groups]`; `gIdx` maps
   * each column to its group (act-order), otherwise column j is in group floor(j / groupSize).
   *
   * @example
   * ```ts
   * const layer = QuantizedLinear.fromIntegers({ scheme: 'int4', inFeatures: 64, outFeatures: 2, groupSize: 32,
   *   q: new Int8Array(128), scales: new Float32Array(4).fill(0.01) });
   * ```
   */
  static fromIntegers(integers: QuantizedIntegers, options: { origin?: Origin } = {}): QuantizedLinear {
    const owner = 'QuantizedLinear.fromIntegers';
    const { scheme, inFeatures, outFeatures, q, scales, zeros, gIdx, bias } = integers;
    if (scheme !== 'int4' && scheme !== 'int8') {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected scheme 'int4' or 'int8'; got ${describeValue(scheme)}`, {
        help: 'nf4 layers come from QuantizedLinear.fromLinear or fromWeight',
      });
    }
    checkNumber(owner, 'inFeatures', inFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    checkNumber(owner, 'outFeatures', outFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    const bits: PackBits = scheme === 'int8' ? 8 : 4;
    const { qmin, qmax } = qRange(bits);
    expectLength(owner, 'q', q, outFeatures * inFeatures, `[${outFeatures}, ${inFeatures}]`);
    if (scales.length === 0 || scales.length % outFeatures !== 0) {
      throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected scales [${outFeatures}, groups]; got ${scales.length} values`);
    }
    const groups = scales.length / outFeatures;
    const groupSize = integers.groupSize ?? (gIdx ? Math.ceil(inFeatures / groups) : inFeatures / groups);
    if (!gIdx && (!Number.isInteger(groupSize) || groupSize * groups !== inFeatures)) {
      throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${groups} groups of groupSize ${groupSize} to cover inFeatures ${inFeatures}`, {
        help: 'pass gIdx for an act-order layout, or scales with inFeatures / groupSize columns',
      });
    }
    for (let i = 0; i < q.length; i++) {
      const v = q[i] as number;
      if (v < qmin || v > qmax) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${bits}-bit codes in [${qmin}, ${qmax}]; got ${v} at index ${i}`);
    }
    for (let i = 0; i < scales.length; i++) {
      const s = scales[i] as number;
      if (!Number.isFinite(s) || s <= 0) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected positive finite scales; got ${s} at index ${i}`);
    }
    if (zeros) {
      expectLength(owner, 'zeros', zeros, scales.length, `[${outFeatures}, ${groups}] like scales`);
      for (let i = 0; i < zeros.length; i++) {
        const z = zeros[i] as number;
        if (z < qmin || z > qmax) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected zero-points in [${qmin}, ${qmax}]; got ${z} at index ${i}`);
      }
    }
    if (gIdx) {
      expectLength(owner, 'gIdx', gIdx, inFeatures, `[${inFeatures}]`);
      for (let j = 0; j < gIdx.length; j++) {
        const g = gIdx[j] as number;
        if (!Number.isInteger(g) || g < 0 || g >= groups) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected gIdx values in [0, ${groups - 1}]; got ${g} at column ${j}`);
      }
    }
    if (bias) expectLength(owner, 'bias', bias, outFeatures, `[${outFeatures}]`);
    const wcols = packedColumns(inFeatures, bits);
    const buffers: Record<string, tf.Tensor> = {
      weight_packed: tf.tensor2d(packInt32(q, outFeatures, inFeatures, bits), [outFeatures, wcols], 'int32'),
      weight_scale: tf.tensor2d(Float32Array.from(scales), [outFeatures, groups]),
    };
    let bytes = 4 * outFeatures * wcols + 4 * scales.length;
    if (zeros) {
      // compressed-tensors packs zero-points along the output dimension (packed_dim 0): pack the transpose
      const zt = new Int8Array(zeros.length);
      for (let r = 0; r < outFeatures; r++) for (let g = 0; g < groups; g++) zt[g * outFeatures + r] = zeros[r * groups + g] as number;
      const zcols = packedColumns(outFeatures, bits);
      const packedT = packInt32(zt, groups, outFeatures, bits); // [groups, zcols]
      const packed = new Int32Array(packedT.length);
      for (let g = 0; g < groups; g++) for (let c = 0; c < zcols; c++) packed[c * groups + g] = packedT[g * zcols + c] as number;
      buffers.weight_zero_point = tf.tensor2d(packed, [zcols, groups], 'int32');
      bytes += 4 * groups * zcols;
    }
    if (gIdx) {
      buffers.weight_g_idx = tf.tensor1d(Int32Array.from(gIdx), 'int32');
      bytes += 4 * inFeatures;
    }
    return new QuantizedLinear({ inFeatures, outFeatures, scheme, groupSize, groups, symmetric: !zeros, origin: options.origin ?? 'linear', buffers, weightBytes: bytes, bias });
  }

  /**
   * A layer with zero-filled buffers of the shapes a checkpoint holds for this layout, for
   * `loadStateDict` to fill (what loading a quantised checkpoint builds in place of each float layer).
   * `groupSize` is int4's columns per group (int8: per output channel unless given; nf4: ignored);
   * `actOrder` adds `weight_g_idx`; `symmetric: false` adds `weight_zero_point` (int4 and int8).
   *
   * @example
   * ```ts
   * const layer = QuantizedLinear.empty({ scheme: 'int4', inFeatures: 128, outFeatures: 64, groupSize: 32 });
   * layer.loadStateDict(tensorsFromFile); // weight_packed [64, 16], weight_scale [64, 4]
   * ```
   */
  static empty(spec: QuantizedLayerSpec): QuantizedLinear {
    const owner = 'QuantizedLinear.empty';
    const { scheme, inFeatures, outFeatures } = spec;
    const symmetric = spec.symmetric ?? true;
    const actOrder = spec.actOrder ?? false;
    checkNumber(owner, 'inFeatures', inFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    checkNumber(owner, 'outFeatures', outFeatures, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    const bias = spec.bias ? new Float32Array(outFeatures) : undefined;
    if (scheme === 'nf4') {
      if (!symmetric || actOrder) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: nf4 has neither zero-points nor act-order; got symmetric ${symmetric}, actOrder ${actOrder}`);
      const numel = inFeatures * outFeatures;
      const byteLength = Math.ceil(numel / 2);
      const blocks = Math.ceil(numel / NF4_BLOCK_SIZE);
      const nested = Math.ceil(blocks / NF4_NESTED_BLOCK_SIZE);
      const buffers: Record<string, tf.Tensor> = {
        weight: tf.zeros([Math.ceil(byteLength / 4)], 'int32'),
        weight_absmax: tf.zeros([Math.ceil(blocks / 4)], 'int32'),
        weight_nested_absmax: tf.zeros([nested]),
        weight_nested_offset: tf.scalar(0),
      };
      const weightBytes = byteLength + blocks + 4 * nested + 4;
      return new QuantizedLinear({ inFeatures, outFeatures, scheme, groupSize: NF4_BLOCK_SIZE, groups: blocks, symmetric: true, origin: spec.origin ?? 'linear', buffers, weightBytes, bias });
    }
    if (scheme !== 'int4' && scheme !== 'int8') throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected scheme 'int8', 'int4' or 'nf4'; got ${describeValue(scheme)}`);
    const bits: PackBits = scheme === 'int8' ? 8 : 4;
    const groupSize = spec.groupSize ?? (scheme === 'int8' ? inFeatures : defaultQuantizeOptions.groupSize);
    checkNumber(owner, 'groupSize', groupSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    if (!actOrder && inFeatures % groupSize !== 0) {
      throw new PosttrainError('SHAPE_MISMATCH', `${owner}: groupSize ${groupSize} does not divide inFeatures ${inFeatures}`, {
        help: 'without act-order (g_idx) every group holds groupSize consecutive columns',
      });
    }
    const groups = Math.ceil(inFeatures / groupSize);
    const wcols = packedColumns(inFeatures, bits);
    const buffers: Record<string, tf.Tensor> = { weight_packed: tf.zeros([outFeatures, wcols], 'int32'), weight_scale: tf.zeros([outFeatures, groups]) };
    let weightBytes = 4 * outFeatures * wcols + 4 * outFeatures * groups;
    if (!symmetric) {
      const zcols = packedColumns(outFeatures, bits);
      buffers.weight_zero_point = tf.zeros([zcols, groups], 'int32');
      weightBytes += 4 * zcols * groups;
    }
    if (actOrder) {
      buffers.weight_g_idx = tf.zeros([inFeatures], 'int32');
      weightBytes += 4 * inFeatures;
    }
    return new QuantizedLinear({ inFeatures, outFeatures, scheme, groupSize, groups, symmetric, origin: spec.origin ?? 'linear', buffers, weightBytes, bias });
  }

  /**
   * The layout of this layer, as {@link QuantizedLinear.empty} takes it (what a checkpoint records).
   *
   * @example
   * ```ts
   * const copy = QuantizedLinear.empty(layer.spec); // same buffer shapes, zero-filled
   * copy.loadStateDict(layer.stateDict());
   * ```
   */
  get spec(): Required<QuantizedLayerSpec> {
    return {
      scheme: this.scheme,
      inFeatures: this.inFeatures,
      outFeatures: this.outFeatures,
      groupSize: this.groupSize,
      symmetric: this.symmetric,
      actOrder: this.hasGIdx,
      bias: this.bias !== undefined,
      origin: this.origin,
    };
  }

  /**
   * Round-to-nearest quantisation of a float weight `[out, in]` (row-major) with the grids of
   * compressed-tensors (int8, int4) or bitsandbytes (nf4).
   *
   * @example
   * ```ts
   * const layer = QuantizedLinear.fromWeight(new Float32Array(64 * 128).fill(0.01), 64, 128, { scheme: 'nf4' });
   * ```
   */
  static fromWeight(
    weight: Float32Array,
    outFeatures: number,
    inFeatures: number,
    options: Partial<QuantizeOptions> = {},
    extra: { bias?: Float32Array; origin?: Origin; name?: string } = {},
  ): QuantizedLinear {
    const o = resolveQuantizeOptions(options, 'QuantizedLinear.fromWeight');
    const where = extra.name === undefined ? '' : ` layer "${extra.name}"`;
    expectLength('QuantizedLinear.fromWeight', 'weight', weight, outFeatures * inFeatures, `[${outFeatures}, ${inFeatures}]`);
    checkWeight(weight, inFeatures, extra.name);
    if (o.scheme === 'int4' && inFeatures % o.groupSize !== 0) {
      throw new PosttrainError('INVALID_OPTION', `quantize:${where} inFeatures ${inFeatures} is not divisible by groupSize ${o.groupSize}`, {
        help: `choose a groupSize that divides ${inFeatures} (32, 64 or 128), or exclude the layer`,
      });
    }
    if (o.scheme === 'nf4') {
      const q = quantizeNf4(weight);
      const blocks = q.absmaxCodes.length;
      const buffers: Record<string, tf.Tensor> = {
        weight: tf.tensor1d(q.packed, 'int32'),
        weight_absmax: tf.tensor1d(packBytes(q.absmaxCodes), 'int32'),
        weight_nested_absmax: tf.tensor1d(q.absmax2),
        weight_nested_offset: tf.scalar(q.offset),
      };
      const weightBytes = q.byteLength + blocks + 4 * q.absmax2.length + 4;
      return new QuantizedLinear({
        inFeatures,
        outFeatures,
        scheme: 'nf4',
        groupSize: NF4_BLOCK_SIZE,
        groups: blocks,
        symmetric: true,
        origin: extra.origin ?? 'linear',
        buffers,
        weightBytes,
        bias: extra.bias,
      });
    }
    const bits = o.scheme === 'int8' ? 8 : 4;
    const groupSize = o.scheme === 'int8' ? inFeatures : o.groupSize;
    const symmetric = o.scheme === 'int8' ? true : o.symmetric;
    const groups = inFeatures / groupSize;
    const q = new Int8Array(weight.length);
    const scales = new Float32Array(outFeatures * groups);
    const zeros = symmetric ? undefined : new Int8Array(outFeatures * groups);
    for (let r = 0; r < outFeatures; r++) {
      for (let g = 0; g < groups; g++) {
        const start = r * inFeatures + g * groupSize;
        let min = Number.POSITIVE_INFINITY;
        let max = Number.NEGATIVE_INFINITY;
        for (let i = start; i < start + groupSize; i++) {
          min = Math.min(min, weight[i] as number);
          max = Math.max(max, weight[i] as number);
        }
        const { scale, zero } = affineQParams(min, max, bits, symmetric);
        scales[r * groups + g] = scale;
        if (zeros) zeros[r * groups + g] = zero;
        for (let i = start; i < start + groupSize; i++) q[i] = quantizeValue(weight[i] as number, scale, zero, bits);
      }
    }
    return QuantizedLinear.fromIntegers({ scheme: o.scheme, inFeatures, outFeatures, q, scales, zeros, groupSize, bias: extra.bias }, { origin: extra.origin });
  }

  /**
   * Quantises a float {@link Linear} (weight `[out, in]`) or GPT-2 {@link Conv1D} (weight `[in, out]`),
   * reading its weights synchronously (cpu, wasm; on WebGPU use `quantizeModel`, which reads asynchronously).
   *
   * @example
   * ```ts
   * const q = QuantizedLinear.fromLinear(new Linear(64, 32), { scheme: 'int8' });
   * q.weightBytes; // 32·16·4 packed + 32·4 scales = 2176
   * ```
   */
  static fromLinear(linear: Linear | Conv1D, options: Partial<QuantizeOptions> = {}, name?: string): QuantizedLinear {
    const { weight, bias, origin } = floatWeights(linear, name, (t) => t.dataSync() as Float32Array);
    return QuantizedLinear.fromWeight(weight, linear.outFeatures, linear.inFeatures, options, { bias, origin, name });
  }

  /** `[..., inFeatures]` → `[..., outFeatures]`: dequantise the weight, then `x W'ᵀ + b`. */
  forward(x: tf.Tensor): tf.Tensor {
    if (x.shape[x.shape.length - 1] !== this.inFeatures) {
      throw new PosttrainError('SHAPE_MISMATCH', `QuantizedLinear: expected input [..., ${this.inFeatures}]; got ${formatShape(x.shape)}`);
    }
    return tf.tidy(() => {
      const a = x.reshape([-1, this.inFeatures]) as tf.Tensor2D;
      const y = tf.fused.matMul({ a, b: this.dequantizeWeight(), transposeB: true, bias: this.bias });
      return y.reshape([...x.shape.slice(0, -1), this.outFeatures]);
    });
  }

  /**
   * The dequantised weight `[out, in]` float32 (the caller disposes it): compressed-tensors'
   * `(q - zero) · scale`, or bitsandbytes' `NF4[q] · absmax`.
   *
   * @example
   * ```ts
   * const w = layer.dequantizeWeight(); // [out, in]
   * w.dispose();
   * ```
   */
  dequantizeWeight(): tf.Tensor2D {
    const buffers = this.namedBuffers();
    const get = (name: string) => buffers.get(name) as tf.Tensor;
    return tf.tidy(() => {
      const out = this.outFeatures;
      const inn = this.inFeatures;
      if (this.scheme === 'nf4') {
        const flat = dequantizeNf4Tensor(
          {
            packed: get('weight') as tf.Tensor1D,
            absmaxCodes: get('weight_absmax') as tf.Tensor1D,
            absmax2: get('weight_nested_absmax') as tf.Tensor1D,
            offset: get('weight_nested_offset') as tf.Scalar,
          },
          out * inn,
          this.groups,
        );
        return flat.reshape([out, inn]) as tf.Tensor2D;
      }
      const bits = this.bits as PackBits;
      let q: tf.Tensor = unpackInt32Tensor(get('weight_packed') as tf.Tensor2D, inn, bits);
      let scale = get('weight_scale');
      let zero: tf.Tensor | undefined;
      if (!this.symmetric) {
        const packed = get('weight_zero_point') as tf.Tensor2D; // [ceil(out·b/32), groups]
        zero = unpackInt32Tensor(packed.transpose() as tf.Tensor2D, out, bits).transpose(); // [out, groups]
      }
      if (this.hasGIdx) {
        const gIdx = get('weight_g_idx');
        scale = tf.gather(scale, gIdx, 1);
        if (zero) zero = tf.gather(zero, gIdx, 1);
      } else {
        q = q.reshape([out, this.groups, this.groupSize]);
        scale = scale.reshape([out, this.groups, 1]);
        if (zero) zero = zero.reshape([out, this.groups, 1]);
      }
      const centred = zero ? tf.sub(q, zero) : q;
      return tf.mul(tf.cast(centred, 'float32'), scale).reshape([out, inn]) as tf.Tensor2D;
    });
  }

  /**
   * A float layer with the dequantised weight and the bias: a {@link Linear}, or a {@link Conv1D}
   * (weight `[in, out]`) where this layer replaced one.
   *
   * @example
   * ```ts
   * const linear = layer.toFloat(); // what dequantizeModel puts back
   * ```
   */
  toFloat(): Linear | Conv1D {
    // a private generator for the throw-away initial values, so the shared one's stream is untouched
    const init = { bias: this.bias !== undefined, rng: new Rng(0) };
    const layer = this.origin === 'conv1d' ? new Conv1D(this.inFeatures, this.outFeatures, init) : new Linear(this.inFeatures, this.outFeatures, init);
    tf.tidy(() => {
      const w = this.dequantizeWeight();
      layer.weight.assign(this.origin === 'conv1d' ? w.transpose() : w);
      if (this.bias && layer.bias) layer.bias.assign(this.bias);
    });
    return layer;
  }
}

/** Resolves and checks {@link QuantizeOptions}, naming the field, expected and received value. */
export function resolveQuantizeOptions(options: Partial<QuantizeOptions> | undefined, owner: string): QuantizeOptions {
  const o = resolveOptions(owner, options, defaultQuantizeOptions as QuantizeOptions);
  if (o.scheme !== 'int8' && o.scheme !== 'int4' && o.scheme !== 'nf4') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected scheme 'int8', 'int4' or 'nf4'; got ${describeValue(o.scheme)}`);
  }
  if (typeof o.symmetric !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected symmetric to be a boolean; got ${describeValue(o.symmetric)}`);
  if (o.scheme === 'int4' && ![32, 64, 128].includes(o.groupSize)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected groupSize 32, 64 or 128 for int4; got ${describeValue(o.groupSize)}`);
  }
  if (o.scheme !== 'int4' && options?.groupSize !== undefined) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: groupSize applies to int4 only; got groupSize ${describeValue(options.groupSize)} with scheme '${o.scheme}'`, {
      help: o.scheme === 'int8' ? 'int8 is per output channel; drop groupSize' : 'nf4 uses blocks of 64; drop groupSize',
    });
  }
  if (o.scheme !== 'int4' && o.symmetric === false) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: symmetric false (zero-points) applies to int4 only; got it with scheme '${o.scheme}'`);
  }
  return o;
}

/** A float layer's weight as `[out, in]` row-major, its bias, and its type. */
export function floatWeights(linear: Linear | Conv1D, name: string | undefined, read: (t: tf.Tensor) => Float32Array): { weight: Float32Array; bias: Float32Array | undefined; origin: Origin } {
  if (!(linear instanceof Linear) && !(linear instanceof Conv1D)) {
    const got = (linear as object | null)?.constructor?.name ?? typeof linear;
    throw new PosttrainError('NOT_SUPPORTED', `quantize: expected a float Linear or Conv1D${name ? ` at "${name}"` : ''}; got ${got}`, {
      help: got === 'QuantizedLinear' ? 'the layer is already quantised; dequantizeModel first to quantise it again' : undefined,
    });
  }
  const origin: Origin = linear instanceof Conv1D ? 'conv1d' : 'linear';
  const stored = read(linear.weight);
  let weight = Float32Array.from(stored);
  if (origin === 'conv1d') {
    // Conv1D keeps [in, out]; the quantised layouts are [out, in] like torch's Linear
    const [inn, out] = [linear.inFeatures, linear.outFeatures];
    weight = new Float32Array(stored.length);
    for (let i = 0; i < inn; i++) for (let o = 0; o < out; o++) weight[o * inn + i] = stored[i * out + o] as number;
  }
  return { weight, bias: linear.bias ? Float32Array.from(read(linear.bias)) : undefined, origin };
}

function checkWeight(weight: Float32Array, inFeatures: number, name: string | undefined): void {
  for (let i = 0; i < weight.length; i++) {
    if (!Number.isFinite(weight[i])) {
      throw new PosttrainError('NON_FINITE', `quantize: layer ${name === undefined ? '' : `"${name}" `}has a non-finite weight ${weight[i]} at [${Math.floor(i / inFeatures)}, ${i % inFeatures}]`, {
        help: 'a NaN or Inf weight usually means training diverged; fix the checkpoint before quantising',
      });
    }
  }
}

function expectLength(owner: string, name: string, value: ArrayLike<number>, length: number, shape: string): void {
  if (value.length !== length) throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${name} ${shape} (${length} values); got ${value.length}`);
}
