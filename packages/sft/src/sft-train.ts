// sftTrain: records → tokenized, masked, shuffled, collated batches → the shared trainer loop.
import { PosttrainError, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import {
  collateForTraining,
  modelLimits,
  tokenizeLanguageModeling,
  tokenizePromptCompletion,
  type LanguageModelingRecord,
  type PromptCompletionRecord,
  type TokenizedExample,
  type TokenizerLike,
} from '@posttrain/data';
import { applyLora, type LoraOptions, type LoraReport } from '@posttrain/lora';
import {
  checkEvalRecords,
  checkFineTuneOptions,
  defaultFineTuneTrainerOptions,
  fineTune,
  type FineTuneTrainerOptions,
  type OptimizerTunables,
  type StepOutput,
  type TrainRecord,
  type TrainResult,
} from '@posttrain/trainer';
import { causalLmLoss } from '@posttrain/losses';
import { inEvalMode, padTokenIdOf } from '@posttrain/policy';

/** A training record: TRL prompt-completion (`{ prompt, completion }`) or language modeling (`{ text }`), strings. */
export type SftRecord = { prompt: string; completion: string } | { text: string };

/**
 * The tunable options of {@link sftTrain}, each with its default in {@link defaultSftOptions}.
 *
 * @example
 * ```ts
 * const tunables: Partial<SftTunables> = { lr: 2e-2, maxSteps: 300, lora: { r: 8 } };
 * ```
 */
export interface SftTunables extends FineTuneTrainerOptions, OptimizerTunables {
  /** Held-out records; `eval_loss`, `eval_mean_token_accuracy` and `eval_entropy` over them are logged every `evalEvery` steps (default: at the end). */
  eval: readonly SftRecord[] | undefined;
  /** LoRA options (`@posttrain/lora`'s `applyLora`; `targetModules` defaults to 'all-linear'): only the adapters train. `false`: full fine-tuning. */
  lora: Partial<LoraOptions> | false;
  /** Examples per micro-batch (default 8). */
  batchSize: number;
  /** Peak learning rate of AdamW (default 2e-4, TRL's SFT default; LoRA on tiny models wants ~5e-3). */
  lr: number;
  /** AdamW's decoupled weight decay (default 0). */
  weightDecay: number;
  /** Learning-rate schedule after warm-up (default 'linear' to 0, as TRL). */
  schedule: 'constant' | 'linear' | 'cosine';
  /** Steps of linear warm-up (default 0). */
  warmupSteps: number;
  /** Loss only on completion tokens of prompt-completion records (default true, TRL's `completion_only_loss`). */
  completionOnlyLoss: boolean;
  /** Longest example in tokens, TRL's `max_length`: a longer one loses its end (the completion's or the text's, EOS included; truncated on the right, TRL's `keep_start`). null: no limit. */
  maxLength: number | null;
  /** Seed of the shuffling, of dropout masks and of LoRA's initialisation unless `lora.seed` is set (default 0). */
  seed: number;
}

/**
 * Options of {@link sftTrain}: model, tokenizer and records, then the tunables.
 *
 * @example
 * ```ts
 * const options: SftTrainOptions = { model, tokenizer, train: records, lora: { r: 8 }, lr: 2e-2, maxSteps: 300 };
 * ```
 */
export interface SftTrainOptions extends Partial<SftTunables> {
  /** Any causal LM (`@posttrain/models`' `createModel`/`loadModel`, or your own). */
  model: CausalLM;
  tokenizer: TokenizerLike;
  train: readonly SftRecord[];
}

/**
 * The defaults of {@link sftTrain}'s tunable options.
 *
 * @example
 * ```ts
 * await sftTrain({ ...defaultSftOptions, model, tokenizer, train: records, maxSteps: 100 });
 * ```
 */
export const defaultSftOptions: Readonly<SftTunables> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  eval: undefined,
  lora: false,
  batchSize: 8,
  lr: 2e-4,
  weightDecay: 0,
  schedule: 'linear',
  warmupSteps: 0,
  completionOnlyLoss: true,
  maxLength: null,
  seed: 0,
});

/**
 * What {@link sftTrain} returns: the trainer's result plus the LoRA report when adapters were added.
 *
 * @example
 * ```ts
 * const { history, lora, tokensPerSec }: SftTrainResult = await sftTrain(options); // history[i].mean_token_accuracy
 * ```
 */
export interface SftTrainResult extends TrainResult {
  /** Trainable-parameter report of `applyLora`; undefined for full fine-tuning. */
  lora: LoraReport | undefined;
  /** Label tokens trained on / training seconds. */
  tokensPerSec: number;
}

interface SftBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  labels: tf.Tensor2D;
  /** Non-padding tokens of the batch (TRL's `num_tokens` counts them). */
  inputTokens: number;
}

/**
 * Validates `options` against {@link defaultSftOptions}: unknown keys are named with the known
 * ones, and numbers are range-checked.
 *
 * @example
 * ```ts
 * const o = resolveSftOptions({ model, tokenizer, train: records, lr: 1e-2 });
 * ```
 */
export function resolveSftOptions(options: SftTrainOptions): SftTunables & Pick<SftTrainOptions, 'model' | 'tokenizer' | 'train'> {
  const owner = 'sftTrain';
  const { model, tokenizer, train: records, ...rest } = (options ?? {}) as SftTrainOptions;
  const o = resolveOptions<SftTunables & Pick<SftTrainOptions, 'model' | 'tokenizer' | 'train'>>(
    owner,
    { model, tokenizer, train: records, ...rest },
    { model: undefined as unknown as CausalLM, tokenizer: undefined as unknown as TokenizerLike, train: undefined as unknown as SftRecord[], ...defaultSftOptions },
  );
  if (!o.model || typeof o.model.forward !== 'function')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${o.model === undefined ? 'undefined' : typeof o.model}`);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode`);
  if (!Array.isArray(o.train) || o.train.length === 0)
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of records; got ${Array.isArray(o.train) ? 'an empty array' : typeof o.train}`, {
      help: "for example [{ prompt: 'ab>', completion: 'ba' }] or [{ text: 'ab>ba' }]",
    });
  checkEvalRecords(owner, o.eval, { shape: '{ prompt, completion } or { text }' });
  checkFineTuneOptions(owner, o);
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${JSON.stringify(o.lora)}`, {
      help: "for example lora: { r: 8, alpha: 16, targetModules: 'all-linear' }",
    });
  return o;
}

/** Tokenizes one record with its labels (−100 on the prompt when completion-only, EOS appended). */
function tokenize(tokenizer: TokenizerLike, record: SftRecord, name: string, completionOnly: boolean, maxLength: number | null, model: ReturnType<typeof modelLimits>): TokenizedExample {
  // Before any step: ids the model has no embedding for, and records with nothing to train on, are named by index.
  const options = { completionOnly, maxLength, name, ...model, requireLabels: true };
  if (record && typeof record === 'object' && 'prompt' in record && 'completion' in record) return tokenizePromptCompletion(tokenizer, record as PromptCompletionRecord, options);
  if (record && typeof record === 'object' && 'text' in record) return tokenizeLanguageModeling(tokenizer, record as LanguageModelingRecord, options);
  throw new PosttrainError(
    'INVALID_ARGUMENT',
    `sftTrain: ${name}: expected { prompt, completion } or { text }; got ${record && typeof record === 'object' ? `keys [${Object.keys(record).join(', ')}]` : typeof record}`,
  );
}

/**
 * Supervised fine-tuning, full or LoRA, on TRL-style records. Each record is tokenized by
 * `@posttrain/data` (EOS appended; labels −100 on the prompt with `completionOnlyLoss`), shuffled
 * by a generator seeded from `seed` and the epoch, right-padded into batches, and trained by
 * `@posttrain/trainer`'s loop with `causalLmLoss` from `@posttrain/losses` (summed next-token cross-entropy over label
 * tokens, normalised by the label tokens of the whole optimizer step). Logged each step under TRL's
 * keys (docs/metrics.md): `loss`, `mean_token_accuracy`, `entropy`, `learning_rate`, `grad_norm`,
 * `epoch`, `num_tokens`, and `tokens` (label tokens) with `tokens_per_second`; every `evalEvery`
 * steps, `eval_loss`, `eval_mean_token_accuracy` and `eval_entropy` over `eval`. With `lora`, adapters are added with
 * `applyLora` (base weights frozen) and only they train; save them with `saveAdapter`.
 *
 * @example
 * ```ts
 * const records = train.map((e) => reversalTask.toPromptCompletion(e));
 * const { history } = await sftTrain({ model, tokenizer, train: records, lora: { r: 8, alpha: 16 }, lr: 2e-2, maxSteps: 200, batchSize: 32 });
 * await saveAdapter(model, 'out/adapter');
 * ```
 */
export async function sftTrain(options: SftTrainOptions): Promise<SftTrainResult> {
  const o = resolveSftOptions(options);
  const { model, tokenizer } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  const limits = modelLimits(model.config);
  const examples = o.train.map((r, i) => tokenize(tokenizer, r, `record ${i}`, o.completionOnlyLoss, o.maxLength, limits));
  const evalExamples = (o.eval ?? []).map((r, i) => tokenize(tokenizer, r, `eval record ${i}`, o.completionOnlyLoss, o.maxLength, limits));
  const report = o.lora === false ? undefined : applyLora(model, { targetModules: 'all-linear', seed: o.seed, ...o.lora });
  const makeBatch = (indices: number[]): SftBatch => ({
    ...collateForTraining(
      indices.map((i) => examples[i]),
      { padTokenId },
    ),
    inputTokens: indices.reduce((n, i) => n + examples[i].inputIds.length, 0),
  });
  const step = (batch: SftBatch): StepOutput => {
    const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask }); // [B, T, V]
    const { lossSum, tokens, correctSum, entropySum } = causalLmLoss(logits, batch.labels);
    const metrics = { mean_token_accuracy: tf.div(correctSum, tf.maximum(tokens, 1)) as tf.Scalar, entropy: tf.div(entropySum, tf.maximum(tokens, 1)) as tf.Scalar };
    return { lossSum, tokens, inputTokens: batch.inputTokens, metrics };
  };
  const evaluate = (): Promise<Record<string, number>> =>
    inEvalMode(model, async () => {
      let loss = 0;
      let correct = 0;
      let entropy = 0;
      let tokens = 0;
      for (let start = 0; start < evalExamples.length; start += o.batchSize) {
        const batch = collateForTraining(evalExamples.slice(start, start + o.batchSize), { padTokenId });
        const sums = tf.tidy(() => {
          const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
          const out = causalLmLoss(logits, batch.labels);
          return tf.stack([out.lossSum, out.correctSum, out.entropySum, out.tokens]);
        });
        const [l, c, e, t] = Array.from(await sums.data());
        tf.dispose([sums, batch.inputIds, batch.attentionMask, batch.labels]);
        loss += l;
        correct += c;
        entropy += e;
        tokens += t;
      }
      // Logged as eval_loss, eval_mean_token_accuracy, eval_entropy.
      return { loss: loss / Math.max(tokens, 1), mean_token_accuracy: correct / Math.max(tokens, 1), entropy: entropy / Math.max(tokens, 1) };
    });
  const disposeBatch = (b: SftBatch) => tf.dispose([b.inputIds, b.attentionMask, b.labels]);
  const result = await fineTune<SftBatch>({ model, records: examples.length, makeBatch, disposeBatch, step, evaluate: evalExamples.length ? evaluate : undefined, options: o });
  const trained = result.history.reduce((sum, r: TrainRecord) => sum + (r.tokens ?? 0), 0);
  return { ...result, lora: report, tokensPerSec: result.elapsed > 0 ? trained / result.elapsed : 0 };
}
