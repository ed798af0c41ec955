import { mkdtemp, readFile, readdir, rm as remove } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromHf, configToHf, fileSource, initBackend, isPosttrainError, readCheckpoint, tf } from '@posttrain/tensor-core';
import { ByteTokenizer } from '@posttrain/data';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, applyLora, loraLayers } from '@posttrain/lora';
import { createModel, type ModelConfigInput } from '@posttrain/models';
import { RewardModel, loadRewardModel, rewardTrain, saveRewardModel, type RewardRecord } from './index.js';

const tokenizer = new ByteTokenizer();
const llamaConfig = (hidden = 16): ModelConfigInput => ({
  modelType: 'llama',
  vocabSize: tokenizer.vocabSize,
  hiddenSize: hidden,
  intermediateSize: 32,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  maxPositions: 32,
  tieWordEmbeddings: true,
  eosTokenId: tokenizer.eosTokenId,
  padTokenId: tokenizer.padTokenId,
});
const fromConfig = (config: Record<string, unknown>) => createModel(configFromHf(config), { seed: 99 });
const pairs: RewardRecord[] = [
  { prompt: 'abc>', chosen: 'cba', rejected: 'abc' },
  { prompt: 'dc>', chosen: 'cd', rejected: 'dc' },
  { prompt: 'hgfe>', chosen: 'efgh', rejected: 'egfh' },
];

/** Rewards of a right-padded batch of different lengths, as raw float32 bits for exact comparison. */
function rewardBits(model: RewardModel): number[] {
  const rows = [
    [97, 98, 99, 62, 99, 98, 97, 258],
    [100, 99, 62, 99, 100, 258, 259, 259],
  ];
  const input = tf.tensor2d(rows.flat(), [2, 8], 'int32');
  const mask = tf.tensor2d(
    rows.flat().map((t) => (t === 259 ? 0 : 1)),
    [2, 8],
    'int32',
  );
  const { rewards, hidden } = model.forward(input, { attentionMask: mask });
  const bits = Array.from(new Uint32Array(new Float32Array(rewards.dataSync()).buffer));
  tf.dispose([input, mask, rewards, hidden]);
  return bits;
}

function rewardValues(model: RewardModel): number[] {
  return rewardBits(model).map((b) => new Float32Array(new Uint32Array([b]).buffer)[0]);
}

async function rejected(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('saveRewardModel / loadRewardModel', () => {
  let dir: string;
  beforeAll(async () => {
    await initBackend('wasm');
    dir = await mkdtemp(join(tmpdir(), 'reward-io-'));
  });
  afterAll(async () => {
    await remove(dir, { recursive: true, force: true });
  });

  it("writes Hugging Face's LlamaForSequenceClassification layout and loads it back to bit-identical rewards", async () => {
    const before = tf.memory().numTensors;
    const model = new RewardModel(createModel(llamaConfig(), { seed: 1 }), { seed: 2 });
    const out = join(dir, 'full');
    const files = await saveRewardModel(model, out);
    expect(files).toEqual(['config.json', 'model.safetensors']);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    const { architectures, ...backbone } = configToHf(model.backbone.config as never) as Record<string, unknown>;
    expect(architectures).toEqual(['LlamaForCausalLM']);
    expect(config).toEqual({ architectures: ['LlamaForSequenceClassification'], ...backbone, num_labels: 1, id2label: { '0': 'LABEL_0' }, label2id: { LABEL_0: 0 } });
    const tensors = await readCheckpoint(fileSource(out));
    expect(Object.keys(tensors).sort()).toEqual([...model.namedParameters().keys()].sort());
    expect(Object.keys(tensors)).toContain('score.weight');
    expect(Object.keys(tensors).every((k) => k === 'score.weight' || k.startsWith('model.'))).toBe(true);
    tf.dispose(Object.values(tensors));

    const loaded = await loadRewardModel(out, { backbone: fromConfig });
    expect(rewardBits(loaded)).toEqual(rewardBits(model));
    const again = await loadRewardModel(out, { backbone: createModel(llamaConfig(), { seed: 5 }) }); // an instance is overwritten too
    expect(rewardBits(again)).toEqual(rewardBits(model));
    for (const m of [model, loaded, again]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('writes GPT-2 backbones as GPT2ForSequenceClassification (transformer.… + score.weight), with a head bias when asked', async () => {
    const gpt2 = createModel({ modelType: 'gpt2', vocabSize: tokenizer.vocabSize, hiddenSize: 16, numLayers: 1, numHeads: 2, maxPositions: 16 }, { seed: 1 });
    const model = new RewardModel(gpt2, { bias: true, seed: 4 });
    const out = join(dir, 'gpt2');
    await saveRewardModel(model, out);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    const { architectures, ...backbone } = configToHf(gpt2.config) as Record<string, unknown>;
    expect(architectures).toEqual(['GPT2LMHeadModel']);
    expect(config).toMatchObject({ architectures: ['GPT2ForSequenceClassification'], ...backbone, num_labels: 1 });
    const loaded = await loadRewardModel(out, { backbone: fromConfig });
    expect(loaded.score.bias).toBeDefined();
    expect([...loaded.namedParameters().keys()].every((k) => k.startsWith('transformer.') || k.startsWith('score.'))).toBe(true);
    expect(rewardBits(loaded)).toEqual(rewardBits(model));
    model.dispose();
    loaded.dispose();
  });

  it("saves a LoRA reward model as PEFT's SEQ_CLS adapter with the head as modules_to_save, and loads it onto a fresh base to bit-identical rewards", async () => {
    const before = tf.memory().numTensors;
    const model = new RewardModel(createModel(llamaConfig(), { seed: 1 }));
    await rewardTrain({ model, tokenizer, train: pairs, lora: { r: 4, alpha: 8 }, lr: 5e-2, batchSize: 3, maxSteps: 3, progress: 'none' });
    const out = join(dir, 'adapter');
    const files = await saveRewardModel(model, out); // adapters present: adapter-only by default
    expect(files.sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE].sort());
    expect((await readdir(out)).sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE].sort());
    const config = JSON.parse(await readFile(join(out, ADAPTER_CONFIG_FILE), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'SEQ_CLS', modules_to_save: ['score'], r: 4, lora_alpha: 8 });
    expect([...config.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const tensors = await readCheckpoint(fileSource(out), { fileName: ADAPTER_WEIGHTS_FILE });
    const keys = Object.keys(tensors);
    expect(keys).toContain('base_model.model.score.weight');
    expect(keys).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(keys.filter((k) => !k.includes('lora_'))).toEqual(['base_model.model.score.weight']);
    tf.dispose(Object.values(tensors));

    const loaded = await loadRewardModel(out, { backbone: createModel(llamaConfig(), { seed: 1 }) });
    expect(loraLayers(loaded).size).toBe(7);
    expect(rewardBits(loaded)).toEqual(rewardBits(model));
    expect(loaded.score.weight.trainable).toBe(true); // the head trains beside the adapter, as modules_to_save
    expect(loaded.namedParameters().get('model.layers.0.self_attn.q_proj.base_layer.weight')!.trainable).toBe(false);

    // adapterOnly: false merges the adapter into a full Hugging Face checkpoint that a plain backbone loads.
    const merged = join(dir, 'merged');
    expect(await saveRewardModel(model, merged, { adapterOnly: false })).toEqual(['config.json', 'model.safetensors']);
    const plain = await loadRewardModel(merged, { backbone: fromConfig });
    expect(loraLayers(plain).size).toBe(0);
    const [x, y] = [rewardValues(plain), rewardValues(model)];
    x.forEach((v, i) => expect(Math.abs(v - y[i])).toBeLessThan(1e-5));
    expect(loraLayers(model).size).toBe(7); // the model itself was not merged
    for (const m of [model, loaded, plain]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('fails on mismatched shapes naming the key and both shapes, and loads nothing', async () => {
    const before = tf.memory().numTensors;
    const small = new RewardModel(createModel(llamaConfig(16), { seed: 1 }));
    const out = join(dir, 'small');
    await saveRewardModel(small, out);
    const wide = createModel(llamaConfig(32), { seed: 1 });
    const error = await rejected(loadRewardModel(out, { backbone: wide }));
    expect(error.code).toBe('STATE_DICT_MISMATCH');
    expect(error.message).toMatch(new RegExp(`^loadRewardModel: model\\.safetensors in directory ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not fit the reward model: `));
    expect(error.message).toContain('score.weight: the model has [1, 32], the file [1, 16]');
    expect(error.message).toContain('model.embed_tokens.weight: the model has [260, 32], the file [260, 16]');
    wide.dispose(); // the caller's backbone is left to the caller

    // The head of an adapter save is checked the same way.
    const lora = new RewardModel(createModel(llamaConfig(16), { seed: 1 }));
    applyLora(lora, { r: 2, targetModules: ['q_proj'] });
    const adapterDir = join(dir, 'small-adapter');
    await saveRewardModel(lora, adapterDir);
    const other = createModel(llamaConfig(32), { seed: 1 });
    const headError = await rejected(loadRewardModel(adapterDir, { backbone: other }));
    expect(headError.message).toMatch(/does not fit the reward model: base_model\.model\.score\.weight: the model has \[1, 32\], the file \[1, 16\]/);
    other.dispose();
    small.dispose();
    lora.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a causal-LM checkpoint, several labels, a missing backbone and a model without adapters for adapterOnly', async () => {
    const lm = createModel(llamaConfig(), { seed: 1 });
    const files = new Map<string, Uint8Array | string>();
    files.set('config.json', JSON.stringify(configToHf(lm.config as never)));
    const causal = await rejected(loadRewardModel(files, { backbone: fromConfig }));
    expect(causal.message).toMatch(
      /^loadRewardModel: expected config\.json in in-memory files to describe a \*ForSequenceClassification model; got architectures \["LlamaForCausalLM"\]\nhelp: to start a reward model from a causal LM, wrap it: new RewardModel\(await loadModel\(dir\)\)$/,
    );
    files.set('config.json', JSON.stringify({ ...configToHf(lm.config as never), architectures: ['LlamaForSequenceClassification'], num_labels: 2 }));
    expect((await rejected(loadRewardModel(files, { backbone: fromConfig }))).message).toMatch(
      /^loadRewardModel: expected config\.json in in-memory files to have one label \(a scalar reward\); got 2/,
    );
    const missing = await rejected(loadRewardModel(files, {} as never));
    expect(missing.message).toMatch(/^loadRewardModel: expected backbone to be a CausalLM or a function \(config\) → CausalLM; got undefined/);
    expect(isPosttrainError(missing) && missing.code).toBe('INVALID_OPTION');
    const model = new RewardModel(lm);
    expect((await rejected(saveRewardModel(model, new Map(), { adapterOnly: true }))).message).toMatch(/^saveRewardModel: adapterOnly is true, but the reward model has no LoRA adapters/);
    expect((await rejected(saveRewardModel(model, new Map(), { floatDtype: 'F64' as never }))).message).toBe(`saveRewardModel: expected floatDtype to be 'F32', 'F16' or 'BF16'; got "F64"`);
    expect((await rejected(saveRewardModel(model, new Map(), { adaptorOnly: true } as never))).message).toMatch(
      /^saveRewardModel: unknown option "adaptorOnly"; known options are adapterOnly, config, floatDtype, baseModelNameOrPath/,
    );
    model.dispose();
  });

  it('a full save over an adapter save removes the adapter files, so loading reads the new full weights', async () => {
    const before = tf.memory().numTensors;
    const out = join(dir, 'overwritten');
    const lora = new RewardModel(createModel(llamaConfig(), { seed: 1 }));
    applyLora(lora, { r: 2, targetModules: ['q_proj'] });
    await saveRewardModel(lora, out); // adapter_config.json + adapter_model.safetensors
    const full = new RewardModel(createModel(llamaConfig(), { seed: 7 }), { seed: 9 });
    await saveRewardModel(full, out);
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
    const base = createModel(llamaConfig(), { seed: 1 }); // the adapter's base: a stale adapter would load onto it
    const loaded = await loadRewardModel(out, { backbone: base });
    expect(loraLayers(loaded).size).toBe(0);
    expect(rewardBits(loaded)).toEqual(rewardBits(full));
    for (const m of [lora, full, loaded]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('saves into memory and merges extra config fields', async () => {
    const model = new RewardModel(createModel(llamaConfig(), { seed: 1 }));
    const files = new Map<string, Uint8Array | string>();
    await saveRewardModel(model, files, { config: { id2label: { '0': 'reward' }, label2id: { reward: 0 } }, floatDtype: 'F16' });
    const config = JSON.parse(new TextDecoder().decode(files.get('config.json') as Uint8Array));
    expect(config).toMatchObject({ num_labels: 1, id2label: { '0': 'reward' } });
    const loaded = await loadRewardModel(files, { backbone: fromConfig });
    const [x, y] = [rewardValues(loaded), rewardValues(model)];
    x.forEach((v, i) => expect(Math.abs(v - y[i])).toBeLessThan(1e-2)); // F16 weights
    model.dispose();
    loaded.dispose();
  });
});
