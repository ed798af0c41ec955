import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import type { Module } from './module.js';
import { LayerNorm, RMSNorm, defaultLayerNormOptions, defaultRMSNormOptions } from './norm.js';

// Reference values from PyTorch: scripts/reference/layers_ref.py writes fixtures/layers_ref.json
// (inputs drawn in float32, reference computed in float64). Each case records the forward output
// and the gradients of loss = (y * upstream).sum() w.r.t. the input and every parameter.
//
// Tolerance, for forward outputs and gradients alike: max|ours − ref| ≤ 1e-5 · max(1, max|ref|),
// i.e. 1e-5 absolute for values of order one and 1e-5 relative above.
const TOLERANCE = 1e-5;

interface Encoded {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: number[];
}
interface ReferenceCase {
  inputs: Record<string, Encoded>;
  params: Record<string, Encoded>;
  upstream: Encoded;
  output: Encoded;
  grads: Record<string, Encoded>;
}
const reference = JSON.parse(readFileSync(new URL('../fixtures/layers_ref.json', import.meta.url), 'utf8')) as {
  cases: Record<string, ReferenceCase & Record<string, unknown>>;
};

function decode(e: Encoded): tf.Tensor {
  return tf.tensor(e.data, e.shape, e.dtype);
}

/** A variable holding `t`'s values; `t` is disposed (tf.variable shares the data and leaves `t` counted). */
function variableOf(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t);
  t.dispose();
  return v;
}

/** max|actual − ref| and the bound it must stay under; checks the shape too. */
function compare(actual: tf.Tensor, ref: Encoded, what: string): { error: number; bound: number } {
  expect(actual.shape, `${what}: shape`).toEqual(ref.shape);
  const a = actual.dataSync();
  let error = 0;
  let scale = 1;
  for (let i = 0; i < ref.data.length; i++) {
    error = Math.max(error, Math.abs(a[i] - ref.data[i]));
    scale = Math.max(scale, Math.abs(ref.data[i]));
  }
  const bound = TOLERANCE * scale;
  expect(error, `${what}: max|ours − torch| = ${error.toExponential(2)} > ${bound.toExponential(2)}`).toBeLessThanOrEqual(bound);
  return { error, bound };
}

interface Forward extends Module {
  forward(x: tf.Tensor): tf.Tensor;
}

/**
 * Loads the case's weights through loadStateDict, runs forward and the gradient of
 * (y · upstream).sum() with tf.variableGrads, and compares everything with PyTorch. `input` names
 * the input key of the case: a float `x` (its gradient is checked too) or int32 `ids`.
 */
function checkAgainstTorch(layer: Forward, c: ReferenceCase, input: 'x' | 'ids'): void {
  const params = Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, decode(v)]));
  expect(layer.loadStateDict(params)).toEqual({ missingKeys: [], unexpectedKeys: [] });
  tf.dispose(Object.values(params));

  const x = input === 'x' ? variableOf(decode(c.inputs.x)) : decode(c.inputs.ids);
  const upstream = decode(c.upstream);
  const y = layer.forward(x);
  compare(y, c.output, 'forward');

  const named = [...layer.namedParameters()];
  const varList = [...(x instanceof tf.Variable ? [x] : []), ...named.map(([, p]) => p)];
  const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tf.mul(layer.forward(x), upstream)) as tf.Scalar), varList);
  let refLoss = 0;
  for (let i = 0; i < c.output.data.length; i++) refLoss += c.output.data[i] * c.upstream.data[i];
  expect(Math.abs(value.dataSync()[0] - refLoss)).toBeLessThanOrEqual(TOLERANCE * Math.max(1, Math.abs(refLoss)));

  if (x instanceof tf.Variable) compare(grads[x.name], c.grads.x, 'grad x');
  expect(Object.keys(c.grads).filter((k) => k !== 'x').sort()).toEqual(named.map(([k]) => k).sort());
  for (const [path, p] of named) compare(grads[p.name], c.grads[path], `grad ${path}`);
  tf.dispose([x, upstream, y, value, ...Object.values(grads)]);
}

let baseline = 0;
beforeEach(() => {
  baseline = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors).toBe(baseline);
});

/** Mean and (biased) variance of each row of the last axis. */
function rowStats(t: tf.Tensor): { mean: number; variance: number; meanSquare: number }[] {
  const d = t.shape[t.shape.length - 1];
  const data = t.dataSync();
  const out = [];
  for (let r = 0; r < data.length / d; r++) {
    const row = Array.from(data.subarray(r * d, (r + 1) * d));
    const mean = row.reduce((s, v) => s + v, 0) / d;
    out.push({
      mean,
      variance: row.reduce((s, v) => s + (v - mean) ** 2, 0) / d,
      meanSquare: row.reduce((s, v) => s + v * v, 0) / d,
    });
  }
  return out;
}

describe('LayerNorm', () => {
  it('matches torch.nn.LayerNorm (eps 1e-5, learned weight and bias), forward and gradients', () => {
    const c = reference.cases.layer_norm;
    const layer = new LayerNorm(c.dim as number, { eps: c.eps as number });
    expect([...layer.namedParameters().keys()]).toEqual(['weight', 'bias']);
    checkAgainstTorch(layer, c, 'x');
    layer.dispose();
  });

  it('defaults to eps 1e-5, weight 1 and bias 0, giving rows of mean 0 and variance 1', () => {
    expect(defaultLayerNormOptions).toEqual({ eps: 1e-5, bias: true });
    const layer = new LayerNorm(16);
    expect(layer.eps).toBe(1e-5);
    expect(Array.from(layer.weight.dataSync())).toEqual(new Array(16).fill(1));
    expect(Array.from(layer.bias!.dataSync())).toEqual(new Array(16).fill(0));
    const x = tf.tidy(() => tf.randomNormal([3, 5, 16], 4, 3, 'float32', 1));
    const y = layer.forward(x);
    for (const { mean, variance } of rowStats(y)) {
      expect(Math.abs(mean)).toBeLessThan(1e-5);
      expect(Math.abs(variance - 1)).toBeLessThan(1e-3); // eps/variance ≈ 1e-6 and float32 rounding
    }
    tf.dispose([x, y]);
    layer.dispose();
  });

  it('without bias has only a weight', () => {
    const layer = new LayerNorm(4, { bias: false });
    expect([...layer.namedParameters().keys()]).toEqual(['weight']);
    expect(layer.bias).toBeUndefined();
    layer.dispose();
  });

  it('rejects bad sizes, eps and unknown options by name', () => {
    expect(() => new LayerNorm(0)).toThrow('LayerNorm: expected dim to be a positive integer; got 0');
    expect(() => new LayerNorm(4, { eps: 0 })).toThrow('LayerNorm: expected eps to be a positive number; got 0');
    expect(() => new LayerNorm(4, { epsilon: 1e-5 } as never)).toThrow('LayerNorm: unknown option "epsilon"; known options are eps, bias');
  });
});

describe('RMSNorm', () => {
  it("matches Llama's RMSNorm x · rsqrt(mean(x²) + eps) · weight, forward and gradients", () => {
    const c = reference.cases.rms_norm;
    const layer = new RMSNorm(c.dim as number, { eps: c.eps as number });
    expect([...layer.namedParameters().keys()]).toEqual(['weight']);
    checkAgainstTorch(layer, c, 'x');
    layer.dispose();
  });

  it('defaults to eps 1e-6 and weight 1, giving rows of mean square 1 without centring', () => {
    expect(defaultRMSNormOptions).toEqual({ eps: 1e-6 });
    const layer = new RMSNorm(16);
    expect(layer.eps).toBe(1e-6);
    const x = tf.tidy(() => tf.randomNormal([3, 5, 16], 4, 3, 'float32', 2));
    const y = layer.forward(x);
    const stats = rowStats(y);
    for (const { meanSquare } of stats) expect(Math.abs(meanSquare - 1)).toBeLessThan(1e-5);
    expect(stats.some(({ mean }) => mean > 0.5)).toBe(true); // not centred, unlike LayerNorm
    tf.dispose([x, y]);
    layer.dispose();
  });

  it('rejects bad sizes, eps and unknown options by name', () => {
    expect(() => new RMSNorm(-2)).toThrow('RMSNorm: expected dim to be a positive integer; got -2');
    expect(() => new RMSNorm(4, { eps: -1 })).toThrow('RMSNorm: expected eps to be a positive number; got -1');
    expect(() => new RMSNorm(4, { bias: true } as never)).toThrow('RMSNorm: unknown option "bias"; known options are eps');
  });
});

describe('memory', () => {
  it('each norm forward leaves only its output, and nothing inside tf.tidy or a gradient', () => {
    for (const layer of [new LayerNorm(4), new LayerNorm(4, { bias: false }), new RMSNorm(4)] as Forward[]) {
      const x = tf.tidy(() => tf.randomNormal([2, 3, 4], 0, 1, 'float32', 4));
      const before = tf.memory().numTensors;
      const y = layer.forward(x);
      expect(tf.memory().numTensors).toBe(before + 1);
      y.dispose();
      tf.tidy(() => {
        layer.forward(x);
      });
      const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tf.square(layer.forward(x))) as tf.Scalar), [
        ...layer.namedParameters().values(),
      ]);
      tf.dispose([value, ...Object.values(grads)]);
      tf.grad((t: tf.Tensor) => tf.sum(tf.square(layer.forward(t))))(x).dispose();
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
      layer.dispose();
    }
  });
});
