// Quantised checkpoints, Hugging Face's HfQuantizer pattern: `config.json` carries a
// `quantization_config` whose `quant_method` names the quantizer that knows the layout.
// tensor-core only holds the registry; the quantizers live with the layers they build
// (`@posttrain/quantize` registers compressed-tensors and bitsandbytes when imported), and
// `@posttrain/models`' loadModel / saveModel look them up here, so neither package imports the other.
import type { tf } from './tf.js';
import type { Module } from './module.js';
import { PosttrainError } from './errors.js';
import { describe } from './options.js';
import type { SafetensorsDtype } from './safetensors.js';

/**
 * What a quantizer prepared for loading: the model's float layers are already replaced by empty
 * quantised ones; `convert` maps the file's tensors to the model's state-dict names.
 *
 * @example
 * ```ts
 * const plan = await quantizer.prepareLoad(model, json.quantization_config);
 * const { tensors, created } = await plan.convert(fileTensors);
 * model.loadStateDict(tensors);
 * tf.dispose(created);
 * ```
 */
export interface QuantizedLoadPlan {
  /** Paths of the layers that were replaced, in module order. */
  layers: string[];
  /**
   * File tensors (keys as the model names them) → tensors named as the model's state dict. Tensors
   * passed through stay the caller's; the new ones are listed in `created`, which the caller
   * disposes. Throws naming the layer when the file disagrees with the model (a shape, a quant state).
   */
  convert(tensors: Record<string, tf.Tensor>): Promise<{ tensors: Record<string, tf.Tensor>; created: tf.Tensor[] }>;
}

/**
 * What a quantizer writes for a model holding its quantised layers.
 *
 * @example
 * ```ts
 * const save = await quantizer.describeSave(model);
 * if (save) {
 *   await writeCheckpoint(save.tensors, target, { dtypes: save.dtypes });
 *   tf.dispose(save.created);
 * }
 * ```
 */
export interface QuantizedSave {
  /** The `quantization_config` object for config.json (`quant_method` is the quantizer's method). */
  quantizationConfig: Record<string, unknown>;
  /** Every tensor of the checkpoint, by file name (the model's own and new ones). */
  tensors: Record<string, tf.Tensor>;
  /** Stored dtypes of the tensors that need one other than the default (`I32`, `U8`, `I64`, `F32`). */
  dtypes: Record<string, SafetensorsDtype>;
  /** Tensors made for the file (not the model's own), which the caller disposes after writing. */
  created: tf.Tensor[];
}

/**
 * A serialisation of quantised layers, found by its `quant_method`.
 *
 * @example
 * ```ts
 * registerCheckpointQuantizer({
 *   method: 'my-method',
 *   async prepareLoad(model, config) { … return { layers, convert: async (t) => ({ tensors: t, created: [] }) }; },
 *   async describeSave(model) { return null; }, // null: the model holds none of my layers
 * });
 * ```
 */
export interface CheckpointQuantizer {
  /** The `quantization_config.quant_method` it reads and writes, e.g. `'compressed-tensors'`. */
  readonly method: string;
  /**
   * Validates `quantizationConfig` (an unknown key or an unsupported value is `NOT_SUPPORTED`
   * naming the field), then replaces the float layers of a freshly built `model` by empty
   * quantised ones with the buffer shapes the file holds. Throws before changing anything.
   */
  prepareLoad(model: Module, quantizationConfig: Record<string, unknown>): Promise<QuantizedLoadPlan>;
  /** The config and tensors to write, or null when the model holds none of its quantised layers. Writes nothing. */
  describeSave(model: Module): Promise<QuantizedSave | null>;
}

// One registry per process, even with two copies of tensor-core installed (as `isPosttrainError`).
const registryKey = Symbol.for('posttrain.checkpointQuantizers');
function registry(): Map<string, CheckpointQuantizer> {
  const holder = globalThis as unknown as Record<symbol, Map<string, CheckpointQuantizer> | undefined>;
  holder[registryKey] ??= new Map();
  return holder[registryKey];
}

/**
 * Registers a quantizer under its `method`, replacing one registered before under the same name
 * (importing a package twice registers it twice). Returns the quantizer.
 *
 * @example
 * ```ts
 * import "@posttrain/quantize"; // registers 'compressed-tensors' and 'bitsandbytes'
 * checkpointQuantizer('compressed-tensors'); // the quantizer
 * ```
 */
export function registerCheckpointQuantizer(quantizer: CheckpointQuantizer): CheckpointQuantizer {
  const ok =
    quantizer !== null &&
    typeof quantizer === 'object' &&
    typeof quantizer.method === 'string' &&
    quantizer.method !== '' &&
    typeof quantizer.prepareLoad === 'function' &&
    typeof quantizer.describeSave === 'function';
  if (!ok) {
    throw new PosttrainError('INVALID_ARGUMENT', `registerCheckpointQuantizer: expected { method: string, prepareLoad(), describeSave() }; got ${describe(quantizer)}`);
  }
  registry().set(quantizer.method, quantizer);
  return quantizer;
}

/**
 * The quantizer registered for `method` (a `quantization_config.quant_method`), or undefined.
 *
 * @example
 * ```ts
 * const quantizer = checkpointQuantizer(json.quantization_config.quant_method);
 * ```
 */
export function checkpointQuantizer(method: string): CheckpointQuantizer | undefined {
  return registry().get(method);
}

/**
 * Every registered quantizer, in registration order.
 *
 * @example
 * ```ts
 * checkpointQuantizers().map((q) => q.method); // ['compressed-tensors', 'bitsandbytes'] once quantize is imported
 * ```
 */
export function checkpointQuantizers(): CheckpointQuantizer[] {
  return [...registry().values()];
}

/**
 * Removes the quantizer registered for `method`; returns whether there was one (for tests).
 *
 * @example
 * ```ts
 * unregisterCheckpointQuantizer('my-method'); // true
 * ```
 */
export function unregisterCheckpointQuantizer(method: string): boolean {
  return registry().delete(method);
}
