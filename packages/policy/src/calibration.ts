// Calibration statistics of linear layers' inputs: the machinery GPTQ (@posttrain/quantize) and
// the pruning methods (SparseGPT needs the same Hessian, Wanda the input column norms) share.
import { Module, PosttrainError, describeValue as describe, formatShape, resolveOptions, tf, type CausalLM, type LinearLike } from '@posttrain/tensor-core';
import { isLinearLike } from '@posttrain/lora';
import { inEvalMode } from './reference.js';

/**
 * One calibration batch: token-id rows (rows of different lengths are right-padded and masked
 * here), or tensors such as `collateForGeneration`'s, whose `attentionMask` marks the real tokens
 * (the caller keeps ownership of the tensors).
 */
export type CalibrationBatch = number[][] | { inputIds: tf.Tensor2D; attentionMask?: tf.Tensor2D };

/** Chooses the layers whose inputs are captured: `path` is the module's path in the model. */
export type LinearLayerFilter = (path: string, module: LinearLike) => boolean;

/** Options of {@link captureLinearInputs}. */
export interface CaptureLinearInputsOptions {
  /** Which linear layers to watch; default {@link defaultCalibrationLayers} (every linear layer but `lm_head`). */
  layers: LinearLayerFilter;
  /**
   * Called with every watched layer's input of each batch as `x [n, inFeatures]`, the `n` real
   * (unmasked) tokens only. The tensor is disposed after the call: read it or copy it, do not keep it.
   */
  onInput: (path: string, x: tf.Tensor2D) => void;
}

/** The default layer filter: every `LinearLike` except the output head `lm_head` (llm-compressor's default `ignore`). */
export const defaultCalibrationLayers: LinearLayerFilter = (path) => path.split('.').pop() !== 'lm_head';

/** Stands in for a linear layer while inputs are captured: records its input, then runs it unchanged. */
class RecordingLinear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Flat indices (into the batch's `B·T` positions) of its real tokens, or undefined when every token is real. */
  realTokens: tf.Tensor1D | undefined;
  /** `B·T` of the current batch. */
  positions = 0;

  constructor(
    readonly inner: LinearLike,
    private readonly record: (x: tf.Tensor2D) => void,
  ) {
    super();
    this.inFeatures = inner.inFeatures;
    this.outFeatures = inner.outFeatures;
  }

  forward(x: tf.Tensor): tf.Tensor {
    tf.tidy(() => {
      let flat = x.reshape([-1, this.inFeatures]) as tf.Tensor2D;
      if (this.realTokens) {
        if (this.positions !== flat.shape[0]) {
          throw new PosttrainError('SHAPE_MISMATCH', `captureLinearInputs: the layer saw ${flat.shape[0]} token positions but the batch has ${this.positions}`, {
            help: 'only layers applied once per token position (the projections of a decoder) can be calibrated',
          });
        }
        flat = tf.gather(flat, this.realTokens);
      }
      this.record(flat);
    });
    return this.inner.forward(x);
  }
}

/**
 * Runs `model` (in eval mode, without gradients) over the calibration `batches` and hands every
 * selected linear layer's inputs to `onInput` as `[n, inFeatures]` rows of real tokens. Each
 * selected layer is wrapped by a recording module for the duration of the call; the original
 * modules are always put back, also when the model or `onInput` throws. Returns the number of real
 * tokens seen.
 *
 * @example
 * ```ts
 * const seen = new Map<string, number>();
 * const tokens = await captureLinearInputs(model, [[1, 2, 3, 4], [5, 6]], {
 *   onInput: (path, x) => seen.set(path, (seen.get(path) ?? 0) + x.shape[0]),
 * }); // 6; seen.get('model.layers.0.mlp.down_proj') === 6
 * ```
 */
export async function captureLinearInputs(
  model: CausalLM,
  batches: Iterable<CalibrationBatch> | AsyncIterable<CalibrationBatch>,
  options: Partial<CaptureLinearInputsOptions> & Pick<CaptureLinearInputsOptions, 'onInput'>,
): Promise<number> {
  const o = resolveOptions<CaptureLinearInputsOptions>('captureLinearInputs', options, { layers: defaultCalibrationLayers, onInput: options?.onInput });
  if (typeof o.onInput !== 'function') throw new PosttrainError('INVALID_OPTION', `captureLinearInputs: expected onInput to be a function (path, x) => void; got ${describe(o.onInput)}`);
  if (typeof o.layers !== 'function') throw new PosttrainError('INVALID_OPTION', `captureLinearInputs: expected layers to be a function (path, module) => boolean; got ${describe(o.layers)}`);
  const targets = calibrationTargets(model, o.layers);
  if (targets.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', 'captureLinearInputs: the layers filter selected no linear layer of the model', {
      help: 'list the candidates with [...model.namedModules()].filter(([, m]) => "inFeatures" in m).map(([p]) => p)',
    });
  }
  return inEvalMode(model, async () => {
    const recorders: RecordingLinear[] = [];
    let tokens = 0;
    try {
      for (const [path, layer] of targets) {
        const recorder = new RecordingLinear(layer, (x) => o.onInput(path, x));
        model.replaceModule(path, recorder);
        recorders.push(recorder);
      }
      let index = 0;
      for await (const batch of batches) {
        const { ids, mask, real, owned } = batchTensors(batch, index++);
        try {
          const realTokens = real === ids.size || !mask ? undefined : realPositions(mask);
          for (const r of recorders) {
            r.realTokens = realTokens;
            r.positions = ids.size;
          }
          try {
            const out = model.forward(ids, mask ? { attentionMask: mask } : {});
            tf.dispose([out.logits, out.hidden]);
            out.cache?.dispose();
          } finally {
            realTokens?.dispose();
            for (const r of recorders) r.realTokens = undefined;
          }
          tokens += real;
        } finally {
          tf.dispose(owned);
        }
      }
    } finally {
      for (let i = 0; i < recorders.length; i++) model.replaceModule(targets[i][0], targets[i][1]);
    }
    return tokens;
  });
}

/** `[k]` int32 flat indices of the mask's non-zero entries. */
function realPositions(mask: tf.Tensor2D): tf.Tensor1D {
  const values = mask.dataSync();
  const out: number[] = [];
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) out.push(i);
  return tf.tensor1d(out, 'int32');
}

/** The selected `LinearLike` modules of `model` by path, in module order (not nested in one another). */
export function calibrationTargets(model: Module, layers: LinearLayerFilter = defaultCalibrationLayers): [string, LinearLike][] {
  const out: [string, LinearLike][] = [];
  for (const [path, m] of model.namedModules()) {
    if (path === '' || !isLinearLike(m) || !layers(path, m)) continue;
    if (out.some(([p]) => path.startsWith(`${p}.`))) continue; // inside a selected wrapper (a LoRA base layer)
    out.push([path, m]);
  }
  return out;
}

function batchTensors(batch: CalibrationBatch, index: number): { ids: tf.Tensor2D; mask: tf.Tensor2D | undefined; real: number; owned: tf.Tensor[] } {
  if (Array.isArray(batch)) {
    if (batch.length === 0 || !batch.every((row) => Array.isArray(row) && row.length > 0 && row.every((t) => Number.isInteger(t) && t >= 0))) {
      throw new PosttrainError('INVALID_ARGUMENT', `calibration batch ${index}: expected non-empty rows of non-negative integer token ids; got ${describe(batch)}`);
    }
    const length = Math.max(...batch.map((r) => r.length));
    const real = batch.reduce((n, r) => n + r.length, 0);
    const ids = tf.tensor2d(
      batch.map((r) => [...r, ...new Array<number>(length - r.length).fill(0)]),
      [batch.length, length],
      'int32',
    );
    if (real === batch.length * length) return { ids, mask: undefined, real, owned: [ids] };
    const mask = tf.tensor2d(
      batch.map((r) => Array.from({ length }, (_, t) => (t < r.length ? 1 : 0))),
      [batch.length, length],
      'int32',
    );
    return { ids, mask, real, owned: [ids, mask] };
  }
  if (batch === null || typeof batch !== 'object' || !(batch.inputIds instanceof tf.Tensor) || batch.inputIds.rank !== 2) {
    throw new PosttrainError('INVALID_ARGUMENT', `calibration batch ${index}: expected token-id rows or { inputIds [B, T], attentionMask? [B, T] }; got ${describe(batch)}`);
  }
  const mask = batch.attentionMask;
  if (mask && (mask.shape[0] !== batch.inputIds.shape[0] || mask.shape[1] !== batch.inputIds.shape[1])) {
    throw new PosttrainError('SHAPE_MISMATCH', `calibration batch ${index}: expected attentionMask ${formatShape(batch.inputIds.shape)} like inputIds; got ${formatShape(mask.shape)}`);
  }
  const real = mask ? Math.round(tf.tidy(() => tf.sum(tf.cast(tf.notEqual(mask, 0), 'int32'))).dataSync()[0]) : batch.inputIds.size;
  return { ids: batch.inputIds, mask, real, owned: [] };
}

/** Options of {@link accumulateHessians}. */
export interface AccumulateHessiansOptions {
  /** Which linear layers; default every linear layer but `lm_head`. */
  layers: LinearLayerFilter;
  /** Accumulate the `[in, in]` Hessian (true, the default) or only the column norms (false: O(in) memory, what Wanda needs). */
  hessian: boolean;
}

/** Frozen defaults of {@link accumulateHessians}. */
export const defaultAccumulateHessiansOptions: Readonly<AccumulateHessiansOptions> = Object.freeze({ layers: defaultCalibrationLayers, hessian: true });

/** The input statistics of one linear layer over `tokens` calibration tokens. */
export interface LayerInputStatistics {
  inFeatures: number;
  /** Number of calibration tokens (rows of X) seen. */
  tokens: number;
  /** `[in, in]` row-major `H = (2/n) Σ x xᵀ` (GPTQ's `add_batch`), absent when `hessian: false`. */
  hessian?: Float64Array;
  /** `[in]` `‖X_j‖₂ = sqrt(Σ x_j²)` over the tokens: Wanda's activation norms. */
  columnNorms: Float64Array;
}

/**
 * Runs the calibration batches once and returns, per selected linear layer, the GPTQ/SparseGPT
 * Hessian of its inputs `H = (2/n) Σ_t x_t x_tᵀ` (Frantar et al. 2022, §3; the running mean of
 * GPTQ's `add_batch`, summed here in float64 and divided once) and Wanda's input column norms
 * `‖X_j‖₂` (Sun et al. 2023), with the token count n. Padding tokens are left out.
 * `XᵀX` of each batch is computed by the backend in float32 and added into float64 sums.
 *
 * @example
 * ```ts
 * const stats = await accumulateHessians(model, [[1, 2, 3, 4, 5, 6, 7, 8]]);
 * const s = stats.get('model.layers.0.self_attn.q_proj')!; // { inFeatures: 32, tokens: 8, hessian: Float64Array(1024), columnNorms }
 * ```
 */
export async function accumulateHessians(
  model: CausalLM,
  batches: Iterable<CalibrationBatch> | AsyncIterable<CalibrationBatch>,
  options: Partial<AccumulateHessiansOptions> = {},
): Promise<Map<string, LayerInputStatistics>> {
  const o = resolveOptions('accumulateHessians', options, defaultAccumulateHessiansOptions);
  if (typeof o.hessian !== 'boolean') throw new PosttrainError('INVALID_OPTION', `accumulateHessians: expected hessian to be true or false; got ${describe(o.hessian)}`);
  const stats = new Map<string, LayerInputStatistics & { sums: Float64Array }>();
  for (const [path, layer] of calibrationTargets(model, o.layers)) {
    const n = layer.inFeatures;
    stats.set(path, { inFeatures: n, tokens: 0, sums: new Float64Array(o.hessian ? n * n : n), columnNorms: new Float64Array(n) });
  }
  await captureLinearInputs(model, batches, {
    layers: o.layers,
    onInput: (path, x) => {
      const s = stats.get(path);
      if (!s || x.shape[0] === 0) return;
      s.tokens += x.shape[0];
      const part = tf.tidy(() => (o.hessian ? tf.matMul(x, x, true, false) : tf.sum(tf.square(x), 0))).dataSync();
      for (let i = 0; i < part.length; i++) s.sums[i] += part[i];
    },
  });
  const out = new Map<string, LayerInputStatistics>();
  for (const [path, s] of stats) {
    const n = s.inFeatures;
    for (let j = 0; j < n; j++) s.columnNorms[j] = Math.sqrt(o.hessian ? s.sums[j * n + j] : s.sums[j]);
    const result: LayerInputStatistics = { inFeatures: n, tokens: s.tokens, columnNorms: s.columnNorms };
    if (o.hessian) {
      const scale = s.tokens > 0 ? 2 / s.tokens : 0;
      for (let i = 0; i < s.sums.length; i++) s.sums[i] *= scale;
      result.hessian = s.sums;
    }
    out.set(path, result);
  }
  return out;
}

/**
 * The number of real tokens in calibration batches (rows' lengths, or the attention mask's ones),
 * to check a calibration set's size before running it.
 *
 * @example
 * ```ts
 * calibrationTokens([[1, 2, 3], [4, 5]]); // 5
 * ```
 */
export function calibrationTokens(batches: Iterable<CalibrationBatch>): number {
  let n = 0;
  let index = 0;
  for (const batch of batches) {
    if (Array.isArray(batch)) n += batch.reduce((s, r) => s + (Array.isArray(r) ? r.length : 0), 0);
    else {
      const { real, owned } = batchTensors(batch, index);
      tf.dispose(owned);
      n += real;
    }
    index++;
  }
  return n;
}
