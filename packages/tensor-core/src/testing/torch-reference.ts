// The PyTorch layer reference: scripts/reference/layers_ref.py writes fixtures/layers_ref.json
// (inputs drawn in float32, reference computed in float64). Each case records the forward output
// and the gradients of loss = (y * upstream).sum() w.r.t. the input and every parameter.
// Test support only: not exported from src/index.ts.
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { tf } from '../tf.js';
import type { Module } from '../module.js';
import { expectClose } from './assert.js';
import { variableOf } from './tensors.js';

/**
 * Tolerance, for forward outputs, the loss and gradients alike: max|ours − ref| ≤ 1e-5 · max(1, max|ref|),
 * i.e. 1e-5 absolute for values of order one and 1e-5 relative above.
 */
export const TORCH_TOLERANCE = 1e-5;

/** A tensor as the fixture stores it: row-major data. */
export interface Encoded {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: number[];
}

/** One layer's case: its inputs (`x` or `ids`), weights, upstream gradient, output and gradients. */
export interface ReferenceCase {
  inputs: Record<string, Encoded>;
  params: Record<string, Encoded>;
  upstream: Encoded;
  output: Encoded;
  grads: Record<string, Encoded>;
}

/** fixtures/layers_ref.json; each case also carries the layer's settings (`inFeatures`, `eps`, …). */
export const layersReference = JSON.parse(readFileSync(new URL('../../fixtures/layers_ref.json', import.meta.url), 'utf8')) as {
  cases: Record<string, ReferenceCase & Record<string, unknown>>;
};

/**
 * A new tensor from a fixture entry.
 *
 * @example
 * const x = decode(layersReference.cases.linear_bias.inputs.x); // [B, T, in]
 */
export function decode(e: Encoded): tf.Tensor {
  return tf.tensor(e.data, e.shape, e.dtype);
}

/**
 * Expects `actual` to have the reference's shape and values within {@link TORCH_TOLERANCE}.
 *
 * @example
 * compareWithTorch(layer.forward(x), c.output, 'forward');
 */
export function compareWithTorch(actual: tf.Tensor, ref: Encoded, what: string): { error: number; bound: number } {
  expect(actual.shape, `${what}: shape`).toEqual(ref.shape);
  return expectClose(actual.dataSync(), ref.data, TORCH_TOLERANCE, `${what} vs torch`);
}

/** A module with a one-tensor forward: the layers the reference covers. */
export interface Forward extends Module {
  forward(x: tf.Tensor): tf.Tensor;
}

/**
 * Loads the case's weights through loadStateDict, runs forward and the gradient of
 * (y · upstream).sum() with tf.variableGrads, and compares everything with PyTorch within
 * {@link TORCH_TOLERANCE}. `input` names the input key of the case: a float `x` (its gradient is
 * checked too) or int32 `ids`. Leaves no tensor behind.
 *
 * @example
 * checkAgainstTorch(new Linear(4, 3), layersReference.cases.linear_bias, 'x');
 */
export function checkAgainstTorch(layer: Forward, c: ReferenceCase, input: 'x' | 'ids'): void {
  const params = Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, decode(v)]));
  expect(layer.loadStateDict(params)).toEqual({ missingKeys: [], unexpectedKeys: [] });
  tf.dispose(Object.values(params));

  const x = input === 'x' ? variableOf(decode(c.inputs.x)) : decode(c.inputs.ids);
  const upstream = decode(c.upstream);
  const y = layer.forward(x);
  compareWithTorch(y, c.output, 'forward');

  const named = [...layer.namedParameters()];
  const varList = [...(x instanceof tf.Variable ? [x] : []), ...named.map(([, p]) => p)];
  const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tf.mul(layer.forward(x), upstream)) as tf.Scalar), varList);
  let refLoss = 0;
  for (let i = 0; i < c.output.data.length; i++) refLoss += c.output.data[i] * c.upstream.data[i];
  expectClose(value.dataSync(), [refLoss], TORCH_TOLERANCE, 'loss vs torch');

  if (x instanceof tf.Variable) compareWithTorch(grads[x.name], c.grads.x, 'grad x');
  expect(
    Object.keys(c.grads)
      .filter((k) => k !== 'x')
      .sort(),
  ).toEqual(named.map(([k]) => k).sort());
  for (const [path, p] of named) compareWithTorch(grads[p.name], c.grads[path], `grad ${path}`);
  tf.dispose([x, upstream, y, value, ...Object.values(grads)]);
}
