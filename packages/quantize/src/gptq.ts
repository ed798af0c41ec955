// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", arXiv 2210.17323, Algorithm 1) as llm-compressor runs it
// (src/llmcompressor/modifiers/quantization/gptq/gptq_quantize.py `quantize_weight`).
import { type CalibrationBatch, type LinearLayerFilter, accumulateHessians, calibrationTargets, calibrationTokens, dampedInverseHessianFactor, defaultCalibrationLayers } from '@posttrain/policy';
import { type CausalLM, Conv1D, Linear, type LinearLike, PosttrainError, checkNumber, describeValue, resolveOptions, tf } from '@posttrain/tensor-core';
import { affineQParams, dequantizeValue, quantizeValue } from './qparams.js';
import { QuantizedLinear } from './quantized-linear.js';

/** Options of {@link gptqQuantize}. */
export interface GptqOptions {
  /** Bits per weight: 4 (int4) or 8 (int8). */
  bits: 4 | 8;
  /** Input columns sharing one scale (32, 64, 128, …), or `null` for one scale per output channel. */
  groupSize: number | null;
  /** Symmetric grid (zero-point 0) or asymmetric with per-group zero-points. */
  symmetric: boolean;
  /** Added to H's diagonal as a fraction of its mean (llm-compressor's `dampening_frac`, GPTQ's `percdamp`). */
  dampening: number;
  /** Columns per lazy batch update (the paper's B = 128). */
  blockSize: number;
  /**
   * Quantise columns in order of decreasing `H_jj` (activation order). `true` or `'group'`:
   * llm-compressor's `actorder: group` — groups are runs of columns in that order, so a `gIdx`
   * maps each column to its group; `'weight'`: groups stay runs of the original columns (scales
   * computed first, no `gIdx` needed at inference); `false`: natural order.
   */
  actOrder: boolean | 'group' | 'weight';
  /**
   * When group scales are computed: `'static'` (llm-compressor) from the weight before any
   * update; `'dynamic'` (IST-DASLab's gptq.py with `static_groups=False`) when the group's first
   * column comes up, from the weight with the updates of earlier blocks (not of earlier columns of
   * the same block: the original reads the lazily updated outer matrix).
   */
  groupQParams: 'static' | 'dynamic';
}

/** Frozen defaults of {@link gptqQuantize}: int4, groups of 128, symmetric, 1% dampening, blocks of 128, no act-order, static groups (llm-compressor's W4A16 preset). */
export const defaultGptqOptions: Readonly<GptqOptions> = Object.freeze({ bits: 4, groupSize: 128, symmetric: true, dampening: 0.01, blockSize: 128, actOrder: false, groupQParams: 'static' });

/** What {@link gptqQuantize} returns: the integers and grid of `QuantizedLinear.fromIntegers`. */
export interface GptqResult {
  /** `[out, in]` row-major codes in `[qmin, qmax]`, in the original column order. */
  q: Int8Array;
  /** `[out, groups]` float32 scales (one group per channel when `groupSize` is null). */
  scales: Float32Array;
  /** `[out, groups]` zero-points; undefined when symmetric. */
  zeros: Int8Array | undefined;
  /** `[in]` column → group, only with act-order `'group'` (otherwise column j is in group ⌊j / groupSize⌋). */
  gIdx: Int32Array | undefined;
  /** `[in]` the order columns were quantised in (identity without act-order). */
  perm: Int32Array;
  groupSize: number;
  /** GPTQ's loss Σ (w − q)² / [H⁻¹]²_jj / 2 over all weights. */
  loss: number;
  /** True when H + damping was not positive definite and the layer fell back to round-to-nearest (llm-compressor does the same, with a warning). */
  fellBackToRtn: boolean;
}

/**
 * Quantises one linear layer's weight with GPTQ given the Hessian of its inputs
 * `H = (2/n) Σ x xᵀ` (see `accumulateHessians` in @posttrain/policy). Follows llm-compressor's
 * `quantize_weight` step by step: group scales from the weight (compressed-tensors' grid, see
 * qparams.ts), dead inputs (`H_jj = 0`: `H_jj ← 1`, weights zeroed), dampening
 * `λ = dampening · mean(diag H)`, `U` = upper Cholesky factor of `(H + λI)⁻¹`, then column by
 * column `q = quant(w)`, `err = (w − q) / U_jj`, `W[:, j:] −= err · U[j, j:]` inside blocks of
 * `blockSize` columns and one lazy `W[:, end:] −= Err · U[block, end:]` per block (Algorithm 1).
 * Each column is fake-quantised in float32 (compressed-tensors' `fake_quantize` on a float32
 * weight); the error propagation runs in float64 (llm-compressor's is float32: on the reference
 * layer both give the same integers). Inputs are not modified.
 *
 * @example
 * ```ts
 * // weight: Float32Array [out, in] row-major; hessian: Float64Array [in, in] (shapes read from the lengths)
 * const { q, scales, gIdx, loss } = gptqQuantize(weight, hessian, { bits: 4, groupSize: 128, actOrder: true });
 * ```
 */
export function gptqQuantize(weight: Float32Array, hessian: Float64Array | Float32Array, options: Partial<GptqOptions> = {}): GptqResult {
  const o = resolveGptqOptions(options);
  const cols = Math.round(Math.sqrt(hessian?.length ?? 0));
  if (
    !(weight instanceof Float32Array) ||
    !(hessian instanceof Float64Array || hessian instanceof Float32Array) ||
    cols === 0 ||
    cols * cols !== hessian.length ||
    weight.length % cols !== 0 ||
    weight.length === 0
  ) {
    throw new PosttrainError(
      'SHAPE_MISMATCH',
      `gptqQuantize: expected a Float32Array weight [out, in] and a Hessian [in, in] (out·in and in·in values); got ${weight?.length} and ${hessian?.length} values`,
    );
  }
  const rows = weight.length / cols;
  const g = o.groupSize ?? cols;
  if (cols % g !== 0) {
    throw new PosttrainError('INVALID_OPTION', `gptqQuantize: groupSize ${g} does not divide the layer's ${cols} input features`, {
      help: 'use a group size that divides inFeatures (32, 64, 128) or groupSize: null for per-channel scales',
    });
  }
  for (let i = 0; i < weight.length; i++) {
    if (!Number.isFinite(weight[i])) throw new PosttrainError('NON_FINITE', `gptqQuantize: weight [${Math.floor(i / cols)}, ${i % cols}] is ${weight[i]}; expected finite weights`);
  }
  for (let i = 0; i < hessian.length; i++) {
    if (!Number.isFinite(hessian[i]))
      throw new PosttrainError('NON_FINITE', `gptqQuantize: Hessian entry [${Math.floor(i / cols)}, ${i % cols}] is ${hessian[i]}; expected a finite Hessian`, {
        help: 'check the calibration inputs for NaN or Inf activations',
      });
  }
  const groups = cols / g;
  const actOrder = o.actOrder === true ? 'group' : o.actOrder;

  // Column order: decreasing H_jj (stable, so equal diagonals keep their order).
  const perm = Int32Array.from({ length: cols }, (_, j) => j);
  if (actOrder !== false) perm.sort((a, b) => hessian[b * cols + b] - hessian[a * cols + a]);
  const W = new Float64Array(rows * cols); // permuted
  const H = new Float64Array(cols * cols); // permuted
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) W[r * cols + c] = weight[r * cols + perm[c]];
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) H[i * cols + j] = hessian[perm[i] * cols + perm[j]];
  // groupOf[c]: group of permuted column c. 'group' and no act-order: runs of the quantisation order; 'weight': runs of the original columns.
  const groupOf = Int32Array.from({ length: cols }, (_, c) => Math.floor((actOrder === 'weight' ? perm[c] : c) / g));

  // Scales from the weight before any update (llm-compressor's observer), in the original column order for 'weight'.
  const scales = new Float32Array(rows * groups);
  const zeros = new Int8Array(rows * groups);
  const observe = (r: number, group: number, columns: (k: number) => number): void => {
    let min = Infinity;
    let max = -Infinity;
    for (let k = 0; k < g; k++) {
      const v = columns(k);
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const p = affineQParams(min, max, o.bits, o.symmetric);
    scales[r * groups + group] = p.scale;
    zeros[r * groups + group] = p.zero;
  };
  for (let r = 0; r < rows; r++) {
    for (let group = 0; group < groups; group++) {
      if (actOrder === 'weight') observe(r, group, (k) => weight[r * cols + group * g + k]);
      else observe(r, group, (k) => W[r * cols + group * g + k]);
    }
  }

  // Dead inputs, dampening, U = upper Cholesky factor of H⁻¹.
  let U = dampedInverseHessianFactor(H, W, rows, o.dampening);
  const fellBackToRtn = U === undefined;
  if (!U) {
    U = new Float64Array(cols * cols);
    for (let j = 0; j < cols; j++) U[j * cols + j] = 1;
  }

  const Q = new Int8Array(rows * cols); // permuted
  let loss = 0;
  const B = o.blockSize;
  for (let i1 = 0; i1 < cols; i1 += B) {
    const i2 = Math.min(i1 + B, cols);
    const count = i2 - i1;
    const W1 = new Float64Array(rows * count);
    const Err1 = new Float64Array(rows * count);
    for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) W1[r * count + k] = W[r * cols + i1 + k];
    for (let k = 0; k < count; k++) {
      const c = i1 + k;
      const group = groupOf[c];
      if (o.groupQParams === 'dynamic' && o.groupSize !== null && c % g === 0) {
        for (let r = 0; r < rows; r++) observe(r, group, (m) => W[r * cols + c + m]); // the outer W, as the original
      }
      const d = U[c * cols + c];
      for (let r = 0; r < rows; r++) {
        const scale = scales[r * groups + group];
        const zero = zeros[r * groups + group];
        const w = W1[r * count + k];
        const q = quantizeValue(w, scale, zero, o.bits); // float32, as fake_quantize on a float32 weight
        Q[r * cols + c] = q;
        const dq = dequantizeValue(q, scale, zero);
        loss += ((w - dq) * (w - dq)) / (d * d) / 2;
        const err = (w - dq) / d;
        Err1[r * count + k] = err;
        if (err === 0) continue;
        for (let m = k; m < count; m++) W1[r * count + m] -= err * U[c * cols + i1 + m];
      }
    }
    // Lazy batch update of the columns after the block: W[:, i2:] −= Err1 · U[i1:i2, i2:].
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < count; k++) {
        const err = Err1[r * count + k];
        if (err === 0) continue;
        const u = (i1 + k) * cols;
        for (let j = i2; j < cols; j++) W[r * cols + j] -= err * U[u + j];
      }
    }
  }

  const q = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) q[r * cols + perm[c]] = Q[r * cols + c];
  let gIdx: Int32Array | undefined;
  if (actOrder === 'group') {
    gIdx = new Int32Array(cols);
    for (let c = 0; c < cols; c++) gIdx[perm[c]] = groupOf[c];
  }
  return { q, scales, zeros: o.symmetric ? undefined : zeros, gIdx, perm, groupSize: g, loss, fellBackToRtn };
}

/** Validates GPTQ's options (shared with `gptqModel`). */
function resolveGptqOptions(options: Partial<GptqOptions> | undefined, owner = 'gptqQuantize'): GptqOptions {
  const o = resolveOptions(owner, options, defaultGptqOptions);
  if (o.bits !== 4 && o.bits !== 8) throw new PosttrainError('INVALID_OPTION', `${owner}: expected bits to be 4 or 8; got ${describeValue(o.bits)}`);
  if (o.groupSize !== null) checkNumber(owner, 'groupSize', o.groupSize, 'a positive integer or null (per channel)', (v) => Number.isInteger(v) && v > 0);
  if (typeof o.symmetric !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected symmetric to be true or false; got ${describeValue(o.symmetric)}`);
  checkNumber(owner, 'dampening', o.dampening, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'blockSize', o.blockSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  if (![true, false, 'group', 'weight'].includes(o.actOrder))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected actOrder to be true, false, 'group' or 'weight'; got ${describeValue(o.actOrder)}`);
  if (o.groupQParams !== 'static' && o.groupQParams !== 'dynamic')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected groupQParams to be 'static' or 'dynamic'; got ${describeValue(o.groupQParams)}`);
  return o;
}

/** Options of {@link gptqModel}: GPTQ's options plus which layers and in what order. */
export interface GptqModelOptions extends GptqOptions {
  /** Which linear layers to quantise; default every linear layer but `lm_head` (llm-compressor's `ignore: ["lm_head"]`). */
  layers: LinearLayerFilter;
  /**
   * `true` (llm-compressor's sequential pipeline, the default): one decoder block at a time (the
   * layers under the same `….<index>.` path), each block's Hessians gathered from a model whose
   * earlier blocks are already quantised, so a block learns to correct its inputs' error.
   * `false`: every Hessian from the float model in one pass (faster; the paper's per-layer setting).
   */
  sequential: boolean;
}

/** Frozen defaults of {@link gptqModel}. */
export const defaultGptqModelOptions: Readonly<GptqModelOptions> = Object.freeze({ ...defaultGptqOptions, layers: defaultCalibrationLayers, sequential: true });

/** What {@link gptqModel} did to one layer. */
export interface GptqLayerReport {
  path: string;
  inFeatures: number;
  outFeatures: number;
  /** Calibration tokens in its Hessian. */
  tokens: number;
  /** GPTQ's loss for the layer (see {@link GptqResult.loss}). */
  loss: number;
  fellBackToRtn: boolean;
}

/**
 * Quantises the linear layers of `model` in place with GPTQ: runs the calibration batches to gather
 * each layer's input Hessian (`accumulateHessians` from @posttrain/policy), quantises its weight
 * with {@link gptqQuantize} and puts a packed `QuantizedLinear` in its place. Block by block
 * (`sequential`, llm-compressor's default) or all from the float model. Everything is checked
 * first (dense layers only, group size dividing each layer's inputs, finite weights, enough
 * tokens), and if anything fails midway every replaced layer is put back: the model is either
 * fully quantised or unchanged. Returns one report per layer.
 *
 * GPTQ needs at least as many calibration tokens as the widest quantised layer has input
 * features: `H = (2/n) Σ x xᵀ` has rank at most n, so with fewer tokens it is singular and the
 * solution rests on the dampening alone (llm-compressor's examples use 512 × 2048 tokens).
 *
 * @example
 * ```ts
 * const calibration = chunks.slice(0, 64); // token-id rows, e.g. 64 × 128 tokens of held-in text
 * const report = await gptqModel(model, calibration, { bits: 4, groupSize: 128, actOrder: true });
 * // every linear layer but lm_head is now a QuantizedLinear
 * ```
 */
export async function gptqModel(model: CausalLM, calibration: readonly CalibrationBatch[], options: Partial<GptqModelOptions> = {}): Promise<GptqLayerReport[]> {
  const { layers, sequential, ...rest } = resolveOptions('gptqModel', options, defaultGptqModelOptions);
  const o = resolveGptqOptions(rest, 'gptqModel');
  if (typeof layers !== 'function') throw new PosttrainError('INVALID_OPTION', `gptqModel: expected layers to be a function (path, module) => boolean; got ${describeValue(layers)}`);
  if (typeof sequential !== 'boolean') throw new PosttrainError('INVALID_OPTION', `gptqModel: expected sequential to be true or false; got ${describeValue(sequential)}`);
  if (!Array.isArray(calibration)) {
    throw new PosttrainError('INVALID_ARGUMENT', `gptqModel: expected calibration to be an array of batches (token-id rows); got ${describeValue(calibration)}`, {
      help: 'the batches are run once per block, so pass an array, not a one-shot iterator',
    });
  }
  const scheme = o.bits === 4 ? 'int4' : 'int8';
  if (o.bits === 8 && (o.groupSize !== null || !o.symmetric)) {
    throw new PosttrainError('NOT_SUPPORTED', `gptqModel: int8 is per output channel and symmetric; got groupSize ${o.groupSize} and symmetric ${o.symmetric}`, {
      help: 'use { bits: 8, groupSize: null, symmetric: true }',
    });
  }
  if (o.bits === 4 && o.groupSize === null) throw new PosttrainError('NOT_SUPPORTED', 'gptqModel: int4 needs a groupSize (32, 64 or 128); got null', { help: 'use { bits: 4, groupSize: 128 }' });
  const targets = calibrationTargets(model, layers);
  if (targets.length === 0) throw new PosttrainError('INVALID_ARGUMENT', 'gptqModel: the layers filter selected no linear layer of the model');
  for (const [path, layer] of targets) {
    if (!(layer instanceof Linear) && !(layer instanceof Conv1D)) {
      throw new PosttrainError(
        'NOT_SUPPORTED',
        `gptqModel: ${path} is a ${layer.constructor.name}, not a dense Linear or Conv1D${layer instanceof QuantizedLinear ? ': it is already quantised' : ''}`,
        {
          help: layer instanceof QuantizedLinear ? 'dequantize the model first, or leave the layer out with the layers option' : 'leave the layer out with the layers option',
        },
      );
    }
    if (o.groupSize !== null && layer.inFeatures % o.groupSize !== 0) {
      throw new PosttrainError('INVALID_OPTION', `gptqModel: groupSize ${o.groupSize} does not divide the ${layer.inFeatures} input features of ${path}`, {
        help: 'pick a group size that divides every quantised layer, or leave the layer out with the layers option',
      });
    }
    const finite = tf.tidy(() => tf.all(tf.isFinite(layer.weight)));
    const allFinite = finite.dataSync()[0] === 1;
    finite.dispose();
    if (!allFinite) throw new PosttrainError('NON_FINITE', `gptqModel: the weight of ${path} holds NaN or Inf; expected finite weights`);
  }
  const widest = targets.reduce((a, b) => (b[1].inFeatures > a[1].inFeatures ? b : a));
  const tokens = calibrationTokens(calibration);
  if (tokens < widest[1].inFeatures) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `gptqModel: the calibration set has ${tokens} tokens; GPTQ needs at least ${widest[1].inFeatures}, the input features of ${widest[0]} (its Hessian (2/n) Σ x xᵀ has rank at most n, so fewer tokens leave it singular)`,
      { help: `add calibration rows: ${widest[1].inFeatures} tokens is the floor, several times that gives better Hessians (llm-compressor uses 512 × 2048)` },
    );
  }

  const blocks = new Map<string, string[]>();
  for (const [path] of targets) {
    const key = sequential ? blockOf(path) : '';
    blocks.set(key, [...(blocks.get(key) ?? []), path]);
  }
  const byPath = new Map(targets);
  const replaced: [string, LinearLike, QuantizedLinear][] = [];
  const report: GptqLayerReport[] = [];
  try {
    for (const paths of blocks.values()) {
      const inBlock = new Set(paths);
      const stats = await accumulateHessians(model, calibration, { layers: (p) => inBlock.has(p) });
      for (const path of paths) {
        const layer = byPath.get(path) as Linear | Conv1D;
        const s = stats.get(path);
        if (!s?.hessian)
          throw new PosttrainError('INVALID_ARGUMENT', `gptqModel: ${path} saw no calibration input during the forward pass`, {
            help: 'only layers the model runs on every token can be calibrated; leave it out with the layers option',
          });
        const weight = tf.tidy(() => (layer instanceof Conv1D ? layer.weight.transpose() : layer.weight).dataSync()) as Float32Array; // [out, in]
        const r = gptqQuantize(weight, s.hessian, o);
        const quantized = QuantizedLinear.fromIntegers(
          {
            scheme,
            inFeatures: layer.inFeatures,
            outFeatures: layer.outFeatures,
            q: r.q,
            scales: r.scales,
            zeros: r.zeros,
            gIdx: r.gIdx,
            groupSize: o.groupSize ?? undefined,
            bias: layer.bias ? (layer.bias.dataSync() as Float32Array).slice() : undefined,
          },
          { origin: layer instanceof Conv1D ? 'conv1d' : 'linear' },
        );
        model.replaceModule(path, quantized);
        replaced.push([path, layer, quantized]);
        report.push({ path, inFeatures: layer.inFeatures, outFeatures: layer.outFeatures, tokens: s.tokens, loss: r.loss, fellBackToRtn: r.fellBackToRtn });
      }
    }
  } catch (error) {
    for (const [path, original, quantized] of replaced.reverse()) {
      model.replaceModule(path, original);
      quantized.dispose();
    }
    throw error;
  }
  for (const [, original] of replaced) original.dispose();
  return report;
}

/** The decoder block a layer belongs to: its path up to the first numeric segment (`model.layers.3`), else the path itself. */
function blockOf(path: string): string {
  const parts = path.split('.');
  const i = parts.findIndex((p) => /^\d+$/.test(p));
  return i < 0 ? path : parts.slice(0, i + 1).join('.');
}
