// Helpers for checking one backend's kernels against the cpu backend (tfjs's reference
// implementation). Test support only: not exported from src/index.ts.
import { expect } from 'vitest';
import { tf } from '../tf.js';
import { Rng } from '../rng.js';
import { expectClose } from './assert.js';

/** A tensor read back to plain numbers, so it outlives the backend that made it. */
export interface Values {
  shape: number[];
  values: number[];
  dtype: tf.DataType;
}

/**
 * Reads back and disposes `out`. Reads asynchronously: dataSync() needs OffscreenCanvas on WebGPU,
 * which Node lacks.
 *
 * @example
 * const [y] = await readValues(tf.matMul(a, b)); // y.shape, y.values
 */
export async function readValues(out: tf.Tensor | tf.Tensor[]): Promise<Values[]> {
  const list = Array.isArray(out) ? out : [out];
  const result = await Promise.all(list.map(async (t) => ({ shape: t.shape, values: Array.from(await t.data()), dtype: t.dtype })));
  tf.dispose(list);
  return result;
}

/**
 * A maker of one tensor of seeded standard-normal values, built from JS numbers so every backend
 * sees identical inputs.
 *
 * @example
 * const a = seededNormal([7, 5], 1);
 * const run = () => tf.matMul(a(), a(), false, true);
 */
export function seededNormal(shape: number[], seed: number): () => tf.Tensor {
  const drawn = new Rng(seed).normalTensor(shape);
  const values = Array.from(drawn.dataSync());
  drawn.dispose();
  return () => tf.tensor(values, shape);
}

/**
 * Expects as many tensors as `expected`, each of the same shape and with
 * max|actual − expected| ≤ tol · max(1, max|expected|).
 *
 * @example
 * expectAllClose(await on('wasm', run), await on('cpu', run), 1e-5);
 */
export function expectAllClose(actual: Values[], expected: Values[], tol: number): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => {
    expect(a.shape, `output ${i}: shape`).toEqual(expected[i].shape);
    expectClose(a.values, expected[i].values, tol, `output ${i}`);
  });
}
