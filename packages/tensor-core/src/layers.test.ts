import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { Dropout, Embedding, Linear, defaultRng, manualSeed, withDropoutRng } from './layers.js';
import { Rng } from './rng.js';
import { thrown } from './testing/assert.js';
import { expectNoTensorLeaks, variableOf } from './testing/tensors.js';
import { checkAgainstTorch, layersReference as reference, type Forward } from './testing/torch-reference.js';

// Reference values from PyTorch (fixtures/layers_ref.json); checkAgainstTorch compares forward
// outputs and gradients within max|ours − ref| ≤ 1e-5 · max(1, max|ref|) (TORCH_TOLERANCE).

function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s / values.length;
}

/** Root mean square: the standard deviation of zero-mean samples. */
function rms(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i] * values[i];
  return Math.sqrt(s / values.length);
}

expectNoTensorLeaks();

describe('Linear', () => {
  it('matches torch.nn.Linear with bias on a 3-D input, forward and gradients', () => {
    const c = reference.cases.linear_bias;
    const layer = new Linear(c.inFeatures as number, c.outFeatures as number);
    expect([...layer.namedParameters().keys()]).toEqual(['weight', 'bias']);
    checkAgainstTorch(layer, c, 'x');
    layer.dispose();
  });

  it('matches torch.nn.Linear without bias, forward and gradients', () => {
    const c = reference.cases.linear_no_bias;
    const layer = new Linear(c.inFeatures as number, c.outFeatures as number, { bias: false });
    expect([...layer.namedParameters().keys()]).toEqual(['weight']);
    expect(layer.bias).toBeUndefined();
    checkAgainstTorch(layer, c, 'x');
    layer.dispose();
  });

  it('stores weight [out, in] and maps [..., in] to [..., out] for 1-D to 4-D inputs', () => {
    const layer = new Linear(3, 5, { rng: new Rng(0) });
    expect(layer.weight.shape).toEqual([5, 3]);
    expect(layer.bias!.shape).toEqual([5]);
    for (const shape of [[3], [2, 3], [2, 4, 3], [2, 1, 4, 3]]) {
      const y = tf.tidy(() => layer.forward(tf.ones(shape)));
      expect(y.shape).toEqual([...shape.slice(0, -1), 5]);
      y.dispose();
    }
    layer.dispose();
  });

  it('rejects an input whose last axis is not inFeatures', () => {
    const layer = new Linear(3, 5, { rng: new Rng(0) });
    const x = tf.ones([2, 4]);
    const error = thrown(() => layer.forward(x));
    expect(isPosttrainError(error) && error.code).toBe('SHAPE_MISMATCH');
    expect((error as Error).message).toBe('Linear: expected input [..., 3]; got [2, 4]');
    x.dispose();
    layer.dispose();
  });

  it('initialises as PyTorch by default (uniform in ±1/√in) and as Hugging Face with std', () => {
    const layer = new Linear(64, 256, { rng: new Rng(1) });
    const bound = 1 / 8;
    const w = layer.weight.dataSync();
    const b = layer.bias!.dataSync();
    expect(w.every((v) => v >= -bound && v < bound)).toBe(true);
    expect(b.every((v) => v >= -bound && v < bound)).toBe(true);
    // Uniform in ±bound has std bound/√3 ≈ 0.0722; over 16,384 values the estimate is within 1%.
    const std = rms(w);
    expect(Math.abs(std - bound / Math.sqrt(3))).toBeLessThan(0.002);
    layer.dispose();

    const hf = new Linear(64, 256, { rng: new Rng(1), std: 0.02 });
    const hw = hf.weight.dataSync();
    const hstd = rms(hw);
    expect(Math.abs(hstd - 0.02)).toBeLessThan(0.0005);
    expect(Array.from(hf.bias!.dataSync()).every((v) => v === 0)).toBe(true);
    hf.dispose();
  });

  it('is reproducible from an Rng and from manualSeed', () => {
    const a = new Linear(4, 3, { rng: new Rng(7) });
    const b = new Linear(4, 3, { rng: new Rng(7) });
    expect(a.weight.arraySync()).toEqual(b.weight.arraySync());
    manualSeed(3);
    const c = new Linear(4, 3);
    manualSeed(3);
    const d = new Linear(4, 3);
    expect(c.weight.arraySync()).toEqual(d.weight.arraySync());
    expect(c.bias!.arraySync()).toEqual(d.bias!.arraySync());
    expect(c.weight.arraySync()).not.toEqual(a.weight.arraySync());
    expect(defaultRng()).toBeInstanceOf(Rng);
    for (const m of [a, b, c, d]) m.dispose();
  });

  it('rejects unknown options and bad sizes by name', () => {
    expect(() => new Linear(2, 2, { biass: false } as never)).toThrow('Linear: unknown option "biass"; known options are bias, rng, std');
    expect(() => new Linear(0, 2)).toThrow('Linear: expected inFeatures to be a positive integer; got 0');
    expect(() => new Linear(2, 1.5)).toThrow('Linear: expected outFeatures to be a positive integer; got 1.5');
  });
});

describe('Embedding', () => {
  it('matches torch.nn.Embedding with repeated ids: forward and the scatter-added gradient', () => {
    const c = reference.cases.embedding;
    expect(new Set(c.inputs.ids.data).size).toBeLessThan(c.inputs.ids.data.length); // repeats
    const layer = new Embedding(c.numEmbeddings as number, c.dim as number);
    checkAgainstTorch(layer, c, 'ids');
    layer.dispose();
  });

  it('gathers rows into [...ids.shape, dim]', () => {
    const layer = new Embedding(5, 3, { rng: new Rng(2) });
    const ids = tf.tensor1d([4, 0, 4], 'int32');
    const y = layer.forward(ids);
    expect(y.shape).toEqual([3, 3]);
    const w = layer.weight.arraySync() as number[][];
    expect(y.arraySync()).toEqual([w[4], w[0], w[4]]);
    const ids3 = tf.zeros([2, 2, 2], 'int32');
    const y3 = layer.forward(ids3);
    expect(y3.shape).toEqual([2, 2, 2, 3]);
    tf.dispose([ids, y, ids3, y3]);
    layer.dispose();
  });

  it('rejects float ids', () => {
    const layer = new Embedding(5, 3, { rng: new Rng(2) });
    const ids = tf.tensor1d([1, 2]);
    expect(() => layer.forward(ids)).toThrow('Embedding: expected int32 token ids; got float32');
    ids.dispose();
    layer.dispose();
  });

  it('initialises normal with the given std', () => {
    const layer = new Embedding(256, 64, { rng: new Rng(3), std: 0.02 });
    const w = layer.weight.dataSync();
    const std = rms(w);
    expect(Math.abs(std - 0.02)).toBeLessThan(0.0005);
    layer.dispose();
  });
});

describe('Dropout', () => {
  it('in eval mode is the identity, as torch (fixture) and for gradients', () => {
    const c = reference.cases.dropout_eval;
    const layer = new Dropout(c.p as number, new Rng(0)).eval();
    checkAgainstTorch(layer, c, 'x');
    layer.dispose();
  });

  it('in training zeroes a fraction ≈ p and scales the kept values by 1/(1 − p)', () => {
    // n = 200,000, p = 0.3: the zeroed fraction has standard error √(p(1−p)/n) ≈ 0.001; tolerance 0.005.
    const p = 0.3;
    const layer = new Dropout(p, new Rng(1));
    expect(layer.training).toBe(true);
    const x = tf.tidy(() => tf.randomUniform([400, 500], 0.5, 1.5, 'float32', 9));
    const y = layer.forward(x);
    const xs = x.dataSync();
    const ys = y.dataSync();
    let zeros = 0;
    let worst = 0;
    for (let i = 0; i < ys.length; i++) {
      if (ys[i] === 0) zeros++;
      else worst = Math.max(worst, Math.abs(ys[i] - xs[i] / (1 - p)) / (xs[i] / (1 - p)));
    }
    expect(Math.abs(zeros / ys.length - p)).toBeLessThan(0.005);
    expect(worst).toBeLessThan(1e-6); // float32 rounding of x · (1/(1−p))
    // The expectation is kept: mean(y) ≈ mean(x).
    const meanX = mean(xs);
    const meanY = mean(ys);
    expect(Math.abs(meanY - meanX)).toBeLessThan(0.01);
    tf.dispose([x, y]);
  });

  it('draws the same mask from the same seed and a new mask on every call', () => {
    const x = tf.ones([1000]);
    const a = new Dropout(0.5, new Rng(42));
    const b = new Dropout(0.5, new Rng(42));
    const [a1, b1, a2] = [a.forward(x), b.forward(x), a.forward(x)];
    expect(Array.from(a1.dataSync())).toEqual(Array.from(b1.dataSync()));
    expect(Array.from(a2.dataSync())).not.toEqual(Array.from(a1.dataSync()));
    const c1 = new Dropout(0.5, new Rng(43)).forward(x);
    expect(Array.from(c1.dataSync())).not.toEqual(Array.from(a1.dataSync()));
    tf.dispose([x, a1, b1, a2, c1]);
  });

  it('draws from the generator withDropoutRng sets, whatever its own state, and restores it after, also on a throw', () => {
    const x = tf.ones([1000]);
    const a = new Dropout(0.5, new Rng(1));
    const b = new Dropout(0.5, new Rng(2));
    a.forward(x).dispose(); // a's own stream has moved on; b's has not
    const [a1, b1] = [withDropoutRng(new Rng(9), () => a.forward(x)), withDropoutRng(new Rng(9), () => b.forward(x))];
    expect(Array.from(a1.dataSync())).toEqual(Array.from(b1.dataSync()));
    const own = new Dropout(0.5, new Rng(2)).forward(x);
    expect(() =>
      withDropoutRng(new Rng(9), () => {
        throw new Error('inside');
      }),
    ).toThrow('inside');
    const b2 = b.forward(x); // back on b's own stream: its first mask
    expect(Array.from(b2.dataSync())).toEqual(Array.from(own.dataSync()));
    tf.dispose([x, a1, b1, own, b2]);
  });

  it('in training passes gradients through the kept elements only, scaled by 1/(1 − p)', () => {
    const p = 0.25;
    const x = variableOf(tf.ones([2000]));
    const upstream = tf.tidy(() => tf.randomNormal([2000], 0, 1, 'float32', 3));
    const y = new Dropout(p, new Rng(5)).forward(x); // same seed, same mask as below
    const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tf.mul(new Dropout(p, new Rng(5)).forward(x), upstream)) as tf.Scalar), [x]);
    const g = grads[x.name].dataSync();
    const ys = y.dataSync();
    const u = upstream.dataSync();
    let worst = 0;
    for (let i = 0; i < g.length; i++) worst = Math.max(worst, Math.abs(g[i] - (ys[i] === 0 ? 0 : u[i] / (1 - p))));
    expect(worst).toBeLessThan(1e-6);
    tf.dispose([x, upstream, y, value, ...Object.values(grads)]);
  });

  it('is the identity with p = 0 and in eval mode, returning a new tensor', () => {
    const x = tf.tensor1d([1, -2, 3]);
    const zero = new Dropout(0, new Rng(0));
    const off = new Dropout(0.9, new Rng(0)).eval();
    const [y0, y1] = [zero.forward(x), off.forward(x)];
    expect(Array.from(y0.dataSync())).toEqual([1, -2, 3]);
    expect(Array.from(y1.dataSync())).toEqual([1, -2, 3]);
    expect(y1).not.toBe(x); // disposing the output never disposes the input
    off.train();
    const y2 = off.forward(x);
    expect(Array.from(y2.dataSync())).not.toEqual([1, -2, 3]);
    tf.dispose([x, y0, y1, y2]);
  });

  it('rejects p outside [0, 1)', () => {
    for (const p of [1, -0.1, 1.5, Number.NaN]) expect(() => new Dropout(p)).toThrow(/Dropout: expected p to be in \[0, 1\)/);
  });
});

describe('memory', () => {
  it('every layer forward leaves only its output, and nothing inside tf.tidy or a gradient', () => {
    const rng = new Rng(0);
    const cases: [Forward, tf.Tensor][] = [
      [new Linear(4, 3, { rng }), tf.ones([2, 5, 4])],
      [new Linear(4, 3, { rng, bias: false }), tf.ones([2, 5, 4])],
      [new Embedding(10, 4, { rng }), tf.tensor2d([[1, 2, 2]], [1, 3], 'int32')],
      [new Dropout(0.5, rng), tf.ones([2, 5, 4])],
      [new Dropout(0.5, rng).eval(), tf.ones([2, 5, 4])],
    ];
    for (const [layer, x] of cases) {
      const before = tf.memory().numTensors;
      const y = layer.forward(x);
      expect(tf.memory().numTensors, layer.constructor.name).toBe(before + 1);
      y.dispose();
      tf.tidy(() => {
        layer.forward(x);
      });
      const params = [...layer.namedParameters().values()];
      if (params.length > 0) {
        const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(layer.forward(x)) as tf.Scalar), params);
        tf.dispose([value, ...Object.values(grads)]);
      }
      if (x.dtype === 'float32') tf.grad((t: tf.Tensor) => tf.sum(layer.forward(t)))(x).dispose();
      expect(tf.memory().numTensors, layer.constructor.name).toBe(before);
      x.dispose();
      layer.dispose();
    }
  });
});
