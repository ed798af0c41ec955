// LoRA over a layer type lora knows nothing about, added through applyLora's `dispatchers` option,
// as a quantisation package would add QLoRA: an int8 layer (no dense float weight to merge into)
// and a float layer that hands its weight over for merging.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, AdamW, Linear, Module, Rng, isPosttrainError, valueAndGrads, type LinearLike } from '@posttrain/tensor-core';
import {
  LoraLinear,
  applyLora,
  isLinearLike,
  loadAdapter,
  loraAdapters,
  loraLayers,
  mergeAdapter,
  mergeAndUnload,
  saveAdapter,
  unmergeAdapter,
  withAdaptersDisabled,
  type LoraDispatcher,
} from './index.js';

/** Symmetric per-row int8 quantisation of a Linear: `W ≈ q · scale[:, None]`, q in [-127, 127]. */
class Int8Linear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly qweight: tf.Variable; // [out, in] int32 holding int8 values
  readonly scale: tf.Variable; // [out]

  constructor(linear: Linear) {
    super();
    this.inFeatures = linear.inFeatures;
    this.outFeatures = linear.outFeatures;
    const [q, scale] = tf.tidy(() => {
      const s = tf.abs(linear.weight).max(1).div(127).maximum(1e-12);
      return [tf.round(linear.weight.div(s.expandDims(1))).cast('int32'), s];
    });
    this.qweight = this.registerParameter('qweight', q, { trainable: false });
    this.scale = this.registerParameter('scale', scale, { trainable: false });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const w = this.qweight.cast('float32').mul(this.scale.expandDims(1)) as tf.Tensor2D;
      const y = tf.matMul(x.reshape([-1, this.inFeatures]) as tf.Tensor2D, w, false, true);
      return y.reshape([...x.shape.slice(0, -1), this.outFeatures]);
    });
  }
}

/** A float layer whose weight is named `kernel`, `[out, in]`, with no bias. */
class KernelLinear extends Module implements LinearLike {
  readonly kernel: tf.Variable;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: Rng,
  ) {
    super();
    this.kernel = this.registerParameter('kernel', rng.normalTensor([outFeatures, inFeatures], 0.3));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.matMul(x.reshape([-1, this.inFeatures]) as tf.Tensor2D, this.kernel as tf.Tensor2D, false, true).reshape([...x.shape.slice(0, -1), this.outFeatures]));
  }
}

/** A two-layer MLP with an output head, its linear layers quantised to int8. */
class TinyNet extends Module {
  up: LinearLike;
  down: LinearLike;
  readonly lm_head: Linear;
  constructor(seed: number) {
    super();
    const rng = new Rng(seed);
    this.up = this.registerModule('up', new Int8Linear(new Linear(6, 12, { rng })));
    this.down = this.registerModule('down', new Int8Linear(new Linear(12, 6, { rng })));
    this.lm_head = this.registerModule('lm_head', new Linear(6, 5, { rng }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.lm_head.forward(this.down.forward(tf.relu(this.up.forward(x)))));
  }
}

class Holder extends Module {
  proj: LinearLike;
  constructor(proj: LinearLike) {
    super();
    this.proj = this.registerModule('proj', proj);
  }
}

const seen: string[] = [];
const dispatchInt8: LoraDispatcher = (target, path) => {
  if (!(target instanceof Int8Linear)) return undefined;
  seen.push(path);
  return new LoraLinear(target); // no denseWeight: trains and applies, refuses to merge
};
const dispatchKernel: LoraDispatcher = (target) => (target instanceof KernelLinear ? new LoraLinear(target, { denseWeight: { variable: target.kernel, fanInFanOut: false } }) : undefined);

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.abs(a.sub(b)).max().dataSync()[0]);
const snapshot = (m: Module) => new Map([...m.namedParameters()].map(([k, v]) => [k, Array.from(v.dataSync())]));
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return isPosttrainError(error) ? `${error.code}: ${error.message}` : String(error);
  }
  return 'no error';
};
const dir = mkdtempSync(join(tmpdir(), 'posttrain-lora-custom-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomizeB(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const layer of loraLayers(model).values()) {
    const b = layer.loraB.get('default')!.weight;
    b.assign(rng.normalTensor(b.shape, 0.3));
  }
}

describe('a layer type added through dispatchers', () => {
  it("'all-linear' wraps it (not the head) with the package's dispatcher, and forward is base + scale · B·A", () => {
    seen.length = 0;
    const net = new TinyNet(1);
    expect(isLinearLike(net.up)).toBe(true);
    expect(isLinearLike(net)).toBe(false);
    const report = applyLora(net, { r: 2, alpha: 4, targetModules: 'all-linear', dispatchers: [dispatchInt8], seed: 3 });
    expect(report.targets).toEqual(['up', 'down']);
    expect(seen).toEqual(['up', 'down']);
    const up = net.getModule('up') as LoraLinear;
    expect(up).toBeInstanceOf(LoraLinear);
    expect(net.up).toBe(up); // the field follows replaceModule
    expect(up.baseLayer).toBeInstanceOf(Int8Linear);
    expect(up.canMerge).toBe(false);
    randomizeB(net, 4);
    const x = new Rng(5).normalTensor([3, 6]);
    const a = up.loraA.get('default')!.weight;
    const b = up.loraB.get('default')!.weight;
    const expected = tf.tidy(() => up.baseLayer.forward(x).add(tf.matMul(tf.matMul(x, a, false, true), b, false, true).mul(4 / 2)));
    expect(maxDiff(up.forward(x), expected)).toBeLessThan(1e-5);
    expect(maxDiff(up.forward(x), up.baseLayer.forward(x))).toBeGreaterThan(1e-2);
    tf.dispose([x, expected]);
    net.dispose();
  });

  it('trains only the adapter: the int8 weights stay bit-identical while the loss falls', () => {
    const net = new TinyNet(2);
    const before = snapshot(net);
    applyLora(net, { r: 4, alpha: 8, targetModules: ['up', 'down'], dispatchers: [dispatchInt8], seed: 6 });
    const trainable = net.trainableParameters();
    expect([...trainable.keys()].sort()).toEqual(['down.lora_A.default.weight', 'down.lora_B.default.weight', 'up.lora_A.default.weight', 'up.lora_B.default.weight']);
    const rng = new Rng(7);
    const x = rng.normalTensor([16, 6]);
    const target = rng.normalTensor([16, 5]);
    const optimizer = new AdamW(trainable, { lr: 0.05, weightDecay: 0 });
    const losses: number[] = [];
    let tensors = 0;
    for (let step = 0; step < 60; step++) {
      const { value, grads } = valueAndGrads(() => tf.mean(tf.square(net.forward(x).sub(target))) as tf.Scalar, net.namedParameters());
      expect([...grads.keys()].sort()).toEqual([...trainable.keys()].sort());
      optimizer.step(grads);
      losses.push(value.dataSync()[0]);
      tf.dispose([value, ...grads.values()]);
      if (step === 1) tensors = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect(losses[59]).toBeLessThan(0.5 * losses[0]);
    const after = snapshot(net);
    for (const key of ['up.qweight', 'up.scale', 'down.qweight', 'down.scale', 'lm_head.weight', 'lm_head.bias']) {
      const path = key.startsWith('lm_head') ? key : key.replace('.', '.base_layer.');
      expect(after.get(path), key).toEqual(before.get(key));
    }
    tf.dispose([x, target]);
    optimizer.dispose();
    net.dispose();
  });

  it('merge and PiSSA refuse with NOT_SUPPORTED and change nothing; withAdaptersDisabled still gives the base', () => {
    const net = new TinyNet(3);
    const x = new Rng(8).normalTensor([2, 6]);
    const base = net.forward(x);
    expect(codeOf(() => applyLora(net, { r: 2, targetModules: 'all-linear', init: 'pissa', dispatchers: [dispatchInt8] }))).toMatch(
      /^NOT_SUPPORTED: applyLora: target "up": pissa initialisation needs the base layer's dense weight; the base layer is a Int8Linear/,
    );
    expect(loraLayers(net).size).toBe(0);
    expect(loraAdapters(net).size).toBe(0);
    applyLora(net, { r: 2, targetModules: 'all-linear', dispatchers: [dispatchInt8] });
    randomizeB(net, 9);
    const adapted = net.forward(x);
    const params = snapshot(net);
    expect(codeOf(() => mergeAdapter(net))).toMatch(
      /^NOT_SUPPORTED: mergeAdapter: the LoRA layer at "up" wraps a Int8Linear, which exposes no dense weight to merge into \(and 1 more such layers\); nothing was merged/,
    );
    expect(codeOf(() => mergeAndUnload(net))).toMatch(/^NOT_SUPPORTED: mergeAndUnload/);
    expect(codeOf(() => (net.getModule('down') as LoraLinear).merge())).toMatch(/^NOT_SUPPORTED: LoraLinear: merging an adapter needs/);
    expect(snapshot(net)).toEqual(params);
    expect(loraLayers(net).size).toBe(2);
    expect(maxDiff(net.forward(x), adapted)).toBe(0);
    unmergeAdapter(net); // nothing merged: nothing to do
    expect(
      maxDiff(
        withAdaptersDisabled(net, () => net.forward(x)),
        base,
      ),
    ).toBe(0);
    tf.dispose([x, base, adapted]);
    net.dispose();
  });

  it('a dispatcher that hands over the dense weight gets merge, unmerge and PiSSA', () => {
    const proj = new KernelLinear(7, 5, new Rng(10));
    const net = new Holder(proj);
    const w = proj.kernel.clone();
    applyLora(net, { r: 2, alpha: 3, targetModules: ['proj'], dispatchers: [dispatchKernel], seed: 11 });
    const layer = net.getModule('proj') as LoraLinear;
    expect(layer.canMerge).toBe(true);
    randomizeB(net, 12);
    const x = new Rng(13).normalTensor([4, 7]);
    const y = layer.forward(x);
    mergeAdapter(net);
    expect(maxDiff(layer.forward(x), y)).toBeLessThan(1e-5);
    expect(maxDiff(proj.kernel, w)).toBeGreaterThan(1e-3);
    unmergeAdapter(net);
    expect(maxDiff(proj.kernel, w)).toBeLessThan(1e-6);
    // PiSSA: the adapter takes the top-2 singular part, base + delta rebuilds W
    const pissa = new LoraLinear(new KernelLinear(7, 5, new Rng(14)), {});
    expect(codeOf(() => pissa.addAdapter('p', { r: 2, alpha: 2, dropout: 0, rsLora: false, init: 'pissa' }))).toMatch(/^NOT_SUPPORTED/);
    const kernel = new KernelLinear(7, 5, new Rng(14));
    const original = kernel.kernel.clone();
    const withDense = dispatchKernel(kernel, 'k')!;
    withDense.addAdapter('p', { r: 2, alpha: 2, dropout: 0, rsLora: false, init: 'pissa' }, new Rng(15));
    expect(maxDiff(kernel.kernel.add(withDense.deltaWeight('p')), original)).toBeLessThan(1e-5);
    expect(codeOf(() => new LoraLinear(kernel, { denseWeight: { variable: kernel.kernel, fanInFanOut: true } }))).toMatch(
      /^INVALID_OPTION: LoraLinear: expected denseWeight to be \{ variable: a float32 tf.Variable \[7, 5\], fanInFanOut: true \}; got a float32 variable \[5, 7\]/,
    );
    tf.dispose([w, x, y, original]);
    net.dispose();
    pissa.dispose();
    withDense.dispose();
  });

  it('saves and loads the adapter in PEFT format, the layer type coming back through loadAdapter’s dispatchers', async () => {
    const net = new TinyNet(4);
    applyLora(net, { r: 2, alpha: 4, targetModules: ['up', 'down'], dispatchers: [dispatchInt8] });
    randomizeB(net, 16);
    const out = join(dir, 'int8');
    await saveAdapter(net, out);
    seen.length = 0;
    const fresh = new TinyNet(4);
    await loadAdapter(fresh, out, { dispatchers: [dispatchInt8] });
    expect(seen).toEqual(['up', 'down']);
    expect((fresh.getModule('up') as LoraLinear).baseLayer).toBeInstanceOf(Int8Linear);
    expect(snapshot(fresh)).toEqual(snapshot(net));
    const x = new Rng(17).normalTensor([3, 6]);
    expect(maxDiff(fresh.forward(x), net.forward(x))).toBe(0);
    tf.dispose(x);
    net.dispose();
    fresh.dispose();
  });

  it('rejects bad dispatchers by name', () => {
    const net = new TinyNet(5);
    expect(codeOf(() => applyLora(net, { targetModules: ['up'], dispatchers: 'int8' as never }))).toMatch(/^INVALID_OPTION: applyLora: expected dispatchers to be an array of functions/);
    const other = new LoraLinear(new Linear(6, 12));
    const wrong: LoraDispatcher = () => other;
    expect(codeOf(() => applyLora(net, { targetModules: ['up'], dispatchers: [wrong] }))).toMatch(
      /^INVALID_ARGUMENT: applyLora: a dispatcher answered a LoraLinear around another module for "up"; expected a LoraLinear wrapping that module/,
    );
    other.dispose();
    expect(loraLayers(net).size).toBe(0);
    expect(codeOf(() => new LoraLinear(new Module() as never))).toMatch(/^NOT_SUPPORTED: LoraLinear: expected a LinearLike base layer/);
    net.dispose();
  });
});
