// sftTrain: records → tokenized, masked, shuffled, collated batches → the shared trainer loop.
import { PosttrainError, resolveOptions, tf, type CausalLM, type Module } from '@posttrain/tensor-core';
import { collateForTraining, modelLimits, type TokenizerLike } from '@posttrain/data';
import { tokenizeSftRecord, type SftRecord } from './sft-records.js';
import { applyLora, loraLayers, type LoraOptions, type LoraReport } from '@posttrain/lora';
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
import { causalLmLoss, checkEwcOption, ewcRegularizer, type EwcOption } from '@posttrain/losses';
import { inEvalMode, padTokenIdOf } from '@posttrain/policy';
import { checkOldCompletionRecords, lwfMask, lwfReference, lwfTerm, oldCompletions, precomputeLogits, resolveLwfOption, stackLogits, type LwfOption, type ResolvedLwf } from './lwf.js';

export type { SftRecord } from './sft-records.js';

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
  /**
   * Elastic weight consolidation (docs/forgetting.md): (λ/2)·Σ F·(θ − θ*)² added to every step's
   * loss, logged as `ewc_penalty`; F from {@link estimateFisher} on the old task. Full fine-tuning
   * (or adapters already on the model); undefined: none.
   */
  ewc: EwcOption | undefined;
  /**
   * Learning without forgetting (docs/forgetting.md): λ·T²·KL(old ‖ new) of the softened next-token
   * distributions on the new data, added to every step's loss, logged as `lwf_loss`; the old model
   * is `lwf.teacher`, the adapters-disabled policy with LoRA, or the policy's logits precomputed
   * before the first step. Undefined: none.
   */
  lwf: LwfOption | undefined;
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
  ewc: undefined,
  lwf: undefined,
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
  /** With `lwf`: its own sequences (the old completions; none: the batch's), the old model's logits on them `[B, T, V]` and the positions that count `[B, T]`. */
  lwf?: { inputs: { inputIds: tf.Tensor2D; attentionMask: tf.Tensor2D } | undefined; teacherLogits: tf.Tensor3D; mask: tf.Tensor2D };
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
  if (o.ewc !== undefined) checkEwcOption(owner, (o.model as unknown as Partial<Module>).namedParameters?.() ?? new Map(), o.ewc, o.lora);
  if (o.lwf !== undefined) o.lwf = resolveLwfOption(owner, o.lwf);
  return o;
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
 * To keep an old skill while learning the new one (docs/forgetting.md): `ewc` adds elastic weight
 * consolidation's penalty toward the starting weights, weighted by a Fisher from
 * `estimateFisher` on the old task (logged as `ewc_penalty`); `lwf` adds learning without
 * forgetting's KL to the model as it was before fine-tuning, by default on that model's own
 * completions of the training prompts (logged as `lwf_loss`). Both are added to `loss`.
 *
 * @example
 * ```ts
 * const records = train.map((e) => reversalTask.toPromptCompletion(e));
 * const { history } = await sftTrain({ model, tokenizer, train: records, lora: { r: 8, alpha: 16 }, lr: 2e-2, maxSteps: 200, batchSize: 32 });
 * await saveAdapter(model, 'out/adapter');
 * // Keeping sorting while learning reversal, fully fine-tuned:
 * const fisher = await estimateFisher({ model: base, tokenizer, records: sortingRecords });
 * await sftTrain({ model: base, tokenizer, train: records, lr: 3e-3, ewc: { lambda: 1500, fisher } });
 * ```
 */
export async function sftTrain(options: SftTrainOptions): Promise<SftTrainResult> {
  const o = resolveSftOptions(options);
  const { model, tokenizer } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  const limits = modelLimits(model.config);
  const examples = o.train.map((r, i) => tokenizeSftRecord('sftTrain', tokenizer, r, `record ${i}`, o.completionOnlyLoss, o.maxLength, limits));
  const evalExamples = (o.eval ?? []).map((r, i) => tokenizeSftRecord('sftTrain', tokenizer, r, `eval record ${i}`, o.completionOnlyLoss, o.maxLength, limits));
  const lwf = o.lwf as ResolvedLwf | undefined;
  const reference = lwf && lwfReference('sftTrain', model, lwf, o.lora !== false || loraLayers(model).size > 0);
  if (lwf?.on === 'old-completions') checkOldCompletionRecords('sftTrain', examples);
  const report = o.lora === false ? undefined : applyLora(model, { targetModules: 'all-linear', seed: o.seed, ...o.lora });
  const ewc = o.ewc === undefined ? undefined : ewcRegularizer('sftTrain', (model as unknown as Module).trainableParameters(), o.ewc);
  try {
    // LwF's sequences: the old model's completions of the prompts (a second forward pass per
    // micro-batch), or the training rows themselves (the same forward pass).
    const separate = lwf?.on === 'old-completions';
    const lwfExamples =
      lwf && reference && separate ? await oldCompletions('sftTrain', reference, examples, { maxNewTokens: lwf.maxNewTokens, eosTokenId: tokenizer.eosTokenId ?? null, batchSize: 64 }) : examples;
    const precomputed = reference?.precomputed ? await precomputeLogits(reference, lwfExamples, lwf?.on === 'all', o.batchSize, padTokenId) : undefined;
    const makeBatch = (indices: number[]): SftBatch => {
      const rows = indices.map((i) => examples[i]);
      const batch = { ...collateForTraining(rows, { padTokenId }), inputTokens: rows.reduce((n, e) => n + e.inputIds.length, 0) };
      if (!lwf || !reference) return batch;
      const lwfRows = indices.map((i) => lwfExamples[i]);
      const own = separate ? collateForTraining(lwfRows, { padTokenId }) : undefined;
      if (own) own.labels.dispose();
      const inputIds = own?.inputIds ?? batch.inputIds;
      const attentionMask = own?.attentionMask ?? batch.attentionMask;
      const T = inputIds.shape[1];
      const teacherLogits = precomputed
        ? stackLogits(
            indices.map((i) => precomputed[i]),
            T,
            model.config.vocabSize,
          )
        : reference.run((m) => tf.tidy(() => m.forward(inputIds, { attentionMask }).logits as tf.Tensor3D)); // [B, T, V]
      const mask = lwfMask(lwfRows, T, lwf.on === 'all');
      return { ...batch, lwf: { inputs: own ? { inputIds: own.inputIds, attentionMask: own.attentionMask } : undefined, teacherLogits, mask } };
    };
    const step = (batch: SftBatch): StepOutput => {
      const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask }); // [B, T, V]
      const { lossSum, tokens, correctSum, entropySum } = causalLmLoss(logits, batch.labels);
      const metrics: Record<string, tf.Scalar> = { mean_token_accuracy: tf.div(correctSum, tf.maximum(tokens, 1)) as tf.Scalar, entropy: tf.div(entropySum, tf.maximum(tokens, 1)) as tf.Scalar };
      if (!lwf || !batch.lwf) return { lossSum, tokens, inputTokens: batch.inputTokens, metrics };
      const { inputs, teacherLogits, mask } = batch.lwf;
      const student = inputs ? model.forward(inputs.inputIds, { attentionMask: inputs.attentionMask }).logits : logits; // [B, T', V]
      const term = lwfTerm(student, teacherLogits, mask, tokens, lwf);
      return { lossSum: tf.add(lossSum, term.lossSum) as tf.Scalar, tokens, inputTokens: batch.inputTokens, metrics: { ...metrics, lwf_loss: term.value } };
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
    const disposeBatch = (b: SftBatch) =>
      tf.dispose([b.inputIds, b.attentionMask, b.labels, ...(b.lwf ? [b.lwf.teacherLogits, b.lwf.mask, ...(b.lwf.inputs ? [b.lwf.inputs.inputIds, b.lwf.inputs.attentionMask] : [])] : [])]);
    const result = await fineTune<SftBatch>({
      model,
      records: examples.length,
      makeBatch,
      disposeBatch,
      step,
      penalties: ewc ? { ewc_penalty: ewc.penalty } : undefined,
      evaluate: evalExamples.length ? evaluate : undefined,
      options: o,
    });
    const trained = result.history.reduce((sum, r: TrainRecord) => sum + (r.tokens ?? 0), 0);
    return { ...result, lora: report, tokensPerSec: result.elapsed > 0 ? trained / result.elapsed : 0 };
  } finally {
    ewc?.dispose();
  }
}
