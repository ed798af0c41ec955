// What dpoTrain and ktoTrain share: the trainer's pass-through options, the optimisation tunables,
// their checks, the learning-rate schedule and the seeded shuffle.
import { PosttrainError, Rng, checkNumber, constantSchedule, cosineSchedule, linearSchedule, type CausalLM, type LrSchedule } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { LoraOptions } from '@posttrain/lora';
import { defaultTrainOptions, type TrainTunables } from '@posttrain/trainer';

/**
 * The trainer's options that {@link dpoTrain} and {@link ktoTrain} pass through unchanged, with the
 * trainer's defaults (`@posttrain/trainer`).
 *
 * @example
 * ```ts
 * const passThrough: Partial<PreferenceTrainerOptions> = { maxSteps: 200, checkpointDir: 'out/dpo', logFile: 'out/dpo/metrics.jsonl' };
 * ```
 */
export type PreferenceTrainerOptions = Pick<
  TrainTunables,
  'gradientAccumulationSteps' | 'maxSteps' | 'epochs' | 'maxGradNorm' | 'evalEvery' | 'callbacks' | 'logFile' | 'progress' | 'progressStream' | 'logEvery' | 'checkpointDir' | 'checkpointEvery' | 'resumeFrom' | 'signal'
>;

/**
 * The optimisation tunables shared by {@link dpoTrain} and {@link ktoTrain}.
 *
 * @example
 * ```ts
 * const shared: Partial<OptimizationTunables> = { lora: { r: 16, alpha: 32 }, lr: 1e-3, batchSize: 16, schedule: 'cosine' };
 * ```
 */
export interface OptimizationTunables extends PreferenceTrainerOptions {
  /** LoRA options (`applyLora`; `targetModules` defaults to 'all-linear'): only the adapters train. `false`: train the model's trainable parameters as they are. */
  lora: Partial<LoraOptions> | false;
  /** Records per micro-batch: preference pairs for dpoTrain (a [2B, T] forward), examples for ktoTrain. */
  batchSize: number;
  /** Peak learning rate of AdamW (default 1e-6, TRL's DPOConfig and KTOConfig default, for full fine-tuning of real models; LoRA on tiny models wants ~1e-3). */
  lr: number;
  /** AdamW's decoupled weight decay (default 0). */
  weightDecay: number;
  /** Learning-rate schedule after warm-up (default 'linear' to 0, as TRL). */
  schedule: 'constant' | 'linear' | 'cosine';
  /** Steps of linear warm-up (default 0). */
  warmupSteps: number;
  /** Longest prompt + completion in tokens (the completion is cut on the right); null: no limit. */
  maxLength: number | null;
  /** Seed of the shuffling, of dropout masks and of LoRA's initialisation unless `lora.seed` is set (default 0). */
  seed: number;
}

/** The trainer's defaults of the pass-through options. @internal */
export const trainerDefaults: Readonly<PreferenceTrainerOptions> = Object.freeze({
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
  resumeFrom: defaultTrainOptions.resumeFrom,
  signal: defaultTrainOptions.signal,
});

/** Checks the model, tokenizer, records and every shared tunable; throws INVALID_OPTION naming the first bad one. @internal */
export function checkCommon(owner: string, o: OptimizationTunables & { model: CausalLM; tokenizer: TokenizerLike; train: readonly unknown[] }, recordHelp: string): void {
  if (!o.model || typeof o.model.forward !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${o.model === undefined ? 'undefined' : typeof o.model}`);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode`);
  if (!Array.isArray(o.train) || o.train.length === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of records; got ${Array.isArray(o.train) ? 'an empty array' : typeof o.train}`, { help: recordHelp });
  }
  const int = (name: keyof OptimizationTunables, min: number) => checkNumber(owner, name, o[name], `an integer ≥ ${min}`, (v) => Number.isInteger(v) && v >= min);
  int('batchSize', 1);
  int('epochs', 1);
  int('warmupSteps', 0);
  int('gradientAccumulationSteps', 1);
  if (o.maxSteps !== undefined) int('maxSteps', 1);
  if (o.evalEvery !== undefined) int('evalEvery', 1);
  if (o.logEvery !== undefined) int('logEvery', 1);
  if (o.maxLength !== null) int('maxLength', 2);
  checkNumber(owner, 'lr', o.lr, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'weightDecay', o.weightDecay, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  if (o.maxGradNorm !== null) checkNumber(owner, 'maxGradNorm', o.maxGradNorm, 'a number > 0 or null', (v) => v > 0);
  if (!['constant', 'linear', 'cosine'].includes(o.schedule)) throw new PosttrainError('INVALID_OPTION', `${owner}: expected schedule to be 'constant', 'linear' or 'cosine'; got ${JSON.stringify(o.schedule)}`);
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null)) throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${JSON.stringify(o.lora)}`, { help: "for example lora: { r: 8, alpha: 16, targetModules: 'all-linear' }" });
}

/** The learning-rate schedule of the run. @internal */
export function scheduleOf(kind: OptimizationTunables['schedule'], lr: number, warmupSteps: number, totalSteps: number): LrSchedule {
  if (kind === 'constant') return constantSchedule({ lr, warmupSteps });
  const total = Math.max(totalSteps, warmupSteps + 1);
  return kind === 'linear' ? linearSchedule({ lr, warmupSteps, totalSteps: total }) : cosineSchedule({ lr, warmupSteps, totalSteps: total });
}

/** 0 … n − 1 shuffled by a generator seeded from (seed, epoch): a resumed run rebuilds the same order. @internal */
export function shuffledOrder(seed: number, epoch: number, n: number): number[] {
  const rng = new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) | 0);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** The pad id of the collators: the tokenizer's pad token, else EOS, else 0. @internal */
export function padIdOf(tokenizer: TokenizerLike): number {
  const eos = tokenizer.eosTokenId as number | number[] | null | undefined;
  return (tokenizer as { padTokenId?: number | null }).padTokenId ?? (Array.isArray(eos) ? eos[0] : eos) ?? 0;
}

/** Total optimizer steps and the epochs to ask the trainer for. @internal */
export function stepPlan(records: number, o: OptimizationTunables): { totalSteps: number; epochs: number } {
  const batchesPerEpoch = Math.ceil(records / o.batchSize);
  const totalSteps = o.maxSteps ?? Math.ceil((batchesPerEpoch * o.epochs) / o.gradientAccumulationSteps);
  const epochs = o.maxSteps === undefined ? o.epochs : Math.ceil((o.maxSteps * o.gradientAccumulationSteps) / batchesPerEpoch);
  return { totalSteps, epochs };
}
