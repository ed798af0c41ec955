import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { LayerNorm, RMSNorm, defaultLayerNormOptions, defaultRMSNormOptions } from './norm.js';
import { expectNoTensorLeaks } from './testing/tensors.js';
import { checkAgainstTorch, layersReference as reference, type Forward } from './testing/torch-reference.js';

// Reference values from PyTorch (fixtures/layers_ref.json); checkAgainstTorch compares forward
// outputs and gradients within max|ours − ref| ≤ 1e-5 · max(1, max|ref|) (TORCH_TOLERANCE).

expectNoTensorLeaks();

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
      const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tf.square(layer.forward(x))) as tf.Scalar), [...layer.namedParameters().values()]);
      tf.dispose([value, ...Object.values(grads)]);
      tf.grad((t: tf.Tensor) => tf.sum(tf.square(layer.forward(t))))(x).dispose();
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
      layer.dispose();
    }
  });
});
