// Assertion and forward-pass helpers shared by this package's test files. Test support only: not
// exported from src/index.ts.
import { expect } from 'vitest';
import { isPosttrainError, tf, type CausalLM, type ForwardOptions } from '@posttrain/tensor-core';

/** The error `fn` throws, for assertions on its message and `code`; fails the test if `fn` returns. */
export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected the call to throw');
}

/** The error `promise` rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  let error: unknown;
  let rejected = false;
  await promise.then(
    () => undefined,
    (e: unknown) => {
      rejected = true;
      error = e;
    },
  );
  if (!rejected) throw new Error('expected the promise to reject');
  return error as Error & { code?: string };
}

/** Expects a posttrain error of `code` whose message contains every one of `parts`. */
export function expectPosttrainError(error: unknown, code: string, ...parts: string[]): void {
  expect(isPosttrainError(error), String(error)).toBe(true);
  expect((error as { code?: string }).code, String(error)).toBe(code);
  for (const part of parts) expect((error as Error).message).toContain(part);
}

/**
 * Expects as many values as `expected` and max|actual − expected| ≤ tol · max(1, max|expected|); a
 * NaN in `actual` fails. `what` names the values in the failure message.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let error = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    error = Number.isNaN(d) ? Infinity : Math.max(error, d);
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  expect(error, `${what}: max|actual − expected| = ${error.toExponential(2)} > ${(tol * scale).toExponential(2)}`).toBeLessThanOrEqual(tol * scale);
}

/** max|a − b| over two equally long arrays. */
export function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Nested number rows as an int32 `[B, T]` tensor. */
export function int2d(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');
}

/** Options of {@link logitsOf}, as plain arrays. */
export interface ForwardArrays {
  attentionMask?: number[][];
  positionIds?: number[][];
  segmentIds?: number[][];
}

/**
 * Runs `model.forward` on `rows` and returns the logits as `[B][T][V]` arrays; every tensor it
 * made is disposed.
 */
export function logitsOf(model: CausalLM, rows: number[][], arrays: ForwardArrays = {}): number[][][] {
  const ids = int2d(rows);
  const options: ForwardOptions = {};
  if (arrays.attentionMask) options.attentionMask = int2d(arrays.attentionMask);
  if (arrays.positionIds) options.positionIds = int2d(arrays.positionIds);
  if (arrays.segmentIds) options.segmentIds = int2d(arrays.segmentIds);
  const out = model.forward(ids, options);
  const logits = out.logits.arraySync() as number[][][];
  tf.dispose([ids, out.logits, out.hidden, options.attentionMask, options.positionIds, options.segmentIds].filter((t): t is tf.Tensor => t !== undefined));
  out.cache?.dispose();
  return logits;
}
