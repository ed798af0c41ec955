// Tensor bookkeeping shared by the test files. Test support only: not exported from src/index.ts.
import { afterEach, beforeEach, expect } from 'vitest';
import { tf } from '../tf.js';

/**
 * Registers hooks that fail any test of the calling file (or describe block) after which
 * `tf.memory().numTensors` differs from before it: every test disposes what it made, so a leak in
 * the code under test fails here, on success or on error.
 *
 * @example
 * expectNoTensorLeaks(); // at the top of a test file
 */
export function expectNoTensorLeaks(): void {
  let before = 0;
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors left behind by the test').toBe(before);
  });
}

/**
 * Disposes every tensor of a name → tensor record.
 *
 * @example
 * disposeAll(await readCheckpoint(source));
 */
export function disposeAll(tensors: Record<string, tf.Tensor>): void {
  for (const t of Object.values(tensors)) t.dispose();
}

/**
 * A variable holding `t`'s values; `t` is disposed (tf.variable shares the data and leaves `t` counted).
 *
 * @example
 * const x = variableOf(tf.ones([2, 3]));
 */
export function variableOf(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t);
  t.dispose();
  return v;
}

/**
 * A float32 variable holding `values` in `shape`, leaving no other tensor behind.
 *
 * @example
 * const w = variable([1, 2], [2]);
 */
export function variable(values: number[], shape: number[]): tf.Variable {
  return variableOf(tf.tensor(values, shape, 'float32'));
}
