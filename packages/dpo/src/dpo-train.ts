// dpoTrain: preference pairs → tokenized, concatenated [2B, T] batches with the reference's
// log-probs → a preference objective → the shared trainer loop.
import { PosttrainError, checkNumber, resolveOptions, tf, type CausalLM, type Module } from '@posttrain/tensor-core';
import { modelLimits, tokenizePreference, type PreferenceRecord, type TokenizerLike } from '@posttrain/data';
import { applyLora, loraLayers, type LoraReport } from '@posttrain/lora';
import { checkEvalRecords, defaultFineTuneTrainerOptions, fineTune, type StepOutput, type TrainResult } from '@posttrain/trainer';
import { checkEwcOption, ewcRegularizer, type EwcOption } from '@posttrain/losses';
import { checkCommon, refuseConversational, type OptimizationTunables } from './common.js';
import { collatePairs, exampleLogps, inEvalMode, padTokenIdOf, sequenceLogps, type PairBatch, type Reference, type ReferenceOption, type TokenizedPair } from '@posttrain/policy';
import { completionStats, meanLogit } from './completion-stats.js';
import { toObjective, type ObjectiveInputs, type ObjectiveOutput, type PreferenceLossFn, type PreferenceObjective } from './objective.js';
import { resolveReference } from './reference.js';

/**
 * A training record: TRL's preference format, `{ prompt, chosen, rejected }`, as strings (without
 * `prompt`, the shared start of both answers is the prompt). Conversational records (message lists)
 * are refused: render them to strings first.
 *
 * @example
 * ```ts
 * const record: DpoRecord = { prompt: 'abc>', chosen: 'cba', rejected: 'abc' };
 * ```
 */
export type DpoRecord = { prompt?: string; chosen: string; rejected: string };

/**
 * The tunable options of {@link dpoTrain}, each with its default in {@link defaultDpoOptions}.
 *
 * @example
 * ```ts
 * const tunables: Partial<DpoTunables> = { beta: 0.1, lr: 1e-3, maxSteps: 200, lora: { r: 8 }, reference: 'adapters-disabled' };
 * ```
 */
export interface DpoTunables extends OptimizationTunables {
  /** Held-out pairs; their loss and metrics are logged as `eval_loss`, `eval_rewards/accuracies`, … every `evalEvery` steps (default: at the end). */
  eval: readonly DpoRecord[] | undefined;
  /**
   * The objective: a DPO-family loss of `@posttrain/losses` (`PreferenceLogps → PreferenceLossOutput`,
   * run with `beta`), or an objective from {@link dpoObjective}, {@link simpoObjective},
   * {@link orpoObjective}. Default: `dpoSigmoidLoss` with `beta`.
   */
  loss: PreferenceObjective | PreferenceLossFn<{ beta: number }> | undefined;
  /** β of a loss given as a function (default 0.1, TRL's); an objective carries its own. */
  beta: number;
  /** Where reference log-probs come from ({@link ReferenceOption}); default 'adapters-disabled' with LoRA, else 'precomputed'. Must be left out for SimPO and ORPO. */
  reference: ReferenceOption | undefined;
  /** Elastic weight consolidation, as sftTrain's ({@link PreferenceEwcOption}, docs/forgetting.md); undefined: none. */
  ewc: PreferenceEwcOption | undefined;
}

/**
 * The `ewc` option of {@link dpoTrain} and {@link ktoTrain}: `sftTrain`'s ({@link EwcOption} of
 * `@posttrain/losses`, docs/forgetting.md), logged as `ewc_penalty`; full fine-tuning only.
 *
 * @example
 * ```ts
 * const ewc: PreferenceEwcOption = { lambda: 1000, fisher: await estimateFisher({ model, tokenizer, records: sftRecords }) };
 * await dpoTrain({ model, tokenizer, train: pairs, ewc });
 * ```
 */
export type PreferenceEwcOption = EwcOption;

/** `ewc` checked against the model's named parameters and `lora` (before LoRA renames them). @internal */
export const checkPreferenceEwc = (owner: string, model: CausalLM, ewc: unknown, lora: unknown): void =>
  checkEwcOption(owner, (model as unknown as Partial<Module>).namedParameters?.() ?? new Map(), ewc, lora);

/** The EWC penalty over the model's trainable parameters as training starts, and the clean-up of its anchors. @internal */
export const preferenceEwcPenalty = (owner: string, model: CausalLM, ewc: PreferenceEwcOption): ReturnType<typeof ewcRegularizer> =>
  ewcRegularizer(owner, (model as unknown as Module).trainableParameters(), ewc);

/**
 * Options of {@link dpoTrain}: model, tokenizer and pairs, then the tunables.
 *
 * @example
 * ```ts
 * const options: DpoTrainOptions = { model, tokenizer, train: pairs, lora: { r: 8 }, reference: 'adapters-disabled' };
 * ```
 */
export interface DpoTrainOptions extends Partial<DpoTunables> {
  /** The policy: any causal LM (`@posttrain/models`' `loadModel`, or your own), usually an SFT checkpoint. */
  model: CausalLM;
  tokenizer: TokenizerLike;
  train: readonly DpoRecord[];
}

/**
 * The defaults of {@link dpoTrain}'s tunable options.
 *
 * @example
 * ```ts
 * await dpoTrain({ ...defaultDpoOptions, model, tokenizer, train: pairs, lora: { r: 8 }, lr: 1e-3, maxSteps: 100 });
 * ```
 */
export const defaultDpoOptions: Readonly<DpoTunables> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  eval: undefined,
  loss: undefined,
  beta: 0.1,
  reference: undefined,
  ewc: undefined,
  lora: false,
  batchSize: 8,
  lr: 1e-6,
  weightDecay: 0,
  schedule: 'linear',
  warmupSteps: 0,
  maxLength: null,
  maxPromptLength: null,
  maxCompletionLength: null,
  seed: 0,
});

/**
 * What {@link dpoTrain} returns: the trainer's result, the LoRA report and how the reference ran.
 *
 * @example
 * ```ts
 * const { history, evals, objective, reference } = await dpoTrain(options); // objective 'dpoSigmoidLoss', reference 'adapters disabled'
 * ```
 */
export interface DpoTrainResult extends TrainResult {
  /** Trainable-parameter report of `applyLora`; undefined without the `lora` option. */
  lora: LoraReport | undefined;
  /** The objective's loss function, e.g. 'dpoSigmoidLoss'. */
  objective: string;
  /** 'frozen copy', 'adapters disabled', 'policy before training' (each maybe precomputed), or 'none' for SimPO and ORPO. */
  reference: string;
  /** Seconds spent precomputing reference log-probs before the first step (0 when not precomputed). */
  precomputeSeconds: number;
}

/** One micro-batch: B pairs as [2B, T] (chosen rows first) and the reference's [2B] log-probs. */
interface DpoBatch extends PairBatch {
  refLogps: tf.Tensor1D | undefined;
  /** Non-padding tokens of the [2B, T] batch (TRL's `num_tokens` counts them). */
  inputTokens: number;
}

/** The preference metrics under TRL's names, plus the objective's own. @internal */
export function preferenceMetrics(out: ObjectiveOutput, inputs: ObjectiveInputs, logits: { chosen: tf.Scalar; rejected: tf.Scalar }): Record<string, tf.Scalar> {
  return tf.tidy(() => ({
    'rewards/chosen': tf.mean(out.chosenRewards) as tf.Scalar,
    'rewards/rejected': tf.mean(out.rejectedRewards) as tf.Scalar,
    'rewards/accuracies': tf.mean(tf.cast(tf.greater(out.chosenRewards, out.rejectedRewards), 'float32')) as tf.Scalar,
    'rewards/margins': tf.mean(tf.sub(out.chosenRewards, out.rejectedRewards)) as tf.Scalar,
    'logps/chosen': tf.mean(inputs.policyChosenLogps) as tf.Scalar,
    'logps/rejected': tf.mean(inputs.policyRejectedLogps) as tf.Scalar,
    'logits/chosen': logits.chosen,
    'logits/rejected': logits.rejected,
    ...out.metrics,
  }));
}

/**
 * One batch through the policy (and the objective): the concatenated forward, the split into
 * chosen and rejected halves, the loss and the metrics. Runs inside the tape in training, in a tidy
 * in evaluation. @internal
 */
export function preferenceStep(model: CausalLM, objective: PreferenceObjective, batch: Omit<DpoBatch, 'inputTokens'>): { losses: tf.Tensor1D; metrics: Record<string, tf.Scalar> } {
  const B = batch.pairs;
  const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask }); // [2B, T, V]
  const stats = completionStats(logits, batch.labels, batch.attentionMask, objective.averageLogps);
  const half = (t: tf.Tensor1D, first: boolean) => tf.slice(t, [first ? 0 : B], [B]) as tf.Tensor1D; // [B]
  const inputs: ObjectiveInputs = {
    policyChosenLogps: half(stats.logps, true),
    policyRejectedLogps: half(stats.logps, false),
    chosenTokens: half(stats.tokens, true),
    rejectedTokens: half(stats.tokens, false),
    ...(batch.refLogps ? { refChosenLogps: half(batch.refLogps, true), refRejectedLogps: half(batch.refLogps, false) } : {}),
  };
  const out = objective.compute(inputs);
  return { losses: out.losses, metrics: preferenceMetrics(out, inputs, { chosen: meanLogit(stats, 0, B), rejected: meanLogit(stats, B, B) }) };
}

/**
 * Validates `options` against {@link defaultDpoOptions}: unknown keys are named with the known
 * ones, numbers are range-checked, and the objective is built (a bare loss function is wrapped with
 * `beta`).
 *
 * @example
 * ```ts
 * const o = resolveDpoOptions({ model, tokenizer, train: pairs, lr: 1e-3 });
 * o.objective.name; // 'dpoSigmoidLoss'
 * ```
 */
export function resolveDpoOptions(options: DpoTrainOptions): DpoTunables & Pick<DpoTrainOptions, 'model' | 'tokenizer' | 'train'> & { objective: PreferenceObjective } {
  const owner = 'dpoTrain';
  const given = (options ?? {}) as DpoTrainOptions;
  const o = resolveOptions<DpoTunables & Pick<DpoTrainOptions, 'model' | 'tokenizer' | 'train'>>(owner, given, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    train: undefined as unknown as DpoRecord[],
    ...defaultDpoOptions,
  });
  checkCommon(owner, o, "for example [{ prompt: 'ab>', chosen: 'ba', rejected: 'ab' }]");
  checkEvalRecords(owner, o.eval, { shape: '{ prompt, chosen, rejected }' });
  checkNumber(owner, 'beta', o.beta, 'a number > 0', (v) => v > 0);
  const objective = toObjective(owner, o.loss, o.beta, given.beta !== undefined);
  if (o.ewc !== undefined) checkPreferenceEwc(owner, o.model, o.ewc, o.lora);
  return { ...o, objective };
}

/** The truncation options, as `tokenizePreference` takes them (TRL's sides: prompt cut on the left, completion and whole sequence on the right). */
type Lengths = Pick<DpoTunables, 'maxLength' | 'maxPromptLength' | 'maxCompletionLength'>;

function tokenizePairs(tokenizer: TokenizerLike, records: readonly DpoRecord[], lengths: Lengths, what: string): TokenizedPair[] {
  return records.map((record, i) => {
    if (!record || typeof record !== 'object' || !('chosen' in record) || !('rejected' in record)) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `dpoTrain: ${what} record ${i}: expected { prompt, chosen, rejected }; got ${record && typeof record === 'object' ? `keys [${Object.keys(record).join(', ')}]` : typeof record}`,
      );
    }
    refuseConversational('dpoTrain', `${what} record ${i}`, record, ['prompt', 'chosen', 'rejected']);
    return tokenizePreference(tokenizer, record as PreferenceRecord, { ...lengths, name: `${what} record ${i}` });
  });
}

/** Reference log-probs of every pair, `[chosen…]` and `[rejected…]`, computed once (eval mode, no tape). */
async function precompute(reference: Reference, pairs: readonly TokenizedPair[], batchSize: number, average: boolean, padTokenId: number): Promise<{ chosen: Float32Array; rejected: Float32Array }> {
  return reference.run(async (m) => ({
    chosen: await exampleLogps(
      m,
      pairs.map((p) => p.chosen),
      { batchSize, average, padTokenId },
    ),
    rejected: await exampleLogps(
      m,
      pairs.map((p) => p.rejected),
      { batchSize, average, padTokenId },
    ),
  }));
}

/**
 * Direct preference optimisation and its family (Rafailov et al. 2023, arXiv 2305.18290), SimPO and
 * ORPO, on TRL-style preference records, through `@posttrain/trainer`'s loop. Each record is
 * tokenized by `tokenizePreference` (EOS appended, labels −100 on the prompt); a micro-batch of B
 * pairs is one right-padded `[2B, T]` forward, chosen rows first (TRL's `concatenated_forward`);
 * `sequenceLogprobs` (`sequenceLogps` for the reference) sums (or, for IPO, SimPO and ORPO, averages) each completion's log-probs; the
 * objective turns the policy's and the reference's log-probs into per-pair losses, which the trainer
 * averages over the pairs of an optimizer step.
 *
 * Reference log-probs come from a frozen copy, the policy with its LoRA adapters disabled, or a
 * cache filled once before training ({@link ReferenceOption}); reference forwards run in eval mode
 * when the batch is pulled, outside the gradient tape, so they hold no activations for the backward
 * pass. Logged each step under TRL's keys (docs/metrics.md): `rewards/chosen`, `rewards/rejected`,
 * `rewards/accuracies`, `rewards/margins`, `logps/chosen`, `logps/rejected`, `logits/chosen`,
 * `logits/rejected` (means over the pairs), `loss`, `learning_rate`, `grad_norm`, `epoch`,
 * `num_tokens`, and `pairs` with `pairs_per_second`; held-out pairs give the same under `eval_`
 * (TRL's `eval_rewards/accuracies`). `maxPromptLength` cuts a prompt's start, `maxCompletionLength`
 * and then `maxLength` a completion's end, as TRL.
 *
 * @example
 * ```ts
 * const pairs = train.map((e, i) => reversalTask.preferencePair(e, i));
 * const result = await dpoTrain({ model, tokenizer, train: pairs, eval: heldOut, lora: { r: 8, alpha: 16 }, reference: 'adapters-disabled', lr: 1e-3, batchSize: 16, maxSteps: 100 });
 * result.evals.at(-1)?.['eval_rewards/accuracies']; // ≥ 0.9 on the reversal pairs
 * ```
 */
export async function dpoTrain(options: DpoTrainOptions): Promise<DpoTrainResult> {
  const owner = 'dpoTrain';
  const o = resolveDpoOptions(options);
  const { model, tokenizer, objective } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  // An id the model has no embedding for, or a sequence longer than its context, is named by record before any step.
  const lengths: Lengths & ReturnType<typeof modelLimits> = {
    maxLength: o.maxLength,
    maxPromptLength: o.maxPromptLength,
    maxCompletionLength: o.maxCompletionLength,
    ...modelLimits(model.config),
  };
  const pairs = tokenizePairs(tokenizer, o.train, lengths, 'train');
  const evalPairs = tokenizePairs(tokenizer, o.eval ?? [], lengths, 'eval');
  const reference = resolveReference(owner, model, o.reference, objective.usesReference, objective.name, o.lora !== false || loraLayers(model).size > 0);
  const report = o.lora === false ? undefined : applyLora(model, { targetModules: 'all-linear', seed: o.seed, ...o.lora });

  const t0 = performance.now();
  const cache = reference?.precomputed ? await precompute(reference, pairs, o.batchSize, objective.averageLogps, padTokenId) : undefined;
  const evalCache = reference?.precomputed && evalPairs.length ? await precompute(reference, evalPairs, o.batchSize, objective.averageLogps, padTokenId) : undefined;
  const precomputeSeconds = cache ? (performance.now() - t0) / 1000 : 0;

  /** The batch of `indices` of `source`, with its reference log-probs (from the cache or a forward outside the tape). */
  const makeBatch = (source: readonly TokenizedPair[], indices: number[], cached: typeof cache): DpoBatch => {
    const batch = collatePairs(
      indices.map((i) => source[i]),
      { padTokenId },
    );
    let refLogps: tf.Tensor1D | undefined;
    if (reference && cached) refLogps = tf.tensor1d([...indices.map((i) => cached.chosen[i]), ...indices.map((i) => cached.rejected[i])]);
    else if (reference) refLogps = reference.run((m) => tf.tidy(() => sequenceLogps(m, batch, { average: objective.averageLogps }).logps));
    return { ...batch, refLogps, inputTokens: indices.reduce((n, i) => n + source[i].chosen.inputIds.length + source[i].rejected.inputIds.length, 0) };
  };
  const disposeBatch = (b: DpoBatch) => tf.dispose([b.inputIds, b.attentionMask, b.labels, ...(b.refLogps ? [b.refLogps] : [])]);

  const step = (batch: DpoBatch): StepOutput => {
    const { losses, metrics } = preferenceStep(model, objective, batch);
    return { lossSum: tf.sum(losses) as tf.Scalar, pairs: batch.pairs, inputTokens: batch.inputTokens, metrics };
  };
  const evaluate = (): Promise<Record<string, number>> =>
    inEvalMode(model, async () => {
      const sums: Record<string, number> = {};
      for (let start = 0; start < evalPairs.length; start += o.batchSize) {
        const indices = Array.from({ length: Math.min(o.batchSize, evalPairs.length - start) }, (_, k) => start + k);
        const batch = makeBatch(evalPairs, indices, evalCache);
        const { names, values } = tf.tidy(() => {
          const { losses, metrics } = preferenceStep(model, objective, batch);
          const all: Record<string, tf.Scalar> = { loss: tf.mean(losses) as tf.Scalar, ...metrics };
          return { names: Object.keys(all), values: tf.stack(Object.values(all)) };
        });
        const read = await values.data();
        values.dispose();
        disposeBatch(batch);
        names.forEach((name, k) => (sums[name] = (sums[name] ?? 0) + read[k] * indices.length));
      }
      // The trainer logs each as eval_<name> (TRL's eval_loss, eval_rewards/accuracies, …).
      return Object.fromEntries(Object.entries(sums).map(([name, sum]) => [name, sum / evalPairs.length]));
    });

  const ewc = o.ewc === undefined ? undefined : preferenceEwcPenalty(owner, model, o.ewc); // anchors: the parameters now
  let result: TrainResult;
  try {
    result = await fineTune<DpoBatch>({
      model,
      records: pairs.length,
      makeBatch: (ix) => makeBatch(pairs, ix, cache),
      disposeBatch,
      step,
      penalties: ewc ? { ewc_penalty: ewc.penalty } : undefined,
      evaluate: evalPairs.length ? evaluate : undefined,
      options: o,
    });
  } finally {
    ewc?.dispose();
  }
  const referenceName = reference ? `${reference.source}${reference.precomputed ? ', precomputed' : ''}` : 'none';
  return { ...result, lora: report, objective: objective.name, reference: referenceName, precomputeSeconds };
}
