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

describe('fineTune with penalties', () => {
  // One weight and one bias; record r has `units[r]` loss units, each with loss (w·x_r + b − y_r)².
  const xs = [1, -2];
  const ys = [2, 1];
  const units = [1, 3];
  const makeRun = (model: Linear) => {
    const x = tf.tensor2d(xs, [2, 1]);
    const y = tf.tensor2d(ys, [2, 1]);
    const step = (indices: number[]): StepOutput => {
      const rows = tf.tensor1d(indices, 'int32');
      const weights = tf.tensor1d(
        indices.map((i) => units[i]),
        'float32',
      );
      const errors = tf.squeeze(tf.square(tf.sub(model.forward(tf.gather(x, rows)), tf.gather(y, rows))), [1]); // [n]
      return { lossSum: tf.sum(tf.mul(errors, weights)) as tf.Scalar, tokens: tf.sum(weights) as tf.Scalar };
    };
    return { step, dispose: () => tf.dispose([x, y]) };
  };
  const snapshot = (model: Linear) => [...model.trainableParameters().values()].flatMap((p) => Array.from(p.dataSync()));
  /** λ·Σ (θ − a)² with anchors 0.5 for the weight and −1 for the bias. */
  const anchors = { weight: 0.5, bias: -1 } as Record<string, number>;
  const pull = (lambda: number) => (params: ReadonlyMap<string, tf.Variable>) => tf.mul(lambda, tf.addN([...params].map(([name, p]) => tf.sum(tf.square(tf.sub(p, anchors[name])))))) as tf.Scalar;

  it('adds the penalty once per optimizer step: logged loss = task loss + P(θ), P logged under its name, and accumulation changes nothing', async () => {
    manualSeed(4);
    const model = new Linear(1, 1);
    const [w0, b0] = snapshot(model);
    const { step, dispose } = makeRun(model);
    const start = tf.memory().numTensors;
    const counts: number[] = [];
    const one = await fineTune({
      model,
      records: 2,
      makeBatch: (ix) => ix,
      disposeBatch: () => undefined,
      step,
      penalties: { l2_pull: pull(0.7) },
      options: { ...valid, batchSize: 2, lr: 0.05, schedule: 'constant', maxSteps: 5, callbacks: { onStep: () => void counts.push(tf.memory().numTensors) } },
    });
    expect(tf.memory().numTensors).toBe(start); // nothing left behind by the penalty
    expect(new Set(counts).size).toBe(1);
    const taskLoss = (units[0] * (w0 * xs[0] + b0 - ys[0]) ** 2 + units[1] * (w0 * xs[1] + b0 - ys[1]) ** 2) / (units[0] + units[1]);
    const penalty = 0.7 * ((w0 - anchors.weight) ** 2 + (b0 - anchors.bias) ** 2);
    expect(one.history[0].l2_pull).toBeCloseTo(penalty, 5);
    expect(one.history[0].loss).toBeCloseTo(taskLoss + penalty, 5);
    expect(one.history[0].tokens).toBe(4);
    const afterOne = snapshot(model);

    // The same steps as two micro-batches of 1 and 3 units: the same objective, so the same parameters.
    // (Adding P to each micro-batch's mean, or P unscaled to each lossSum, would count it 2× or 2/4×.)
    for (const [p, v] of [...model.trainableParameters().values()].map((p, i) => [p, [w0, b0][i]] as const)) p.assign(tf.fill(p.shape, v));
    const two = await fineTune({
      model,
      records: 2,
      makeBatch: (ix) => ix,
      disposeBatch: () => undefined,
      step,
      penalties: { l2_pull: pull(0.7) },
      options: { ...valid, batchSize: 1, gradientAccumulationSteps: 2, lr: 0.05, schedule: 'constant', maxSteps: 5 },
    });
    expect(two.history[0].l2_pull).toBeCloseTo(penalty, 5);
    expect(two.history[0].loss).toBeCloseTo(taskLoss + penalty, 5);
    snapshot(model).forEach((v, i) => expect(v).toBeCloseTo(afterOne[i], 5));
    dispose();
  });

  it('its gradient pulls the parameters to the anchors (a penalty alone, no task gradient)', async () => {
    manualSeed(5);
    const model = new Linear(1, 1);
    const distance = () => {
      const [w, b] = snapshot(model);
      return Math.hypot(w - anchors.weight, b - anchors.bias);
    };
    const before = distance();
    const x = tf.tensor2d([[1]]);
    const result = await fineTune({
      model,
      records: 1,
      makeBatch: () => 0,
      disposeBatch: () => undefined,
      step: () => ({ lossSum: tf.mul(0, tf.sum(model.forward(x))) as tf.Scalar, sequences: 1 }),
      penalties: { l2_pull: pull(1) },
      options: { ...valid, lr: 0.05, schedule: 'constant', maxSteps: 60 },
    });
    expect(before).toBeGreaterThan(0.5);
    expect(distance()).toBeLessThan(before / 10);
    expect(result.history.at(-1)!.l2_pull).toBeLessThan(result.history[0].l2_pull as number);
    x.dispose();
  });

  it('rejects a penalty that is not an object of functions, a taken name, and a non-scalar value, naming them', async () => {
    const model = new Linear(1, 1);
    const x = tf.tensor2d([[1]]);
    const run = (penalties: unknown) =>
      fineTune({
        model,
        records: 1,
        makeBatch: () => 0,
        disposeBatch: () => undefined,
        step: () => ({ lossSum: tf.sum(model.forward(x)) as tf.Scalar, tokens: 1, metrics: { mine: 1 } }),
        penalties: penalties as Record<string, () => tf.Scalar>,
        options: { ...valid, maxSteps: 1 },
      }).then(
        () => new Error('expected a rejection') as Error & { code?: string },
        (e: Error & { code?: string }) => e,
      );
    const start = tf.memory().numTensors;
    const notObject = await run([() => tf.scalar(1)]);
    expect(notObject.message).toMatch(/^fineTune: expected penalties to be an object of name → \(parameters\) => scalar; got /);
    expect((await run({ loss: () => tf.scalar(1) })).message).toMatch(/expected each penalty name to be a metric key of its own .*; got "loss"/);
    expect((await run({ tokens_per_second: () => tf.scalar(1) })).message).toMatch(/got "tokens_per_second"/);
    expect((await run({ 'a b': () => tf.scalar(1) })).message).toMatch(/got "a b"/);
    expect((await run({ ewc_penalty: 3 })).message).toBe('fineTune: expected penalties.ewc_penalty to be a function (parameters) => scalar; got 3');
    const vector = await run({ ewc_penalty: () => tf.ones([2]) });
    expect(vector.code).toBe('INVALID_ARGUMENT');
    expect(vector.message).toBe('fineTune: expected penalties.ewc_penalty to return a scalar tensor; got a tensor of shape [2]');
    expect(tf.memory().numTensors).toBe(start); // checked before the first step, outside the gradient tape
    // Found inside the tape (an error there leaves the tape's tensors alive: the run is lost anyway).
    expect((await run({ mine: () => tf.scalar(1) })).message).toMatch(/^fineTune: expected each penalty name to differ from the step's metrics; got "mine", which the step also returns/);
    x.dispose();
  });
});
