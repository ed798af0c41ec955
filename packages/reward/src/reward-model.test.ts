import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf, valueAndGrads } from '@posttrain/tensor-core';
import { applyLora, loraLayers } from '@posttrain/lora';
import { createModel, type PretrainedModel } from '@posttrain/models';
import { RewardModel, defaultRewardModelOptions } from './index.js';

const llama = (options: { tied?: boolean; seed?: number; hidden?: number } = {}): PretrainedModel =>
  createModel(
    { modelType: 'llama', vocabSize: 40, hiddenSize: options.hidden ?? 16, intermediateSize: 32, numLayers: 2, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: options.tied ?? true },
    { seed: options.seed ?? 1 },
  );
const PAD = 0;
const a = [5, 17, 22, 8, 31, 21]; // 6 tokens
const b = [11, 30, 7]; // 3 tokens
const ids = (rows: number[][]) => tf.tensor2d(rows.flat(), [rows.length, rows[0].length], 'int32');

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

/** The head by hand: hidden[b, position] · wᵀ (+ bias), from the hidden states the forward returned. */
async function manualRewards(rm: RewardModel, hidden: tf.Tensor, positions: number[]): Promise<number[]> {
  const h = (await hidden.array()) as number[][][];
  const w = ((await rm.score.weight.array()) as number[][])[0];
  const bias = rm.score.bias ? ((await rm.score.bias.array()) as number[])[0] : 0;
  return positions.map((t, row) => h[row][t].reduce((s, x, i) => s + x * w[i], bias));
}

/** The reward of one unpadded sequence run alone. */
function alone(rm: RewardModel, row: number[]): number {
  const input = ids([row]);
  const { rewards, hidden } = rm.forward(input);
  const value = rewards.dataSync()[0];
  tf.dispose([input, rewards, hidden]);
  return value;
}

describe('RewardModel', () => {
  let before: number;
  beforeAll(async () => {
    await initBackend('wasm');
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
  });

  it("reads the reward at each row's last real token with right padding, equal to the head applied by hand and to the row run alone", async () => {
    const rm = new RewardModel(llama());
    const input = ids([a, [...b, PAD, PAD, PAD]]);
    const mask = ids([
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0, 0],
    ]);
    const { rewards, hidden } = rm.forward(input, { attentionMask: mask });
    expect(rewards.shape).toEqual([2]);
    expect(hidden.shape).toEqual([2, 6, 16]);
    const got = Array.from(await rewards.data());
    const manual = await manualRewards(rm, hidden, [5, 2]);
    got.forEach((r, i) => expect(Math.abs(r - manual[i])).toBeLessThan(1e-6));
    expect(Math.abs(got[0] - alone(rm, a))).toBeLessThan(1e-5);
    expect(Math.abs(got[1] - alone(rm, b))).toBeLessThan(1e-5);
    tf.dispose([input, mask, rewards, hidden]);
    rm.dispose();
  });

  it('reads the last column with left padding, and gives each row the reward it has alone', async () => {
    const rm = new RewardModel(llama(), { bias: true, seed: 3 });
    const input = ids([a, [PAD, PAD, PAD, ...b]]);
    const mask = ids([
      [1, 1, 1, 1, 1, 1],
      [0, 0, 0, 1, 1, 1],
    ]);
    const { rewards, hidden } = rm.forward(input, { attentionMask: mask });
    const got = Array.from(await rewards.data());
    const manual = await manualRewards(rm, hidden, [5, 5]);
    got.forEach((r, i) => expect(Math.abs(r - manual[i])).toBeLessThan(1e-6));
    expect(Math.abs(got[0] - alone(rm, a))).toBeLessThan(1e-5);
    expect(Math.abs(got[1] - alone(rm, b))).toBeLessThan(1e-5);
    // Without a mask every row is read at its last column.
    const { rewards: unmasked, hidden: h2 } = rm.forward(input);
    const manualUnmasked = await manualRewards(rm, h2, [5, 5]);
    Array.from(await unmasked.data()).forEach((r, i) => expect(Math.abs(r - manualUnmasked[i])).toBeLessThan(1e-6));
    tf.dispose([input, mask, rewards, hidden, unmasked, h2]);
    rm.dispose();
  });

  it('values() is the head at every position, [B, T], and equals forward at each last real token', async () => {
    const rm = new RewardModel(llama());
    const input = ids([[...b, PAD, PAD, PAD], a, [PAD, 4, 9, 12, 3, 2]]);
    const mask = ids([
      [1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 1, 1],
      [0, 1, 1, 1, 1, 1],
    ]);
    const values = rm.values(input, { attentionMask: mask });
    expect(values.shape).toEqual([3, 6]);
    const { rewards, hidden } = rm.forward(input, { attentionMask: mask });
    const v = (await values.array()) as number[][];
    const r = Array.from(await rewards.data());
    const manual = await manualRewards(rm, hidden, [0, 0, 0]); // position 0 of each row
    [2, 5, 5].forEach((last, row) => expect(Math.abs(v[row][last] - r[row])).toBeLessThan(1e-6));
    manual.forEach((m, row) => expect(Math.abs(v[row][0] - m)).toBeLessThan(1e-6));
    tf.dispose([input, mask, values, rewards, hidden]);
    rm.dispose();
  });

  it("holds the backbone's parameters under Hugging Face's sequence-classification keys: model.… and score.weight, no lm_head", () => {
    const tied = llama();
    const rm = new RewardModel(tied);
    const keys = [...rm.namedParameters().keys()];
    expect(keys.at(-1)).toBe('score.weight');
    expect(keys.slice(0, -1)).toEqual([...tied.namedParameters().keys()]);
    expect(rm.score.weight.shape).toEqual([1, 16]);
    expect(rm.score.bias).toBeUndefined();
    expect(rm.config).toBe(tied.config);
    rm.dispose();

    const untied = llama({ tied: false });
    const rm2 = new RewardModel(untied, { bias: true });
    const keys2 = [...rm2.namedParameters().keys()];
    expect(untied.namedParameters().has('lm_head.weight')).toBe(true);
    expect(keys2.some((k) => k.startsWith('lm_head'))).toBe(false);
    expect(keys2.slice(-2)).toEqual(['score.weight', 'score.bias']);
    expect(Object.keys(rm2.stateDict()).filter((k) => k.startsWith('model.'))).toHaveLength(untied.namedParameters().size - 1);
    rm2.dispose();

    const gpt2 = createModel({ modelType: 'gpt2', vocabSize: 40, hiddenSize: 16, numLayers: 1, numHeads: 2, maxPositions: 16 }, { seed: 1 });
    const rm3 = new RewardModel(gpt2);
    expect([...rm3.namedParameters().keys()].every((k) => k.startsWith('transformer.') || k === 'score.weight')).toBe(true);
    rm3.dispose();
  });

  it('initialises the head from its seed (normal, std 0.02) and trains the backbone through it', async () => {
    const one = new RewardModel(llama(), { seed: 5 });
    const two = new RewardModel(llama(), { seed: 5 });
    const other = new RewardModel(llama(), { seed: 6 });
    expect(await one.score.weight.array()).toEqual(await two.score.weight.array());
    expect(await one.score.weight.array()).not.toEqual(await other.score.weight.array());
    const w = ((await one.score.weight.array()) as number[][])[0];
    expect(Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length)).toBeLessThan(0.05);
    const input = ids([a]);
    const { value, grads } = valueAndGrads(
      () =>
        tf.tidy(() => {
          const { rewards, hidden } = one.forward(input);
          hidden.dispose();
          return tf.sum(rewards) as tf.Scalar;
        }),
      one.trainableParameters(),
    );
    expect([...grads.keys()]).toContain('score.weight');
    expect([...grads.keys()]).toContain('model.layers.0.self_attn.q_proj.weight');
    expect([...grads.keys()]).toContain('model.embed_tokens.weight');
    tf.dispose([input, value, ...grads.values()]);
    for (const m of [one, two, other]) m.dispose();
    expect(defaultRewardModelOptions).toEqual({ seed: 0, bias: false });
  });

  it('shares its layers with the backbone: LoRA applied to the reward model changes the backbone too, and train/eval reach both', () => {
    const backbone = llama();
    const rm = new RewardModel(backbone);
    applyLora(rm, { r: 2, targetModules: ['q_proj', 'v_proj'] });
    expect([...loraLayers(backbone).keys()]).toEqual([...loraLayers(rm).keys()]);
    expect([...loraLayers(rm).keys()]).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
    rm.eval();
    expect(backbone.training).toBe(false);
    expect([...backbone.namedModules().values()].every((m) => !m.training)).toBe(true);
    rm.train();
    expect(backbone.training).toBe(true);
    rm.dispose();
  });

  it('disposes the backbone with it', () => {
    const start = tf.memory().numTensors;
    const rm = new RewardModel(llama({ tied: false }), { bias: true });
    expect(tf.memory().numTensors).toBeGreaterThan(start);
    rm.dispose();
    expect(tf.memory().numTensors).toBe(start);
  });

  it('rejects bad options, backbones and inputs by name', () => {
    const backbone = llama();
    expect(thrown(() => new RewardModel(backbone, { sed: 1 } as never)).message).toBe('RewardModel: unknown option "sed"; known options are seed, bias');
    expect(thrown(() => new RewardModel(backbone, { seed: 1.5 })).message).toBe('RewardModel: expected seed to be an integer; got 1.5');
    expect(thrown(() => new RewardModel(backbone, { bias: 'no' as never })).message).toBe('RewardModel: expected bias to be a boolean; got "no"');
    const notLm = thrown(() => new RewardModel({} as never));
    expect(notLm.message).toMatch(/^RewardModel: expected backbone to be a CausalLM \(a Module with config and forward\); got object/);
    expect(isPosttrainError(notLm) && notLm.code).toBe('INVALID_ARGUMENT');
    const rm = new RewardModel(backbone);
    const input = ids([a]);
    const mask = tf.ones([1, 5], 'int32');
    const flat = tf.tensor1d([1, 2, 3], 'int32');
    const shape = thrown(() => rm.forward(input, { attentionMask: mask }));
    expect(shape.message).toMatch(/^RewardModel.forward: expected attentionMask of the shape of inputIds \[1, 6\]; got \[1, 5\]/);
    expect(shape.code).toBe('SHAPE_MISMATCH');
    expect(thrown(() => rm.values(flat)).message).toBe('RewardModel.values: expected inputIds [B, T]; got [3]');
    tf.dispose([input, mask, flat]);
    rm.dispose();
  });
});
