// What dpoTrain and ktoTrain share beyond @posttrain/trainer's fine-tuning blocks: the optimisation
// and truncation tunables with LoRA, their checks, and the check that a record's texts are strings.
import { PosttrainError, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { LoraOptions } from '@posttrain/lora';
import { checkFineTuneOptions, type FineTuneTrainerOptions, type OptimizerTunables } from '@posttrain/trainer';

/**
 * The optimisation tunables shared by {@link dpoTrain} and {@link ktoTrain}.
 *
 * @example
 * ```ts
 * const shared: Partial<OptimizationTunables> = { lora: { r: 16, alpha: 32 }, lr: 1e-3, batchSize: 16, schedule: 'cosine' };
 * ```
 */
export interface OptimizationTunables extends FineTuneTrainerOptions, OptimizerTunables {
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
  /** Longest prompt + completion in tokens, TRL's `max_length`: a longer sequence loses the completion's end (cut on the right, TRL's `keep_start`), after the two limits below. null: no limit. */
  maxLength: number | null;
  /** Longest prompt in tokens, TRL's `max_prompt_length`: a longer prompt loses its start, BOS included (cut on the left). null: no limit. */
  maxPromptLength: number | null;
  /** Longest completion in tokens, TRL's `max_completion_length`: a longer completion loses its end, EOS included (cut on the right). null: no limit. */
  maxCompletionLength: number | null;
  /** Seed of the shuffling, of dropout masks and of LoRA's initialisation unless `lora.seed` is set (default 0). */
  seed: number;
}

/** Checks the model, tokenizer, records and every shared tunable; throws INVALID_OPTION naming the first bad one. @internal */
export function checkCommon(owner: string, o: OptimizationTunables & { model: CausalLM; tokenizer: TokenizerLike; train: readonly unknown[] }, recordHelp: string): void {
  if (!o.model || typeof o.model.forward !== 'function')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${o.model === undefined ? 'undefined' : typeof o.model}`);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode`);
  if (!Array.isArray(o.train) || o.train.length === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of records; got ${Array.isArray(o.train) ? 'an empty array' : typeof o.train}`, { help: recordHelp });
  }
  checkFineTuneOptions(owner, o);
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${JSON.stringify(o.lora)}`, {
      help: "for example lora: { r: 8, alpha: 16, targetModules: 'all-linear' }",
    });
}

/**
 * Throws INVALID_ARGUMENT when one of `fields` of `record` is a message list: the trainers take
 * text records only (their record types say so), and the error says how to render a conversation.
 * @internal
 */
export function refuseConversational(owner: string, where: string, record: object, fields: readonly string[]): void {
  const lists = fields.filter((f) => Array.isArray((record as Record<string, unknown>)[f]));
  if (lists.length === 0) return;
  throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${where}: expected ${fields.join(', ')} to be strings; got message lists for ${lists.join(' and ')} (a conversational record)`, {
    help: 'conversational records are not supported: render each conversation to a string first (applyChatTemplate from @posttrain/data)',
  });
}
