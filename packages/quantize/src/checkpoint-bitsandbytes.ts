import { type CheckpointQuantizer, type Module, PosttrainError, type QuantizedSave, type SafetensorsDtype, tf } from '@posttrain/tensor-core';
import { checkKeys, checkOneFamily, floatLayers, floatPaths, quantizedLayers, replaceWithEmpty, specFor, stringsAt, unsupported } from './checkpoint-common.js';
import { DYNAMIC_MAP, NF4_BLOCK_SIZE, NF4_CODE, NF4_NESTED_BLOCK_SIZE, packBytes } from './nf4.js';
import type { QuantizedLayerSpec } from './quantized-linear.js';

const CONFIG_KEYS = [
  'quant_method',
  'load_in_4bit',
  'load_in_8bit',
  '_load_in_4bit',
  '_load_in_8bit',
  'bnb_4bit_quant_type',
  'bnb_4bit_use_double_quant',
  'bnb_4bit_compute_dtype',
  'bnb_4bit_quant_storage',
  'llm_int8_skip_modules',
  'llm_int8_threshold',
  'llm_int8_has_fp16_weight',
  'llm_int8_enable_fp32_cpu_offload',
] as const;
const QUANT_STATE_KEYS = ['quant_type', 'blocksize', 'dtype', 'shape', 'nested_blocksize', 'nested_offset', 'nested_dtype'];
const FLOAT_DTYPES = ['float32', 'float16', 'bfloat16'];
/** The per-layer tensors of bitsandbytes' `Params4bit` beside `<layer>.weight` (`QuantState.as_dict(packed=True)`). */
const STATE_SUFFIXES = ['absmax', 'quant_map', 'nested_absmax', 'nested_quant_map', 'quant_state.bitsandbytes__nf4'] as const;

function readConfig(qc: Record<string, unknown>): string[] {
  checkKeys(qc, '', CONFIG_KEYS);
  for (const key of ['load_in_4bit', '_load_in_4bit'] as const) if (qc[key] !== undefined && qc[key] !== true) throw unsupported(key, qc[key], 'true (4-bit NF4)');
  if (qc.load_in_4bit !== true && qc._load_in_4bit !== true) throw unsupported('load_in_4bit', qc.load_in_4bit, 'true (4-bit NF4; 8-bit LLM.int8 is not read here)');
  for (const key of ['load_in_8bit', '_load_in_8bit'] as const) if (qc[key] !== undefined && qc[key] !== false) throw unsupported(key, qc[key], 'false (LLM.int8 is not read here)');
  if (qc.bnb_4bit_quant_type !== 'nf4') throw unsupported('bnb_4bit_quant_type', qc.bnb_4bit_quant_type, '"nf4" (fp4 is not read here)');
  if (qc.bnb_4bit_use_double_quant !== true) throw unsupported('bnb_4bit_use_double_quant', qc.bnb_4bit_use_double_quant, 'true (double quantisation of the block absmax)');
  const compute = qc.bnb_4bit_compute_dtype;
  if (compute !== undefined && compute !== null && !FLOAT_DTYPES.includes(compute as string))
    throw unsupported('bnb_4bit_compute_dtype', compute, `one of ${FLOAT_DTYPES.join(', ')} (computed in float32 here)`);
  if (qc.bnb_4bit_quant_storage !== undefined && qc.bnb_4bit_quant_storage !== 'uint8') throw unsupported('bnb_4bit_quant_storage', qc.bnb_4bit_quant_storage, '"uint8"');
  if (qc.llm_int8_has_fp16_weight !== undefined && qc.llm_int8_has_fp16_weight !== false) throw unsupported('llm_int8_has_fp16_weight', qc.llm_int8_has_fp16_weight, 'false');
  if (qc.llm_int8_threshold !== undefined && typeof qc.llm_int8_threshold !== 'number') throw unsupported('llm_int8_threshold', qc.llm_int8_threshold, 'a number (unused by 4-bit layers)');
  if (qc.llm_int8_enable_fp32_cpu_offload !== undefined && typeof qc.llm_int8_enable_fp32_cpu_offload !== 'boolean') {
    throw unsupported('llm_int8_enable_fp32_cpu_offload', qc.llm_int8_enable_fp32_cpu_offload, 'true or false');
  }
  // transformers keeps the output embedding in float when no list is given
  return qc.llm_int8_skip_modules === undefined || qc.llm_int8_skip_modules === null ? ['lm_head'] : stringsAt(qc.llm_int8_skip_modules, 'llm_int8_skip_modules');
}

/** transformers' `modules_to_not_convert` test: the name is the path or a dotted run of its segments. */
function skipped(skip: readonly string[], path: string): boolean {
  return skip.some((name) => `.${path}.`.includes(`.${name}.`));
}

/** Python's `json.dumps` of the quant state: `", "` and `": "` separators, floats with a `.0`. */
function pythonJson(state: Record<string, unknown>): string {
  const value = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(value).join(', ')}]`;
    if (typeof v === 'number' && !Number.isInteger(v)) return String(v);
    return JSON.stringify(v);
  };
  return `{${Object.entries(state)
    .map(([k, v]) => `${JSON.stringify(k)}: ${k === 'nested_offset' && Number.isInteger(v) ? `${v}.0` : value(v)}`)
    .join(', ')}}`;
}

function layerError(path: string, message: string, code: 'SHAPE_MISMATCH' | 'NOT_SUPPORTED' | 'STATE_DICT_MISMATCH' = 'SHAPE_MISMATCH'): PosttrainError {
  return new PosttrainError(code, `loadModel: ${path}.weight: ${message}`, {
    help: 'config.json and the weights come from different models, or the file was not written by bitsandbytes 4-bit serialisation',
  });
}

function sameTable(values: Float32Array | Int32Array | Uint8Array, table: Float32Array): boolean {
  return values.length === table.length && values.every((v, i) => Math.abs(v - (table[i] as number)) <= 1e-6);
}

async function convertLayer(path: string, spec: QuantizedLayerSpec, tensors: Record<string, tf.Tensor>, out: Record<string, tf.Tensor>, created: tf.Tensor[]): Promise<void> {
  const key = (suffix: string) => `${path}.weight.${suffix}`;
  const missing = [`${path}.weight`, ...STATE_SUFFIXES.map(key)].filter((k) => !tensors[k]);
  if (missing.length > 0) throw layerError(path, `the checkpoint lacks ${missing.join(', ')} (bitsandbytes' NF4 serialisation with double quantisation)`, 'STATE_DICT_MISMATCH');
  const stateBytes = Uint8Array.from(await tensors[key('quant_state.bitsandbytes__nf4')].data());
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(new TextDecoder().decode(stateBytes)) as Record<string, unknown>;
  } catch {
    throw layerError(path, 'quant_state.bitsandbytes__nf4 is not JSON', 'NOT_SUPPORTED');
  }
  for (const k of Object.keys(state)) if (!QUANT_STATE_KEYS.includes(k)) throw layerError(path, `quant_state has the unknown key "${k}"; known keys: ${QUANT_STATE_KEYS.join(', ')}`, 'NOT_SUPPORTED');
  const expectState = (k: string, ok: boolean, expected: string) => {
    if (!ok) throw layerError(path, `quant_state.${k} ${JSON.stringify(state[k])} is not supported; expected ${expected}`, 'NOT_SUPPORTED');
  };
  expectState('quant_type', state.quant_type === 'nf4', '"nf4"');
  expectState('blocksize', state.blocksize === NF4_BLOCK_SIZE, String(NF4_BLOCK_SIZE));
  expectState('dtype', FLOAT_DTYPES.includes(state.dtype as string), FLOAT_DTYPES.join(', '));
  expectState('nested_blocksize', state.nested_blocksize === NF4_NESTED_BLOCK_SIZE, `${NF4_NESTED_BLOCK_SIZE} (double quantisation)`);
  expectState('nested_dtype', state.nested_dtype === 'float32', '"float32"');
  expectState('nested_offset', typeof state.nested_offset === 'number' && Number.isFinite(state.nested_offset), 'a finite number');
  const shape = state.shape as unknown;
  if (!Array.isArray(shape) || shape.length !== 2 || shape[0] !== spec.outFeatures || shape[1] !== spec.inFeatures) {
    throw layerError(path, `quant_state.shape ${JSON.stringify(shape)} disagrees with the model's layer [${spec.outFeatures}, ${spec.inFeatures}] ([out, in])`);
  }
  const numel = spec.outFeatures * spec.inFeatures;
  const byteLength = Math.ceil(numel / 2);
  const blocks = Math.ceil(numel / NF4_BLOCK_SIZE);
  const weight = tensors[`${path}.weight`];
  const absmax = tensors[key('absmax')];
  if (weight.dtype !== 'int32' || weight.size !== byteLength)
    throw layerError(path, `expected ${byteLength} packed code bytes (U8 [${byteLength}, 1]); got ${weight.dtype} ${JSON.stringify(weight.shape)}`);
  if (absmax.dtype !== 'int32' || absmax.size !== blocks) throw layerError(path, `expected absmax as ${blocks} U8 codes (double quantisation); got ${absmax.dtype} ${JSON.stringify(absmax.shape)}`);
  const nested = tensors[key('nested_absmax')];
  if (nested.dtype !== 'float32' || nested.size !== Math.ceil(blocks / NF4_NESTED_BLOCK_SIZE)) {
    throw layerError(path, `expected nested_absmax F32 [${Math.ceil(blocks / NF4_NESTED_BLOCK_SIZE)}]; got ${nested.dtype} ${JSON.stringify(nested.shape)}`);
  }
  if (!sameTable((await tensors[key('quant_map')].data()) as Float32Array, NF4_CODE)) throw layerError(path, 'quant_map is not the NF4 table', 'NOT_SUPPORTED');
  if (!sameTable((await tensors[key('nested_quant_map')].data()) as Float32Array, DYNAMIC_MAP)) throw layerError(path, 'nested_quant_map is not the signed dynamic map', 'NOT_SUPPORTED');
  const made = [tf.tensor1d(packBytes(Uint8Array.from(await weight.data())), 'int32'), tf.tensor1d(packBytes(Uint8Array.from(await absmax.data())), 'int32'), tf.scalar(state.nested_offset as number)];
  created.push(...made);
  [out[`${path}.weight`], out[`${path}.weight_absmax`], out[`${path}.weight_nested_offset`]] = made;
  out[`${path}.weight_nested_absmax`] = nested.reshape([-1]);
  if (out[`${path}.weight_nested_absmax`] !== nested) created.push(out[`${path}.weight_nested_absmax`]);
  for (const suffix of STATE_SUFFIXES) delete out[key(suffix)];
}

async function describeSave(model: Module): Promise<QuantizedSave | null> {
  const all = quantizedLayers(model);
  const layers = all.filter(([, l]) => l.scheme === 'nf4');
  if (layers.length === 0) return null;
  checkOneFamily(all);
  const quantizationConfig = {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: 'float32',
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: true,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: floatPaths(model),
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
  const tensors: Record<string, tf.Tensor> = {};
  const quantizedPaths = new Set(layers.map(([p]) => p));
  for (const [k, t] of Object.entries(model.stateDict())) {
    const owner = k.slice(0, k.lastIndexOf('.'));
    if (!quantizedPaths.has(owner) || k.endsWith('.bias')) tensors[k] = t;
  }
  const dtypes: Record<string, SafetensorsDtype> = {};
  const created: tf.Tensor[] = [];
  try {
    for (const [path, layer] of layers) {
      const buffers = layer.namedBuffers();
      const numel = layer.outFeatures * layer.inFeatures;
      const byteLength = Math.ceil(numel / 2);
      const blocks = Math.ceil(numel / NF4_BLOCK_SIZE);
      const words = (await (buffers.get('weight') as tf.Tensor).data()) as Int32Array;
      const absmaxWords = (await (buffers.get('weight_absmax') as tf.Tensor).data()) as Int32Array;
      const offset = ((await (buffers.get('weight_nested_offset') as tf.Tensor).data()) as Float32Array)[0] as number;
      const state = {
        quant_type: 'nf4',
        blocksize: NF4_BLOCK_SIZE,
        dtype: 'float32',
        shape: [layer.outFeatures, layer.inFeatures],
        nested_blocksize: NF4_NESTED_BLOCK_SIZE,
        nested_dtype: 'float32',
        nested_offset: offset,
      };
      const entries: [string, tf.Tensor, SafetensorsDtype][] = [
        [`${path}.weight`, tf.tensor2d(Int32Array.from(new Uint8Array(words.buffer, words.byteOffset, byteLength)), [byteLength, 1], 'int32'), 'U8'],
        [`${path}.weight.absmax`, tf.tensor1d(Int32Array.from(new Uint8Array(absmaxWords.buffer, absmaxWords.byteOffset, blocks)), 'int32'), 'U8'],
        [`${path}.weight.quant_map`, tf.tensor1d(NF4_CODE), 'F32'],
        [`${path}.weight.nested_quant_map`, tf.tensor1d(DYNAMIC_MAP), 'F32'],
        [`${path}.weight.quant_state.bitsandbytes__nf4`, tf.tensor1d(Int32Array.from(new TextEncoder().encode(pythonJson(state))), 'int32'), 'U8'],
      ];
      for (const [name, t, dtype] of entries) {
        created.push(t);
        tensors[name] = t;
        dtypes[name] = dtype;
      }
      tensors[`${path}.weight.nested_absmax`] = buffers.get('weight_nested_absmax') as tf.Tensor;
      dtypes[`${path}.weight.nested_absmax`] = 'F32';
    }
  } catch (error) {
    tf.dispose(created);
    throw error;
  }
  return { quantizationConfig, tensors, dtypes, created };
}

/**
 * bitsandbytes' NF4 checkpoints as transformers saves a `load_in_4bit` model: config.json's
 * `quantization_config` is a `BitsAndBytesConfig` (`quant_method: "bitsandbytes"`, nf4, double
 * quantisation, uint8 storage), and each quantised layer holds `Params4bit`'s tensors:
 * `<p>.weight` U8 `[ceil(out·in/2), 1]`, `<p>.weight.absmax` U8, `<p>.weight.quant_map` F32 [16],
 * `<p>.weight.nested_absmax` F32, `<p>.weight.nested_quant_map` F32 [256] and
 * `<p>.weight.quant_state.bitsandbytes__nf4` (U8 bytes of the quant state's JSON). Registered when
 * `@posttrain/quantize` is imported.
 *
 * @example
 * ```ts
 * import { bitsandbytesQuantizer } from '@posttrain/quantize';
 * bitsandbytesQuantizer.method; // 'bitsandbytes'
 * ```
 */
export const bitsandbytesQuantizer: CheckpointQuantizer = Object.freeze({
  method: 'bitsandbytes',
  async prepareLoad(model: Module, quantizationConfig: Record<string, unknown>) {
    const skip = readConfig(quantizationConfig);
    const specs: [string, QuantizedLayerSpec][] = floatLayers(model)
      .filter(([path]) => !skipped(skip, path))
      .map(([path, layer]) => [path, specFor(layer, { scheme: 'nf4' })]);
    const layers = replaceWithEmpty(model, specs);
    return {
      layers,
      async convert(tensors: Record<string, tf.Tensor>) {
        const out = { ...tensors };
        const created: tf.Tensor[] = [];
        try {
          for (const [path, spec] of specs) await convertLayer(path, spec, tensors, out, created);
        } catch (error) {
          tf.dispose(created);
          throw error;
        }
        return { tensors: out, created };
      },
    };
  },
  describeSave,
});
