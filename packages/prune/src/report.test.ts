import { beforeAll, describe, expect, it } from 'vitest';
import { Linear, Module, Rng, initBackend, tf } from '@posttrain/tensor-core';
import { createModel, saveModel } from '@posttrain/models';
import { defaultSparsityReportOptions, sparsityReport } from './index.js';

class Two extends Module {
  readonly proj = this.registerModule('proj', new Linear(4, 3, { rng: new Rng(1) }));
  readonly lm_head = this.registerModule('lm_head', new Linear(3, 2, { bias: false, rng: new Rng(2) }));
}

describe('sparsityReport', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('counts zeros per layer, over the reported layers and over all parameters, by hand', () => {
    const model = new Two();
    model.proj.weight.assign(
      tf.tensor2d([
        [0, 1, 0, 2],
        [3, 0, 0, 0],
        [1, 1, 1, 1],
      ]),
    ); // 5 zeros of 12
    model.proj.bias!.assign(tf.tensor1d([0, 1, 2])); // 1 zero of 3
    model.lm_head.weight.assign(
      tf.tensor2d([
        [0, 1, 1],
        [1, 1, 1],
      ]),
    ); // 1 zero of 6, not a reported layer
    const before = tf.memory().numTensors;
    const report = sparsityReport(model);
    expect(report.layers).toEqual([{ path: 'proj', shape: [3, 4], zeros: 5, total: 12, sparsity: 5 / 12 }]);
    expect(report.layerSparsity).toBeCloseTo(5 / 12, 12);
    expect(report.parameters).toEqual({ total: 21, nonZero: 14, sparsity: 7 / 21 });
    const all = sparsityReport(model, { layers: () => true });
    expect(all.layers.map((l) => l.path)).toEqual(['proj', 'lm_head']);
    expect(all.layerSparsity).toBeCloseTo(6 / 18, 12);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => sparsityReport(model, { rows: 1 } as never)).toThrow(/unknown option "rows"; known options are layers/);
    expect(Object.isFrozen(defaultSparsityReportOptions)).toBe(true);
    model.dispose();
  });

  it('savedBytes is the size of the model.safetensors saveModel writes (dense: zeros take 4 bytes)', async () => {
    const model = createModel(
      { modelType: 'llama', vocabSize: 64, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 16, tieWordEmbeddings: true },
      { seed: 1 },
    );
    const dense = sparsityReport(model).savedBytes;
    const files = new Map<string, Uint8Array>();
    await saveModel(model, files);
    expect(dense).toBe(files.get('model.safetensors')!.byteLength);
    const up = model.getModule('model.layers.0.mlp.up_proj') as Linear;
    up.weight.assign(tf.zerosLike(up.weight));
    const pruned = sparsityReport(model);
    expect(pruned.savedBytes).toBe(dense);
    expect(pruned.layers.find((l) => l.path.endsWith('up_proj'))).toMatchObject({ zeros: 512, total: 512, sparsity: 1 });
    model.dispose();
  });
});
