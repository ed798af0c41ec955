import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultQatFigureOptions, qatFigure } from './qat.js';

// The QAT figure on a CI budget: 20 extra steps of 8 windows at lr 2e-4 per arm, perplexity on the first
// 8,192 held-out bytes (the full figure, 200 steps of 16 at lr 1e-4 on all 111,540, is in qat.ts's docs).

beforeAll(async () => {
  await initBackend('wasm');
});

describe('qatFigure', () => {
  it('QAT (prepareQat → 20 steps → convertQat) recovers ≥ 30% of the int4-g128 gap of float training + round-to-nearest', async () => {
    const before = tf.memory().numTensors;
    const fig = await qatFigure({ steps: 20, lr: 2e-4, batchSize: 8, heldOutBytes: 8192 });
    expect(tf.memory().numTensors).toBe(before);
    expect(fig.tokens).toBe(8192 - 8192 / 128);
    // the untouched LM on this slice: 4.9567 float, 5.0089 int4 round-to-nearest
    expect(fig.base).toBeCloseTo(4.9567, 3);
    expect(fig.baseQuantized).toBeGreaterThan(fig.base);
    // arm A: float 5.0204, round-to-nearest 5.0913; arm B: 5.0629 → 40.1% recovered (wasm)
    expect(fig.floatTunedQuantized).toBeGreaterThan(fig.floatTuned);
    expect(fig.qat).toBeLessThan(fig.floatTunedQuantized);
    expect(fig.recovered).toBeGreaterThanOrEqual(0.3);
    expect(fig.recovered).toBeLessThan(1);
    expect(Number.isFinite(fig.trainLoss.float) && Number.isFinite(fig.trainLoss.qat)).toBe(true);
  }, 120_000);

  it('rejects bad options by name', async () => {
    await expect(qatFigure({ steps: 0 })).rejects.toThrow(/steps/);
    await expect(qatFigure({ heldOutBytes: 10 })).rejects.toThrow(/expected heldOutBytes to be null or an integer above 128; got 10/);
    await expect(qatFigure({ stepz: 1 } as never)).rejects.toThrow(/stepz/);
    await expect(qatFigure({ lr: -1 })).rejects.toSatisfy(isPosttrainError);
    expect(defaultQatFigureOptions).toMatchObject({ steps: 200, lr: 1e-4, batchSize: 16, heldOutBytes: null });
  });
});
