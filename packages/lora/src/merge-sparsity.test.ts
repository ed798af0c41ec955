import { describe, expect, it } from 'vitest';
import { Conv1D, Linear, Module, Rng, tf } from '@posttrain/tensor-core';
import { LoraLinear, applyLora, mergeAdapter, mergeAndUnload, unmergeAdapter, withAdaptersDisabled } from './index.js';

// A base weight with a known zero pattern (a pruned layer) and an adapter whose update is dense.
const W = [
  [0, 1, 0, -2],
  [3, 0, 0, 4],
  [0, 0, 5, 0],
];
const A = [
  [0.5, -1, 2, 1],
  [1, 0.25, -0.5, 3],
];
const B = [
  [1, 2],
  [-1, 0.5],
  [2, -3],
];

class TwoLayers extends Module {
  readonly proj: Linear;
  readonly conv: Conv1D;
  constructor() {
    super();
    this.proj = this.registerModule('proj', new Linear(4, 3, { bias: false, rng: new Rng(1) }));
    this.conv = this.registerModule('conv', new Conv1D(4, 3, { bias: false, rng: new Rng(2) }));
    this.proj.weight.assign(tf.tensor2d(W));
    this.conv.weight.assign(tf.tensor2d(W).transpose()); // stored [in, out]
  }
}

function withAdapter(): TwoLayers {
  const model = new TwoLayers();
  applyLora(model, { targetModules: ['proj', 'conv'], r: 2, alpha: 2 }); // scale 1
  for (const layer of [model.getModule('proj'), model.getModule('conv')] as LoraLinear[]) {
    layer.loraA.get('default')!.weight.assign(tf.tensor2d(A));
    layer.loraB.get('default')!.weight.assign(tf.tensor2d(B));
  }
  return model;
}

const delta = tf.tidy(() => tf.matMul(tf.tensor2d(B), tf.tensor2d(A)).arraySync() as number[][]);
const rows = (layer: Module): number[][] => {
  const w = (layer as Linear | Conv1D).weight;
  return (layer instanceof Conv1D ? tf.tidy(() => w.transpose().arraySync()) : w.arraySync()) as number[][];
};

describe('merging into a pruned base with keepSparsity', () => {
  it('adds the update only where the base is non-zero (Linear and Conv1D), unmerges back exactly, and keeps it across withAdaptersDisabled', () => {
    const model = withAdapter();
    const before = tf.memory().numTensors;
    mergeAdapter(model, { keepSparsity: true });
    for (const path of ['proj', 'conv']) {
      const merged = rows((model.getModule(path) as LoraLinear).baseLayer);
      W.forEach((row, o) => row.forEach((w, i) => expect(merged[o][i]).toBeCloseTo(w === 0 ? 0 : w + delta[o][i], 5)));
      W.forEach((row, o) => row.forEach((w, i) => (w === 0 ? expect(merged[o][i]).toBe(0) : undefined)));
    }
    const inside = withAdaptersDisabled(model, () => rows((model.getModule('proj') as LoraLinear).baseLayer));
    expect(inside).toEqual(W);
    expect((model.getModule('proj') as LoraLinear).mergedKeepingSparsity('default')).toBe(true);
    expect(rows((model.getModule('proj') as LoraLinear).baseLayer)[0][0]).toBe(0);
    unmergeAdapter(model);
    const restored = rows((model.getModule('proj') as LoraLinear).baseLayer);
    W.forEach((row, o) => row.forEach((w, i) => expect(restored[o][i]).toBeCloseTo(w, 6)));
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('mergeAndUnload keeps the zeros when asked and fills them in by default (PEFT)', () => {
    const kept = withAdapter();
    mergeAndUnload(kept, { keepSparsity: true });
    expect(kept.getModule('proj')).toBeInstanceOf(Linear);
    for (const path of ['proj', 'conv']) {
      const w = rows(kept.getModule(path));
      expect(w.flat().filter((v) => v === 0).length).toBe(W.flat().filter((v) => v === 0).length);
      W.forEach((row, o) => row.forEach((v, i) => (v === 0 ? expect(w[o][i]).toBe(0) : expect(w[o][i]).toBeCloseTo(v + delta[o][i], 5))));
    }
    const dense = withAdapter();
    mergeAndUnload(dense);
    const w = rows(dense.getModule('proj'));
    W.forEach((row, o) => row.forEach((v, i) => expect(w[o][i]).toBeCloseTo(v + delta[o][i], 5)));
    expect(w.flat().filter((v) => v === 0).length).toBe(0);
    kept.dispose();
    dense.dispose();
  });

  it('rejects an unknown option by name', () => {
    const model = withAdapter();
    expect(() => mergeAdapter(model, { keepSparse: true } as never)).toThrow(/unknown option "keepSparse"; known options are keepSparsity/);
    expect(() => mergeAndUnload(model, { sparse: true } as never)).toThrow(/mergeAndUnload: unknown option "sparse"/);
    model.dispose();
  });
});
