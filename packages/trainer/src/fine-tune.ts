// Building blocks of the fine-tuning trainers (sftTrain, rewardTrain, dpoTrain, ktoTrain): the
// options they pass through to `train`, their optimisation tunables and checks (eval records
// included), the learning-rate schedule, and `fineTune`, which owns the step plan, the epochs, the
// seeded shuffle and AdamW + `train` + dispose.
import { AdamW, PosttrainError, Rng, checkNumber, constantSchedule, cosineSchedule, describeValue, linearSchedule, tf, type LrSchedule } from '@posttrain/tensor-core';
import { train } from './train.js';
import { defaultTrainOptions, type BatchSource, type StepContext, type StepOutput, type TrainableModel, type TrainResult, type TrainTunables } from './options.js';

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
  | 'gradientAccumulationSteps'
  | 'maxSteps'
  | 'epochs'
  | 'maxGradNorm'
  | 'evalEvery'
  | 'callbacks'
  | 'logFile'
  | 'progress'
  | 'progressStream'
  | 'logEvery'
  | 'checkpointDir'
  | 'checkpointEvery'
  | 'saveTotalLimit'
  | 'resumeFrom'
  | 'signal'
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
 * `INVALID_OPTION` naming `owner` and the first bad option. The truncation options, when present and
 * not null, must be integers: `maxLength` ≥ 2, `maxPromptLength` and `maxCompletionLength` ≥ 1.
 *
 * @example
 * ```ts
 * checkFineTuneOptions('myTrain', { ...defaultFineTuneTrainerOptions, lr: -1, weightDecay: 0, schedule: 'linear', warmupSteps: 0, batchSize: 8, seed: 0 });
 * // throws "myTrain: expected lr to be a number ≥ 0; got -1"
 * ```
 */
export function checkFineTuneOptions(
  owner: string,
  o: FineTuneTrainerOptions & OptimizerTunables & { batchSize: number; seed: number; maxLength?: number | null; maxPromptLength?: number | null; maxCompletionLength?: number | null },
): void {
  const int = (
    name: 'batchSize' | 'epochs' | 'warmupSteps' | 'gradientAccumulationSteps' | 'maxSteps' | 'evalEvery' | 'logEvery' | 'saveTotalLimit' | 'maxLength' | 'maxPromptLength' | 'maxCompletionLength',
    min: number,
  ) => checkNumber(owner, name, o[name], `an integer ≥ ${min}`, (v) => Number.isInteger(v) && v >= min);
  int('batchSize', 1);
  int('epochs', 1);
  int('warmupSteps', 0);
  int('gradientAccumulationSteps', 1);
  if (o.maxSteps !== undefined) int('maxSteps', 1);
  if (o.evalEvery !== undefined) int('evalEvery', 1);
  if (o.logEvery !== undefined) int('logEvery', 1);
  if (o.saveTotalLimit !== undefined) int('saveTotalLimit', 1);
  if (o.maxLength !== undefined && o.maxLength !== null) int('maxLength', 2);
  if (o.maxPromptLength !== undefined && o.maxPromptLength !== null) int('maxPromptLength', 1);
  if (o.maxCompletionLength !== undefined && o.maxCompletionLength !== null) int('maxCompletionLength', 1);
  checkNumber(owner, 'lr', o.lr, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'weightDecay', o.weightDecay, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  if (o.maxGradNorm !== null) checkNumber(owner, 'maxGradNorm', o.maxGradNorm, 'a number > 0 or null', (v) => v > 0);
  if (!['constant', 'linear', 'cosine'].includes(o.schedule))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected schedule to be 'constant', 'linear' or 'cosine'; got ${JSON.stringify(o.schedule)}`);
}

/**
 * The held-out records of a fine-tuning trainer's `eval` option, checked the same way in every
 * trainer: undefined gives none (no evaluation), an array is returned as it is (empty: no
 * evaluation), anything else, or fewer than `minRecords` records, throws `INVALID_OPTION` naming
 * `owner`, the record `shape` and what was received. The records themselves are checked when
 * tokenized, as the train records are.
 *
 * @example
 * ```ts
 * const heldOut = checkEvalRecords('dpoTrain', o.eval, { shape: '{ prompt, chosen, rejected }' });
 * // eval: 'pairs.jsonl' throws "dpoTrain: expected eval to be an array of { prompt, chosen, rejected } records; got string"
 * ```
 */
export function checkEvalRecords<R>(owner: string, records: readonly R[] | undefined, options: { shape: string; minRecords?: number; why?: string }): readonly R[] {
  const min = options.minRecords ?? 1;
  if (records === undefined) return [];
  if (!Array.isArray(records) || (records.length > 0 && records.length < min)) {
    const got = Array.isArray(records) ? `${records.length} record${records.length === 1 ? '' : 's'}` : records === null ? 'null' : typeof records;
    const what = `${min > 1 ? `at least ${min} ` : ''}${options.shape ? `${options.shape} ` : ''}records${options.why ? ` (${options.why})` : ''}`;
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected eval to be an array of ${what}; got ${got}`);
  }
  return records;
}

/**
 * How a fine-tuning run steps through its records: `batchesPerEpoch` micro-batches of `batchSize`
 * records (the last one smaller), `totalSteps` optimizer steps (`maxSteps`, else every epoch's
 * micro-batches grouped by `gradientAccumulationSteps`) and the `epochs` of data they need.
 *
 * @example
 * ```ts
 * const plan: FineTunePlan = fineTunePlan(100, { batchSize: 8, epochs: 2, maxSteps: undefined, gradientAccumulationSteps: 2 }); // { batchesPerEpoch: 13, totalSteps: 13, epochs: 2 }
 * ```
 */
export interface FineTunePlan {
  /** Micro-batches in one pass over the records. */
  batchesPerEpoch: number;
  /** Optimizer steps of the run (the schedule decays to 0 there). */
  totalSteps: number;
  /** Passes over the data to ask {@link train} for (enough for `maxSteps` when it is set). */
  epochs: number;
}

/**
 * The {@link FineTunePlan} of `records` records under the options every fine-tuning trainer has;
 * {@link fineTune} runs by it, and it is the one place the step count is worked out.
 *
 * @example
 * ```ts
 * fineTunePlan(100, { batchSize: 8, epochs: 1, maxSteps: 30, gradientAccumulationSteps: 1 }); // { batchesPerEpoch: 13, totalSteps: 30, epochs: 3 }
 * ```
 */
export function fineTunePlan(records: number, o: { batchSize: number; epochs: number; maxSteps: number | undefined; gradientAccumulationSteps: number }): FineTunePlan {
  return planFromBatches(Math.ceil(records / o.batchSize), o);
}

/** The {@link FineTunePlan} of `batchesPerEpoch` micro-batches per epoch. */
function planFromBatches(batchesPerEpoch: number, o: { epochs: number; maxSteps: number | undefined; gradientAccumulationSteps: number }): FineTunePlan {
  const totalSteps = o.maxSteps ?? Math.ceil((batchesPerEpoch * o.epochs) / o.gradientAccumulationSteps);
  const epochs = o.maxSteps === undefined ? o.epochs : Math.ceil((o.maxSteps * o.gradientAccumulationSteps) / batchesPerEpoch);
  return { batchesPerEpoch, totalSteps, epochs };
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
 * 0 … n − 1 shuffled by `Rng.shuffle` (Fisher–Yates) with a generator seeded from (`seed`,
 * `epoch`): one order per pair, so a resumed run rebuilds the order of its epoch. This is the order
 * in which {@link fineTune} visits the records of each epoch.
 *
 * @example
 * ```ts
 * const order = shuffledOrder(0, 0, 5); // a permutation of [0, 1, 2, 3, 4], the same on every call
 * ```
 */
export function shuffledOrder(seed: number, epoch: number, n: number): number[] {
  return new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) | 0).shuffle(Array.from({ length: n }, (_, i) => i));
}

/**
 * One epoch of micro-batches: `count` records in the {@link shuffledOrder} of (`seed`, `epoch`),
 * `batchSize` at a time, each built by `make(indices)` and handed to `dispose` once the consumer
 * moves on (or stops). {@link fineTune}'s `batches` for `train`. @internal
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
 * const run: FineTuneOptions<Batch> = {
 *   model,
 *   records: examples.length,
 *   makeBatch: (indices) => collate(indices.map((i) => examples[i])),
 *   disposeBatch: (b) => tf.dispose(Object.values(b)),
 *   step,
 *   options: { ...defaultFineTuneTrainerOptions, lr: 1e-3, weightDecay: 0, schedule: 'linear', warmupSteps: 0, batchSize: 8, seed: 0 },
 * };
 * ```
 */
export interface FineTuneOptions<B> {
  /** The model; AdamW trains its `trainableParameters()`. */
  model: TrainableModel;
  /** How many records (examples, pairs) one epoch visits. Leave out with `source`. */
  records?: number;
  /** The micro-batch of these record indices (at most `options.batchSize`, in the epoch's shuffled order). Leave out with `source`. */
  makeBatch?: (indices: number[]) => B;
  /** Frees a micro-batch once the loop has moved past it (or stopped). Leave out with `source`. */
  disposeBatch?: (batch: B) => void;
  /**
   * Instead of records: the micro-batches themselves, `batchesPerEpoch` per epoch, from a source
   * that makes and frees them (the online RL trainers' rollouts, a seekable source).
   */
  source?: { batches: BatchSource<B>; batchesPerEpoch: number };
  /** The loss of one micro-batch, inside the gradient tape. */
  step: (batch: B) => StepOutput;
  /**
   * Penalties on the parameters added to the loss of every optimizer step, by the name each is
   * logged under (e.g. `ewc_penalty`): each function gets the trainable parameters and returns a
   * scalar P(θ) with gradient, computed inside the gradient tape. The step's objective becomes
   * Σ lossSum / Σ units + Σ P(θ), so a penalty weighs the same whatever the micro-batch sizes or
   * `gradientAccumulationSteps` (see {@link fineTune}). Undefined or `{}`: none.
   */
  penalties?: Readonly<Record<string, (parameters: ReadonlyMap<string, tf.Variable>) => tf.Scalar>>;
  /** Held-out metrics by name (logged as `eval_<name>`); run every `options.evalEvery` steps (default: once, at the end). Undefined: no evaluation. */
  evaluate?: () => Promise<Record<string, number>> | Record<string, number>;
  /** The trainer's resolved options: the pass-through ones, the optimisation ones, the micro-batch size (also recorded in checkpoints) and the seed. */
  options: FineTuneTrainerOptions & OptimizerTunables & { seed: number; batchSize: number };
}

/** Keys of a train record that a penalty's name must not take. */
const RECORD_KEYS = new Set(['kind', 'step', 'elapsed', 'epoch', 'loss', 'learning_rate', 'grad_norm', 'num_tokens', 'path', 'stoppedBy']);

/** Checks the `penalties` of {@link fineTune}: a plain object of loggable names → functions. */
function checkPenalties(penalties: unknown): [string, (parameters: ReadonlyMap<string, tf.Variable>) => tf.Scalar][] {
  if (penalties === undefined) return [];
  if (typeof penalties !== 'object' || penalties === null || Array.isArray(penalties)) {
    throw new PosttrainError('INVALID_ARGUMENT', `fineTune: expected penalties to be an object of name → (parameters) => scalar; got ${describeValue(penalties)}`, {
      help: 'for example penalties: { ewc_penalty: (params) => ewcPenalty(params, anchors, fisher, { lambda }).loss }',
    });
  }
  const entries = Object.entries(penalties);
  for (const [name, fn] of entries) {
    const taken = RECORD_KEYS.has(name) || LOSS_UNIT_KEYS.some((u) => name === u || name === `${u}_per_second`) || name.startsWith('eval_');
    if (!/^[A-Za-z_][\w/.-]*$/.test(name) || taken) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `fineTune: expected each penalty name to be a metric key of its own (letters, digits, _, /, ., -; not a key the trainer logs, nor eval_…); got ${JSON.stringify(name)}`,
        {
          help: 'name it after what it is, e.g. ewc_penalty',
        },
      );
    }
    if (typeof fn !== 'function') {
      throw new PosttrainError('INVALID_ARGUMENT', `fineTune: expected penalties.${name} to be a function (parameters) => scalar; got ${describeValue(fn)}`);
    }
  }
  return entries as [string, (parameters: ReadonlyMap<string, tf.Variable>) => tf.Scalar][];
}

const LOSS_UNIT_KEYS = ['tokens', 'sequences', 'pairs'] as const;

/**
 * Runs each penalty once on the starting parameters, outside the gradient tape (an error thrown
 * inside the tape would leave its saved tensors alive), and checks that it returns a scalar tensor.
 */
function probePenalties(penalties: [string, (parameters: ReadonlyMap<string, tf.Variable>) => tf.Scalar][], parameters: ReadonlyMap<string, tf.Variable>): void {
  for (const [name, fn] of penalties) {
    tf.tidy(() => {
      const penalty = fn(parameters) as unknown;
      if (!(penalty instanceof tf.Tensor) || penalty.size !== 1) {
        throw new PosttrainError(
          'INVALID_ARGUMENT',
          `fineTune: expected penalties.${name} to return a scalar tensor; got ${penalty instanceof tf.Tensor ? `a tensor of shape [${penalty.shape.join(', ')}]` : describeValue(penalty)}`,
        );
      }
    });
  }
}

/**
 * `step` with the penalties added: each micro-batch adds P(θ) × its loss units to its `lossSum` (so
 * that train's division by the step's total units leaves exactly P(θ) in the objective and ∇P(θ) in
 * the gradient, however the units split across micro-batches) and reports P(θ) as a metric (train
 * logs the unit-weighted mean over micro-batches, which is P(θ): the parameters do not move within
 * an optimizer step).
 */
function withPenalties<B>(
  step: (batch: B) => StepOutput,
  penalties: [string, (parameters: ReadonlyMap<string, tf.Variable>) => tf.Scalar][],
  parameters: ReadonlyMap<string, tf.Variable>,
): (batch: B, context: StepContext) => StepOutput {
  if (penalties.length === 0) return step;
  return (batch, context) => {
    const out = (step as (batch: B, context: StepContext) => StepOutput)(batch, context); // the context passes through
    if (!out || typeof out !== 'object') return out; // train names the bad value
    const units = out.tokens ?? out.sequences ?? out.pairs;
    if (units === undefined) return out; // train names the missing unit
    const count = units instanceof tf.Tensor ? tf.cast(units, 'float32') : units;
    let lossSum = out.lossSum;
    const metrics: Record<string, tf.Scalar | number> = { ...out.metrics };
    for (const [name, fn] of penalties) {
      if (name in metrics) {
        throw new PosttrainError('INVALID_ARGUMENT', `fineTune: expected each penalty name to differ from the step's metrics; got ${JSON.stringify(name)}, which the step also returns`, {
          help: 'give the penalty another name',
        });
      }
      const scalar = tf.reshape(fn(parameters), []) as tf.Scalar; // a scalar: probed before the first step
      lossSum = tf.add(lossSum, tf.mul(scalar, count)) as tf.Scalar;
      metrics[name] = scalar;
    }
    return { ...out, lossSum, metrics } as StepOutput;
  };
}

/**
 * The run of a fine-tuning trainer: works out the {@link fineTunePlan} of `records` records, visits
 * each epoch's records in their {@link shuffledOrder} of (`seed`, epoch), `batchSize` at a time
 * through `makeBatch` (freed with `disposeBatch`), and trains with AdamW over
 * `model.trainableParameters()` (`lr`, `weightDecay`), {@link fineTuneSchedule} to the plan's total
 * steps, and every pass-through option of {@link train}; the optimizer is disposed when the run ends
 * or throws. Returns `train`'s result.
 *
 * With `penalties`, every optimizer step minimises Σ lossSum / Σ units + Σ_k P_k(θ): each micro-batch
 * adds P_k(θ) × its units to its `lossSum` (train divides the step's sums by its units), so a penalty
 * is counted once per optimizer step whatever the accumulation, and is computed once per micro-batch.
 * The logged `loss` includes the penalties; each is also logged under its name.
 *
 * @example
 * ```ts
 * const result = await fineTune({ model, records: examples.length, makeBatch, disposeBatch, step, evaluate, options: o });
 * // an L2 pull toward zero, logged as l2_penalty:
 * await fineTune({ model, records: n, makeBatch, disposeBatch, step, options: o, penalties: { l2_penalty: (params) => tf.mul(1e-4, tf.addN([...params.values()].map((p) => tf.sum(tf.square(p))))) as tf.Scalar } });
 * ```
 */
export async function fineTune<B>({ model, records, makeBatch, disposeBatch, source, step, penalties, evaluate, options: o }: FineTuneOptions<B>): Promise<TrainResult> {
  if (!source && (!Number.isInteger(records) || typeof makeBatch !== 'function' || typeof disposeBatch !== 'function')) {
    throw new PosttrainError('INVALID_ARGUMENT', 'fineTune: expected either records with makeBatch and disposeBatch, or source; got neither');
  }
  const penaltyList = checkPenalties(penalties);
  const { batchesPerEpoch, totalSteps, epochs } = source ? planFromBatches(source.batchesPerEpoch, o) : fineTunePlan(records as number, o);
  const batches: BatchSource<B> =
    source?.batches ?? ((epoch: number) => shuffledBatches<B>(o.seed, epoch, records as number, o.batchSize, makeBatch as (indices: number[]) => B, disposeBatch as (batch: B) => void));
  const parameters = model.trainableParameters();
  probePenalties(penaltyList, parameters);
  const optimizer = new AdamW(parameters, { lr: o.lr, weightDecay: o.weightDecay });
  try {
    return await train<B>({
      model,
      parameters,
      optimizer,
      batches,
      step: withPenalties(step, penaltyList, parameters),
      maxSteps: o.maxSteps,
      epochs,
      batchesPerEpoch,
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
