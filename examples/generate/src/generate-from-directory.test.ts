import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { generateFromDirectory } from './generate-from-directory.js';

const llama = fileURLToPath(new URL('../../../packages/models/fixtures/llama/', import.meta.url));

describe('generate example', () => {
  it('continues left-padded prompts from a Hugging Face directory, reproducibly, without leaks', async () => {
    const before = tf.memory().numTensors;
    const prompts = [[5, 17, 33], [8, 9, 10, 11, 12]];
    const first = await generateFromDirectory(llama, prompts, { backend: 'wasm', maxNewTokens: 6, seed: 7 });
    const again = await generateFromDirectory(llama, prompts, { backend: 'wasm', maxNewTokens: 6, seed: 7 });
    expect(first).toEqual(again);
    for (const c of first) {
      expect(c.tokens.length).toBeGreaterThan(0);
      expect(c.tokens.length).toBeLessThanOrEqual(6);
      expect(c.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < 96)).toBe(true);
      expect(c.finishReason === 'length' ? c.tokens.length === 6 : c.tokens.at(-1) === 2).toBe(true);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
