import { beforeAll, describe, expect, it } from 'vitest';
import { Linear, Rng, initBackend, manualSeed, tf } from '@posttrain/tensor-core';
import { checkFineTuneOptions, defaultFineTuneTrainerOptions, fineTune, fineTuneSchedule, shuffledBatches, shuffledOrder, type StepOutput } from './index.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const valid = { ...defaultFineTuneTrainerOptions, lr: 1e-3, weightDecay: 0, schedule: 'linear' as const, warmupSteps: 0, batchSize: 8, seed: 0, maxLength: null, progress: 'none' as const };

describe('defaultFineTuneTrainerOptions', () => {
  it('is frozen and holds exactly the pass-through options', () => {
    expect(Object.isFrozen(defaultFineTuneTrainerOptions)).toBe(true);
    expect(Object.keys(defaultFineTuneTrainerOptions).sort()).toEqual(
      ['callbacks', 'checkpointDir', 'checkpointEvery', 'epochs', 'evalEvery', 'gradientAccumulationSteps', 'logEvery', 'logFile', 'maxGradNorm', 'maxSteps', 'progress', 'progressStream', 'resumeFrom', 'saveTotalLimit', 'signal'].sort(),
    );
    expect(defaultFineTuneTrainerOptions.maxGradNorm).toBe(1);
  });
});

describe('fineTuneSchedule', () => {
  it('warms up, then stays constant or decays linearly or by a cosine to 0 at totalSteps', () => {
    expect([0, 1, 2, 10, 100].map(fineTuneSchedule('constant', 1e-3, 2, 10))).toEqual([0, 5e-4, 1e-3, 1e-3, 1e-3]);
    const linear = fineTuneSchedule('linear', 1e-3, 0, 100);
    expect(linear(0)).toBeCloseTo(1e-3, 12);
    expect(linear(50)).toBeCloseTo(5e-4, 12);
    expect(linear(100)).toBe(0);
    const cosine = fineTuneSchedule('cosine', 2e-3, 2, 12);
    expect(cosine(1)).toBeCloseTo(1e-3, 12);
    expect(cosine(2)).toBeCloseTo(2e-3, 12);
    expect(cosine(7)).toBeCloseTo(1e-3, 12);
    expect(cosine(12)).toBeCloseTo(0, 12);
  });

  it('decays over at least warmupSteps + 1 steps', () => {
    const linear = fineTuneSchedule('linear', 1e-3, 4, 2); // total raised to 5
    expect(linear(4)).toBeCloseTo(1e-3, 12);
    expect(linear(5)).toBe(0);
  });
});

describe('shuffledOrder', () => {
  it('is a permutation of 0 … n − 1, the same for the same (seed, epoch)', () => {
    for (const n of [0, 1, 2, 7, 100]) {
      const order = shuffledOrder(3, 1, n);
      expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(shuffledOrder(3, 1, n)).toEqual(order);
    }
  });

  it('changes with the seed and the epoch', () => {
    const base = shuffledOrder(0, 0, 50);
    expect(shuffledOrder(1, 0, 50)).not.toEqual(base);
    expect(shuffledOrder(0, 1, 50)).not.toEqual(base);
  });

  it('is Fisher–Yates driven by Rng seeded from (seed ^ imul(epoch + 1, 0x9e3779b1))', () => {
    const rng = new Rng((5 ^ Math.imul(3, 0x9e3779b1)) | 0);
    const expected = Array.from({ length: 20 }, (_, i) => i);
    for (let i = 19; i > 0; i--) {
      const j = rng.int(i + 1);
      [expected[i], expected[j]] = [expected[j], expected[i]];
    }
    expect(shuffledOrder(5, 2, 20)).toEqual(expected);
  });
});

describe('shuffledBatches', () => {
  it('slices the shuffled order into batches and disposes each when the consumer moves on or stops', () => {
    const made: number[][] = [];
    const disposed: number[][] = [];
    const all = [...shuffledBatches(4, 1, 7, 3, (ix) => (made.push(ix), ix), (b) => disposed.push(b))];
    expect(all.map((b) => b.length)).toEqual([3, 3, 1]);
    expect(all.flat()).toEqual(shuffledOrder(4, 1, 7));
    expect(disposed).toEqual(made);
    disposed.length = 0;
    const it = shuffledBatches(4, 1, 7, 3, (ix) => ix, (b) => disposed.push(b));
    const first = it.next().value;
    it.return(undefined); // a consumer that stops early still frees the batch it holds
    expect(disposed).toEqual([first]);
  });
});

describe('checkFineTuneOptions', () => {
  const message = (patch: Record<string, unknown>) => {
    try {
      checkFineTuneOptions('myTrain', { ...valid, ...patch } as typeof valid);
    } catch (error) {
      return (error as Error).message;
    }
    return undefined;
  };

  it('accepts valid options', () => {
    expect(message({})).toBeUndefined();
    expect(message({ maxGradNorm: null, maxSteps: 3, maxLength: 2, schedule: 'cosine' })).toBeUndefined();
  });

  it('names the owner, the option, what was expected and what was received', () => {
    expect(message({ batchSize: 0 })).toBe('myTrain: expected batchSize to be an integer ≥ 1; got 0');
    expect(message({ epochs: 1.5 })).toBe('myTrain: expected epochs to be an integer ≥ 1; got 1.5');
    expect(message({ warmupSteps: -1 })).toBe('myTrain: expected warmupSteps to be an integer ≥ 0; got -1');
    expect(message({ gradientAccumulationSteps: 0 })).toBe('myTrain: expected gradientAccumulationSteps to be an integer ≥ 1; got 0');
    expect(message({ maxSteps: 0 })).toBe('myTrain: expected maxSteps to be an integer ≥ 1; got 0');
    expect(message({ evalEvery: 0 })).toBe('myTrain: expected evalEvery to be an integer ≥ 1; got 0');
    expect(message({ logEvery: 0 })).toBe('myTrain: expected logEvery to be an integer ≥ 1; got 0');
    expect(message({ maxLength: 1 })).toBe('myTrain: expected maxLength to be an integer ≥ 2; got 1');
    expect(message({ lr: -1 })).toBe('myTrain: expected lr to be a number ≥ 0; got -1');
    expect(message({ weightDecay: -0.1 })).toBe('myTrain: expected weightDecay to be a number ≥ 0; got -0.1');
    expect(message({ seed: 0.5 })).toBe('myTrain: expected seed to be an integer; got 0.5');
    expect(message({ maxGradNorm: 0 })).toBe('myTrain: expected maxGradNorm to be a number > 0 or null; got 0');
    expect(message({ schedule: 'step' })).toBe(`myTrain: expected schedule to be 'constant', 'linear' or 'cosine'; got "step"`);
  });
});

describe('fineTune', () => {
  it('trains with AdamW, learns, and disposes its optimizer', async () => {
    manualSeed(1);
    const model = new Linear(2, 1);
    const x = tf.tensor2d([[1, 0], [0, 1], [1, 1], [2, -1]]);
    const y = tf.tensor2d([[1], [-1], [0], [3]]);
    const step = (): StepOutput => ({ lossSum: tf.sum(tf.square(tf.sub(model.forward(x), y))) as tf.Scalar, tokens: 4 });
    const mse = () => tf.tidy(() => tf.mean(tf.square(tf.sub(model.forward(x), y))).dataSync()[0]);
    const before = mse();
    const start = tf.memory().numTensors;
    let evals = 0;
    const result = await fineTune({
      model,
      batches: () => [0],
      step,
      evaluate: () => ({ evalMse: (evals++, mse()) }),
      options: { ...valid, lr: 0.1, schedule: 'constant', maxSteps: 40 },
      totalSteps: 40,
      epochs: 40,
    });
    expect(tf.memory().numTensors).toBe(start);
    expect(result.history.filter((r) => r.kind === 'train')).toHaveLength(40);
    expect(evals).toBe(1); // evalEvery defaults to once, at the end
    expect(mse()).toBeLessThan(before / 10);
    tf.dispose([x, y]);
  });
});
