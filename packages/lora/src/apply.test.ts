import { describe, expect, it } from 'vitest';
import { tf, Rng, isPosttrainError, type Module, type CausalLM } from '@posttrain/tensor-core';
import { applyLora, setAdapter, loraAdapters, loraLayers, mergeAdapter, mergeAndUnload, unmergeAdapter, withAdaptersDisabled, LoraLinear } from './index.js';

type Models = { createModel: (config: object, options?: object) => Module & CausalLM };
const models = async () => (await import(new URL('../../models/src/index.ts', import.meta.url).href)) as Models;
const llamaConfig = { modelType: 'llama', vocabSize: 32, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4, numKvHeads: 2 };
export const tinyLlama = async (seed = 0) => (await models()).createModel(llamaConfig, { seed });
const ids = () => tf.tensor2d([[1, 5, 9, 3, 7]], [1, 5], 'int32');
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.abs(a.sub(b)).max().dataSync()[0]);

function randomizeB(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const layer of loraLayers(model).values())
    for (const name of layer.adapters.keys()) {
      const b = layer.loraB.get(name)!.weight;
      b.assign(rng.normalTensor(b.shape, 0.2));
    }
}

describe('applyLora on a tiny Llama', () => {
  it('wraps the targets, freezes the rest and reports PEFT-style numbers', async () => {
    const model = await tinyLlama();
    const baseTotal = model.numParameters();
    const report = applyLora(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] });
    expect(report.targets).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
    // q_proj 16→16: 4·(16+16) = 128; v_proj 16→8 (2 kv heads of 4): 4·(16+8) = 96; two layers.
    const expected = 2 * (128 + 96);
    expect(report.trainableParameters).toBe(expected);
    expect(report.totalParameters).toBe(baseTotal + expected);
    expect(report.trainablePercent).toBeCloseTo((100 * expected) / (baseTotal + expected), 10);
    expect([...model.trainableParameters().keys()]).toContain('model.layers.0.self_attn.q_proj.lora_A.default.weight');
    expect(model.namedParameters().get('model.layers.0.self_attn.q_proj.base_layer.weight')!.trainable).toBe(false);
    expect(model.getModule('model.layers.0.self_attn.q_proj')).toBeInstanceOf(LoraLinear);
    model.dispose();
  });

  it('targetModules: suffix names, full-match RegExp, all-linear; errors name the targets and unknown options', async () => {
    const model = await tinyLlama();
    expect(applyLora(model, { targetModules: /model\.layers\.1\.mlp\.(up|down)_proj/, adapterName: 're' }).targets).toEqual(['model.layers.1.mlp.up_proj', 'model.layers.1.mlp.down_proj']);
    // a RegExp must match the whole path: 'up_proj' alone matches nothing
    expect(() => applyLora(model, { targetModules: /up_proj/, adapterName: 'x' })).toThrow(/\/up_proj\/ matched no module/);
    const all = applyLora(model, { targetModules: 'all-linear', adapterName: 'all' });
    expect(all.targets).toHaveLength(14);
    expect(all.targets.some((t) => t.includes('lm_head') || t.includes('base_layer') || t.includes('lora_'))).toBe(false);
    expect(() => applyLora(model, { targetModules: ['qproj'], adapterName: 'y' })).toThrow(/\["qproj"\] matched no module/);
    expect(() => applyLora(model, { targetModules: ['mlp'], adapterName: 'z' })).toThrow(/LlamaMlp/);
    let error: unknown;
    try {
      applyLora(model, { targetModules: ['q_proj'], rank: 4 } as never);
    } catch (e) {
      error = e;
    }
    expect(isPosttrainError(error) && error.code).toBe('INVALID_OPTION');
    expect(String(error)).toMatch(/unknown option "rank"/);
    expect(() => applyLora(model, { targetModules: ['q_proj'], useDora: true, adapterName: 'd' })).toThrow(/useDora/);
  }, 60_000);
});

describe('adapters at work', () => {
  it('mergeAndUnload folds the adapter in, leaves plain Linears, frees the adapter weights and names', async () => {
    const model = await tinyLlama(5);
    applyLora(model, { r: 4, alpha: 8, targetModules: 'all-linear' });
    randomizeB(model, 1);
    const x = ids();
    const adapted = model.forward(x).logits;
    const tensors = tf.memory().numTensors;
    mergeAndUnload(model);
    expect(loraLayers(model).size).toBe(0);
    expect(loraAdapters(model).size).toBe(0);
    expect([...model.namedParameters().keys()].some((k) => k.includes('lora_') || k.includes('base_layer'))).toBe(false);
    expect(tf.memory().numTensors).toBeLessThan(tensors); // the A and B weights are gone
    const merged = model.forward(x).logits;
    expect(maxDiff(merged, adapted)).toBeLessThan(1e-5);
    applyLora(model, { r: 4, targetModules: 'all-linear' }); // the name 'default' is free again
    expect(
      maxDiff(
        withAdaptersDisabled(model, () => model.forward(x).logits),
        merged,
      ),
    ).toBeLessThan(1e-6);
    tf.dispose([x, adapted, merged]);
    model.dispose();
  });

  it('withAdaptersDisabled gives the base logits and restores the adapters, also after a throw and for async fn', async () => {
    const base = await tinyLlama(3);
    const model = await tinyLlama(3);
    applyLora(model, { r: 4, alpha: 8, targetModules: 'all-linear' });
    randomizeB(model, 1);
    const x = ids();
    const baseLogits = base.forward(x).logits;
    const loraLogits = model.forward(x).logits;
    expect(maxDiff(loraLogits, baseLogits)).toBeGreaterThan(1e-3);
    const off = withAdaptersDisabled(model, () => model.forward(x).logits);
    expect(maxDiff(off, baseLogits)).toBeLessThan(1e-6);
    expect(() =>
      withAdaptersDisabled(model, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(maxDiff(model.forward(x).logits, loraLogits)).toBeLessThan(1e-6);
    const offAsync = await withAdaptersDisabled(model, async () => {
      await Promise.resolve();
      return model.forward(x).logits;
    });
    expect(maxDiff(offAsync, baseLogits)).toBeLessThan(1e-6);
    await expect(
      withAdaptersDisabled(model, async () => {
        throw new Error('later');
      }),
    ).rejects.toThrow('later');
    expect(maxDiff(model.forward(x).logits, loraLogits)).toBeLessThan(1e-6);
    // merged: disabled still gives the base, and the merge comes back
    mergeAdapter(model);
    expect(
      maxDiff(
        withAdaptersDisabled(model, () => model.forward(x).logits),
        baseLogits,
      ),
    ).toBeLessThan(1e-5);
    expect(maxDiff(model.forward(x).logits, loraLogits)).toBeLessThan(1e-4);
    unmergeAdapter(model);
    base.dispose();
    model.dispose();
  });

  it('merge/unmerge on a model: same logits merged, base restored within 1e-6, no tensor leaks', async () => {
    const model = await tinyLlama(4);
    applyLora(model, { targetModules: ['q_proj', 'k_proj', 'down_proj'] });
    randomizeB(model, 2);
    const before = new Map([...model.namedParameters()].map(([k, v]) => [k, v.clone()]));
    const x = ids();
    const logits = model.forward(x).logits;
    const n = tf.memory().numTensors;
    mergeAdapter(model);
    expect(tf.memory().numTensors).toBe(n);
    tf.tidy(() => {
      expect(maxDiff(model.forward(x).logits, logits)).toBeLessThan(1e-4);
    });
    unmergeAdapter(model);
    for (let i = 0; i < 2; i++) {
      mergeAdapter(model);
      unmergeAdapter(model);
    }
    expect(tf.memory().numTensors).toBe(n);
    for (const [k, v] of model.namedParameters()) expect(maxDiff(v, before.get(k)!), k).toBeLessThanOrEqual(1e-6);
    const m = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.dispose(Object.values(model.forward(x)));
    expect(tf.memory().numTensors).toBe(m);
    model.dispose();
  });

  it('two named adapters; setAdapter picks the one forward uses and trains', async () => {
    const model = await tinyLlama(5);
    applyLora(model, { r: 2, targetModules: ['q_proj'], adapterName: 'math' });
    applyLora(model, { r: 4, targetModules: ['q_proj', 'v_proj'], adapterName: 'code' });
    randomizeB(model, 3);
    const x = ids();
    const code = model.forward(x).logits;
    setAdapter(model, 'math');
    const math = model.forward(x).logits;
    expect(maxDiff(code, math)).toBeGreaterThan(1e-4);
    expect([...model.trainableParameters().keys()].every((k) => k.includes('.math.'))).toBe(true);
    expect(model.numParameters({ trainableOnly: true })).toBe(2 * 2 * (16 + 16));
    const v = model.getModule('model.layers.0.self_attn.v_proj') as LoraLinear;
    expect(v.activeAdapter).toBeUndefined();
    setAdapter(model, 'code');
    expect(maxDiff(model.forward(x).logits, code)).toBe(0);
    expect(() => setAdapter(model, 'poetry')).toThrow(/no adapter named "poetry"; the model has math, code/);
    model.dispose();
  });

  it('wraps GPT-2 Conv1D layers (fan_in_fan_out)', async () => {
    const model = (await models()).createModel({ modelType: 'gpt2', vocabSize: 32, hiddenSize: 16, numLayers: 1, numHeads: 2 });
    const report = applyLora(model, { r: 2, targetModules: ['c_attn'] });
    expect(report.targets).toEqual(['transformer.h.0.attn.c_attn']);
    expect(report.trainableParameters).toBe(2 * (16 + 48));
    const layer = model.getModule('transformer.h.0.attn.c_attn') as LoraLinear;
    expect(layer.fanInFanOut).toBe(true);
    expect(model.forward(ids()).logits.shape).toEqual([1, 5, 32]);
    model.dispose();
  });
});
