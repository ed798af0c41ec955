import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, readSafetensors, tf, writeSafetensors } from '@posttrain/tensor-core';
import { configFromHf, configToHf } from '@posttrain/tensor-core';
import { loadModel, saveModel, type PretrainedModel } from './index.js';
import { expectPosttrainError, rejection, thrown } from './testing/assert.js';
import { fixtureDir, referenceModels } from './testing/reference.js';

// A saved model loads back bit-identical (directory, shards, in-memory map); old GPT-2 checkpoint
// layouts load; a mismatched checkpoint or an unsupported config fails naming every problem.

/** Expects the same parameter paths, shapes, dtypes and bytes. */
function expectIdentical(actual: PretrainedModel, expected: PretrainedModel): void {
  const a = actual.stateDict();
  const e = expected.stateDict();
  expect(Object.keys(a).sort()).toEqual(Object.keys(e).sort());
  for (const [key, tensor] of Object.entries(e)) {
    expect(a[key].shape, key).toEqual(tensor.shape);
    expect(a[key].dtype, key).toBe(tensor.dtype);
    const x = a[key].dataSync() as Float32Array;
    const y = tensor.dataSync() as Float32Array;
    expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength)), `${key} bytes`).toBe(true);
  }
}

const fixtureConfig = async (name: (typeof referenceModels)[number]) => JSON.parse(await readFile(join(fixtureDir(name), 'config.json'), 'utf8')) as Record<string, unknown>;
const fixtureTensors = async (name: (typeof referenceModels)[number]) => readSafetensors(new Uint8Array(await readFile(join(fixtureDir(name), 'model.safetensors'))));

let dir: string;
let before: number;
beforeAll(async () => {
  await initBackend('cpu');
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'posttrain-models-'));
  before = tf.memory().numTensors;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

describe.each(referenceModels)('%s: saveModel then loadModel', (name) => {
  let model: PretrainedModel;
  beforeAll(async () => {
    model = await loadModel(fixtureDir(name));
  });
  afterAll(() => model?.dispose());

  it('a directory round trip gives bit-identical parameters and the same config', async () => {
    await saveModel(model, dir);
    expect((await readdir(dir)).sort()).toEqual(['config.json', 'model.safetensors']);
    const written = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(written.model_type).toBe(name);
    expect(configFromHf(written)).toEqual(model.config);
    const loaded = await loadModel(dir);
    expectIdentical(loaded, model);
    loaded.dispose();
  });

  it('configFromHf(configToHf(config)) deep-equals the config', () => {
    expect(configFromHf(configToHf(model.config))).toEqual(model.config);
  });

  it('a sharded save (small maxShardBytes) writes model.safetensors.index.json and loads back identical', async () => {
    await saveModel(model, dir, { maxShardBytes: 16_000 });
    const files = await readdir(dir);
    expect(files).toContain('model.safetensors.index.json');
    expect(files).not.toContain('model.safetensors');
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(1);
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    expect(Object.keys(index.weight_map).sort()).toEqual(Object.keys(model.stateDict()).sort());
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
    const loaded = await loadModel(dir);
    expectIdentical(loaded, model);
    loaded.dispose();
  });

  it('an in-memory Map works as target and source, single-file and sharded', async () => {
    for (const maxShardBytes of [undefined, 16_000]) {
      const files = new Map<string, Uint8Array>();
      await saveModel(model, files, maxShardBytes === undefined ? {} : { maxShardBytes });
      expect(files.has('config.json')).toBe(true);
      expect(files.has(maxShardBytes === undefined ? 'model.safetensors' : 'model.safetensors.index.json')).toBe(true);
      const loaded = await loadModel(files);
      expectIdentical(loaded, model);
      loaded.dispose();
    }
  });
});

describe('checkpoint layouts', () => {
  it('a GPT-2 checkpoint without the transformer. prefix, with attn.bias/masked_bias buffers and a tied lm_head.weight, loads', async () => {
    const reference = await loadModel(fixtureDir('gpt2'));
    const tensors = await fixtureTensors('gpt2');
    expect(Object.keys(tensors).every((k) => k.startsWith('transformer.'))).toBe(true);
    const old: Record<string, tf.Tensor> = {};
    for (const [key, t] of Object.entries(tensors)) old[key.slice('transformer.'.length)] = t;
    const n = reference.config.maxPositions;
    const buffers: tf.Tensor[] = [];
    for (let layer = 0; layer < reference.config.numLayers; layer++) {
      buffers.push((old[`h.${layer}.attn.bias`] = tf.tidy(() => tf.linalg.bandPart(tf.ones([n, n]), -1, 0).reshape([1, 1, n, n]))));
      buffers.push((old[`h.${layer}.attn.masked_bias`] = tf.scalar(-1e4)));
    }
    old['lm_head.weight'] = tensors['transformer.wte.weight'];
    const bytes = writeSafetensors(old);
    tf.dispose([...Object.values(tensors), ...buffers]);
    const loaded = await loadModel(
      new Map<string, Uint8Array | string>([
        ['config.json', JSON.stringify(await fixtureConfig('gpt2'))],
        ['model.safetensors', bytes],
      ]),
    );
    expectIdentical(loaded, reference);
    loaded.dispose();
    reference.dispose();
  });

  it.each(['F16', 'BF16'] as const)('a %s checkpoint loads upcast to float32, with logits close to the float32 model', async (floatDtype) => {
    const reference = await loadModel(fixtureDir('llama'));
    const tensors = await fixtureTensors('llama');
    const bytes = writeSafetensors(tensors, undefined, { floatDtype });
    tf.dispose(Object.values(tensors));
    const loaded = await loadModel(
      new Map<string, Uint8Array | string>([
        ['config.json', JSON.stringify(await fixtureConfig('llama'))],
        ['model.safetensors', bytes],
      ]),
    );
    for (const p of loaded.namedParameters().values()) expect(p.dtype).toBe('float32');
    const ids = tf.tensor2d([[5, 9, 14, 3, 40]], undefined, 'int32');
    const [a, b] = [reference, loaded].map((m) => {
      const out = m.forward(ids);
      const values = out.logits.dataSync();
      tf.dispose([out.logits, out.hidden]);
      return values;
    });
    let worst = 0;
    let scale = 1;
    a.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(v - b[i]));
      scale = Math.max(scale, Math.abs(v));
    });
    // Rounding the weights to 11 (F16) or 8 (BF16) significant bits moves the logits a little, not a lot.
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan((floatDtype === 'F16' ? 1e-2 : 1e-1) * scale);
    tf.dispose(ids);
    loaded.dispose();
    reference.dispose();
  });

  it('a mis-shaped, a missing and an unexpected key fail together with STATE_DICT_MISMATCH listing all three', async () => {
    const tensors = await fixtureTensors('llama');
    const misShaped = 'model.layers.0.mlp.down_proj.weight';
    const missing = 'model.layers.1.self_attn.k_proj.weight';
    const unexpected = 'model.layers.0.self_attn.rotary_extra.weight';
    const broken: Record<string, tf.Tensor> = { ...tensors };
    broken[misShaped] = tensors[misShaped].slice([0, 0], [16, -1]);
    delete broken[missing];
    broken[unexpected] = tf.zeros([4]);
    const bytes = writeSafetensors(broken);
    tf.dispose([...Object.values(tensors), broken[misShaped], broken[unexpected]]);
    const error = await rejection(
      loadModel(
        new Map<string, Uint8Array | string>([
          ['config.json', JSON.stringify(await fixtureConfig('llama'))],
          ['model.safetensors', bytes],
        ]),
      ),
    );
    expectPosttrainError(error, 'STATE_DICT_MISMATCH', misShaped, missing, unexpected, '[32, 64]', '[16, 64]');
  });

  it('a loaded qwen2 fixture with sliding_window set but use_sliding_window false is accepted', async () => {
    const json = await fixtureConfig('qwen2');
    expect(json.sliding_window).toBe(4096);
    expect(configFromHf(json).modelType).toBe('qwen2');
  });
});

describe('unsupported configs are NOT_SUPPORTED or INVALID_ARGUMENT errors naming the field', () => {
  it('an unknown model_type names it and the supported ones', async () => {
    const json = { ...(await fixtureConfig('llama')), model_type: 'bert' };
    expectPosttrainError(
      thrown(() => configFromHf(json)),
      'NOT_SUPPORTED',
      'model_type',
      '"bert"',
      'gpt2, llama, qwen2, mistral',
    );
    // loadModel fails the same way before reading any weights.
    const error = await rejection(loadModel(new Map([['config.json', JSON.stringify(json)]])));
    expectPosttrainError(error, 'NOT_SUPPORTED', 'model_type');
  });

  it.each([
    ['qwen2', { use_sliding_window: true }, 'NOT_SUPPORTED', 'use_sliding_window'],
    ['mistral', { sliding_window: 4096 }, 'NOT_SUPPORTED', 'sliding_window: 4096'],
    ['llama', { rope_scaling: { type: 'yarn', factor: 4 } }, 'NOT_SUPPORTED', 'rope_scaling type "yarn"'],
    ['llama', { hidden_act: 'gelu' }, 'NOT_SUPPORTED', 'hidden_act "gelu"'],
    ['llama', { num_attention_heads: 4, num_key_value_heads: 3 }, 'INVALID_ARGUMENT', 'num_key_value_heads'],
  ] as const)('%s with %j is %s naming %s', async (modelType, change, code, field) => {
    const base = await fixtureConfig(modelType === 'qwen2' ? 'qwen2' : 'llama');
    const json = { ...base, model_type: modelType, ...(modelType === 'mistral' ? { rope_scaling: null } : {}), ...change };
    expectPosttrainError(
      thrown(() => configFromHf(json)),
      code,
      field,
    );
    if (field === 'num_key_value_heads') expect(thrown(() => configFromHf(json)).message).toContain('num_attention_heads');
  });

  it('the same configs without the unsupported field are accepted (the errors come from that field)', async () => {
    const llama = await fixtureConfig('llama');
    expect(configFromHf({ ...llama, model_type: 'mistral', sliding_window: null }).modelType).toBe('mistral');
    expect(configFromHf({ ...llama, rope_scaling: { rope_type: 'default' } })).toMatchObject({ ropeScaling: null });
    expect(configFromHf({ ...llama, hidden_act: 'silu', num_key_value_heads: 4 }).numKvHeads).toBe(4);
  });
});
