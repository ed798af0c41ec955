// Building blocks of the fine-tuning trainers (sftTrain, rewardTrain, dpoTrain, ktoTrain): the
// options they pass through to `train`, their optimisation tunables and checks, the learning-rate
// schedule, the seeded shuffle, and AdamW + `train` + dispose.
import { AdamW, PosttrainError, Rng, checkNumber, constantSchedule, cosineSchedule, linearSchedule, type LrSchedule } from '@posttrain/tensor-core';
import { train } from './train.js';
import { defaultTrainOptions, type StepOutput, type TrainableModel, type TrainResult, type TrainTunables } from './options.js';

/**
 * The options of {@link train} that a fine-tuning trainer passes through unchanged, with the
 * trainer's defaults ({@link defaultFineTuneTrainerOptions}).
 *
 * @example
 * ```ts
 * const passThrough: Partial<FineTuneTrainerOptions> = { maxSteps: 200, checkpointDir: 'out/run', logFile: 'out/run/metrics.jsonl' };
 * ```
 */
export type FineTuneTrainerOptions = Pick<
  TrainTunables,
  'gradientAccumulationSteps' | 'maxSteps' | 'epochs' | 'maxGradNorm' | 'evalEvery' | 'callbacks' | 'logFile' | 'progress' | 'progressStream' | 'logEvery' | 'checkpointDir' | 'checkpointEvery' | 'saveTotalLimit' | 'resumeFrom' | 'signal'
>;

/**
 * The defaults of {@link FineTuneTrainerOptions}, taken from {@link defaultTrainOptions}.
 *
 * @example
 * ```ts
 * export const defaultMyOptions = Object.freeze({ ...defaultFineTuneTrainerOptions, lr: 1e-4, batchSize: 8 });
 * ```
 */
export const defaultFineTuneTrainerOptions: Readonly<FineTuneTrainerOptions> = Object.freeze({
  gradientAccumulationSteps: defaultTrainOptions.gradientAccumulationSteps,
  maxSteps: defaultTrainOptions.maxSteps,
  epochs: defaultTrainOptions.epochs,
  maxGradNorm: defaultTrainOptions.maxGradNorm,
  evalEvery: defaultTrainOptions.evalEvery,
  callbacks: defaultTrainOptions.callbacks,
  logFile: defaultTrainOptions.logFile,
  progress: defaultTrainOptions.progress,
  progressStream: defaultTrainOptions.progressStream,
  logEvery: defaultTrainOptions.logEvery,
  checkpointDir: defaultTrainOptions.checkpointDir,
  checkpointEvery: defaultTrainOptions.checkpointEvery,
  saveTotalLimit: defaultTrainOptions.saveTotalLimit,
  resumeFrom: defaultTrainOptions.resumeFrom,
  signal: defaultTrainOptions.signal,
});

/**
 * The AdamW and learning-rate-schedule tunables of a fine-tuning trainer.
 *
 * @example
 * ```ts
 * const optimisation: OptimizerTunables = { lr: 1e-3, weightDecay: 0, schedule: 'cosine', warmupSteps: 10 };
 * ```
 */
export interface OptimizerTunables {
  /** Peak learning rate of AdamW. */
  lr: number;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  /** Learning-rate schedule after warm-up. */
  schedule: 'constant' | 'linear' | 'cosine';
  /** Steps of linear warm-up. */
  warmupSteps: number;
}

/**
 * Range-checks the numeric options every fine-tuning trainer shares (and `schedule`); throws
 * `INVALID_OPTION` naming `owner` and the first bad option. `maxLength`, when present and not null,
 * must be an integer ≥ 2.
 *
 * @example
 * ```ts
 * checkFineTuneOptions('myTrain', { ...defaultFineTuneTrainerOptions, lr: -1, weightDecay: 0, schedule: 'linear', warmupSteps: 0, batchSize: 8, seed: 0 });
 * // throws "myTrain: expected lr to be a number ≥ 0; got -1"
 * ```
 */
export function checkFineTuneOptions(owner: string, o: FineTuneTrainerOptions & OptimizerTunables & { batchSize: number; seed: number; maxLength?: number | null }): void {
  const int = (name: 'batchSize' | 'epochs' | 'warmupSteps' | 'gradientAccumulationSteps' | 'maxSteps' | 'evalEvery' | 'logEvery' | 'saveTotalLimit' | 'maxLength', min: number) =>
    checkNumber(owner, name, o[name], `an integer ≥ ${min}`, (v) => Number.isInteger(v) && v >= min);
  int('batchSize', 1);
  int('epochs', 1);
  int('warmupSteps', 0);
  int('gradientAccumulationSteps', 1);
  if (o.maxSteps !== undefined) int('maxSteps', 1);
  if (o.evalEvery !== undefined) int('evalEvery', 1);
  if (o.logEvery !== undefined) int('logEvery', 1);
  if (o.saveTotalLimit !== undefined) int('saveTotalLimit', 1);
  if (o.maxLength !== undefined && o.maxLength !== null) int('maxLength', 2);
  checkNumber(owner, 'lr', o.lr, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'weightDecay', o.weightDecay, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  if (o.maxGradNorm !== null) checkNumber(owner, 'maxGradNorm', o.maxGradNorm, 'a number > 0 or null', (v) => v > 0);
  if (!['constant', 'linear', 'cosine'].includes(o.schedule)) throw new PosttrainError('INVALID_OPTION', `${owner}: expected schedule to be 'constant', 'linear' or 'cosine'; got ${JSON.stringify(o.schedule)}`);
}

/**
 * The learning-rate schedule of a run: linear warm-up over `warmupSteps`, then constant, or linear
 * or cosine decay to 0 at `totalSteps` (at least `warmupSteps + 1`).
 *
 * @example
 * ```ts
 * const schedule = fineTuneSchedule('linear', 1e-3, 0, 100);
 * schedule(0); // 1e-3
 * schedule(50); // 5e-4
 * ```
 */
export function fineTuneSchedule(kind: OptimizerTunables['schedule'], lr: number, warmupSteps: number, totalSteps: number): LrSchedule {
  if (kind === 'constant') return constantSchedule({ lr, warmupSteps });
  const total = Math.max(totalSteps, warmupSteps + 1);
  return kind === 'linear' ? linearSchedule({ lr, warmupSteps, totalSteps: total }) : cosineSchedule({ lr, warmupSteps, totalSteps: total });
}

/**
 * 0 … n − 1 shuffled (Fisher–Yates) by a generator seeded from (`seed`, `epoch`): one order per
 * pair, so a resumed run rebuilds the order of its epoch.
 *
 * @example
 * ```ts
 * const order = shuffledOrder(0, 0, 5); // a permutation of [0, 1, 2, 3, 4], the same on every call
 * ```
 */
export function shuffledOrder(seed: number, epoch: number, n: number): number[] {
  const rng = new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) | 0);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * One epoch of micro-batches: `count` records in the {@link shuffledOrder} of (`seed`, `epoch`),
 * `batchSize` at a time, each built by `make(indices)` and handed to `dispose` once the consumer
 * moves on (or stops), so a trainer's `batches` option is `(epoch) => shuffledBatches(…)`.
 *
 * @example
 * ```ts
 * const batches = (epoch: number) => shuffledBatches(seed, epoch, examples.length, 8, (ix) => collate(ix.map((i) => examples[i])), (b) => tf.dispose(Object.values(b)));
 * ```
 */
export function* shuffledBatches<B>(seed: number, epoch: number, count: number, batchSize: number, make: (indices: number[]) => B, dispose: (batch: B) => void): Generator<B> {
  const order = shuffledOrder(seed, epoch, count);
  for (let start = 0; start < order.length; start += batchSize) {
    const batch = make(order.slice(start, start + batchSize));
    try {
      yield batch;
    } finally {
      dispose(batch);
    }
  }
}

/**
 * Options of {@link fineTune}.
 *
 * @example
 * ```ts
 * const run: FineTuneOptions<Batch> = { model, batches, step, options: { ...defaultFineTuneTrainerOptions, lr: 1e-3, weightDecay: 0, schedule: 'linear', warmupSteps: 0, seed: 0 }, totalSteps: 100, epochs: 1 };
 * ```
 */
export interface FineTuneOptions<B> {
  /** The model; AdamW trains its `trainableParameters()`. */
  model: TrainableModel;
  /** Micro-batches of an epoch, given its 0-based index. */
  batches: (epoch: number) => Iterable<B> | AsyncIterable<B>;
  /** The loss of one micro-batch, inside the gradient tape. */
  step: (batch: B) => StepOutput;
  /** Held-out metrics; run every `options.evalEvery` steps (default: once, at the end). Undefined: no evaluation. */
  evaluate?: () => Promise<Record<string, number>> | Record<string, number>;
  /** The trainer's resolved options: the pass-through ones, the optimisation ones, the seed and the micro-batch size (recorded in checkpoints). */
  options: FineTuneTrainerOptions & OptimizerTunables & { seed: number; batchSize?: number };
  /** Optimizer steps of the run (the schedule decays to 0 there). */
  totalSteps: number;
  /** Passes over the data to ask {@link train} for. */
  epochs: number;
}

/**
 * AdamW over `model.trainableParameters()` with `options.lr` and `options.weightDecay`, then
 * {@link train} with {@link fineTuneSchedule} and every pass-through option; the optimizer is
 * disposed when the run ends or throws. Returns `train`'s result.
 *
 * @example
 * ```ts
 * const result = await fineTune({ model, batches: (epoch) => batchesOf(shuffledOrder(o.seed, epoch, n)), step, evaluate, options: o, totalSteps, epochs });
 * ```
 */
export async function fineTune<B>({ model, batches, step, evaluate, options: o, totalSteps, epochs }: FineTuneOptions<B>): Promise<TrainResult> {
  const parameters = model.trainableParameters();
  const optimizer = new AdamW(parameters, { lr: o.lr, weightDecay: o.weightDecay });
  try {
    return await train<B>({
      model,
      parameters,
      optimizer,
      batches,
      step,
      maxSteps: o.maxSteps,
      epochs,
      gradientAccumulationSteps: o.gradientAccumulationSteps,
      maxGradNorm: o.maxGradNorm,
      schedule: fineTuneSchedule(o.schedule, o.lr, o.warmupSteps, totalSteps),
      evalEvery: evaluate ? (o.evalEvery ?? Math.max(1, totalSteps)) : undefined,
      evaluate,
      callbacks: o.callbacks,
      logFile: o.logFile,
      progress: o.progress,
      progressStream: o.progressStream,
      logEvery: o.logEvery,
      checkpointDir: o.checkpointDir,
      checkpointEvery: o.checkpointEvery,
      saveTotalLimit: o.saveTotalLimit,
      resumeFrom: o.resumeFrom,
      batchSize: o.batchSize,
      signal: o.signal,
      seed: o.seed,
    });
  } finally {
    optimizer.dispose();
  }
}
