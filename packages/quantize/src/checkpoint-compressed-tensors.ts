import { type CheckpointQuantizer, Conv1D, Linear, type Module, PosttrainError, type QuantizedSave, type SafetensorsDtype, tf } from '@posttrain/tensor-core';
import { checkKeys, checkOneFamily, floatLayers, floatPaths, isEmpty, objectAt, quantizedLayers, replaceWithEmpty, specFor, stringsAt, unsupported } from './checkpoint-common.js';
import type { QuantizedLayerSpec } from './quantized-linear.js';

/**
 * The compressed-tensors version whose `pack-quantized` layout the files follow (written as
 * `quantization_config.version`, as llm-compressor writes the installed library's version).
 *
 * @example
 * ```ts
 * config.quantization_config.version; // COMPRESSED_TENSORS_VERSION
 * ```
 */
export const COMPRESSED_TENSORS_VERSION = '0.10.2';

const TOP_KEYS = ['quant_method', 'format', 'quantization_status', 'config_groups', 'ignore', 'kv_cache_scheme', 'global_compression_ratio', 'version', 'sparsity_config', 'transform_config'] as const;
const GROUP_KEYS = ['targets', 'weights', 'input_activations', 'output_activations', 'format'] as const;
const WEIGHT_KEYS = ['num_bits', 'type', 'symmetric', 'group_size', 'strategy', 'block_structure', 'dynamic', 'actorder', 'observer', 'observer_kwargs', 'scale_dtype', 'zp_dtype'] as const;

/** One config group's weight scheme, as the layers it targets are built. */
interface GroupScheme {
  name: string;
  targets: string[];
  spec: Pick<QuantizedLayerSpec, 'scheme' | 'symmetric' | 'actOrder'> & { groupSize: number | 'channel' };
}

function readWeights(value: unknown, field: string): GroupScheme['spec'] {
  const w = objectAt(value, field);
  checkKeys(w, field, WEIGHT_KEYS);
  if (w.type !== undefined && w.type !== 'int') throw unsupported(`${field}.type`, w.type, '"int" (float8 and float4 weights are not read here)');
  if (w.num_bits !== 4 && w.num_bits !== 8) throw unsupported(`${field}.num_bits`, w.num_bits, '4 or 8');
  const symmetric = w.symmetric ?? true;
  if (typeof symmetric !== 'boolean') throw unsupported(`${field}.symmetric`, w.symmetric, 'true or false');
  const groupSize = w.group_size ?? null;
  // compressed-tensors infers the strategy from group_size when it is absent
  const strategy = w.strategy ?? (groupSize === null ? 'tensor' : groupSize === -1 ? 'channel' : 'group');
  if (strategy !== 'group' && strategy !== 'channel') throw unsupported(`${field}.strategy`, w.strategy ?? strategy, '"group" or "channel" (tensor, block and token strategies are not read here)');
  if (strategy === 'group' && !(typeof groupSize === 'number' && Number.isInteger(groupSize) && groupSize > 0)) {
    throw unsupported(`${field}.group_size`, w.group_size, 'a positive integer for strategy "group"');
  }
  if (strategy === 'channel' && groupSize !== null && groupSize !== -1) throw unsupported(`${field}.group_size`, w.group_size, 'null (or -1) for strategy "channel"');
  if (w.block_structure !== undefined && w.block_structure !== null) throw unsupported(`${field}.block_structure`, w.block_structure, 'null');
  if (w.dynamic !== undefined && w.dynamic !== false) throw unsupported(`${field}.dynamic`, w.dynamic, 'false (static weight scales)');
  for (const key of ['scale_dtype', 'zp_dtype'] as const) if (w[key] !== undefined && w[key] !== null) throw unsupported(`${field}.${key}`, w[key], 'null');
  if (w.observer !== undefined && w.observer !== null && typeof w.observer !== 'string') throw unsupported(`${field}.observer`, w.observer, 'a string or null');
  if (w.observer_kwargs !== undefined) objectAt(w.observer_kwargs, `${field}.observer_kwargs`);
  const actorder = w.actorder ?? null;
  const known = [null, false, true, 'group', 'dynamic', 'weight', 'static'];
  if (!known.includes(actorder as never)) throw unsupported(`${field}.actorder`, actorder, 'null, "group" or "weight"');
  if (actorder !== null && actorder !== false && strategy !== 'group') throw unsupported(`${field}.actorder`, actorder, 'null with strategy "channel" (act-order needs groups)');
  // "group" keeps the column order and stores each column's group (weight_g_idx); "weight"
  // reorders only during GPTQ, so the stored groups are consecutive and no g_idx is written
  const actOrder = actorder === true || actorder === 'group' || actorder === 'dynamic';
  return { scheme: w.num_bits === 4 ? 'int4' : 'int8', symmetric, actOrder, groupSize: strategy === 'channel' ? 'channel' : (groupSize as number) };
}

function readConfig(qc: Record<string, unknown>): { groups: GroupScheme[]; ignore: string[] } {
  checkKeys(qc, '', TOP_KEYS);
  if (qc.format !== 'pack-quantized') {
    throw unsupported('format', qc.format, '"pack-quantized" (int4/int8 weights packed in int32)', 'dense, naive-quantized, float-quantized and sparse formats are not read here');
  }
  if (qc.quantization_status !== 'compressed') throw unsupported('quantization_status', qc.quantization_status, '"compressed" (packed weights on disk)');
  if (qc.kv_cache_scheme !== undefined && qc.kv_cache_scheme !== null) throw unsupported('kv_cache_scheme', qc.kv_cache_scheme, 'null (no KV-cache quantisation)');
  if (!isEmpty(qc.sparsity_config)) throw unsupported('sparsity_config', qc.sparsity_config, 'null or {} (no sparsity)');
  if (!isEmpty(qc.transform_config)) throw unsupported('transform_config', qc.transform_config, 'null or {} (no transforms)');
  if (qc.global_compression_ratio !== undefined && qc.global_compression_ratio !== null && typeof qc.global_compression_ratio !== 'number') {
    throw unsupported('global_compression_ratio', qc.global_compression_ratio, 'a number or null');
  }
  if (qc.version !== undefined && typeof qc.version !== 'string') throw unsupported('version', qc.version, 'a version string');
  const ignore = qc.ignore === undefined || qc.ignore === null ? [] : stringsAt(qc.ignore, 'ignore');
  const groupsObject = objectAt(qc.config_groups, 'config_groups');
  const groups: GroupScheme[] = [];
  for (const [name, value] of Object.entries(groupsObject)) {
    const field = `config_groups.${name}`;
    const group = objectAt(value, field);
    checkKeys(group, field, GROUP_KEYS);
    for (const key of ['input_activations', 'output_activations'] as const) {
      if (group[key] !== undefined && group[key] !== null) throw unsupported(`${field}.${key}`, group[key], 'null (weight-only quantisation)');
    }
    if (group.format !== undefined && group.format !== null && group.format !== 'pack-quantized') throw unsupported(`${field}.format`, group.format, 'null or "pack-quantized"');
    groups.push({ name, targets: stringsAt(group.targets, `${field}.targets`), spec: readWeights(group.weights, `${field}.weights`) });
  }
  if (groups.length === 0) throw unsupported('config_groups', qc.config_groups, 'at least one group');
  return { groups, ignore };
}

/**
 * compressed-tensors' `is_match`: a target is a class name (`Linear`, which here also matches
 * GPT-2's Conv1D as vLLM's GPT-2 does; `Conv1D`), a module path, or `re:` and a regex matched at
 * the start of the path (Python's `re.match`).
 */
function matches(target: string, path: string, layer: Linear | Conv1D): boolean {
  if (target.startsWith('re:')) return new RegExp(`^(?:${target.slice(3)})`).test(path);
  if (target === 'Linear') return layer instanceof Linear || layer instanceof Conv1D;
  if (target === 'Conv1D') return layer instanceof Conv1D;
  return target === path;
}

function planLayers(model: Module, groups: GroupScheme[], ignore: string[]): [string, QuantizedLayerSpec][] {
  const layers = floatLayers(model);
  const used = new Set<string>();
  const specs: [string, QuantizedLayerSpec][] = [];
  for (const [path, layer] of layers) {
    if (ignore.some((target) => matches(target, path, layer))) continue;
    const group = groups.find((g) => g.targets.some((t) => matches(t, path, layer)));
    if (!group) continue; // compressed-tensors leaves an untargeted layer in float
    used.add(group.name);
    const { groupSize, ...rest } = group.spec;
    const size = groupSize === 'channel' ? layer.inFeatures : groupSize;
    if (!rest.actOrder && layer.inFeatures % size !== 0) {
      throw new PosttrainError(
        'SHAPE_MISMATCH',
        `loadModel: quantization_config.config_groups.${group.name} has group_size ${size}, which does not divide ${path}'s ${layer.inFeatures} input features`,
        {
          help: 'the config and the weights come from different models',
        },
      );
    }
    specs.push([path, specFor(layer, { ...rest, groupSize: size })]);
  }
  for (const g of groups) {
    if (!used.has(g.name)) throw unsupported(`config_groups.${g.name}.targets`, g.targets, 'targets matching at least one Linear layer of the model outside ignore');
  }
  return specs;
}

async function describeSave(model: Module): Promise<QuantizedSave | null> {
  const all = quantizedLayers(model);
  const layers = all.filter(([, l]) => l.scheme !== 'nf4');
  if (layers.length === 0) return null;
  checkOneFamily(all);
  // one config group per distinct weight scheme: targets ["Linear"] when there is one, layer paths otherwise
  const schemes = new Map<string, { weights: Record<string, unknown>; paths: string[] }>();
  for (const [path, layer] of layers) {
    const s = layer.spec;
    const channel = s.scheme === 'int8' && s.groupSize === s.inFeatures && !s.actOrder;
    const weights = {
      actorder: s.actOrder ? 'group' : null,
      block_structure: null,
      dynamic: false,
      group_size: channel ? null : s.groupSize,
      num_bits: layer.bits,
      observer: 'minmax',
      observer_kwargs: {},
      strategy: channel ? 'channel' : 'group',
      symmetric: s.symmetric,
      type: 'int',
    };
    const key = JSON.stringify(weights);
    if (!schemes.has(key)) schemes.set(key, { weights, paths: [] });
    schemes.get(key)?.paths.push(path);
  }
  const configGroups: Record<string, unknown> = {};
  let i = 0;
  for (const { weights, paths } of schemes.values()) {
    configGroups[`group_${i++}`] = { input_activations: null, output_activations: null, targets: schemes.size === 1 ? ['Linear'] : paths, weights };
  }
  const quantizationConfig = {
    config_groups: configGroups,
    format: 'pack-quantized',
    global_compression_ratio: null,
    ignore: floatPaths(model),
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    version: COMPRESSED_TENSORS_VERSION,
  };
  const tensors = model.stateDict();
  const dtypes: Record<string, SafetensorsDtype> = {};
  const created: tf.Tensor[] = [];
  for (const [path, layer] of layers) {
    const shape = tf.tensor1d([layer.outFeatures, layer.inFeatures], 'int32');
    created.push(shape);
    tensors[`${path}.weight_shape`] = shape;
    dtypes[`${path}.weight_shape`] = 'I64'; // torch.tensor(weight.shape) is int64
    dtypes[`${path}.weight_scale`] = 'F32';
    for (const name of ['weight_packed', 'weight_zero_point', 'weight_g_idx']) if (`${path}.${name}` in tensors) dtypes[`${path}.${name}`] = 'I32';
  }
  return { quantizationConfig, tensors, dtypes, created };
}

/**
 * compressed-tensors' `pack-quantized` checkpoints (what llm-compressor writes and vLLM loads):
 * config.json's `quantization_config` with `quant_method: "compressed-tensors"`, and per quantised
 * layer `weight_packed` (I32), `weight_scale` (F32), `weight_zero_point` (I32, asymmetric),
 * `weight_g_idx` (I32, act-order "group") and `weight_shape` (I64 `[out, in]`). Registered when
 * `@posttrain/quantize` is imported.
 *
 * @example
 * ```ts
 * import { compressedTensorsQuantizer } from '@posttrain/quantize';
 * await compressedTensorsQuantizer.describeSave(model); // null for a float model
 * ```
 */
export const compressedTensorsQuantizer: CheckpointQuantizer = Object.freeze({
  method: 'compressed-tensors',
  async prepareLoad(model: Module, quantizationConfig: Record<string, unknown>) {
    const { groups, ignore } = readConfig(quantizationConfig);
    const specs = planLayers(model, groups, ignore);
    const layers = replaceWithEmpty(model, specs);
    const shapes = new Map(specs.map(([path, s]) => [path, [s.outFeatures, s.inFeatures]]));
    return {
      layers,
      async convert(tensors: Record<string, tf.Tensor>) {
        const out = { ...tensors };
        for (const [path, expected] of shapes) {
          const key = `${path}.weight_shape`;
          const t = tensors[key];
          if (!t) {
            throw new PosttrainError('STATE_DICT_MISMATCH', `loadModel: the checkpoint lacks ${key}, which compressed-tensors writes for every quantised layer`, {
              help: 'the config.json names this layer as quantised; check that the weights come with it',
            });
          }
          const got = Array.from(await t.data());
          if (got.length !== 2 || got[0] !== expected[0] || got[1] !== expected[1]) {
            throw new PosttrainError('SHAPE_MISMATCH', `loadModel: ${key} is [${got.join(', ')}]; the model's layer ${path} is [${expected.join(', ')}] ([out, in])`, {
              help: 'config.json and the weights come from different models',
            });
          }
          delete out[key];
        }
        return { tensors: out, created: [] };
      },
    };
  },
  describeSave,
});
