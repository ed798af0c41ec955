import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { tf, Linear, Conv1D, Rng } from '@posttrain/tensor-core';
import { LoraLinear, type LoraAdapterSettings } from './index.js';

interface Case {
  weight: number[][];
  bias: number[];
  lora_A: number[][];
  lora_B: number[][];
  x: number[][];
  upstream: number[][];
  scaling: number;
  output: number[][];
  grad_x: number[][];
  grad_A: number[][];
  grad_B: number[][];
}
const fixture = JSON.parse(readFileSync(new URL('../fixtures/lora_ref.json', import.meta.url), 'utf8')) as { r: number; lora_alpha: number; lora: Case; rslora: Case };
const settings = (over: Partial<LoraAdapterSettings> = {}): LoraAdapterSettings => ({ r: 2, alpha: 4, dropout: 0, rsLora: false, init: 'kaiming', ...over });

function expectClose(actual: tf.Tensor, expected: number[][], tol: number): void {
  const got = actual.arraySync() as number[][];
  expected.forEach((row, i) => row.forEach((v, j) => expect(Math.abs(got[i][j] - v)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v)))));
}

function layerFor(c: Case, rsLora: boolean, conv: boolean): LoraLinear {
  const base = conv ? new Conv1D(6, 5) : new Linear(6, 5);
  base.weight.assign(conv ? tf.tensor2d(c.weight).transpose() : tf.tensor2d(c.weight));
  base.bias!.assign(tf.tensor1d(c.bias));
  base.freeze(); // as applyLora leaves it
  const layer = new LoraLinear(base);
  layer.addAdapter('default', settings({ rsLora }), new Rng(0));
  layer.loraA.get('default')!.weight.assign(tf.tensor2d(c.lora_A));
  layer.loraB.get('default')!.weight.assign(tf.tensor2d(c.lora_B));
  return layer;
}

describe('LoraLinear against PyTorch (scripts/reference/lora_ref.py)', () => {
  for (const [label, rsLora] of [
    ['lora', false],
    ['rslora', true],
  ] as const) {
    for (const conv of [false, true]) {
      it(`${label} forward and gradients match within 1e-5 (${conv ? 'Conv1D' : 'Linear'} base)`, () => {
        const c = fixture[label];
        const layer = layerFor(c, rsLora, conv);
        expect(layer.scaling('default')).toBeCloseTo(c.scaling, 12);
        const x = tf.tensor2d(c.x);
        const up = tf.tensor2d(c.upstream);
        expectClose(layer.forward(x), c.output, 1e-5);
        const loss = (input: tf.Tensor) => layer.forward(input).mul(up).sum() as tf.Scalar;
        expectClose(tf.grad(loss)(x), c.grad_x, 1e-5);
        const { grads } = tf.variableGrads(() => loss(x));
        const a = layer.loraA.get('default')!.weight;
        const b = layer.loraB.get('default')!.weight;
        expectClose(grads[a.name], c.grad_A, 1e-5);
        expectClose(grads[b.name], c.grad_B, 1e-5);
        expect(Object.keys(grads).sort()).toEqual([a.name, b.name].sort());
        layer.dispose();
      });
    }
  }
});

describe('initialisation', () => {
  it('kaiming and gaussian start with B = 0, so the output equals the base', () => {
    for (const init of ['kaiming', 'gaussian'] as const) {
      const base = new Linear(8, 6, { rng: new Rng(1) });
      const layer = new LoraLinear(base);
      layer.addAdapter('default', settings({ r: 4, init }), new Rng(2));
      const x = new Rng(3).normalTensor([3, 8]);
      expect(
        tf
          .abs(layer.forward(x).sub(base.forward(x)))
          .max()
          .dataSync()[0],
      ).toBe(0);
      const a = layer.loraA.get('default')!.weight;
      expect(a.shape).toEqual([4, 8]);
      expect(tf.abs(a).max().dataSync()[0]).toBeGreaterThan(0);
      if (init === 'kaiming') expect(tf.abs(a).max().dataSync()[0]).toBeLessThan(1 / Math.sqrt(8)); // uniform(±1/√in): kaiming a=√5
      if (init === 'gaussian') expect(Math.abs(tf.moments(a).variance.sqrt().dataSync()[0] - 0.25)).toBeLessThan(0.12); // std 1/r
      layer.dispose();
    }
  });

  for (const conv of [false, true]) {
    it(`pissa puts the top-r SVD in the adapter and the residual in the base, reconstructing W within 1e-5 (${conv ? 'Conv1D' : 'Linear'})`, () => {
      const base = conv ? new Conv1D(7, 5, { std: 0.5, rng: new Rng(4) }) : new Linear(7, 5, { rng: new Rng(4) });
      const w = base.weight.clone();
      const layer = new LoraLinear(base);
      layer.addAdapter('default', settings({ r: 2, alpha: 3, init: 'pissa' }), new Rng(5));
      const rebuilt = base.weight.add(layer.deltaWeight('default'));
      expect(tf.abs(rebuilt.sub(w)).max().dataSync()[0]).toBeLessThan(1e-5);
      // The adapter holds W's best rank-2 approximation: the residual's largest singular value is W's third.
      const wOut = conv ? w.transpose() : w;
      const sW = svdValues(wOut);
      const sRes = svdValues(conv ? base.weight.transpose() : base.weight);
      expect(sRes[0]).toBeCloseTo(sW[2], 4);
      // A's rows are orthogonal (right singular vectors scaled by √(σ/scale)).
      const a = layer.loraA.get('default')!.weight;
      const gram = tf.matMul(a, a, false, true).arraySync() as number[][];
      expect(Math.abs(gram[0][1])).toBeLessThan(1e-5);
      const x = new Rng(6).normalTensor([3, 7]);
      const full = conv ? tf.matMul(x, w) : tf.matMul(x, w, false, true);
      expect(
        tf
          .abs(layer.forward(x).sub(full.add(base.bias!)))
          .max()
          .dataSync()[0],
      ).toBeLessThan(1e-5);
      layer.dispose();
    });
  }
});

// Singular values via eigenvalues of MᵀM computed independently with power iteration + deflation.
function svdValues(m: tf.Tensor): number[] {
  const g = (tf.matMul(m, m, true, false).arraySync() as number[][]).map((r) => r.slice());
  const n = g.length;
  const out: number[] = [];
  for (let k = 0; k < Math.min(3, n); k++) {
    let v = Array.from({ length: n }, (_, i) => 1 + i * 0.1);
    let lambda = 0;
    for (let it = 0; it < 2000; it++) {
      const w = g.map((row) => row.reduce((s, x, j) => s + x * v[j], 0));
      lambda = Math.hypot(...w);
      v = w.map((x) => x / lambda);
    }
    out.push(Math.sqrt(lambda));
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i][j] -= lambda * v[i] * v[j];
  }
  return out;
}

describe('merge, dropout and memory', () => {
  it('merge then unmerge restores the base within 1e-6, and the merged forward equals the unmerged one', () => {
    for (const conv of [false, true]) {
      const base = conv ? new Conv1D(8, 6, { rng: new Rng(1) }) : new Linear(8, 6, { rng: new Rng(1) });
      const layer = new LoraLinear(base);
      layer.addAdapter('default', settings({ r: 3, alpha: 6 }), new Rng(2));
      layer.loraB.get('default')!.weight.assign(new Rng(3).normalTensor([6, 3], 0.5));
      const w = base.weight.clone();
      const x = new Rng(4).normalTensor([2, 8]);
      const before = layer.forward(x);
      const tensors = tf.memory().numTensors;
      layer.merge();
      expect(tf.memory().numTensors).toBe(tensors);
      tf.tidy(() => {
        expect(tf.abs(base.weight.sub(w)).max().dataSync()[0]).toBeGreaterThan(1e-3);
        expect(tf.abs(layer.forward(x).sub(before)).max().dataSync()[0]).toBeLessThan(1e-5);
      });
      layer.unmerge();
      expect(tf.memory().numTensors).toBe(tensors);
      expect(tf.abs(base.weight.sub(w)).max().dataSync()[0]).toBeLessThan(1e-6);
      layer.dispose();
    }
  });

  it('dropout acts on the adapter input in training mode only', () => {
    const layer = new LoraLinear(new Linear(16, 4, { rng: new Rng(1) }));
    layer.addAdapter('default', settings({ r: 2, dropout: 0.5 }), new Rng(2));
    layer.loraB.get('default')!.weight.assign(new Rng(3).normalTensor([4, 2]));
    const x = new Rng(4).normalTensor([3, 16]);
    layer.eval();
    const a = layer.forward(x).arraySync();
    expect(layer.forward(x).arraySync()).toEqual(a);
    layer.train();
    expect(layer.forward(x).arraySync()).not.toEqual(a);
    layer.dispose();
  });

  it('forward leaks no tensors', () => {
    const layer = new LoraLinear(new Linear(8, 6));
    layer.addAdapter('default', settings(), new Rng(0));
    const x = tf.ones([2, 3, 8]);
    layer.forward(x).dispose();
    const n = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const y = layer.forward(x);
      expect(y.shape).toEqual([2, 3, 6]);
      y.dispose();
    }
    expect(tf.memory().numTensors).toBe(n);
    layer.dispose();
    x.dispose();
  });
});
