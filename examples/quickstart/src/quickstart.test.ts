import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { quickstart } from './quickstart.js';

describe('quickstart example', () => {
  it('learns the sequence on wasm: loss falls and next-token accuracy reaches 100%', async () => {
    const before = tf.memory().numTensors;
    const result = await quickstart({ steps: 60, backend: 'wasm' });
    expect(result.backend).toBe('wasm');
    expect(result.firstLoss).toBeGreaterThan(2); // ≈ ln 16 = 2.77 at the start
    expect(result.lastLoss).toBeLessThan(0.1);
    expect(result.accuracy).toBe(1);
    expect(tf.memory().numTensors).toBe(before);
  });
});
