import { applyLora } from '@posttrain/lora';
import { createModel } from '@posttrain/models';
import { Conv1D, Linear, type Module, initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { QuantizedLinear } from './quantized-linear.js';
import { dequantizeModel, quantizeModel } from './quantize-model.js';

const gpt2 = { modelType: 'gpt2', vocabSize: 64, hiddenSize: 64, numLayers: 2, numHeads: 4, maxPositions: 32 } as const;
const llama = { modelType: 'llama', vocabSize: 64, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, tieWordEmbeddings: false } as const;
const ids = () => tf.tensor2d([[1, 5, 9, 13, 2, 7, 30, 61]], [1, 8], 'int32');

function floatLayers(model: Module): Map<string, Linear | Conv1D> {
  const out = new Map<string, Linear | Conv1D>();
  for (const [path, m] of model.namedModules()) if (m instanceof Linear || m instanceof Conv1D) out.set(path, m);
  return out;
}

async function logits(model: ReturnType<typeof createModel>): Promise<Float32Array> {
  const input = ids();
  const { logits: l, hidden } = model.forward(input);
  const v = (await l.data()) as Float32Array;
  tf.dispose([input, l, hidden]);
  return v;
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

function thrown(fn: () => Promise<unknown>): Promise<Error & { code?: string }> {
  return fn().then(
    () => expect.unreachable('expected an error'),
    (e: unknown) => {
      expect(isPosttrainError(e)).toBe(true);
      return e as Error & { code?: string };
    },
  );
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('quantizeModel / dequantizeModel', () => {
  it('GPT-2: every Conv1D becomes int8, bytes exact, logits near float, and dequantizeModel gives Conv1D back', async () => {
    const model = createModel(gpt2, { seed: 1 });
    const layers = floatLayers(model);
    const float = await logits(model);
    const summary = await quantizeModel(model, { scheme: 'int8' });
    expect(summary.layers).toEqual([...layers.keys()].filter((p) => !p.endsWith('lm_head')));
    expect(summary.layers.length).toBe(8);
    let floatBytes = 0;
    let quantBytes = 0;
    for (const p of summary.layers) {
      const l = layers.get(p) as Linear | Conv1D;
      floatBytes += 4 * l.inFeatures * l.outFeatures;
      quantBytes += l.outFeatures * (l.inFeatures + 4); // one byte a weight + a float32 scale a row
    }
    expect(summary.floatBytes).toBe(floatBytes);
    expect(summary.quantizedBytes).toBe(quantBytes);
    for (const p of summary.layers) expect(model.getModule(p)).toBeInstanceOf(QuantizedLinear);
    expect(Object.keys(model.stateDict()).filter((k) => k.endsWith('weight_packed')).length).toBe(8);
    expect([...model.trainableParameters().keys()].some((k) => k.includes('.h.'))).toBe(true); // norms still train; quantised layers have no parameters
    expect([...model.namedParameters().keys()].some((k) => k.endsWith('c_attn.weight'))).toBe(false);
    const quant = await logits(model);
    const err = maxAbs(quant, float);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.02);
    const before = tf.memory().numTensors;
    await logits(model);
    expect(tf.memory().numTensors).toBe(before);
    const restored = dequantizeModel(model);
    expect(restored).toEqual(summary.layers);
    for (const p of restored) expect(model.getModule(p)).toBeInstanceOf(Conv1D);
    expect(maxAbs(await logits(model), quant)).toBeLessThan(1e-5);
    model.dispose();
  });

  it('Llama: int4 g32 and nf4 leave lm_head in float (default exclude); exclude takes names and RegExps', async () => {
    for (const [options, bytesPerLayer] of [
      [{ scheme: 'int4', groupSize: 32 }, (i: number, o: number) => (o * i) / 2 + (4 * o * i) / 32],
      [{ scheme: 'int4', groupSize: 64, symmetric: false }, (i: number, o: number) => (o * i) / 2 + (4 * o * i) / 64 + (4 * Math.ceil(o / 8) * i) / 64],
      [{ scheme: 'nf4' }, (i: number, o: number) => (o * i) / 2 + (o * i) / 64 + 4 * Math.ceil((o * i) / 64 / 256) + 4],
    ] as const) {
      const model = createModel(llama, { seed: 2 });
      const layers = floatLayers(model);
      const float = await logits(model);
      const summary = await quantizeModel(model, options);
      expect(summary.excluded).toEqual(['lm_head']);
      expect(summary.layers.length).toBe(14);
      expect(summary.quantizedBytes).toBe(summary.layers.reduce((s, p) => s + bytesPerLayer((layers.get(p) as Linear).inFeatures, (layers.get(p) as Linear).outFeatures), 0));
      expect(model.getModule('lm_head')).toBeInstanceOf(Linear);
      expect(maxAbs(await logits(model), float)).toBeLessThan(0.1);
      model.dispose();
    }
    const model = createModel(llama, { seed: 2 });
    const byName = await quantizeModel(model, { scheme: 'int8', exclude: ['lm_head', 'down_proj'] });
    expect(byName.excluded).toEqual(['model.layers.0.mlp.down_proj', 'model.layers.1.mlp.down_proj', 'lm_head']);
    dequantizeModel(model);
    const byRegExp = await quantizeModel(model, { scheme: 'int8', exclude: /.*\.(q|k)_proj|lm_head/ });
    expect(byRegExp.layers.length).toBe(10);
    model.dispose();
  });

  it('rejects bad input naming the layer, and leaves the model as it was', async () => {
    const model = createModel(llama, { seed: 3 });
    const float = await logits(model);
    const tensors = tf.memory().numTensors;
    // intermediateSize 128 divides by 64, hidden 64 does not divide by 128
    let e = await thrown(() => quantizeModel(model, { scheme: 'int4', groupSize: 128 }));
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toMatch(/"model.layers.0.self_attn.q_proj" inFeatures 64 is not divisible by groupSize 128/);
    const down = model.getModule('model.layers.1.mlp.down_proj') as Linear;
    const saved = down.weight.clone();
    const poisoned = down.weight.arraySync() as number[][];
    (poisoned[0] as number[])[3] = Number.NaN;
    tf.tidy(() => down.weight.assign(tf.tensor2d(poisoned)));
    e = await thrown(() => quantizeModel(model, { scheme: 'nf4' }));
    expect(e.code).toBe('NON_FINITE');
    expect(e.message).toMatch(/"model.layers.1.mlp.down_proj" has a non-finite weight NaN at \[0, 3\]/);
    down.weight.assign(saved);
    saved.dispose();
    expect(floatLayers(model).size).toBe(15);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(maxAbs(await logits(model), float)).toBe(0);
    e = await thrown(() => quantizeModel(model, { scheme: 'int8', exclude: 'lm_head' as never }));
    expect(e.message).toMatch(/expected exclude to be an array of module names or a RegExp; got "lm_head"/);
    e = await thrown(() => quantizeModel(model, { scheme: 'int4', groupSize: 32, excludes: [] } as never));
    expect(e.message).toMatch(/unknown option "excludes"/);
    await quantizeModel(model, { scheme: 'int8' });
    e = await thrown(() => quantizeModel(model, { scheme: 'int4', groupSize: 32 }));
    expect(e.code).toBe('NOT_SUPPORTED');
    expect(e.message).toMatch(/layer "model.layers.0.self_attn.q_proj" is already quantised \(int8\)/);
    dequantizeModel(model);
    applyLora(model, { r: 2, targetModules: ['q_proj'] });
    e = await thrown(() => quantizeModel(model, { scheme: 'int8' }));
    expect(e.message).toMatch(/LoRA adapters.*quantise the base model first/s);
    model.dispose();
  });
});
