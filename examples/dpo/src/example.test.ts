import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { runExample } from './example.js';

describe('the DPO example', () => {
  // The learning proof of issue 7 (DPO part): from an SFT checkpoint of the shipped tiny base, DPO
  // with a fresh LoRA and the adapters-disabled reference, held-out pairs and prompts.
  it('SFT (150 LoRA steps) → DPO (150 steps, adapters-disabled reference): held-out rewards/accuracies ≥ 0.9 and exact match 10 points above the SFT start', async () => {
    await initBackend('wasm');
    const tensorsBefore = tf.memory().numTensors;
    const lines: string[] = [];
    const { sft, dpo, seconds } = await runExample({ log: (line) => lines.push(line) });
    const { before, after } = dpo;
    console.log(
      `dpo example: SFT ${sft.steps} steps → held-out exact match ${before.exactMatch.accuracy}; DPO ${dpo.train.steps} steps (${dpo.train.elapsed.toFixed(1)} s) → exact match ${after.exactMatch.accuracy}, ` +
        `eval rewards/accuracies ${dpo.rewardAccuracy}, margins ${dpo.rewardMargin.toFixed(3)}, log-prob preference ${before.preferenceAccuracy} → ${after.preferenceAccuracy}; ${seconds.toFixed(1)} s in all`,
    );
    expect(sft.steps).toBe(150);
    expect(before.exactMatch.accuracy).toBeLessThan(0.5); // partly trained: well below the 99.5% of 600 steps
    expect(dpo.train.reference).toBe('adapters disabled');
    expect(dpo.train.history[0].loss! - (Math.log(2) + Number(dpo.train.history[0].nll_loss))).toBeCloseTo(0, 5); // the policy starts as its reference
    expect(dpo.rewardAccuracy).toBeGreaterThanOrEqual(0.9); // measured 0.975 (from 0: every reward is 0 at the start)
    expect(dpo.rewardMargin).toBeGreaterThan(0.5); // measured 0.76
    expect(after.exactMatch.accuracy).toBeGreaterThanOrEqual(before.exactMatch.accuracy + 0.1); // measured 25.0% → 41.0%
    expect(after.preferenceAccuracy).toBeGreaterThanOrEqual(before.preferenceAccuracy);
    expect(lines.some((l) => l.startsWith('before DPO: held-out exact match'))).toBe(true);
    expect(lines.some((l) => l.startsWith('after DPO'))).toBe(true);
    expect(seconds).toBeLessThan(60);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});
