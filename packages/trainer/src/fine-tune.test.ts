import { beforeAll, describe, expect, it } from 'vitest';
import { Linear, Rng, initBackend, manualSeed, tf } from '@posttrain/tensor-core';
import { checkEvalRecords, checkFineTuneOptions, defaultFineTuneTrainerOptions, fineTune, fineTunePlan, fineTuneSchedule, shuffledOrder, type StepOutput } from './index.js';
import { shuffledBatches } from './fine-tune.js';

beforeAll(async () => {
  await initBackend('cpu');
});

const valid = { ...defaultFineTuneTrainerOptions, lr: 1e-3, weightDecay: 0, schedule: 'linear' as const, warmupSteps: 0, batchSize: 8, seed: 0, maxLength: null, progress: 'none' as const };

describe('defaultFineTuneTrainerOptions', () => {
  it('is frozen and holds exactly the pass-through options', () => {
    expect(Object.isFrozen(defaultFineTuneTrainerOptions)).toBe(true);
    expect(Object.keys(defaultFineTuneTrainerOptions).sort()).toEqual(
      [
        'callbacks',
        'checkpointDir',
        'checkpointEvery',
        'epochs',
        'evalEvery',
        'gradientAccumulationSteps',
        'logEvery',
        'logFile',
        'maxGradNorm',
        'maxSteps',
        'progress',
        'progressStream',
        'resumeFrom',
        'saveTotalLimit',
        'signal',
      ].sort(),
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

  it("is Rng.shuffle's permutation, the one implementation (so the learning proofs' orders are unchanged)", () => {
    for (const [seed, epoch, n] of [
      [0, 0, 16],
      [5, 2, 20],
      [-7, 9, 1000],
      [123456, 0, 64],
    ]) {
      expect(shuffledOrder(seed, epoch, n)).toEqual(new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) | 0).shuffle(Array.from({ length: n }, (_, i) => i)));
    }
  });
});

describe('fineTunePlan', () => {
  it('is the one step plan: micro-batches per epoch, total steps, and the epochs maxSteps needs', () => {
    const o = { batchSize: 8, epochs: 1, maxSteps: undefined, gradientAccumulationSteps: 1 };
    expect(fineTunePlan(100, o)).toEqual({ batchesPerEpoch: 13, totalSteps: 13, epochs: 1 });
    expect(fineTunePlan(100, { ...o, epochs: 3, gradientAccumulationSteps: 2 })).toEqual({ batchesPerEpoch: 13, totalSteps: 20, epochs: 3 });
    expect(fineTunePlan(100, { ...o, maxSteps: 30 })).toEqual({ batchesPerEpoch: 13, totalSteps: 30, epochs: 3 });
    expect(fineTunePlan(100, { ...o, maxSteps: 13, gradientAccumulationSteps: 2 })).toEqual({ batchesPerEpoch: 13, totalSteps: 13, epochs: 2 });
    expect(fineTunePlan(8, { ...o, maxSteps: 1 })).toEqual({ batchesPerEpoch: 1, totalSteps: 1, epochs: 1 });
  });
});

describe('checkEvalRecords', () => {
  const shape = '{ prompt, completion }';
  const thrown = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return error as Error & { code?: string };
    }
    throw new Error('expected a throw');
  };

  it('gives no records for undefined, and the array itself otherwise (empty: no evaluation)', () => {
    const records = [{ prompt: 'a', completion: 'b' }];
    expect(checkEvalRecords('myTrain', undefined, { shape })).toEqual([]);
    expect(checkEvalRecords('myTrain', records, { shape })).toBe(records);
    expect(checkEvalRecords('myTrain', [], { shape, minRecords: 2 })).toEqual([]);
  });

  it('rejects anything else, and too few records, with INVALID_OPTION naming the trainer and the record shape', () => {
    const notArray = thrown(() => checkEvalRecords('myTrain', 'records.jsonl' as unknown as never[], { shape }));
    expect(notArray.code).toBe('INVALID_OPTION');
    expect(notArray.message).toBe('myTrain: expected eval to be an array of { prompt, completion } records; got string');
    expect(thrown(() => checkEvalRecords('myTrain', null as unknown as never[], { shape })).message).toMatch(/got null$/);
    expect(thrown(() => checkEvalRecords('ktoTrain', [{}], { shape: '', minRecords: 2, why: 'each KL pair takes another record' })).message).toBe(
      'ktoTrain: expected eval to be an array of at least 2 records (each KL pair takes another record); got 1 record',
    );
  });
});

describe('shuffledBatches', () => {
  it('slices the shuffled order into batches and disposes each when the consumer moves on or stops', () => {
    const made: number[][] = [];
    const disposed: number[][] = [];
    const all = [
      ...shuffledBatches(
        4,
        1,
        7,
        3,
        (ix) => (made.push(ix), ix),
        (b) => disposed.push(b),
      ),
    ];
    expect(all.map((b) => b.length)).toEqual([3, 3, 1]);
    expect(all.flat()).toEqual(shuffledOrder(4, 1, 7));
    expect(disposed).toEqual(made);
    disposed.length = 0;
    const it = shuffledBatches(
      4,
      1,
      7,
      3,
      (ix) => ix,
      (b) => disposed.push(b),
    );
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
    expect(message({ maxPromptLength: 1, maxCompletionLength: 1 })).toBeUndefined();
    expect(message({ maxPromptLength: null, maxCompletionLength: null })).toBeUndefined();
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
    expect(message({ maxPromptLength: 0 })).toBe('myTrain: expected maxPromptLength to be an integer ≥ 1; got 0');
    expect(message({ maxCompletionLength: 2.5 })).toBe('myTrain: expected maxCompletionLength to be an integer ≥ 1; got 2.5');
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
    const x = tf.tensor2d([
      [1, 0],
      [0, 1],
      [1, 1],
      [2, -1],
    ]);
    const y = tf.tensor2d([[1], [-1], [0], [3]]);
    const step = (): StepOutput => ({ lossSum: tf.sum(tf.square(tf.sub(model.forward(x), y))) as tf.Scalar, tokens: 4 });
    const mse = () => tf.tidy(() => tf.mean(tf.square(tf.sub(model.forward(x), y))).dataSync()[0]);
    const before = mse();
    const start = tf.memory().numTensors;
    let evals = 0;
    const result = await fineTune({
      model,
      records: 1,
      makeBatch: () => 0,
      disposeBatch: () => undefined,
      step,
      evaluate: () => ({ mse: (evals++, mse()) }),
      options: { ...valid, lr: 0.1, schedule: 'constant', maxSteps: 40 },
    });
    expect(tf.memory().numTensors).toBe(start);
    expect(result.history.filter((r) => r.kind === 'train')).toHaveLength(40);
    expect(evals).toBe(1); // evalEvery defaults to once, at the end
    expect(result.evals[0]).toMatchObject({ step: 40, epoch: 40, eval_mse: expect.any(Number) });
    expect(mse()).toBeLessThan(before / 10);
    tf.dispose([x, y]);
  });

  it('owns the step plan and the shuffle: each epoch visits the records in shuffledOrder, batchSize at a time, and frees every batch', async () => {
    manualSeed(2);
    const model = new Linear(1, 1);
    const x = tf.tensor2d([[1]]);
    const visited: number[][] = [];
    const disposed: number[][] = [];
    const step = (indices: number[]): StepOutput => ({ lossSum: tf.mul(tf.sum(tf.square(model.forward(x))), indices.length) as tf.Scalar, sequences: indices.length });
    const run = (options: Partial<typeof valid>) =>
      fineTune({ model, records: 10, makeBatch: (ix) => (visited.push(ix), ix), disposeBatch: (b) => void disposed.push(b), step, options: { ...valid, batchSize: 4, seed: 7, ...options } });
    const result = await run({ epochs: 2 });
    expect(visited.map((b) => b.length)).toEqual([4, 4, 2, 4, 4, 2]);
    expect(visited.slice(0, 3).flat()).toEqual(shuffledOrder(7, 0, 10));
    expect(visited.slice(3).flat()).toEqual(shuffledOrder(7, 1, 10));
    expect(disposed).toEqual(visited);
    expect(result.steps).toBe(fineTunePlan(10, { ...valid, batchSize: 4, epochs: 2 }).totalSteps);
    expect(result.history.map((r) => r.epoch)).toEqual([1 / 3, 2 / 3, 1, 1 + 1 / 3, 1 + 2 / 3, 2]); // TRL's fractional epoch
    expect(result.history.map((r) => r.sequences)).toEqual([4, 4, 2, 4, 4, 2]);
    visited.length = 0;
    const capped = await run({ maxSteps: 4, gradientAccumulationSteps: 2 }); // 8 micro-batches: the plan asks for 3 epochs
    expect(capped.steps).toBe(4);
    expect(visited).toHaveLength(8);
    expect(visited.slice(6).flat()).toEqual(shuffledOrder(7, 2, 10).slice(0, 8));
    x.dispose();
  });
});

describe('fineTune with a batch source', () => {
  it('plans from the source’s batchesPerEpoch (the schedule decays to 0 there) and pulls its batches, with no records', async () => {
    manualSeed(3);
    const model = new Linear(1, 1);
    const x = tf.tensor2d([[1]]);
    const pulled: Array<[number, number]> = [];
    const source = {
      open: function* (epoch: number, start: number) {
        for (let i = start; i < 3; i++) {
          pulled.push([epoch, i]);
          yield i;
        }
      },
    };
    const result = await fineTune<number>({
      model,
      source: { batches: source, batchesPerEpoch: 3 },
      step: () => ({ lossSum: tf.sum(tf.square(model.forward(x))) as tf.Scalar, tokens: 1 }),
      options: { ...valid, epochs: 2, lr: 0.1, schedule: 'linear' },
    });
    expect(pulled).toEqual([
      [0, 0],
      [0, 1],
      [0, 2],
      [1, 0],
      [1, 1],
      [1, 2],
    ]);
    expect(result.history.map((r) => r.learning_rate)).toEqual([0.1, 0.1 * (5 / 6), 0.1 * (4 / 6), 0.1 * (3 / 6), 0.1 * (2 / 6), 0.1 * (1 / 6)].map((v) => expect.closeTo(v, 10)));
    x.dispose();
    const neither = await fineTune({ model, step: () => ({ lossSum: tf.scalar(0), tokens: 1 }), options: valid }).catch((e) => e);
    expect(neither.code).toBe('INVALID_ARGUMENT');
    expect(neither.message).toBe('fineTune: expected either records with makeBatch and disposeBatch, or source; got neither');
  });
});
