import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PretrainedModel, createModel, loadModel, saveModel } from '@posttrain/models';
import { Conv1D, Linear, Rng, type SafetensorsDtype, initBackend, isPosttrainError, parseSafetensorsHeader, readSafetensors, tf, writeSafetensors } from '@posttrain/tensor-core';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { COMPRESSED_TENSORS_VERSION } from './checkpoint.js';
import { gptqModel } from './gptq.js';
import { DYNAMIC_MAP, NF4_CODE } from './nf4.js';
import { QuantizedLinear } from './quantized-linear.js';
import { quantizeModel } from './quantize-model.js';

// Quantised checkpoints: save → load gives the same logits and the same buffers, the files hold
// compressed-tensors' pack-quantized tensors (int8, int4, act-order) and bitsandbytes' NF4 tensors
// with the keys, shapes and dtypes those libraries write, the float lm_head stays float, bad input
// is refused naming the field, and nothing leaks. The same directories (QUANTIZE_FILES_OUT=dir)
// are what scripts/reference/quantize_files_ref.py dequantises with PyTorch; its numbers are in
// fixtures/quantize_files_ref.json and checked here.

const configs = {
  llama: { modelType: 'llama', vocabSize: 64, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 64 },
  gpt2: { modelType: 'gpt2', vocabSize: 64, hiddenSize: 64, numLayers: 2, numHeads: 4, maxPositions: 64 },
} as const;
type Kind = keyof typeof configs;
const make = (kind: Kind): PretrainedModel => createModel(configs[kind] as never, { seed: 11 });
const rows = (seed: number, count: number, length: number): number[][] => {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(rng.int(64))));
};

interface Case {
  name: string;
  kind: Kind;
  quantize(model: PretrainedModel): Promise<unknown>;
}
const cases: Case[] = [
  { name: 'llama-int8', kind: 'llama', quantize: (m) => quantizeModel(m, { scheme: 'int8' }) },
  { name: 'llama-int4-g32-sym', kind: 'llama', quantize: (m) => quantizeModel(m, { scheme: 'int4', groupSize: 32 }) },
  { name: 'gpt2-int4-g64-asym', kind: 'gpt2', quantize: (m) => quantizeModel(m, { scheme: 'int4', groupSize: 64, symmetric: false }) },
  { name: 'llama-gptq-actorder', kind: 'llama', quantize: (m) => gptqModel(m, [rows(1, 4, 32), rows(2, 4, 32)], { bits: 4, groupSize: 32, actOrder: true }) },
  { name: 'llama-nf4', kind: 'llama', quantize: (m) => quantizeModel(m, { scheme: 'nf4' }) },
  { name: 'gpt2-nf4', kind: 'gpt2', quantize: (m) => quantizeModel(m, { scheme: 'nf4' }) },
];

const ids = () => tf.tensor2d(rows(5, 2, 12), [2, 12], 'int32');
async function logits(model: PretrainedModel): Promise<Float32Array> {
  const input = ids();
  const out = model.forward(input);
  const values = (await out.logits.data()) as Float32Array;
  tf.dispose([input, out.logits, out.hidden]);
  return values;
}

function quantized(model: PretrainedModel): Map<string, QuantizedLinear> {
  return new Map([...model.namedModules()].filter(([, m]) => m instanceof QuantizedLinear) as [string, QuantizedLinear][]);
}

/** The stored dtype and shape of every tensor of a directory's model.safetensors. */
async function header(dir: string): Promise<Map<string, { dtype: string; shape: number[] }>> {
  const parsed = parseSafetensorsHeader(new Uint8Array(await readFile(join(dir, 'model.safetensors'))));
  return new Map([...parsed.tensors].map(([k, v]) => [k, { dtype: v.dtype, shape: v.shape }]));
}

async function config(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
}

/** Rewrites model.safetensors with `edit` applied to its tensors (dtypes kept as stored). */
async function editFile(dir: string, edit: (tensors: Record<string, tf.Tensor>) => void): Promise<void> {
  const bytes = new Uint8Array(await readFile(join(dir, 'model.safetensors')));
  const dtypes = Object.fromEntries([...parseSafetensorsHeader(bytes).tensors].map(([k, v]) => [k, v.dtype as SafetensorsDtype]));
  const tensors = readSafetensors(bytes);
  try {
    edit(tensors);
    const kept = Object.fromEntries(Object.entries(dtypes).filter(([k]) => k in tensors));
    await writeFile(join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }, { dtypes: kept }));
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

async function rejects(promise: Promise<unknown>, code: string, ...parts: string[]): Promise<void> {
  let error: unknown;
  await promise.then(
    () => expect.unreachable('expected a rejection'),
    (e: unknown) => {
      error = e;
    },
  );
  expect(isPosttrainError(error), String(error)).toBe(true);
  expect((error as { code: string }).code, String(error)).toBe(code);
  for (const part of parts) expect((error as Error).message).toContain(part);
}

interface Reference {
  torch: string;
  cases: Record<string, { layers: Record<string, { shape: [number, number]; sum: number; sum_abs: number; index: number[]; values: number[] }> }>;
}
const referencePath = new URL('./fixtures/quantize_files_ref.json', import.meta.url);
const reference = existsSync(referencePath) ? (JSON.parse(readFileSync(referencePath, 'utf8')) as Reference) : undefined;

let dir: string;
let before: number;
beforeAll(async () => {
  await initBackend('cpu');
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'posttrain-qfiles-'));
  before = tf.memory().numTensors;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

describe.each(cases)('$name: saveModel → loadModel', ({ name, kind, quantize }) => {
  it('gives the same logits and buffers, in the layout its consumer reads, and matches the PyTorch dequantisation', async () => {
    const model = make(kind);
    await quantize(model);
    const out = process.env.QUANTIZE_FILES_OUT ? join(process.env.QUANTIZE_FILES_OUT, name) : join(dir, name);
    if (process.env.QUANTIZE_FILES_OUT) {
      const float = make(kind);
      await saveModel(float, `${out}-float`);
      float.dispose();
    }
    await saveModel(model, out);
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);

    const loaded = await loadModel(out);
    expect(await logits(loaded)).toEqual(await logits(model));
    const layers = quantized(model);
    const again = quantized(loaded);
    expect([...again.keys()]).toEqual([...layers.keys()]);
    const state = model.stateDict();
    const loadedState = loaded.stateDict();
    expect(Object.keys(loadedState).sort()).toEqual(Object.keys(state).sort());
    for (const [key, t] of Object.entries(state)) expect(Array.from(await loadedState[key].data()), key).toEqual(Array.from(await t.data()));
    for (const [path, layer] of again) expect(layer.spec, path).toEqual((layers.get(path) as QuantizedLinear).spec);

    // the float output projection stays float
    if (kind === 'llama') {
      expect(loaded.getModule('lm_head')).toBeInstanceOf(Linear);
      expect((await header(out)).get('lm_head.weight')).toEqual({ dtype: 'F32', shape: [64, 64] });
    }
    if (kind === 'gpt2') for (const layer of again.values()) expect(layer.origin).toBe('conv1d');

    // against PyTorch's dequantisation of the same files (deterministic: seeds, RTN, GPTQ on cpu)
    const ref = reference?.cases[name];
    expect(ref, `fixtures/quantize_files_ref.json lacks ${name}: rerun scripts/reference/quantize_files_ref.py`).toBeDefined();
    if (ref) {
      expect(Object.keys(ref.layers).sort()).toEqual([...again.keys()].sort());
      for (const [path, layer] of again) {
        const r = ref.layers[path];
        const w = layer.dequantizeWeight();
        const values = (await w.data()) as Float32Array;
        w.dispose();
        expect(r.shape).toEqual([layer.outFeatures, layer.inFeatures]);
        expect(
          r.index.map((i) => values[i]),
          path,
        ).toEqual(r.values.map(Math.fround));
        let sum = 0;
        let sumAbs = 0;
        for (const v of values) {
          sum += v;
          sumAbs += Math.abs(v);
        }
        expect(Math.abs(sum - r.sum), `${path} sum`).toBeLessThan(1e-4 * r.sum_abs);
        expect(Math.abs(sumAbs - r.sum_abs), `${path} sum |w|`).toBeLessThan(1e-5 * r.sum_abs);
      }
    }
    loaded.dispose();
    model.dispose();
  }, 60_000);
});

describe('the files', () => {
  it('int8 (llama): compressed-tensors W8A16 config, per-channel I32 words, F32 scales, I64 weight_shape, lm_head ignored', async () => {
    const model = make('llama');
    await quantizeModel(model, { scheme: 'int8' });
    await saveModel(model, dir);
    const c = await config(dir);
    expect(c.quantization_config).toEqual({
      config_groups: {
        group_0: {
          input_activations: null,
          output_activations: null,
          targets: ['Linear'],
          weights: {
            actorder: null,
            block_structure: null,
            dynamic: false,
            group_size: null,
            num_bits: 8,
            observer: 'minmax',
            observer_kwargs: {},
            strategy: 'channel',
            symmetric: true,
            type: 'int',
          },
        },
      },
      format: 'pack-quantized',
      global_compression_ratio: null,
      ignore: ['lm_head'],
      kv_cache_scheme: null,
      quant_method: 'compressed-tensors',
      quantization_status: 'compressed',
      version: COMPRESSED_TENSORS_VERSION,
    });
    const h = await header(dir);
    const p = 'model.layers.0.mlp.down_proj'; // [64, 128]
    expect(h.get(`${p}.weight_packed`)).toEqual({ dtype: 'I32', shape: [64, 32] });
    expect(h.get(`${p}.weight_scale`)).toEqual({ dtype: 'F32', shape: [64, 1] });
    expect(h.get(`${p}.weight_shape`)).toEqual({ dtype: 'I64', shape: [2] });
    expect(h.has(`${p}.weight_zero_point`)).toBe(false);
    expect(h.has(`${p}.weight`)).toBe(false);
    const file = readSafetensors(new Uint8Array(await readFile(join(dir, 'model.safetensors'))));
    expect(Array.from(file[`${p}.weight_shape`].dataSync())).toEqual([64, 128]);
    tf.dispose(Object.values(file));
    // 7 projections per block × 2 blocks, 4 tensors each, + lm_head, embeddings and norms
    expect([...h.keys()].filter((k) => k.endsWith('.weight_packed'))).toHaveLength(14);
    model.dispose();
  });

  it('int4 g64 asymmetric (GPT-2 Conv1D): zero-points packed along the output dimension, [out, in] words, tied lm_head ignored', async () => {
    const model = make('gpt2');
    await quantizeModel(model, { scheme: 'int4', groupSize: 64, symmetric: false });
    await saveModel(model, dir);
    const qc = (await config(dir)).quantization_config as Record<string, Record<string, Record<string, unknown>>>;
    expect(qc.config_groups.group_0.weights).toMatchObject({ num_bits: 4, strategy: 'group', group_size: 64, symmetric: false, actorder: null });
    expect(qc.ignore).toEqual(['lm_head']);
    const h = await header(dir);
    const p = 'transformer.h.0.mlp.c_fc'; // Conv1D 64 → 256, stored as [out 256, in 64]
    expect(h.get(`${p}.weight_packed`)).toEqual({ dtype: 'I32', shape: [256, 8] });
    expect(h.get(`${p}.weight_scale`)).toEqual({ dtype: 'F32', shape: [256, 1] });
    expect(h.get(`${p}.weight_zero_point`)).toEqual({ dtype: 'I32', shape: [32, 1] });
    expect(h.get(`${p}.bias`)).toEqual({ dtype: 'F32', shape: [256] });
    model.dispose();
  });

  it('GPTQ act-order: actorder "group" and an I32 weight_g_idx [in]', async () => {
    const model = make('llama');
    await gptqModel(model, [rows(1, 4, 32), rows(2, 4, 32)], { bits: 4, groupSize: 32, actOrder: true });
    await saveModel(model, dir);
    const qc = (await config(dir)).quantization_config as Record<string, Record<string, Record<string, unknown>>>;
    expect(qc.config_groups.group_0.weights).toMatchObject({ num_bits: 4, strategy: 'group', group_size: 32, symmetric: true, actorder: 'group' });
    const h = await header(dir);
    expect(h.get('model.layers.1.mlp.down_proj.weight_g_idx')).toEqual({ dtype: 'I32', shape: [128] });
    expect(h.get('model.layers.1.mlp.down_proj.weight_scale')).toEqual({ dtype: 'F32', shape: [64, 4] });
    model.dispose();
  });

  it('mixed schemes become one config group per scheme, targeting layer paths, and load back', async () => {
    const model = make('llama');
    await quantizeModel(model, { scheme: 'int4', groupSize: 32, exclude: /lm_head|.*\.mlp\..*/ });
    await quantizeModel(model, { scheme: 'int8', exclude: /lm_head|.*\.self_attn\..*/ });
    await saveModel(model, dir);
    const qc = (await config(dir)).quantization_config as Record<string, Record<string, { targets: string[]; weights: Record<string, unknown> }>>;
    expect(Object.keys(qc.config_groups)).toEqual(['group_0', 'group_1']);
    expect(qc.config_groups.group_0.targets).toEqual([0, 1].flatMap((i) => ['q', 'k', 'v', 'o'].map((x) => `model.layers.${i}.self_attn.${x}_proj`)));
    expect(qc.config_groups.group_0.weights).toMatchObject({ num_bits: 4, group_size: 32 });
    expect(qc.config_groups.group_1.targets).toEqual([0, 1].flatMap((i) => ['gate', 'up', 'down'].map((x) => `model.layers.${i}.mlp.${x}_proj`)));
    expect(qc.config_groups.group_1.weights).toMatchObject({ num_bits: 8, strategy: 'channel' });
    const loaded = await loadModel(dir);
    expect(await logits(loaded)).toEqual(await logits(model));
    expect((loaded.getModule('model.layers.0.mlp.up_proj') as QuantizedLinear).scheme).toBe('int8');
    expect((loaded.getModule('model.layers.0.self_attn.q_proj') as QuantizedLinear).scheme).toBe('int4');
    loaded.dispose();
    model.dispose();
  });

  it("nf4 (llama): transformers' BitsAndBytesConfig and Params4bit's tensors, quant state as JSON bytes", async () => {
    const model = make('llama');
    await quantizeModel(model, { scheme: 'nf4' });
    const offset = (model.getModule('model.layers.0.mlp.down_proj') as QuantizedLinear).namedBuffers().get('weight_nested_offset')?.dataSync()[0];
    await saveModel(model, dir);
    expect((await config(dir)).quantization_config).toEqual({
      _load_in_4bit: true,
      _load_in_8bit: false,
      bnb_4bit_compute_dtype: 'float32',
      bnb_4bit_quant_storage: 'uint8',
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
      llm_int8_enable_fp32_cpu_offload: false,
      llm_int8_has_fp16_weight: false,
      llm_int8_skip_modules: ['lm_head'],
      llm_int8_threshold: 6,
      load_in_4bit: true,
      load_in_8bit: false,
      quant_method: 'bitsandbytes',
    });
    const h = await header(dir);
    const p = 'model.layers.0.mlp.down_proj'; // 64 × 128 = 8192 values, 128 blocks of 64
    expect([...h.keys()].filter((k) => k.startsWith(`${p}.`)).sort()).toEqual(
      ['weight', 'weight.absmax', 'weight.nested_absmax', 'weight.nested_quant_map', 'weight.quant_map', 'weight.quant_state.bitsandbytes__nf4'].map((s) => `${p}.${s}`),
    );
    expect(h.get(`${p}.weight`)).toEqual({ dtype: 'U8', shape: [4096, 1] });
    expect(h.get(`${p}.weight.absmax`)).toEqual({ dtype: 'U8', shape: [128] });
    expect(h.get(`${p}.weight.nested_absmax`)).toEqual({ dtype: 'F32', shape: [1] });
    expect(h.get(`${p}.weight.quant_map`)).toEqual({ dtype: 'F32', shape: [16] });
    expect(h.get(`${p}.weight.nested_quant_map`)).toEqual({ dtype: 'F32', shape: [256] });
    expect(h.get(`${p}.weight.quant_state.bitsandbytes__nf4`)?.dtype).toBe('U8');
    const file = readSafetensors(new Uint8Array(await readFile(join(dir, 'model.safetensors'))));
    const state = JSON.parse(new TextDecoder().decode(Uint8Array.from(file[`${p}.weight.quant_state.bitsandbytes__nf4`].dataSync())));
    expect(state).toEqual({ quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape: [64, 128], nested_blocksize: 256, nested_dtype: 'float32', nested_offset: offset });
    expect(Float32Array.from(file[`${p}.weight.quant_map`].dataSync())).toEqual(NF4_CODE);
    expect(Float32Array.from(file[`${p}.weight.nested_quant_map`].dataSync())).toEqual(DYNAMIC_MAP);
    // the packed bytes are the layer's own words, byte for byte
    const words = (model.getModule(p) as QuantizedLinear).namedBuffers().get('weight')?.dataSync() as Int32Array;
    expect(Uint8Array.from(file[`${p}.weight`].dataSync())).toEqual(new Uint8Array(words.buffer, words.byteOffset, 4096));
    expect(h.get('lm_head.weight')).toEqual({ dtype: 'F32', shape: [64, 64] });
    tf.dispose(Object.values(file));
    model.dispose();
  });
});

describe('shards', () => {
  it('a quantised model saved in shards loads back with the same logits', async () => {
    const model = make('llama');
    await quantizeModel(model, { scheme: 'nf4' });
    await saveModel(model, dir, { maxShardBytes: 16_384 });
    const files = await readdir(dir);
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(2);
    expect(files).toContain('model.safetensors.index.json');
    const loaded = await loadModel(dir);
    expect(await logits(loaded)).toEqual(await logits(model));
    loaded.dispose();
    model.dispose();
  });
});

describe('bad input', () => {
  async function saved(kind: Kind, scheme: 'int4' | 'nf4'): Promise<void> {
    const model = make(kind);
    await quantizeModel(model, scheme === 'int4' ? { scheme, groupSize: 32 } : { scheme });
    await saveModel(model, dir);
    model.dispose();
  }
  async function withConfig(edit: (qc: Record<string, unknown>) => void): Promise<void> {
    const c = await config(dir);
    edit(c.quantization_config as Record<string, unknown>);
    await writeFile(join(dir, 'config.json'), JSON.stringify(c));
  }

  it('an unknown quantization_config key or unsupported value is NOT_SUPPORTED naming the field and value', async () => {
    await saved('llama', 'int4');
    const original = await config(dir);
    const cases: [(qc: Record<string, Record<string, Record<string, Record<string, unknown>>>>) => void, string][] = [
      [(qc) => Object.assign(qc, { bits: 4 }), 'quantization_config.bits is not a key this reader knows'],
      [(qc) => (qc.config_groups.group_0.weights.type = 'float' as never), 'quantization_config.config_groups.group_0.weights.type "float"'],
      [(qc) => (qc.config_groups.group_0.weights.num_bits = 3 as never), 'quantization_config.config_groups.group_0.weights.num_bits 3'],
      [(qc) => (qc.config_groups.group_0.weights.strategy = 'tensor' as never), 'weights.strategy "tensor"'],
      [(qc) => (qc.config_groups.group_0.input_activations = { num_bits: 8 } as never), 'quantization_config.config_groups.group_0.input_activations {"num_bits":8}'],
      [(qc) => Object.assign(qc, { format: 'naive-quantized' }), 'quantization_config.format "naive-quantized"'],
      [(qc) => Object.assign(qc, { quantization_status: 'frozen' }), 'quantization_config.quantization_status "frozen"'],
      [(qc) => (qc.config_groups.group_0.targets = ['Embedding'] as never), 'quantization_config.config_groups.group_0.targets ["Embedding"]'],
    ];
    for (const [edit, message] of cases) {
      await writeFile(join(dir, 'config.json'), JSON.stringify(original));
      await withConfig(edit as never);
      await rejects(loadModel(dir), 'NOT_SUPPORTED', message);
    }
  });

  it('bitsandbytes: fp4, 8-bit or no double quantisation are NOT_SUPPORTED naming the field', async () => {
    await saved('llama', 'nf4');
    const original = await config(dir);
    for (const [key, value] of [
      ['bnb_4bit_quant_type', 'fp4'],
      ['bnb_4bit_use_double_quant', false],
      ['load_in_8bit', true],
      ['bnb_4bit_quant_storage', 'bfloat16'],
      ['llm_int8_skip_module', ['lm_head']],
    ] as const) {
      await writeFile(join(dir, 'config.json'), JSON.stringify(original));
      await withConfig((qc) => {
        qc[key] = value;
      });
      await rejects(loadModel(dir), 'NOT_SUPPORTED', key === 'llm_int8_skip_module' ? 'quantization_config.llm_int8_skip_module is not a key' : `quantization_config.${key} ${JSON.stringify(value)}`);
    }
  });

  it('a weight_shape or quant state that disagrees with the layer is a clear error', async () => {
    await saved('llama', 'int4');
    await editFile(dir, (t) => {
      t['model.layers.0.mlp.up_proj.weight_shape'].dispose();
      t['model.layers.0.mlp.up_proj.weight_shape'] = tf.tensor1d([128, 65], 'int32');
    });
    await rejects(loadModel(dir), 'SHAPE_MISMATCH', 'model.layers.0.mlp.up_proj.weight_shape is [128, 65]', '[128, 64]');

    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await saved('llama', 'nf4');
    const key = 'model.layers.1.self_attn.k_proj.weight.quant_state.bitsandbytes__nf4';
    await editFile(dir, (t) => {
      const state = JSON.parse(new TextDecoder().decode(Uint8Array.from(t[key].dataSync())));
      t[key].dispose();
      t[key] = tf.tensor1d(Int32Array.from(new TextEncoder().encode(JSON.stringify({ ...state, shape: [64, 32] }))), 'int32');
    });
    await rejects(loadModel(dir), 'SHAPE_MISMATCH', 'model.layers.1.self_attn.k_proj.weight: quant_state.shape [64,32] disagrees', '[32, 64]');

    await editFile(dir, (t) => {
      t['model.layers.0.mlp.up_proj.weight.absmax'].dispose();
      delete t['model.layers.0.mlp.up_proj.weight.absmax'];
    });
    await rejects(loadModel(dir), 'STATE_DICT_MISMATCH', 'lacks model.layers.0.mlp.up_proj.weight.absmax');
  });

  it('a model mixing nf4 and int4 layers is refused before anything is written', async () => {
    const model = make('llama');
    await quantizeModel(model, { scheme: 'nf4', exclude: /lm_head|.*\.mlp\..*/ });
    await quantizeModel(model, { scheme: 'int4', groupSize: 32, exclude: /lm_head|.*\.self_attn\..*/ });
    await rejects(saveModel(model, dir), 'NOT_SUPPORTED', 'mixes nf4', 'one config.json names one quant_method');
    expect(await readdir(dir)).toEqual([]);
    model.dispose();
  });

  it('a float model saves without quantization_config and Conv1D / Linear layers stay float', async () => {
    const model = make('gpt2');
    await saveModel(model, dir);
    expect('quantization_config' in (await config(dir))).toBe(false);
    const loaded = await loadModel(dir);
    expect(loaded.getModule('transformer.h.0.attn.c_attn')).toBeInstanceOf(Conv1D);
    loaded.dispose();
    model.dispose();
  });
});
