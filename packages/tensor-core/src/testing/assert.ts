// Assertion helpers shared by the test files. Test support only: not exported from src/index.ts.
import { expect } from 'vitest';
import { isPosttrainError } from '../errors.js';

/**
 * The error `fn` throws, for assertions on its message and `code`; fails the test if `fn` returns.
 *
 * @example
 * expect(thrown(() => new SGD(params, { lr: -1 })).code).toBe('INVALID_OPTION');
 */
export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected the call to throw');
}

/**
 * Expects `promise` to reject with a posttrain error of `code` whose message contains `message`.
 *
 * @example
 * await expectRejection(fileSource(dir).read('missing.json'), 'FILE_NOT_FOUND', 'expected a file "missing.json"');
 */
export async function expectRejection(promise: Promise<unknown>, code: string, message: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isPosttrainError(error) && error.code, String(error)).toBe(code);
  expect((error as Error).message).toContain(message);
}

/**
 * The largest absolute difference max|actual − expected|, and the bound tol · max(1, max|expected|)
 * it must stay under: `tol` absolute for values of order one and `tol` relative above.
 *
 * @example
 * maxError([1, 2.5], [1, 2], 1e-5); // { error: 0.5, bound: 2e-5 }
 */
export function maxError(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): { error: number; bound: number } {
  let error = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    error = Math.max(error, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return { error, bound: tol * scale };
}

/**
 * Expects as many values as `expected` and max|actual − expected| ≤ tol · max(1, max|expected|)
 * (see {@link maxError}); a NaN in `actual` fails. `what` names the values in the failure message.
 *
 * @example
 * expectClose(y.dataSync(), reference.y, 1e-5, 'forward');
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): { error: number; bound: number } {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { error, bound } = maxError(actual, expected, tol);
  expect(error, `${what}: max|actual − expected| = ${error.toExponential(2)} > ${bound.toExponential(2)}`).toBeLessThanOrEqual(bound);
  return { error, bound };
}
