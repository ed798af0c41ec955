import { afterEach, describe, expect, it } from 'vitest';
import { type CheckpointQuantizer, checkpointQuantizer, checkpointQuantizers, registerCheckpointQuantizer, unregisterCheckpointQuantizer } from './checkpoint-quantizers.js';
import { isPosttrainError } from './errors.js';

const fake = (method: string): CheckpointQuantizer => ({
  method,
  prepareLoad: async () => ({ layers: [], convert: async (tensors) => ({ tensors, created: [] }) }),
  describeSave: async () => null,
});

afterEach(() => {
  unregisterCheckpointQuantizer('test-a');
  unregisterCheckpointQuantizer('test-b');
});

describe('checkpoint quantizer registry', () => {
  it('finds a quantizer by method, lists them in registration order, and replaces one registered twice', () => {
    expect(checkpointQuantizer('test-a')).toBeUndefined();
    const a = registerCheckpointQuantizer(fake('test-a'));
    registerCheckpointQuantizer(fake('test-b'));
    expect(checkpointQuantizer('test-a')).toBe(a);
    const methods = checkpointQuantizers().map((q) => q.method);
    expect(methods.indexOf('test-a')).toBeLessThan(methods.indexOf('test-b'));
    const again = registerCheckpointQuantizer(fake('test-a'));
    expect(checkpointQuantizer('test-a')).toBe(again);
    expect(checkpointQuantizers().filter((q) => q.method === 'test-a')).toHaveLength(1);
    expect(unregisterCheckpointQuantizer('test-a')).toBe(true);
    expect(unregisterCheckpointQuantizer('test-a')).toBe(false);
  });

  it('is shared through globalThis, so two copies of the package see one registry', () => {
    registerCheckpointQuantizer(fake('test-a'));
    const shared = (globalThis as unknown as Record<symbol, Map<string, CheckpointQuantizer>>)[Symbol.for('posttrain.checkpointQuantizers')];
    expect(shared.get('test-a')?.method).toBe('test-a');
  });

  it('rejects something that is not a quantizer, naming what it got', () => {
    let error: unknown;
    try {
      registerCheckpointQuantizer({ method: '', prepareLoad: () => undefined } as unknown as CheckpointQuantizer);
    } catch (e) {
      error = e;
    }
    expect(isPosttrainError(error)).toBe(true);
    expect((error as Error).message).toMatch(/registerCheckpointQuantizer: expected \{ method: string, prepareLoad\(\), describeSave\(\) \}; got/);
  });
});
