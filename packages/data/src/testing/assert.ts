import { expect } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';

/**
 * The PosttrainError `fn` throws; fails the test if it returns or throws anything else.
 *
 * @example
 * ```ts
 * expect(thrown(() => additionTask.generate(0, -1)).code).toBe('INVALID_ARGUMENT');
 * ```
 */
export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e), String(e)).toBe(true);
    return e as Error & { code?: string };
  }
  throw new Error('expected the call to throw');
}
