// Structured pruning: whole attention heads and MLP intermediate channels removed with real shape
// reduction, the config rewritten, so the saved checkpoint is a smaller valid Hugging Face model.
// The shared part: the report, the option checks, cutting dense layers, the config rewrite.
// pruneHeads (prune-heads.ts) and pruneMlpChannels (prune-mlp-channels.ts) build on it.
import { Conv1D, Linear, PosttrainError, Rng, describeValue as describe, tf, type CausalLM, type ModelConfig } from '@posttrain/tensor-core';
import { calibrationTokens, type CalibrationBatch } from '@posttrain/policy';

/**
 * How a unit's importance is measured. `'weight'` needs no data; `'activation'` runs the
 * `calibration` batches once and measures each unit's actual contribution to the layer's output.
 *
 * @example
 * ```ts
 * const score: StructuredScore = 'activation'; // with calibration: [rows]
 * ```
 */
export type StructuredScore = 'weight' | 'activation';

/**
 * The fewest real calibration tokens `score: 'activation'` accepts: fewer give a ranking dominated by noise.
 *
 * @example
 * ```ts
 * calibrationTokens([rows]) >= MIN_STRUCTURED_CALIBRATION_TOKENS; // 64
 * ```
 */
export const MIN_STRUCTURED_CALIBRATION_TOKENS = 64;

/**
 * The config fields structured pruning changes (`headDim` never does).
 *
 * @example
 * ```ts
 * const { before, after }: { before: StructuredShape; after: StructuredShape } = await pruneHeads(model, { heads: 2 });
 * ```
 */
export interface StructuredShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
}

/**
 * What {@link pruneHeads} and {@link pruneMlpChannels} did.
 *
 * @example
 * ```ts
 * const r: StructuredPruneReport = await pruneMlpChannels(model, { fraction: 0.25 });
 * console.log(`${r.parametersBefore} → ${r.parametersAfter} parameters, ${r.bytesBefore - r.bytesAfter} bytes saved`);
 * ```
 */
export interface StructuredPruneReport {
  /** What was removed: attention heads or MLP intermediate channels. */
  unit: 'heads' | 'mlp-channels';
  score: StructuredScore;
  /** Per layer, the removed indices in the original numbering, ascending (query heads, or channels). */
  removed: number[][];
  /** Per layer, the removed key/value heads (heads only; empty lists with `kvGroups: 'thin'`). */
  removedKvHeads: number[][];
  /** Per layer, every unit's importance (query heads, or channels), higher = kept first. */
  scores: number[][];
  before: StructuredShape;
  after: StructuredShape;
  /** Parameter count (tied weights once) before and after. */
  parametersBefore: number;
  parametersAfter: number;
  /** Bytes of the state dict's tensors as `saveModel` writes them (F32): the safetensors payload, header excluded. */
  bytesBefore: number;
  bytesAfter: number;
}

export type Dense = Linear | Conv1D;
export type Family = 'llama' | 'gpt2';

export function family(owner: string, model: CausalLM): Family {
  const type = (model?.config as ModelConfig | undefined)?.modelType;
  if (type === 'gpt2') return 'gpt2';
  if (type === 'llama' || type === 'qwen2' || type === 'mistral') return 'llama';
  throw new PosttrainError('NOT_SUPPORTED', `${owner}: expected a GPT-2 or Llama-family model (config.modelType gpt2, llama, qwen2 or mistral); got ${describe(type)}`);
}

/** The dense layer at `path`, refusing wrappers (LoRA, quantised, masked) whose shapes cannot be cut here. */
export function dense(owner: string, model: CausalLM, path: string): Dense {
  const found = model.namedModules().get(path);
  if (found instanceof Linear || found instanceof Conv1D) return found;
  throw new PosttrainError('NOT_SUPPORTED', `${owner}: expected a dense Linear or Conv1D at ${path}; got ${found ? found.constructor.name : 'no module'}`, {
    help: 'prune structurally first, then apply LoRA, masks or quantisation (merge LoRA adapters and dequantise before pruning)',
  });
}

export function shape(config: ModelConfig): StructuredShape {
  return { numHeads: config.numHeads, numKvHeads: config.numKvHeads, headDim: config.headDim, intermediateSize: config.intermediateSize };
}

export function stateBytes(model: CausalLM): number {
  let n = 0;
  for (const t of Object.values(model.stateDict())) n += t.size * 4;
  return n;
}

export function checkFraction(owner: string, fraction: unknown): number {
  if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction >= 1) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected fraction in [0, 1); got ${describe(fraction)}`, {
      help: 'fraction is the share of units removed in every layer: 0.25 removes a quarter; 1 would remove the whole block',
    });
  }
  return fraction;
}

/** Squared L2 norms of `w`'s rows (`axis 1` summed) or columns (`axis 0` summed) as float64. */
export function squaredNorms(w: tf.Tensor, axis: 0 | 1): Float64Array {
  return Float64Array.from(read(() => w.square().sum(axis)));
}

/** The values of the tensor `fn` makes (inside `tf.tidy`), which is then disposed. */
export function read(fn: () => tf.Tensor): Float32Array {
  const t = tf.tidy(fn);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

/** Per-layer selection of units to remove: `count` lowest scores, ties broken by the lower index. */
export function lowest(scores: ArrayLike<number>, count: number): number[] {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  return order.slice(0, count).sort((a, b) => a - b);
}

export async function checkCalibration(owner: string, score: StructuredScore, calibration: unknown): Promise<readonly CalibrationBatch[] | undefined> {
  if (score !== 'weight' && score !== 'activation') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected score "weight" or "activation"; got ${describe(score)}`);
  }
  if (score === 'weight') {
    if (calibration !== undefined) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: calibration was given but score is "weight", which reads only the weights`, {
        help: 'pass score: "activation" to rank units by their contribution on the calibration data, or drop calibration',
      });
    }
    return undefined;
  }
  if (!Array.isArray(calibration)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: score "activation" needs calibration batches (an array of token-id rows or { inputIds, attentionMask }); got ${describe(calibration)}`, {
      help: 'pass calibration: [[...ids], ...], or use score: "weight", which needs no data',
    });
  }
  const tokens = calibrationTokens(calibration as CalibrationBatch[]);
  if (tokens < MIN_STRUCTURED_CALIBRATION_TOKENS) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least ${MIN_STRUCTURED_CALIBRATION_TOKENS} real calibration tokens for score "activation"; got ${tokens}`, {
      help: `add calibration rows (a few hundred tokens of text like the model's) or use score: "weight"`,
    });
  }
  return calibration as readonly CalibrationBatch[];
}

/**
 * Resolves a per-layer removal request into index lists: explicit lists are checked; a count (or a
 * fraction turned into one) is filled by `select(layer, count)`.
 */
export function explicitLists(owner: string, name: string, lists: readonly (readonly number[])[], numLayers: number, size: number, unit: string): number[][] {
  if (lists.length !== numLayers) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to hold one list per layer (${numLayers}); got ${lists.length}`);
  }
  const out: number[][] = [];
  for (let l = 0; l < numLayers; l++) {
    const list = lists[l];
    if (!Array.isArray(list) || !list.every((i) => Number.isInteger(i) && i >= 0 && i < size) || new Set(list).size !== list.length) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name}[${l}] to be distinct ${unit} indices in [0, ${size}); got ${JSON.stringify(list)}`);
    }
    if (list.length !== lists[0].length) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: expected every layer to lose the same number of ${unit}s (a Hugging Face config has one size for all layers); ${name}[0] has ${lists[0].length}, ${name}[${l}] has ${list.length}`,
        {
          help: `remove ${lists[0].length} ${unit}s in every layer, or pass a count and let the score choose which in each layer`,
        },
      );
    }
    out.push([...list].sort((a, b) => a - b));
  }
  return out;
}

export function checkCount(owner: string, name: string, count: unknown, size: number, unit: string): number {
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be a non-negative integer (${unit}s removed per layer) or one index list per layer; got ${describe(count)}`);
  }
  if (count >= size) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: ${name} ${count} would remove every ${unit} of each layer (${size} per layer)`, {
      help: `remove at most ${size - 1}, or use fraction (e.g. 0.25)`,
    });
  }
  return count;
}

export function exactlyOne(owner: string, a: [string, unknown], b: [string, unknown]): void {
  if ((a[1] === undefined) === (b[1] === undefined)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected exactly one of ${a[0]} and ${b[0]}; got ${a[1] === undefined ? 'neither' : 'both'}`, {
      help: `${a[0]}: 0.25 removes a quarter in every layer; ${b[0]}: 2 removes two in every layer`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Cutting dense layers

/** A copy of `layer` keeping only the outputs `keep` (Linear rows / Conv1D columns, and their bias). */
export function keepOutputs(layer: Dense, keep: number[]): Dense {
  return rebuild(layer, layer.inFeatures, keep.length, (w, b) => {
    const index = tf.tensor1d(keep, 'int32');
    return { weight: tf.gather(w, index, layer instanceof Linear ? 0 : 1), bias: b && tf.gather(b, index) };
  });
}

/** A copy of `layer` keeping only the inputs `keep` (Linear columns / Conv1D rows); the bias is unchanged. */
export function keepInputs(layer: Dense, keep: number[]): Dense {
  return rebuild(layer, keep.length, layer.outFeatures, (w, b) => ({ weight: tf.gather(w, tf.tensor1d(keep, 'int32'), layer instanceof Linear ? 1 : 0), bias: b?.clone() }));
}

export function rebuild(layer: Dense, inFeatures: number, outFeatures: number, cut: (w: tf.Tensor, b: tf.Tensor | undefined) => { weight: tf.Tensor; bias: tf.Tensor | undefined }): Dense {
  const options = { bias: layer.bias !== undefined, rng: new Rng(0), std: 0 };
  const next = layer instanceof Linear ? new Linear(inFeatures, outFeatures, options) : new Conv1D(inFeatures, outFeatures, options);
  const { weight, bias } = tf.tidy(() => cut(layer.weight, layer.bias));
  next.weight.assign(weight);
  next.weight.trainable = layer.weight.trainable;
  if (bias && next.bias && layer.bias) {
    next.bias.assign(bias);
    next.bias.trainable = layer.bias.trainable;
  }
  tf.dispose([weight, bias].filter((t): t is tf.Tensor => t !== undefined));
  return next;
}

export function replace(model: CausalLM, path: string, next: Dense): void {
  model.replaceModule(path, next).dispose();
}

export function complement(size: number, removed: number[]): number[] {
  const gone = new Set(removed);
  return Array.from({ length: size }, (_, i) => i).filter((i) => !gone.has(i));
}

/** Indices of the `width`-wide blocks `units` (head i → rows i·width … i·width + width − 1). */
export function blocks(units: number[], width: number): number[] {
  return units.flatMap((u) => Array.from({ length: width }, (_, j) => u * width + j));
}

/** Squared norms of each channel's output weights in the consumer (Linear column j / Conv1D row j). */
export function consumerNorms(layer: Dense): Float64Array {
  return squaredNorms(layer.weight, layer instanceof Linear ? 0 : 1);
}

/** Squared norms of each channel's input weights in a producer (Linear row j / Conv1D column j). */
export function producerNorms(layer: Dense): Float64Array {
  return squaredNorms(layer.weight, layer instanceof Linear ? 1 : 0);
}
export function setConfig(owner: string, model: CausalLM, changes: Partial<StructuredShape>): void {
  const config = model.config as ModelConfig;
  if (Object.isFrozen(config)) {
    throw new PosttrainError('NOT_SUPPORTED', `${owner}: the model's config is frozen, so its new sizes cannot be written`, {
      help: 'load the model with loadModel or createModel, whose configs are plain objects',
    });
  }
  Object.assign(config, changes);
}
