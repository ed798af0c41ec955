// Helpers shared by the two checkpoint quantizers (compressed-tensors, bitsandbytes): strict reading
// of a `quantization_config`, and the float / quantised layers of a model by path.
import { Conv1D, Linear, type Module, PosttrainError, type tf } from '@posttrain/tensor-core';
import { QuantizedLinear, type QuantizedLayerSpec } from './quantized-linear.js';

/** `quantization_config.<field> <value>` is not supported: what was expected instead. */
export function unsupported(field: string, value: unknown, expected: string, help?: string): PosttrainError {
  return new PosttrainError('NOT_SUPPORTED', `loadModel: quantization_config.${field} ${JSON.stringify(value) ?? 'undefined'} is not supported; expected ${expected}`, { help });
}

/** Throws `NOT_SUPPORTED` naming the first key of `object` not in `known`. */
export function checkKeys(object: Record<string, unknown>, field: string, known: readonly string[]): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      const where = field === '' ? key : `${field}.${key}`;
      throw new PosttrainError('NOT_SUPPORTED', `loadModel: quantization_config.${where} is not a key this reader knows; known keys: ${known.join(', ')}`, {
        help: 'a newer writer may have added it; if it changes how the weights are stored, it cannot be loaded here',
      });
    }
  }
}

/** `value` as a plain object, else `NOT_SUPPORTED` naming `field`. */
export function objectAt(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw unsupported(field, value, 'an object');
  return value as Record<string, unknown>;
}

/** True for `null`, `undefined` or `{}` (an absent optional section). */
export function isEmpty(value: unknown): boolean {
  return value === null || value === undefined || (typeof value === 'object' && !Array.isArray(value) && Object.keys(value as object).length === 0);
}

/** `value` as an array of strings, else `NOT_SUPPORTED` naming `field`. */
export function stringsAt(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) throw unsupported(field, value, 'an array of module names');
  return value as string[];
}

/** The float layers a quantizer may replace (Linear, and GPT-2's Conv1D), in module order. */
export function floatLayers(model: Module): [string, Linear | Conv1D][] {
  const out: [string, Linear | Conv1D][] = [];
  for (const [path, m] of model.namedModules()) if (path !== '' && (m instanceof Linear || m instanceof Conv1D)) out.push([path, m]);
  return out;
}

/** The quantised layers of a model, in module order. */
export function quantizedLayers(model: Module): [string, QuantizedLinear][] {
  const out: [string, QuantizedLinear][] = [];
  for (const [path, m] of model.namedModules()) if (m instanceof QuantizedLinear) out.push([path, m]);
  return out;
}

/** The layout of an empty quantised layer standing in for a float one. */
export function specFor(layer: Linear | Conv1D, spec: Pick<QuantizedLayerSpec, 'scheme' | 'groupSize' | 'symmetric' | 'actOrder'>): QuantizedLayerSpec {
  return { ...spec, inFeatures: layer.inFeatures, outFeatures: layer.outFeatures, bias: layer.bias !== undefined, origin: layer instanceof Conv1D ? 'conv1d' : 'linear' };
}

/** Replaces each path by an empty {@link QuantizedLinear} of its spec, disposing the float layer. */
export function replaceWithEmpty(model: Module, specs: [string, QuantizedLayerSpec][]): string[] {
  const layers = specs.map(([path, spec]) => [path, QuantizedLinear.empty(spec)] as const);
  for (const [path, layer] of layers) model.replaceModule(path, layer).dispose();
  return layers.map(([path]) => path);
}

/**
 * The layers kept in float as module paths for the config: the float Linear/Conv1D paths, plus
 * `lm_head` where the model has none (a tied GPT-2, whose Hugging Face class still has one).
 */
export function floatPaths(model: Module): string[] {
  const paths = floatLayers(model).map(([path]) => path);
  if (!model.namedModules().has('lm_head')) paths.push('lm_head');
  return paths;
}

/** `Record` of a model's state dict minus the keys under the given layer paths. */
export function stateWithout(model: Module, layerPaths: readonly string[]): Record<string, tf.Tensor> {
  const prefixes = layerPaths.map((p) => `${p}.`);
  const out: Record<string, tf.Tensor> = {};
  for (const [key, t] of Object.entries(model.stateDict())) if (!prefixes.some((p) => key.startsWith(p))) out[key] = t;
  return out;
}

/** Throws `NOT_SUPPORTED` when a model mixes int (compressed-tensors) and nf4 (bitsandbytes) layers. */
export function checkOneFamily(layers: [string, QuantizedLinear][]): void {
  const nf4 = layers.find(([, l]) => l.scheme === 'nf4');
  const int = layers.find(([, l]) => l.scheme !== 'nf4');
  if (nf4 && int) {
    throw new PosttrainError(
      'NOT_SUPPORTED',
      `saveModel: the model mixes nf4 ("${nf4[0]}", bitsandbytes' format) and ${int[1].scheme} ("${int[0]}", compressed-tensors' format) layers; one config.json names one quant_method`,
      { help: 'quantise every layer with int4/int8, or every layer with nf4, before saving' },
    );
  }
}
