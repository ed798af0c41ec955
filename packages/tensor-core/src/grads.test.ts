import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { Module } from './module.js';
import { Linear } from './layers.js';
import { Rng } from './rng.js';
import { valueAndGrads } from './grads.js';
import { thrown } from './testing/assert.js';
import { makeData, makeLoss, makeParams, optimFixture as fixture } from './testing/optim-fixture.js';
import { variable } from './testing/tensors.js';

// Reference: scripts/reference/optim_ref.py, the gradients of the step-0 loss at the initial parameters
// (fixtures/optim.json, read by testing/optim-fixture.ts).

class Mlp extends Module {
  readonly up: Linear;
  readonly down: Linear;
  constructor() {
    super();
    const rng = new Rng(3);
    this.up = this.registerModule('up', new Linear(3, 5, { rng }));
    this.down = this.registerModule('down', new Linear(5, 2, { rng }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.down.forward(tf.tanh(this.up.forward(x))));
  }
}

describe('valueAndGrads', () => {
  it("matches PyTorch's value and gradients on the optimiser fixture's loss (1e-6 relative)", () => {
    const params = makeParams(); // toy.a, toy.b, toy.c
    const data = makeData();
    const { value, grads } = valueAndGrads(() => makeLoss(params, data)(0), params); // the step-0 loss
    expect(value.rank).toBe(0);
    expect(Math.abs(value.dataSync()[0] - fixture.runs[0].losses[0]) / fixture.runs[0].losses[0]).toBeLessThan(1e-6);
    expect([...grads.keys()]).toEqual(['toy.a', 'toy.b', 'toy.c']);
    for (const [name, expected] of Object.entries(fixture.initialGrads)) {
      const g = grads.get(`toy.${name}`) as tf.Tensor;
      expect(g.shape).toEqual(fixture.shapes[name]);
      const scale = Math.max(...expected.map(Math.abs));
      g.dataSync().forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-6 * scale));
    }
    tf.dispose([value, ...grads.values(), ...params.values(), ...Object.values(data)]);
  });

  it("keys gradients by a Module's parameter paths, and matches the analytic gradient", () => {
    const model = new Mlp();
    const x = tf.tensor([
      [0.5, -1, 2],
      [1, 0.25, -0.5],
    ]);
    const { value, grads } = valueAndGrads(() => tf.sum(model.forward(x)) as tf.Scalar, model.namedParameters());
    expect([...grads.keys()]).toEqual(['up.weight', 'up.bias', 'down.weight', 'down.bias']);
    // d Σy / d down.bias = the batch size for each output.
    expect(Array.from((grads.get('down.bias') as tf.Tensor).dataSync())).toEqual([2, 2]);
    // d Σy / d down.weight[o, j] = Σ_batch tanh(up(x))[j].
    const expected = tf.tidy(() => tf.tile(tf.sum(tf.tanh(model.up.forward(x)), 0, true), [2, 1]));
    const got = grads.get('down.weight') as tf.Tensor;
    expect(got.shape).toEqual([2, 5]);
    got.dataSync().forEach((v, i) => expect(v).toBeCloseTo(expected.dataSync()[i], 6));
    tf.dispose([value, x, expected, ...grads.values()]);
    model.dispose();
  });

  it('frees every intermediate: numTensors grows by exactly the value and the gradients', () => {
    const model = new Mlp();
    const x = tf.ones([4, 3]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const { value, grads } = valueAndGrads(() => tf.mean(tf.square(model.forward(x))) as tf.Scalar, model.namedParameters());
      expect(tf.memory().numTensors).toBe(before + 1 + grads.size);
      tf.dispose([value, ...grads.values()]);
    }
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    model.dispose();
  });

  it('omits frozen and unused parameters', () => {
    const model = new Mlp();
    model.up.freeze();
    const unused = variable([1, 2], [2]);
    const params = new Map([...model.namedParameters(), ['unused', unused]]);
    const { value, grads } = valueAndGrads(() => tf.sum(model.forward(tf.ones([1, 3]))) as tf.Scalar, params);
    expect([...grads.keys()]).toEqual(['down.weight', 'down.bias']);
    tf.dispose([value, ...grads.values(), unused]);
    model.dispose();
  });

  it('reports a tied variable once, under its first path, with the summed gradient', () => {
    const w = variable([1, 2], [2]);
    const params = new Map([
      ['embed.weight', w],
      ['head.weight', w],
    ]);
    const { value, grads } = valueAndGrads(() => tf.add(tf.sum(tf.square(w)), tf.sum(w)) as tf.Scalar, params);
    expect([...grads.keys()]).toEqual(['embed.weight']);
    expect(Array.from((grads.get('embed.weight') as tf.Tensor).dataSync())).toEqual([3, 5]);
    tf.dispose([value, ...grads.values(), w]);
  });

  it('rejects a non-scalar result, a result that uses no parameter, and all-frozen parameters, without leaking', () => {
    const w = variable([1, 2], [2]);
    const params = new Map([['w', w]]);
    const before = tf.memory().numTensors;
    const notScalar = thrown(() => valueAndGrads(() => tf.mul(w, 2) as unknown as tf.Scalar, params));
    expect(thrown(() => valueAndGrads(() => 3 as unknown as tf.Scalar, params)).message).toContain('expected fn to return a scalar tensor; got 3');
    expect(isPosttrainError(notScalar)).toBe(true);
    expect(notScalar.code).toBe('SHAPE_MISMATCH');
    expect(notScalar.message).toContain('expected fn to return a scalar tensor; got shape [2]');
    const constant = tf.scalar(3);
    const unconnected = thrown(() => valueAndGrads(() => tf.mul(constant, 2) as tf.Scalar, params));
    expect(unconnected.code).toBe('INVALID_ARGUMENT');
    expect(unconnected.message).toContain("fn's result does not depend on any of the 1 trainable parameters");
    constant.dispose();
    w.trainable = false;
    const frozen = thrown(() => valueAndGrads(() => tf.sum(w) as tf.Scalar, params));
    expect(frozen.message).toContain('expected at least one trainable parameter; got 1 parameters, none trainable');
    expect(thrown(() => valueAndGrads(() => tf.sum(w) as tf.Scalar, { w } as never)).code).toBe('INVALID_ARGUMENT');
    expect(tf.memory().numTensors).toBe(before);
    w.dispose();
  });
});
