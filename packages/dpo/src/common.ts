// What dpoTrain and ktoTrain share beyond @posttrain/trainer's fine-tuning blocks: the optimisation
// tunables with LoRA, their checks, the pad id and the step plan.
import { PosttrainError, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { LoraOptions } from '@posttrain/lora';
import { checkFineTuneOptions, type FineTuneTrainerOptions, type OptimizerTunables } from '@posttrain/trainer';

/**
 * The trainer's options that {@link dpoTrain} and {@link ktoTrain} pass through unchanged, with the
 * trainer's defaults (`@posttrain/trainer`).
 *
 * @example
 * ```ts
 * const passThrough: Partial<PreferenceTrainerOptions> = { maxSteps: 200, checkpointDir: 'out/dpo', logFile: 'out/dpo/metrics.jsonl' };
 * ```
 */
export type PreferenceTrainerOptions = FineTuneTrainerOptions;

/**
 * The optimisation tunables shared by {@link dpoTrain} and {@link ktoTrain}.
 *
 * @example
 * ```ts
 * const shared: Partial<OptimizationTunables> = { lora: { r: 16, alpha: 32 }, lr: 1e-3, batchSize: 16, schedule: 'cosine' };
 * ```
 */
export interface OptimizationTunables extends PreferenceTrainerOptions, OptimizerTunables {
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

/** Checks the model, tokenizer, records and every shared tunable; throws INVALID_OPTION naming the first bad one. @internal */
export function checkCommon(owner: string, o: OptimizationTunables & { model: CausalLM; tokenizer: TokenizerLike; train: readonly unknown[] }, recordHelp: string): void {
  if (!o.model || typeof o.model.forward !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${o.model === undefined ? 'undefined' : typeof o.model}`);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode`);
  if (!Array.isArray(o.train) || o.train.length === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of records; got ${Array.isArray(o.train) ? 'an empty array' : typeof o.train}`, { help: recordHelp });
  }
  checkFineTuneOptions(owner, o);
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null)) throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${JSON.stringify(o.lora)}`, { help: "for example lora: { r: 8, alpha: 16, targetModules: 'all-linear' }" });
}

/** Total optimizer steps and the epochs to ask the trainer for. @internal */
export function stepPlan(records: number, o: OptimizationTunables): { totalSteps: number; epochs: number } {
  const batchesPerEpoch = Math.ceil(records / o.batchSize);
  const totalSteps = o.maxSteps ?? Math.ceil((batchesPerEpoch * o.epochs) / o.gradientAccumulationSteps);
  const epochs = o.maxSteps === undefined ? o.epochs : Math.ceil((o.maxSteps * o.gradientAccumulationSteps) / batchesPerEpoch);
  return { totalSteps, epochs };
}
