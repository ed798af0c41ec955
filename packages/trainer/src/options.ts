import { PosttrainError, Rng, checkNumber, resolveOptions, type LrSchedule, type Optimizer, tf } from '@posttrain/tensor-core';

/**
 * What the step function sees: where the loop is, and a generator seeded from (`seed`, step,
 * micro-batch) so dropout or sampling repeats exactly after a resume.
 *
 * @example
 * ```ts
 * const step = (batch: Batch, { rng, microBatch }: StepContext): StepOutput => model.loss(batch, { rng });
 * ```
 */
export interface StepContext {
  /** 0-based index of the optimizer step being computed. */
  step: number;
  /** 0-based index of the micro-batch within this optimizer step. */
  microBatch: number;
  /** 0-based pass over the data. */
  epoch: number;
  /** A generator seeded from (`seed`, step, microBatch). */
  rng: Rng;
}

/**
 * What a step's loss is averaged over: label `tokens` (language modelling), whole `sequences`
 * (one loss per example, as KTO) or preference `pairs` (reward models, the DPO family).
 *
 * @example
 * ```ts
 * const unit: LossUnit = 'pairs';
 * ```
 */
export type LossUnit = 'tokens' | 'sequences' | 'pairs';

/** The loss units, in the order errors list them. @internal */
export const LOSS_UNITS: readonly LossUnit[] = Object.freeze(['tokens', 'sequences', 'pairs']);

/** What every {@link StepOutput} holds besides its count. */
interface StepOutputFields {
  /** The sum of the per-unit losses of this micro-batch (a scalar; the gradient is taken of it). */
  lossSum: tf.Scalar;
  /** Non-padding input tokens the micro-batch fed the model (its attention mask's sum); their running total is logged as `num_tokens`. */
  inputTokens?: number | tf.Scalar;
  /** Extra metrics; a step logs their mean over its micro-batches, weighted by each one's count. */
  metrics?: Record<string, tf.Scalar | number>;
}

/**
 * What the step function returns, computed inside the gradient tape: `lossSum` and how many units
 * it sums over, under the key that names the unit ({@link LossUnit}) — exactly one of `tokens`,
 * `sequences` or `pairs` (> 0 over each optimizer step). The logged loss is the step's total
 * `lossSum` / its total count, and the record logs the count and the throughput under the same
 * unit (`tokens` and `tokens_per_second`, `pairs` and `pairs_per_second`, …).
 *
 * @example
 * ```ts
 * const lm: StepOutput = { lossSum: tf.sum(tf.mul(tokenLosses, mask)), tokens: 37, metrics: { mean_token_accuracy: acc } };
 * const preference: StepOutput = { lossSum: tf.sum(pairLosses), pairs: 8, inputTokens: 412 };
 * ```
 */
export type StepOutput =
  | (StepOutputFields & { tokens: number | tf.Scalar; sequences?: never; pairs?: never })
  | (StepOutputFields & { sequences: number | tf.Scalar; tokens?: never; pairs?: never })
  | (StepOutputFields & { pairs: number | tf.Scalar; tokens?: never; sequences?: never });

/**
 * One line of the log: a training step (`kind: 'train'`), an evaluation (`kind: 'eval'`), a
 * checkpoint or the end of the run. Train and eval records use TRL's keys (docs/metrics.md lists
 * them): `loss`, `learning_rate`, `grad_norm`, `epoch`, `num_tokens`, the step's metrics by their
 * names, and on evaluation `eval_` + each metric's name.
 *
 * @example
 * ```ts
 * const record: TrainRecord = { kind: 'train', step: 1, epoch: 0.25, loss: 2.3, learning_rate: 1e-3, grad_norm: 0.8, tokens: 512, tokens_per_second: 900, elapsed: 0.6 };
 * ```
 */
export interface TrainRecord {
  kind: 'train' | 'eval' | 'checkpoint' | 'end';
  /** Optimizer steps done (1-based after the first step). */
  step: number;
  /** Seconds of training so far, including those before a resume. */
  elapsed: number;
  /** Passes over the data done, fractional within an epoch when its length is known (TRL's `epoch`). */
  epoch?: number;
  /** Train: total loss sum / total count of the step (its unit's mean loss). */
  loss?: number;
  /** The learning rate the step used. */
  learning_rate?: number;
  /** The global gradient norm before clipping. */
  grad_norm?: number;
  /** The step's loss units, under the key of its {@link LossUnit}: label tokens, sequences or pairs. */
  tokens?: number;
  sequences?: number;
  pairs?: number;
  /** Loss units per second of the step, named by the unit. */
  tokens_per_second?: number;
  sequences_per_second?: number;
  pairs_per_second?: number;
  /** Running total of input tokens (non-padding) trained on, when the step reports `inputTokens` (TRL's `num_tokens`). */
  num_tokens?: number;
  /** Step metrics, `eval_`-prefixed evaluation results, `path` of a checkpoint. */
  [metric: string]: number | string | undefined;
}

/**
 * Functions called with each logged record; they may be async (the loop awaits them).
 *
 * @example
 * ```ts
 * const callbacks: TrainCallbacks = { onStep: (r) => console.log(r.step, r.loss) };
 * ```
 */
export interface TrainCallbacks {
  onStep?: (record: TrainRecord) => void | Promise<void>;
  onEval?: (record: TrainRecord) => void | Promise<void>;
  onCheckpoint?: (record: TrainRecord) => void | Promise<void>;
  onEnd?: (result: TrainResult) => void | Promise<void>;
}

/**
 * Batches: an iterable (read once per epoch), a function called at the start of each epoch with
 * its 0-based index, so a resumed run can rebuild that epoch's order (a shuffle seeded by it), or a
 * {@link SeekableBatchSource}, which a resumed run opens at the first batch it has not consumed
 * instead of pulling and dropping the ones before it.
 */
export type BatchSource<B> = Iterable<B> | AsyncIterable<B> | ((epoch: number) => Iterable<B> | AsyncIterable<B>) | SeekableBatchSource<B>;

/**
 * A batch source that starts an epoch anywhere: `open(epoch, start)` yields that epoch's batches
 * from the 0-based index `start` on (0 except in the epoch a resumed run continues). For sources
 * whose batches are costly to make and cheap to skip, such as RL rollouts: a resumed run does not
 * generate the rollouts it already trained on just to throw them away.
 *
 * @example
 * ```ts
 * const source: SeekableBatchSource<number[]> = {
 *   open: function* (epoch, start) {
 *     for (let i = start; i < 10; i++) yield [epoch, i];
 *   },
 * };
 * ```
 */
export interface SeekableBatchSource<B> {
  open(epoch: number, start: number): Iterable<B> | AsyncIterable<B>;
}

/**
 * What {@link train} needs of a model (a tensor-core `Module` satisfies it).
 *
 * @example
 * ```ts
 * const model: TrainableModel = new Linear(4, 1);
 * ```
 */
export interface TrainableModel {
  trainableParameters(): Map<string, tf.Variable>;
  train?(on?: boolean): unknown;
}

/**
 * Options of {@link train}: the four required fields, then the tunables of
 * {@link defaultTrainOptions}.
 *
 * @example
 * ```ts
 * const options: TrainOptions<Batch> = { parameters, optimizer, batches, step, maxSteps: 100 };
 * ```
 */
export interface TrainOptions<B> extends Partial<TrainTunables> {
  /** The model being trained, if any: put in training mode before each step (evaluation may switch it off); its trainable parameters are the default `parameters`. */
  model?: TrainableModel;
  /** The parameters to train, by path (default `model.trainableParameters()`). */
  parameters?: ReadonlyMap<string, tf.Variable>;
  optimizer: Optimizer;
  /**
   * The micro-batches, pulled one at a time right before each is used, so an async generator may
   * run rollouts with the current parameters (RL) and dispose what it yielded after the next pull.
   */
  batches: BatchSource<B>;
  /** Computes the loss of one micro-batch; runs inside the gradient tape, synchronously. */
  step: (batch: B, context: StepContext) => StepOutput;
}

/**
 * The tunable options of {@link train}, each with its default in {@link defaultTrainOptions}.
 *
 * @example
 * ```ts
 * const tunables: Partial<TrainTunables> = { gradientAccumulationSteps: 4, maxGradNorm: 1 };
 * ```
 */
export interface TrainTunables {
  /** Micro-batches per optimizer step (default 1). */
  gradientAccumulationSteps: number;
  /** Optimizer steps to run; undefined: until `epochs` passes over the data end. */
  maxSteps: number | undefined;
  /**
   * Micro-batches in one epoch, when the caller knows it (an array source's length is used otherwise):
   * makes the logged `epoch` fractional, as TRL's. Unknown: `epoch` counts the passes completed.
   */
  batchesPerEpoch: number | undefined;
  /** Passes over the data when `maxSteps` is not reached first (default 1; a non-function iterable must be re-iterable, e.g. an array). */
  epochs: number;
  /** Clip the global gradient norm to this; null disables clipping (the norm is still logged). Default 1. */
  maxGradNorm: number | null;
  /** Learning rate of 0-based step `step`, set on the optimizer before each step; undefined keeps `optimizer.lr`. */
  schedule: LrSchedule | undefined;
  /** Evaluate every this many optimizer steps (needs `evaluate`). */
  evalEvery: number | undefined;
  /**
   * Returns held-out metrics by name, given the number of optimizer steps done; the eval record logs
   * each as `eval_` + its name (TRL's prefix; a name that already starts with `eval_` is kept).
   */
  evaluate: ((step: number) => Promise<Record<string, number>> | Record<string, number>) | undefined;
  callbacks: TrainCallbacks;
  /** Append every record as a JSON line to this file (Node). */
  logFile: string | undefined;
  /** 'auto': a bar on a terminal, plain lines otherwise. */
  progress: 'auto' | 'bar' | 'lines' | 'none';
  /** Where progress goes (default process.stderr). */
  progressStream: { write(text: string): unknown; isTTY?: boolean } | undefined;
  /**
   * Plain progress lines every this many steps, plus the first and last (TRL's `logging_steps`);
   * undefined: about 20 lines per run when the step count is known, else every 10 steps. The bar,
   * the callbacks and `logFile` still see every step.
   */
  logEvery: number | undefined;
  /** Write checkpoints under this directory, as `step-<N>/` (Node). */
  checkpointDir: string | undefined;
  /** Write a checkpoint every this many optimizer steps; the last step is always saved when `checkpointDir` is set. */
  checkpointEvery: number | undefined;
  /**
   * Keep only the last this many `step-<N>` checkpoints in `checkpointDir`, deleting older ones after
   * each save (Hugging Face's `save_total_limit`); undefined keeps all.
   */
  saveTotalLimit: number | undefined;
  /** Resume from a checkpoint: a `step-<N>` directory, or a `checkpointDir` (its latest complete checkpoint). */
  resumeFrom: string | undefined;
  /**
   * Examples per micro-batch, when the caller builds batches of a fixed size: recorded in checkpoints,
   * so that resuming with another is refused. `train` itself never reads or splits batches.
   */
  batchSize: number | undefined;
  /** Seed of the per-micro-batch {@link StepContext.rng} (default 0). */
  seed: number;
  /** Stops the run after the current step (a checkpoint is written if `checkpointDir` is set). */
  signal: AbortSignal | undefined;
}

/**
 * The defaults of {@link train}'s tunable options.
 *
 * @example
 * ```ts
 * await train({ ...defaultTrainOptions, parameters, optimizer, batches, step, maxSteps: 10 });
 * ```
 */
export const defaultTrainOptions: Readonly<TrainTunables> = Object.freeze({
  gradientAccumulationSteps: 1,
  maxSteps: undefined,
  epochs: 1,
  batchesPerEpoch: undefined,
  maxGradNorm: 1,
  schedule: undefined,
  evalEvery: undefined,
  evaluate: undefined,
  callbacks: {},
  logFile: undefined,
  progress: 'auto',
  progressStream: undefined,
  logEvery: undefined,
  checkpointDir: undefined,
  checkpointEvery: undefined,
  saveTotalLimit: undefined,
  resumeFrom: undefined,
  batchSize: undefined,
  seed: 0,
  signal: undefined,
});

/**
 * What {@link train} returns.
 *
 * @example
 * ```ts
 * const { history, stoppedBy } = await train(options);
 * ```
 */
export interface TrainResult {
  /** Optimizer steps done, counting those before a resume. */
  steps: number;
  /** The loss of the last step (NaN if none ran). */
  loss: number;
  /** The train records of this run, in order. */
  history: TrainRecord[];
  /** The eval records of this run. */
  evals: TrainRecord[];
  stoppedBy: 'maxSteps' | 'data' | 'aborted';
  elapsed: number;
}

const required = { model: undefined, parameters: undefined, optimizer: undefined, batches: undefined, step: undefined };
const positiveInt = (v: number) => Number.isInteger(v) && v > 0;

/** Validates {@link TrainOptions}, rejecting unknown keys by name. */
export function resolveTrainOptions<B>(options: TrainOptions<B>): Required<Omit<TrainOptions<B>, keyof TrainTunables | 'model'>> & Pick<TrainOptions<B>, 'model'> & TrainTunables {
  const o = resolveOptions('train', options as unknown as Record<string, unknown>, { ...required, ...defaultTrainOptions }) as unknown as TrainOptions<B> & TrainTunables;
  if (o.model !== undefined && typeof o.model?.trainableParameters !== 'function') {
    throw new PosttrainError('INVALID_OPTION', 'train: expected model to have trainableParameters() (a tensor-core Module)');
  }
  if (o.parameters === undefined && o.model) o.parameters = o.model.trainableParameters();
  if (!(o.parameters instanceof Map) || o.parameters.size === 0) {
    throw new PosttrainError('INVALID_OPTION', 'train: expected parameters to be a non-empty Map of path → tf.Variable', { help: 'pass model (a Module) or parameters: model.trainableParameters()' });
  }
  if (!o.optimizer || typeof o.optimizer.step !== 'function') throw new PosttrainError('INVALID_OPTION', 'train: expected optimizer to be an Optimizer (AdamW, SGD)');
  if (typeof o.step !== 'function') throw new PosttrainError('INVALID_OPTION', 'train: expected step to be a function (batch, context) → { lossSum, tokens }');
  const b = o.batches as unknown as Record<string | symbol, unknown> | undefined;
  if (typeof o.batches !== 'function' && !(b && (typeof b[Symbol.iterator] === 'function' || typeof b[Symbol.asyncIterator] === 'function' || typeof b.open === 'function'))) {
    throw new PosttrainError('INVALID_OPTION', 'train: expected batches to be an Iterable, an AsyncIterable, a function returning one or a SeekableBatchSource ({ open(epoch, start) })');
  }
  checkNumber('train', 'gradientAccumulationSteps', o.gradientAccumulationSteps, 'an integer > 0', positiveInt);
  checkNumber('train', 'epochs', o.epochs, 'an integer > 0', positiveInt);
  checkNumber('train', 'seed', o.seed, 'an integer', Number.isInteger);
  for (const key of ['maxSteps', 'batchesPerEpoch', 'evalEvery', 'checkpointEvery', 'logEvery', 'saveTotalLimit', 'batchSize'] as const) {
    if (o[key] !== undefined) checkNumber('train', key, o[key], 'an integer > 0', positiveInt);
  }
  if (o.maxGradNorm !== null) checkNumber('train', 'maxGradNorm', o.maxGradNorm, '> 0 (or null to disable clipping)', (v) => v > 0);
  if (o.evalEvery !== undefined && typeof o.evaluate !== 'function') {
    throw new PosttrainError('INVALID_OPTION', 'train: evalEvery is set but evaluate is not; expected evaluate: (step) => Promise<Record<string, number>>');
  }
  if (!['auto', 'bar', 'lines', 'none'].includes(o.progress)) {
    throw new PosttrainError('INVALID_OPTION', `train: expected progress to be 'auto', 'bar', 'lines' or 'none'; got ${JSON.stringify(o.progress)}`);
  }
  for (const key of ['checkpointEvery', 'saveTotalLimit'] as const) {
    if (o[key] !== undefined && o.checkpointDir === undefined) {
      throw new PosttrainError('INVALID_OPTION', `train: ${key} is set but checkpointDir is not`, { help: 'set checkpointDir to the directory to write step-<N>/ checkpoints into' });
    }
  }
  return o as Required<Omit<TrainOptions<B>, keyof TrainTunables | 'model'>> & Pick<TrainOptions<B>, 'model'> & TrainTunables;
}
