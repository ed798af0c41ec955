import { describe, expect, it } from 'vitest';
import { createModel, type PretrainedModel } from '@posttrain/models';
import { Rng, isPosttrainError, tf } from '@posttrain/tensor-core';
import { accumulateHessians } from '@posttrain/policy';
import { nmViolations } from './nm.js';
import { sparsegptPrune } from './sparsegpt.js';
import { pruneModel } from './prune-model.js';

// pruneModel on a tiny random Llama: exact sparsity per layer (or in total for global magnitude),
// exact 2:4 on every row, zeros written into the model, no tensor leak, errors that name the fix.

const config = { modelType: 'llama', vocabSize: 64, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 2, numKvHeads: 1, maxPositions: 64, tieWordEmbeddings: true } as const;
const make = (): PretrainedModel => createModel(config as never, { seed: 7 });
const rows = (seed: number, count: number, length: number): number[][] => {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(rng.int(64))));
};
const calibration = [rows(1, 4, 32)]; // 128 tokens ≥ 64 inputs of down_proj
const zeros = (model: PretrainedModel, path: string): number => {
  const w = (model.getModule(path) as unknown as { weight: tf.Tensor }).weight.dataSync();
  return Array.from(w).filter((v) => v === 0).length;
};

describe('pruneModel', () => {
  for (const method of ['magnitude', 'wanda', 'sparsegpt'] as const) {
    it(`${method}: exactly 50% per layer and 2:4 exact, zeros in the model, no tensor leak`, async () => {
      for (const pattern of ['unstructured', { n: 2, m: 4 }] as const) {
        const model = make();
        const before = tf.memory().numTensors;
        const { layers, masks } = await pruneModel(model, method === 'magnitude' ? undefined : calibration, { method, pattern });
        expect(tf.memory().numTensors).toBe(before);
        expect(layers.length).toBe(14); // 7 projections × 2 blocks, lm_head left alone
        for (const l of layers) {
          expect(l.kept).toBe(l.total / 2);
          expect(zeros(model, l.path)).toBeGreaterThanOrEqual(l.total / 2);
          if (pattern !== 'unstructured') expect(nmViolations(masks.get(l.path) as Uint8Array, l.shape[1], pattern)).toBe(0);
        }
        model.dispose();
      }
    });
  }

  it('sparsegpt, not sequential: each layer is sparsegptPrune of its weight with the Hessian from accumulateHessians', async () => {
    const model = make();
    const reference = make();
    const stats = await accumulateHessians(reference, calibration);
    const { layers, masks } = await pruneModel(model, calibration, { method: 'sparsegpt', sequential: false });
    for (const l of layers) {
      const w = (reference.getModule(l.path) as unknown as { weight: tf.Tensor }).weight.dataSync() as Float32Array;
      const r = sparsegptPrune(w, stats.get(l.path)?.hessian as Float64Array);
      expect(masks.get(l.path)).toEqual(r.mask);
      expect((model.getModule(l.path) as unknown as { weight: tf.Tensor }).weight.dataSync()).toEqual(r.weight);
    }
    model.dispose();
    reference.dispose();
  });

  it('global magnitude: 50% over all layers together, layers differ', async () => {
    const model = make();
    const { layers } = await pruneModel(model, undefined, { method: 'magnitude', scope: 'global' });
    const kept = layers.reduce((s, l) => s + l.kept, 0);
    const total = layers.reduce((s, l) => s + l.total, 0);
    expect(kept).toBe(total / 2);
    expect(new Set(layers.map((l) => l.kept / l.total)).size).toBeGreaterThan(1);
    model.dispose();
  });

  it('comparison: magnitude per row and Wanda per layer; refused for SparseGPT, global or N:M', async () => {
    const model = make();
    const { layers } = await pruneModel(model, undefined, { method: 'magnitude', comparison: 'row' });
    for (const l of layers) {
      const w = (model.getModule(l.path) as unknown as { weight: tf.Tensor }).weight.dataSync();
      for (let r = 0; r < l.shape[0]; r++) expect(Array.from(w.subarray(r * l.shape[1], (r + 1) * l.shape[1])).filter((v) => v === 0).length).toBeGreaterThanOrEqual(l.shape[1] / 2);
    }
    model.dispose();
    const wanda = make();
    const { layers: wl } = await pruneModel(wanda, calibration, { method: 'wanda', comparison: 'layer' });
    expect(wl.every((l) => l.kept === l.total / 2)).toBe(true);
    wanda.dispose();
    const refused = make();
    for (const options of [
      { method: 'sparsegpt', comparison: 'row' },
      { method: 'magnitude', scope: 'global', comparison: 'row' },
      { method: 'wanda', pattern: { n: 2, m: 4 }, comparison: 'layer' },
    ] as const) {
      await expect(pruneModel(refused, calibration, options)).rejects.toThrow(/comparison is for unstructured magnitude or Wanda with scope 'layer'/);
    }
    await expect(pruneModel(refused, calibration, { method: 'wanda', comparison: 'column' as never })).rejects.toThrow(/expected comparison to be 'layer', 'row' or undefined; got "column"/);
    refused.dispose();
  });

  it('rejects too little calibration, bad sparsity, n ≥ m, and leaves the model unchanged', async () => {
    const model = make();
    const w0 = (model.getModule('model.layers.0.mlp.down_proj') as unknown as { weight: tf.Tensor }).weight.dataSync().slice();
    const fail = async (p: Promise<unknown>): Promise<string> => {
      try {
        await p;
      } catch (e) {
        expect(isPosttrainError(e)).toBe(true);
        return (e as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(await fail(pruneModel(model, [rows(2, 1, 8)], { method: 'sparsegpt' }))).toMatch(/8 tokens; sparsegpt needs at least 64, the input features of model.layers.0.mlp.down_proj/);
    expect(await fail(pruneModel(model, undefined, { method: 'wanda' }))).toMatch(/wanda needs calibration batches/);
    expect(await fail(pruneModel(model, undefined, { method: 'magnitude', sparsity: 1.5 }))).toMatch(/sparsity .*\[0, 1\).*got 1.5/);
    expect(await fail(pruneModel(model, undefined, { method: 'magnitude', pattern: { n: 4, m: 4 } }))).toMatch(/1 ≤ n < m = 4/);
    expect(await fail(pruneModel(model, calibration, { method: 'wanda', scope: 'global' }))).toMatch(/scope 'global' is for unstructured magnitude/);
    expect((model.getModule('model.layers.0.mlp.down_proj') as unknown as { weight: tf.Tensor }).weight.dataSync()).toEqual(w0);
    model.dispose();
  });
});
