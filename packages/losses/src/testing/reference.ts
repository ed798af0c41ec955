// The PyTorch references of @posttrain/losses: fixtures written by scripts/reference/losses_*.py
// (format in scripts/reference/losses_common.py). Test support only: not exported from src/index.ts.
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, expect } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';

/**
 * The tolerance of every value and gradient: max|ours − torch| ≤ 1e-5 · max(1, max|torch|) per
 * tensor, i.e. 1e-5 relative for values above one and 1e-5 absolute below (float32 inputs,
 * float64 references).
 */
export const TOLERANCE = 1e-5;

/** The backends every reference test runs on. */
export const BACKENDS = ['cpu', 'wasm'] as const;

export interface Encoded {
  shape: number[];
  dtype: 'float32' | 'int32' | 'bool';
  data: number[];
}

export interface ReferenceCase {
  fn: string;
  options: Record<string, unknown>;
  inputs: Record<string, Encoded>;
  outputs: Record<string, Encoded>;
  grads: Record<string, Encoded>;
}

/** The cases of packages/losses/fixtures/<name>.json. */
export function loadReference(name: string): Record<string, ReferenceCase> {
  const text = readFileSync(new URL(`../../fixtures/${name}.json`, import.meta.url), 'utf8');
  return (JSON.parse(text) as { cases: Record<string, ReferenceCase> }).cases;
}

/** A new tensor from a fixture entry. */
export function decode(e: Encoded): tf.Tensor {
  return e.dtype === 'bool'
    ? tf.tensor(
        e.data.map((v) => v !== 0),
        e.shape,
        'bool',
      )
    : tf.tensor(e.data, e.shape, e.dtype);
}

/** Expects max|actual − expected| ≤ TOLERANCE · max(1, max|expected|), shapes equal; NaN fails. */
export function expectClose(actual: tf.Tensor, expected: Encoded, what: string, tolerance = TOLERANCE): void {
  expect(actual.shape, `${what}: shape`).toEqual(expected.shape);
  const values = actual.dataSync();
  let error = 0;
  let scale = 1;
  for (let i = 0; i < expected.data.length; i++) {
    error = Math.max(error, Number.isNaN(values[i]) ? Infinity : Math.abs(values[i] - expected.data[i]));
    scale = Math.max(scale, Math.abs(expected.data[i]));
  }
  expect(error, `${what}: max|ours − torch| = ${error.toExponential(2)} > ${(tolerance * scale).toExponential(2)}`).toBeLessThanOrEqual(tolerance * scale);
}

/**
 * Runs `fn` on the case's inputs and checks every output the fixture has (by name) and the
 * gradient of `outputs.loss` with respect to every input in `grads`; no tensor may be left behind.
 * `fn` receives the decoded inputs and the case's options and returns named tensors.
 */
export function checkCase(c: ReferenceCase, fn: (inputs: Record<string, tf.Tensor>, options: Record<string, unknown>) => Record<string, tf.Tensor | unknown>, tolerance = TOLERANCE): void {
  const before = tf.memory().numTensors;
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, decode(v)]));
  const out = fn(inputs, c.options);
  for (const [name, expected] of Object.entries(c.outputs)) {
    const actual = out[name];
    expect(actual instanceof tf.Tensor, `output ${name} is a tensor`).toBe(true);
    expectClose(actual as tf.Tensor, expected, `${c.fn} ${name}`, tolerance);
  }
  tf.dispose(Object.values(out).filter((v): v is tf.Tensor => v instanceof tf.Tensor));
  const names = Object.keys(c.grads);
  if (names.length > 0) {
    const grads = tf.grads((...xs: tf.Tensor[]) => {
      const given = { ...inputs, ...Object.fromEntries(names.map((n, i) => [n, xs[i]])) };
      return fn(given, c.options).loss as tf.Scalar; // the forward runs in a tidy that keeps only this
    })(names.map((n) => inputs[n]));
    names.forEach((n, i) => expectClose(grads[i], c.grads[n], `${c.fn} d loss / d ${n}`, tolerance));
    tf.dispose(grads);
  }
  tf.dispose(Object.values(inputs));
  expect(tf.memory().numTensors, `${c.fn}: tensors left behind`).toBe(before);
}

/**
 * Inside a `describe`: switches to `backend` before its tests (back to cpu after), and fails any
 * test that leaves a tensor behind.
 */
export function useBackend(backend: (typeof BACKENDS)[number] | 'webgpu'): void {
  let before = 0;
  beforeAll(async () => {
    await initBackend(backend);
  });
  afterAll(async () => {
    await initBackend('cpu');
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors left behind by the test').toBe(before);
  });
}

/** The error `fn` throws; fails the test when it throws nothing. */
export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

/** Expects `fn` to throw a PosttrainError with exactly this code and message. */
export function expectError(fn: () => unknown, code: string, message: string): void {
  const error = thrown(fn);
  expect(isPosttrainError(error) && error.code, String(error)).toBe(code);
  expect(error.message).toBe(message);
}
