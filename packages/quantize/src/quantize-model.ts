import { loraLayers } from '@posttrain/lora';
import { Conv1D, Linear, type Module, PosttrainError, describeValue, resolveOptions, type tf } from '@posttrain/tensor-core';
import { QuantizedLinear, type QuantScheme, type QuantizeOptions, defaultQuantizeOptions, floatWeights, resolveQuantizeOptions } from './quantized-linear.js';

/** Options of {@link quantizeModel}: a scheme and the layers to leave in float. */
export interface QuantizeModelOptions extends QuantizeOptions {
  /**
   * Layers kept in float, matched as PEFT matches `target_modules`: a name matches a path equal to
   * it or ending in `.name`; a RegExp must match the whole path. Default `['lm_head']` (the output
   * projection, which llm-compressor's recipes also leave alone).
   */
  exclude: readonly string[] | RegExp;
}

/**
 * Defaults of {@link QuantizeModelOptions}: int8, and `lm_head` kept in float.
 *
 * @example
 * ```ts
 * await quantizeModel(model, { scheme: 'nf4', exclude: [...defaultQuantizeModelOptions.exclude, 'embed_out'] });
 * ```
 */
export const defaultQuantizeModelOptions: Readonly<QuantizeModelOptions> = Object.freeze({ ...defaultQuantizeOptions, exclude: Object.freeze(['lm_head']) });

/** What {@link quantizeModel} did. */
export interface QuantizeSummary {
  scheme: QuantScheme;
  /** Paths of the layers replaced by a {@link QuantizedLinear}, in module order. */
  layers: string[];
  /** Paths of Linear / Conv1D layers left in float by `exclude`. */
  excluded: string[];
  /** Bytes of the replaced layers' float32 weights (4 · in · out each; biases not counted). */
  floatBytes: number;
  /** Bytes of their quantised weights ({@link QuantizedLinear.weightBytes}, exact). */
  quantizedBytes: number;
}

function excluded(exclude: readonly string[] | RegExp, path: string): boolean {
  if (exclude instanceof RegExp) return new RegExp(`^(?:${exclude.source})$`, exclude.flags.replace(/[gy]/g, '')).test(path);
  return exclude.some((name) => path === name || path.endsWith(`.${name}`));
}

/**
 * Replaces every {@link Linear} and GPT-2 {@link Conv1D} of `model` in place with a
 * {@link QuantizedLinear} of the scheme (round-to-nearest), except the `exclude`d paths. All
 * layers are read and quantised before any is replaced, so an error (a group size that does not
 * divide a layer's input size, a NaN weight, a layer already quantised) names the layer and leaves
 * the model as it was. The float layers replaced are disposed. Reads weights asynchronously, so it
 * runs on WebGPU too.
 *
 * @example
 * ```ts
 * const summary = await quantizeModel(model, { scheme: 'int4', groupSize: 128 });
 * console.log(summary.layers.length, summary.floatBytes, '→', summary.quantizedBytes);
 * ```
 */
export async function quantizeModel(model: Module, options: Partial<QuantizeModelOptions> = {}): Promise<QuantizeSummary> {
  const owner = 'quantizeModel';
  const { exclude } = resolveOptions(owner, options, defaultQuantizeModelOptions as QuantizeModelOptions);
  const { exclude: _, ...schemeOptions } = options ?? {};
  const o = resolveQuantizeOptions(schemeOptions, owner);
  if (!(exclude instanceof RegExp) && !(Array.isArray(exclude) && exclude.every((s) => typeof s === 'string' && s !== ''))) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected exclude to be an array of module names or a RegExp; got ${describeValue(exclude)}`, { help: "exclude: ['lm_head']" });
  }
  const lora = [...loraLayers(model).keys()];
  if (lora.length > 0) {
    throw new PosttrainError('NOT_SUPPORTED', `${owner}: the model has LoRA adapters (at "${lora[0]}"); expected a model without adapters`, {
      help: 'quantise the base model first and applyLora after it (QLoRA), or mergeAndUnload the adapters before quantising',
    });
  }
  const targets: [string, Linear | Conv1D][] = [];
  const skipped: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (path === '') continue;
    const isFloat = m instanceof Linear || m instanceof Conv1D;
    if (!isFloat && !(m instanceof QuantizedLinear)) continue;
    if (excluded(exclude, path)) {
      skipped.push(path);
      continue;
    }
    if (m instanceof QuantizedLinear) {
      throw new PosttrainError('NOT_SUPPORTED', `${owner}: layer "${path}" is already quantised (${m.scheme}); expected a float Linear or Conv1D`, {
        help: 'dequantizeModel(model) first to quantise it again with another scheme, or exclude the layer',
      });
    }
    targets.push([path, m as Linear | Conv1D]);
  }
  // Read every weight first (asynchronously: WebGPU has no dataSync in Node), then quantise every
  // layer, and only then replace: nothing is half-done when a layer fails.
  const data = new Map<tf.Tensor, Float32Array>();
  for (const [, layer] of targets) {
    for (const t of [layer.weight, layer.bias]) if (t) data.set(t, (await t.data()) as Float32Array);
  }
  const built: QuantizedLinear[] = [];
  try {
    for (const [path, layer] of targets) {
      const { weight, bias, origin } = floatWeights(layer, path, (t) => data.get(t) as Float32Array);
      built.push(QuantizedLinear.fromWeight(weight, layer.outFeatures, layer.inFeatures, schemeOptions, { bias, origin, name: path }));
    }
  } catch (error) {
    for (const q of built) q.dispose();
    throw error;
  }
  let floatBytes = 0;
  let quantizedBytes = 0;
  targets.forEach(([path, layer], i) => {
    const q = built[i] as QuantizedLinear;
    model.replaceModule(path, q).dispose();
    floatBytes += 4 * layer.inFeatures * layer.outFeatures;
    quantizedBytes += q.weightBytes;
  });
  return { scheme: o.scheme, layers: targets.map(([path]) => path), excluded: skipped, floatBytes, quantizedBytes };
}

/**
 * Puts a float layer back for every {@link QuantizedLinear} of `model` (a {@link Linear}, or a
 * {@link Conv1D} where one was quantised) holding the dequantised weight, and disposes the
 * quantised layers. Returns the paths restored.
 *
 * @example
 * ```ts
 * await quantizeModel(model, { scheme: 'int8' });
 * dequantizeModel(model); // ['transformer.h.0.attn.c_attn', …]
 * ```
 */
export function dequantizeModel(model: Module): string[] {
  const found = [...model.namedModules()].filter((entry): entry is [string, QuantizedLinear] => entry[1] instanceof QuantizedLinear);
  for (const [path, q] of found) model.replaceModule(path, q.toFloat()).dispose();
  return found.map(([path]) => path);
}
