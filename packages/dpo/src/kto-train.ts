// ktoTrain: unpaired preference records (one completion, labelled desirable or not) → KTO against
// the KL reference point of mismatched prompt/completion pairs → the shared trainer loop.
import { PosttrainError, Rng, checkNumber, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, modelLimits, tokenizePromptCompletion, type TokenizedExample, type TokenizerLike } from '@posttrain/data';
import { applyLora, loraLayers, type LoraReport } from '@posttrain/lora';
import { ktoLoss } from '@posttrain/losses';
import { checkEvalRecords, defaultFineTuneTrainerOptions, fineTune, type StepOutput, type TrainResult } from '@posttrain/trainer';
import { checkCommon, refuseConversational, type OptimizationTunables } from './common.js';
import { exampleLogps, inEvalMode, padTokenIdOf, sequenceLogps, type Reference, type ReferenceOption, type ScoredBatch } from '@posttrain/policy';
import { completionStats, meanLogit } from './completion-stats.js';
import { resolveReference } from './reference.js';
import { checkPreferenceEwc, preferenceEwcPenalty, type PreferenceEwcOption } from './dpo-train.js';

/**
 * A training record: TRL's unpaired preference format, `{ prompt, completion, label }` (strings;
 * label true = desirable). Conversational records (message lists) are refused: render them to
 * strings first.
 *
 * @example
 * ```ts
 * const records: KtoRecord[] = [{ prompt: 'abc>', completion: 'cba', label: true }, { prompt: 'abc>', completion: 'acb', label: false }];
 * ```
 */
export type KtoRecord = { prompt: string; completion: string; label: boolean };

/**
 * The tunable options of {@link ktoTrain}, each with its default in {@link defaultKtoOptions}.
 *
 * @example
 * ```ts
 * const tunables: Partial<KtoTunables> = { beta: 0.1, desirableWeight: 1, undesirableWeight: 1.33, lora: { r: 8 } };
 * ```
 */
export interface KtoTunables extends OptimizationTunables {
  /** Held-out records; `eval_loss`, `eval_rewards/chosen`, … every `evalEvery` steps (default: at the end). */
  eval: readonly KtoRecord[] | undefined;
  /** β of KTO (default 0.1, TRL's). */
  beta: number;
  /** λ_D, the weight of desirable examples' losses (default 1). */
  desirableWeight: number;
  /** λ_U, the weight of undesirable examples' losses (default 1; the paper wants λ_D·n_D / (λ_U·n_U) in [1, 4/3]). */
  undesirableWeight: number;
  /** Where reference log-probs come from ({@link ReferenceOption}); default 'adapters-disabled' with LoRA, else 'precomputed'. */
  reference: ReferenceOption | undefined;
  /** Elastic weight consolidation, as dpoTrain's and sftTrain's ({@link PreferenceEwcOption}, docs/forgetting.md); undefined: none. */
  ewc: PreferenceEwcOption | undefined;
}

/**
 * Options of {@link ktoTrain}: model, tokenizer and records, then the tunables.
 *
 * @example
 * ```ts
 * const options: KtoTrainOptions = { model, tokenizer, train: records, lora: { r: 8 }, undesirableWeight: 1.33 };
 * ```
 */
export interface KtoTrainOptions extends Partial<KtoTunables> {
  model: CausalLM;
  tokenizer: TokenizerLike;
  train: readonly KtoRecord[];
}

/**
 * The defaults of {@link ktoTrain}'s tunable options.
 *
 * @example
 * ```ts
 * await ktoTrain({ ...defaultKtoOptions, model, tokenizer, train: records, lora: { r: 8 }, lr: 1e-3 });
 * ```
 */
export const defaultKtoOptions: Readonly<KtoTunables> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  eval: undefined,
  beta: 0.1,
  desirableWeight: 1,
  undesirableWeight: 1,
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
 * What {@link ktoTrain} returns: the trainer's result, the LoRA report and how the reference ran.
 *
 * @example
 * ```ts
 * const { history, reference } = await ktoTrain(options); // history[i].kl, history[i]['rewards/margins']
 * ```
 */
export interface KtoTrainResult extends TrainResult {
  lora: LoraReport | undefined;
  /** 'frozen copy', 'adapters disabled' or 'policy before training', each maybe precomputed. */
  reference: string;
  precomputeSeconds: number;
}

/** A record tokenized with its KL pair: its prompt with another record's completion. */
interface KtoExample {
  example: TokenizedExample;
  kl: TokenizedExample;
  desirable: boolean;
}

interface KtoBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  labels: tf.Tensor2D;
  /** `[B]` 1 desirable, 0 undesirable. */
  desirable: tf.Tensor1D;
  /** `[B]` the current policy's log-probs of the KL pairs (no gradient). */
  policyKlLogps: tf.Tensor1D;
  /** `[B]` the reference's log-probs of the completions and of the KL pairs. */
  refLogps: tf.Tensor1D;
  refKlLogps: tf.Tensor1D;
  size: number;
  /** Non-padding tokens of the completions' batch (TRL's `num_tokens` counts them; the KL pairs are not counted). */
  inputTokens: number;
}

/**
 * Each record's KL partner: the next record, in an order shuffled once by `seed`, whose prompt
 * differs (so the pair is mismatched); fixed for the run, as TRL builds its KL dataset once.
 * @internal exported for tests
 */
export function klPartners(records: readonly KtoRecord[], seed: number): number[] {
  const n = records.length;
  const order = new Rng((seed ^ 0x6b43a9b5) | 0).shuffle(Array.from({ length: n }, (_, i) => i));
  const key = (i: number) => JSON.stringify(records[i].prompt);
  const partners = new Array<number>(n);
  order.forEach((i, position) => {
    let partner = order[(position + 1) % n];
    for (let k = 1; k < n; k++) {
      const candidate = order[(position + k) % n];
      if (key(candidate) !== key(i)) {
        partner = candidate;
        break;
      }
    }
    partners[i] = partner;
  });
  return partners;
}

function tokenizeRecords(
  tokenizer: TokenizerLike,
  records: readonly KtoRecord[],
  lengths: Pick<KtoTunables, 'maxLength' | 'maxPromptLength' | 'maxCompletionLength'>,
  seed: number,
  what: string,
): KtoExample[] {
  records.forEach((record, i) => {
    if (!record || typeof record !== 'object' || !('prompt' in record) || !('completion' in record) || typeof record.label !== 'boolean') {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `ktoTrain: ${what} record ${i}: expected { prompt, completion, label: boolean }; got ${record && typeof record === 'object' ? `keys [${Object.keys(record).join(', ')}]${'label' in record ? ` with label ${JSON.stringify(record.label)}` : ''}` : typeof record}`,
      );
    }
    refuseConversational('ktoTrain', `${what} record ${i}`, record, ['prompt', 'completion']);
  });
  const partners = klPartners(records, seed);
  return records.map((record, i) => ({
    example: tokenizePromptCompletion(tokenizer, { prompt: record.prompt, completion: record.completion }, { ...lengths, name: `${what} record ${i}` }),
    kl: tokenizePromptCompletion(tokenizer, { prompt: record.prompt, completion: records[partners[i]].completion }, { ...lengths, name: `${what} record ${i} (KL pair)` }),
    desirable: record.label,
  }));
}

/**
 * Validates `options` against {@link defaultKtoOptions}.
 *
 * @example
 * ```ts
 * const o = resolveKtoOptions({ model, tokenizer, train: records, undesirableWeight: 1.33 });
 * ```
 */
export function resolveKtoOptions(options: KtoTrainOptions): KtoTunables & Pick<KtoTrainOptions, 'model' | 'tokenizer' | 'train'> {
  const owner = 'ktoTrain';
  const o = resolveOptions<KtoTunables & Pick<KtoTrainOptions, 'model' | 'tokenizer' | 'train'>>(owner, (options ?? {}) as KtoTrainOptions, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    train: undefined as unknown as KtoRecord[],
    ...defaultKtoOptions,
  });
  checkCommon(owner, o, "for example [{ prompt: 'ab>', completion: 'ba', label: true }, { prompt: 'ab>', completion: 'ab', label: false }]");
  checkNumber(owner, 'beta', o.beta, 'a number > 0', (v) => v > 0);
  checkNumber(owner, 'desirableWeight', o.desirableWeight, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'undesirableWeight', o.undesirableWeight, 'a number ≥ 0', (v) => v >= 0);
  if (o.train.length < 2) throw new PosttrainError('INVALID_OPTION', `${owner}: expected at least 2 train records (each KL pair takes another record's completion); got ${o.train.length}`);
  checkEvalRecords(owner, o.eval, { shape: '', minRecords: 2, why: "each KL pair takes another record's completion" });
  if (o.ewc !== undefined) checkPreferenceEwc(owner, o.model, o.ewc, o.lora);
  return o;
}

/**
 * KTO (Ethayarajh et al. 2024, arXiv 2402.01306) on TRL's unpaired preference records
 * `{ prompt, completion, label }`, with `ktoLoss` from `@posttrain/losses`. The reference point z₀
 * is the clamped mean of log π_θ − log π_ref over mismatched pairs: each record's prompt with another
 * record's completion (fixed once per run from a seeded shuffle, skipping records with the same
 * prompt; TRL likewise builds its KL dataset once, pairing each prompt with the previous example's
 * completion). The policy's KL log-probs are computed without gradient when the batch is pulled
 * (eval mode), as TRL computes them under `no_grad`; the reference's come from the same three modes
 * as {@link dpoTrain} ({@link ReferenceOption}), precomputed per record with `'precomputed'`.
 * Logged under TRL's keys (docs/metrics.md): `rewards/chosen`, `rewards/rejected` (means over the
 * desirable and the undesirable examples of a batch; 0 for a batch without any), `rewards/margins`,
 * `logps/chosen`, `logps/rejected`, `logits/chosen`, `logits/rejected`, `kl`, `loss`,
 * `learning_rate`, `grad_norm`, `epoch`, `num_tokens`, and `sequences` (examples: KTO's loss is a
 * mean over them) with `sequences_per_second`; `eval_`-prefixed on `eval`, where the
 * `…/chosen` and `…/rejected` metrics are means over all the desirable and all the undesirable held-out
 * examples, whatever the batching.
 *
 * @example
 * ```ts
 * const records = pairs.flatMap((p) => [{ prompt: p.prompt, completion: p.chosen, label: true }, { prompt: p.prompt, completion: p.rejected, label: false }]);
 * const result = await ktoTrain({ model, tokenizer, train: records, lora: { r: 8 }, lr: 1e-3, batchSize: 16, maxSteps: 100 });
 * ```
 */
export async function ktoTrain(options: KtoTrainOptions): Promise<KtoTrainResult> {
  const owner = 'ktoTrain';
  const o = resolveKtoOptions(options);
  const { model, tokenizer } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  // An id the model has no embedding for, or a sequence longer than its context, is named by record before any step.
  const lengths = {
    maxLength: o.maxLength,
    maxPromptLength: o.maxPromptLength,
    maxCompletionLength: o.maxCompletionLength,
    ...modelLimits(model.config),
  };
  const examples = tokenizeRecords(tokenizer, o.train, lengths, o.seed, 'train');
  const evalExamples = o.eval?.length ? tokenizeRecords(tokenizer, o.eval, lengths, o.seed, 'eval') : [];
  const reference = resolveReference(owner, model, o.reference, true, 'ktoLoss', o.lora !== false || loraLayers(model).size > 0) as Reference;
  const report = o.lora === false ? undefined : applyLora(model, { targetModules: 'all-linear', seed: o.seed, ...o.lora });
  const lossOptions = { beta: o.beta, desirableWeight: o.desirableWeight, undesirableWeight: o.undesirableWeight };

  const settings = { batchSize: o.batchSize, average: false, padTokenId };
  const precompute = (list: KtoExample[]) =>
    reference.run(async (m) => ({
      completion: await exampleLogps(
        m,
        list.map((e) => e.example),
        settings,
      ),
      kl: await exampleLogps(
        m,
        list.map((e) => e.kl),
        settings,
      ),
    }));
  const t0 = performance.now();
  const cache = reference.precomputed ? await precompute(examples) : undefined;
  const evalCache = reference.precomputed && evalExamples.length ? await precompute(evalExamples) : undefined;
  const precomputeSeconds = cache ? (performance.now() - t0) / 1000 : 0;

  const logpsOf = (m: CausalLM, b: ScoredBatch) => tf.tidy(() => sequenceLogps(m, b).logps);
  /** The batch of `indices`, with the policy's KL log-probs and the reference's, all computed here, outside the tape. */
  const makeBatch = (source: KtoExample[], indices: number[], cached: typeof cache): KtoBatch => {
    const main = collateForTraining(
      indices.map((i) => source[i].example),
      { padTokenId },
    );
    const kl = collateForTraining(
      indices.map((i) => source[i].kl),
      { padTokenId },
    );
    // No dropout, and the dropout stream of the step is left untouched.
    const policyKlLogps = inEvalMode(model, () => logpsOf(model, kl));
    const refLogps = cached ? tf.tensor1d(indices.map((i) => cached.completion[i])) : reference.run((m) => logpsOf(m, main));
    const refKlLogps = cached ? tf.tensor1d(indices.map((i) => cached.kl[i])) : reference.run((m) => logpsOf(m, kl));
    tf.dispose([kl.inputIds, kl.attentionMask, kl.labels]);
    const inputTokens = indices.reduce((n, i) => n + source[i].example.inputIds.length, 0);
    return { ...main, desirable: tf.tensor1d(indices.map((i) => (source[i].desirable ? 1 : 0))), policyKlLogps, refLogps, refKlLogps, size: indices.length, inputTokens };
  };
  const disposeBatch = (b: KtoBatch) => tf.dispose([b.inputIds, b.attentionMask, b.labels, b.desirable, b.policyKlLogps, b.refLogps, b.refKlLogps]);
  /** Loss and metrics of one batch; inside the tape in training, in a tidy in evaluation. */
  const forward = (batch: KtoBatch) => {
    const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask }); // [B, T, V]
    const stats = completionStats(logits, batch.labels, batch.attentionMask, false);
    const out = ktoLoss({ policyLogps: stats.logps, refLogps: batch.refLogps, desirable: batch.desirable, policyKlLogps: batch.policyKlLogps, refKlLogps: batch.refKlLogps }, lossOptions);
    const metrics = tf.tidy(() => {
      const d = batch.desirable;
      const u = tf.sub(1, d) as tf.Tensor1D;
      const groupMean = (x: tf.Tensor, w: tf.Tensor) => tf.div(tf.sum(tf.mul(x, w)), tf.maximum(tf.sum(w), 1)) as tf.Scalar;
      const chosen = groupMean(out.chosenRewards, d);
      const rejected = groupMean(out.rejectedRewards, u);
      return {
        'rewards/chosen': chosen,
        'rewards/rejected': rejected,
        'rewards/margins': tf.sub(chosen, rejected) as tf.Scalar,
        'logps/chosen': groupMean(stats.logps, d),
        'logps/rejected': groupMean(stats.logps, u),
        'logits/chosen': meanLogit(stats, 0, batch.size, d),
        'logits/rejected': meanLogit(stats, 0, batch.size, u),
        kl: out.kl,
      };
    });
    return { losses: out.losses, metrics };
  };

  const step = (batch: KtoBatch): StepOutput => {
    const { losses, metrics } = forward(batch);
    return { lossSum: tf.sum(losses) as tf.Scalar, sequences: batch.size, inputTokens: batch.inputTokens, metrics };
  };
  // Eval metrics of one group (`…/chosen`: the desirable examples, `…/rejected`: the undesirable ones) are
  // weighted by that group's count in each batch, so a batch without the group adds nothing, not a 0.
  const evalWeight = (name: string, desirable: number, size: number) => (name.endsWith('/chosen') ? desirable : name.endsWith('/rejected') ? size - desirable : size);
  const evaluate = (): Promise<Record<string, number>> =>
    inEvalMode(model, async () => {
      const sums: Record<string, number> = {};
      const weights: Record<string, number> = {};
      for (let start = 0; start < evalExamples.length; start += o.batchSize) {
        const indices = Array.from({ length: Math.min(o.batchSize, evalExamples.length - start) }, (_, k) => start + k);
        const batch = makeBatch(evalExamples, indices, evalCache);
        const { names, values } = tf.tidy(() => {
          const { losses, metrics } = forward(batch);
          const all: Record<string, tf.Scalar> = { loss: tf.mean(losses) as tf.Scalar, ...metrics };
          return { names: Object.keys(all), values: tf.stack(Object.values(all)) };
        });
        const read = await values.data();
        values.dispose();
        disposeBatch(batch);
        const desirable = indices.filter((i) => evalExamples[i].desirable).length;
        names.forEach((name, k) => {
          const w = evalWeight(name, desirable, indices.length);
          sums[name] = (sums[name] ?? 0) + read[k] * w;
          weights[name] = (weights[name] ?? 0) + w;
        });
      }
      const means = Object.fromEntries(Object.entries(sums).map(([name, sum]) => [name, weights[name] > 0 ? sum / weights[name] : 0]));
      means['rewards/margins'] = means['rewards/chosen'] - means['rewards/rejected'];
      return means; // logged as eval_<name> by the trainer
    });

  const ewc = o.ewc === undefined ? undefined : preferenceEwcPenalty('ktoTrain', model, o.ewc); // anchors: the parameters now
  let result: TrainResult;
  try {
    result = await fineTune<KtoBatch>({
      model,
      records: examples.length,
      makeBatch: (ix) => makeBatch(examples, ix, cache),
      disposeBatch,
      step,
      penalties: ewc ? { ewc_penalty: ewc.penalty } : undefined,
      evaluate: evalExamples.length ? evaluate : undefined,
      options: o,
    });
  } finally {
    ewc?.dispose();
  }
  return { ...result, lora: report, reference: `${reference.source}${reference.precomputed ? ', precomputed' : ''}`, precomputeSeconds };
}
