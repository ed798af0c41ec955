import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AdamW, Rng, initBackend, tf, valueAndGrads } from '@posttrain/tensor-core';
import { createModel, type ModelConfigInput, type PretrainedModel } from './index.js';

// createModel initialises as Hugging Face does (normal(0, initializerRange) weights, GPT-2's
// residual projections scaled by 1/√(2·layers), zero biases, unit norms), names parameters with the
// checkpoint keys, is reproducible from its seed, and gives a model that trains.

const llama: ModelConfigInput = { modelType: 'llama', vocabSize: 256, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, initializerRange: 0.05 };
const qwen2: ModelConfigInput = { modelType: 'qwen2', vocabSize: 256, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2 };
const gpt2: ModelConfigInput = { modelType: 'gpt2', vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, maxPositions: 128 };

const values = (model: PretrainedModel) => new Map([...model.namedParameters()].map(([k, p]) => [k, Array.from(p.dataSync())]));
const shapes = (model: PretrainedModel) => [...model.namedParameters()].map(([k, p]) => [k, p.shape]);

function stats(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  return { mean, std: Math.sqrt(xs.reduce((s, v) => s + (v - mean) ** 2, 0) / xs.length) };
}

let before: number;
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

describe('createModel initialisation and naming', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it.each([llama, qwen2, gpt2])('$modelType: the same seed gives identical weights, another seed different ones', (config) => {
    const models = [createModel(config, { seed: 3 }), createModel(config, { seed: 3 }), createModel(config, { seed: 4 }), createModel(config), createModel(config, { seed: 0 })];
    const [va, vb, vc, vDefault, vZero] = models.map(values);
    expect(vb).toEqual(va);
    expect(vDefault, 'the default seed is 0').toEqual(vZero);
    for (const [key, v] of va) if (v.some((x) => x !== 0 && x !== 1)) expect(vc.get(key), key).not.toEqual(v);
    models.forEach((m) => m.dispose());
  });

  it.each([llama, qwen2, gpt2])('$modelType: weights have std ≈ initializerRange (10%), mean ≈ 0; biases are 0 and norms 1', (config) => {
    const model = createModel(config, { seed: 1 });
    const range = config.initializerRange ?? 0.02;
    let weights = 0;
    for (const [key, v] of values(model)) {
      if (/(norm|ln_\d|ln_f)\.weight$/.test(key)) {
        expect(
          v.every((x) => x === 1),
          `${key} is ones`,
        ).toBe(true);
      } else if (key.endsWith('.bias')) {
        expect(
          v.every((x) => x === 0),
          `${key} is zeros`,
        ).toBe(true);
      } else {
        // GPT-2 scales its residual projections (c_proj) by 1/√(2·layers) (Radford et al. 2019, §2.3).
        const expected = config.modelType === 'gpt2' && key.endsWith('c_proj.weight') ? range / Math.sqrt(2 * config.numLayers) : range;
        const { mean, std } = stats(v);
        expect(Math.abs(std - expected), `${key}: std ${std} vs ${expected}`).toBeLessThanOrEqual(0.1 * expected);
        expect(Math.abs(mean), `${key}: mean ${mean}`).toBeLessThanOrEqual(0.1 * expected);
        weights++;
      }
    }
    expect(weights).toBeGreaterThan(4);
    model.dispose();
  });

  it('llama parameter paths and shapes are the Hugging Face keys; lm_head.weight only when untied', () => {
    const config = { ...llama, numLayers: 1 } as ModelConfigInput;
    const untied = createModel(config);
    const [v, d, i, h, kv] = [256, 64, 128, 4 * 16, 2 * 16];
    const layer = [
      ['model.layers.0.self_attn.q_proj.weight', [h, d]],
      ['model.layers.0.self_attn.k_proj.weight', [kv, d]],
      ['model.layers.0.self_attn.v_proj.weight', [kv, d]],
      ['model.layers.0.self_attn.o_proj.weight', [d, h]],
      ['model.layers.0.mlp.gate_proj.weight', [i, d]],
      ['model.layers.0.mlp.up_proj.weight', [i, d]],
      ['model.layers.0.mlp.down_proj.weight', [d, i]],
      ['model.layers.0.input_layernorm.weight', [d]],
      ['model.layers.0.post_attention_layernorm.weight', [d]],
    ];
    const body = [['model.embed_tokens.weight', [v, d]], ...layer, ['model.norm.weight', [d]]];
    expect(shapes(untied)).toEqual([...body, ['lm_head.weight', [v, d]]]);
    // The state dict (what saveModel writes) holds exactly the parameters: RoPE tables are not saved.
    expect(Object.keys(untied.stateDict())).toEqual([...untied.namedParameters().keys()]);
    const tied = createModel({ ...config, tieWordEmbeddings: true } as ModelConfigInput);
    expect(shapes(tied)).toEqual(body);
    [untied, tied].forEach((m) => m.dispose());
  });

  it('qwen2 has q/k/v biases and no o_proj bias', () => {
    const model = createModel({ ...qwen2, numLayers: 1 } as ModelConfigInput);
    const keys = [...model.namedParameters().keys()].filter((k) => k.endsWith('.bias'));
    expect(keys).toEqual(['model.layers.0.self_attn.q_proj.bias', 'model.layers.0.self_attn.k_proj.bias', 'model.layers.0.self_attn.v_proj.bias']);
    model.dispose();
  });

  it('gpt2 parameter paths and shapes are the Hugging Face keys, with Conv1D weights [in, out]', () => {
    const model = createModel({ ...gpt2, numLayers: 1 } as ModelConfigInput);
    const d = 64;
    expect(shapes(model)).toEqual([
      ['transformer.wte.weight', [256, d]],
      ['transformer.wpe.weight', [128, d]],
      ['transformer.h.0.ln_1.weight', [d]],
      ['transformer.h.0.ln_1.bias', [d]],
      ['transformer.h.0.attn.c_attn.weight', [d, 3 * d]],
      ['transformer.h.0.attn.c_attn.bias', [3 * d]],
      ['transformer.h.0.attn.c_proj.weight', [d, d]],
      ['transformer.h.0.attn.c_proj.bias', [d]],
      ['transformer.h.0.ln_2.weight', [d]],
      ['transformer.h.0.ln_2.bias', [d]],
      ['transformer.h.0.mlp.c_fc.weight', [d, 4 * d]],
      ['transformer.h.0.mlp.c_fc.bias', [4 * d]],
      ['transformer.h.0.mlp.c_proj.weight', [4 * d, d]],
      ['transformer.h.0.mlp.c_proj.bias', [d]],
      ['transformer.ln_f.weight', [d]],
      ['transformer.ln_f.bias', [d]],
    ]);
    model.dispose();
  });
});

describe('a tiny llama from createModel trains on wasm', () => {
  const tiny: ModelConfigInput = { modelType: 'llama', vocabSize: 32, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2 };

  beforeAll(async () => {
    await initBackend('wasm');
  });
  afterAll(async () => {
    await initBackend('cpu');
  });

  it('the same seed gives the same weights on wasm as on cpu', async () => {
    await initBackend('cpu');
    const onCpu = createModel(tiny, { seed: 9 });
    const cpuValues = values(onCpu);
    onCpu.dispose();
    await initBackend('wasm');
    const onWasm = createModel(tiny, { seed: 9 });
    expect(values(onWasm)).toEqual(cpuValues);
    onWasm.dispose();
  });

  it('12 AdamW steps of next-token cross-entropy on a fixed sequence lower the loss by > 1 nat, without leaking tensors', () => {
    const model = createModel(tiny, { seed: 1 });
    const rng = new Rng(5);
    const [batch, length, vocab] = [2, 16, tiny.vocabSize];
    const tokens = Array.from({ length: batch * length }, () => rng.int(vocab));
    const ids = tf.tensor2d(tokens, [batch, length], 'int32');
    const inputs = ids.slice([0, 0], [batch, length - 1]);
    const targets = tf.tidy(() => tf.oneHot(ids.slice([0, 1], [batch, length - 1]), vocab)); // [B, T−1, V]
    const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 0 });
    const loss = () => {
      const { logits } = model.forward(inputs); // [B, T−1, V]
      return tf.logSoftmax(logits).mul(targets).sum(-1).mean().neg() as tf.Scalar;
    };
    const losses: number[] = [];
    let afterFirst = 0;
    for (let step = 0; step < 12; step++) {
      const { value, grads } = valueAndGrads(loss, optimizer.params);
      optimizer.step(grads);
      losses.push(value.dataSync()[0]);
      tf.dispose([value, ...grads.values()]);
      if (step === 0) afterFirst = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors, 'tensors held after the last step vs after the first').toBe(afterFirst);
    // A random model starts near ln 32 ≈ 3.47; memorising 30 next tokens takes it well below.
    expect(Math.abs(losses[0] - Math.log(vocab))).toBeLessThan(0.2);
    expect(losses.at(-1)).toBeLessThan(losses[0] - 1);
    optimizer.dispose();
    tf.dispose([ids, inputs, targets]);
    model.dispose();
  });
});

describe('createModel refuses what config.json cannot express', () => {
  it('llama with q/k/v biases but none on o_proj names the field', () => {
    const error = (() => {
      try {
        createModel({ modelType: 'llama', vocabSize: 16, hiddenSize: 8, intermediateSize: 16, numLayers: 1, numHeads: 2, qkvBias: true, outputBias: false });
      } catch (e) {
        return e as Error & { code?: string };
      }
      throw new Error('expected createModel to throw');
    })();
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toMatch(/^createModel: (qkvBias true|outputBias false) cannot be expressed in a llama config\.json/);
  });
});
