import { describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { runQloraComparison } from './qlora.js';

// QLoRA beside LoRA on the SFT demo's reversal task, shortened to 300 steps (the demo runs 600).
// Measured on wasm (seed 0): 300 steps LoRA 69.0% vs QLoRA 66.5% held-out exact match (96%),
// ~55 s on two cores; 600 steps 99.5% vs 97.5% (98%). Peak bytes of a 2-step run: 55.39 vs 59.39 MiB
// (QLoRA's dequantised weights live beside the activations, which dominate at this size).

describe('QLoRA vs LoRA on the SFT demo task', () => {
  it('QLoRA over the NF4 base reaches ≥ 90% of LoRA’s held-out exact match at the same steps and seed', async () => {
    await initBackend('wasm');
    const before = tf.memory().numTensors;
    const lines: string[] = [];
    const { lora, qlora, ratio } = await runQloraComparison({ steps: 300, log: (line) => lines.push(line) });
    console.log(lines.join('\n'));
    expect(tf.memory().numTensors).toBe(before);

    expect(lora.exactMatch).toBeGreaterThan(0.5); // the base reverses nothing (< 10%, examples/sft)
    expect(qlora.exactMatch).toBeGreaterThanOrEqual(0.9 * lora.exactMatch);
    expect(ratio).toBeCloseTo(qlora.exactMatch / lora.exactMatch, 12);
    expect(lora.total).toBe(200);
    expect(qlora.correct).toBe(Math.round(qlora.exactMatch * 200));

    // The same adapters train in both; the NF4 base's linear layers take about 1/8 of float's bytes.
    expect(qlora.trainableParameters).toBe(lora.trainableParameters);
    expect(lora.baseLinearBytes).toBe(294_912); // 73,728 float32 weights
    expect(qlora.baseLinearBytes).toBeLessThan(lora.baseLinearBytes / 7);
    expect(qlora.bytesBefore).toBeLessThan(lora.bytesBefore);
    for (const f of [lora, qlora]) {
      expect(f.peakBytes, f.mode).toBeGreaterThan(f.bytesBefore);
      expect(Number.isFinite(f.stepMs) && f.stepMs > 0, f.mode).toBe(true);
    }
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/^QLoRA\/LoRA: exact match \d+\.\d%, peak memory \d+\.\d%$/);
  }, 240_000);

  it('rejects bad options by name', async () => {
    const failure = async (options: object, message: string) => {
      const error = await runQloraComparison(options).catch((e: unknown) => e);
      expect(isPosttrainError(error)).toBe(true);
      expect((error as Error).message).toContain(message);
    };
    await failure({ steps: 1 }, 'expected steps to be an integer ≥ 2; got 1');
    await failure({ r: 0 }, 'expected r to be a positive integer; got 0');
    await failure({ rank: 8 }, 'unknown option "rank"');
  });
});
