// onlineDpoTrain: prompts → two sampled completions each → ranked by a reward → chosen/rejected
// pairs with the reference's log-probs → a DPO-family objective → the shared trainer loop.
import { PosttrainError, checkNumber, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizedExample, TokenizerLike } from '@posttrain/data';
import { applyLora, loraLayers, type LoraOptions, type LoraReport } from '@posttrain/lora';
import {
  appendJsonl,
  checkPromptRecords,
  collatePairs,
  collectRollout,
  completionsPath,
  encodePrompts,
  resolveRewardFunctions,
  completionRows,
  createReference,
  inProcessGenerator,
  padTokenIdOf,
  rolloutMetrics,
  rolloutSchedule,
  sequenceLogps,
  type Generator,
  type PairBatch,
  type PromptFit,
  type PromptRecord,
  type Reference,
  type RewardFunction,
  type Rollout,
  type ScalarRewardModel,
} from '@posttrain/policy';
import {
  checkEvalRecords,
  checkFineTuneOptions,
  defaultFineTuneTrainerOptions,
  fineTune,
  type FineTuneTrainerOptions,
  type OptimizerTunables,
  type StepOutput,
  type TrainResult,
} from '@posttrain/trainer';
import { completionStats, meanLogit } from './completion-stats.js';
import { preferenceMetrics } from './dpo-train.js';
import { toObjective, type ObjectiveInputs, type PreferenceLossFn, type PreferenceObjective } from './objective.js';
import { resolveReference } from './reference.js';

/**
 * The tunable options of {@link onlineDpoTrain}, each with its default in
 * {@link defaultOnlineDpoOptions}; TRL's OnlineDPOConfig names in camelCase.
 *
 * @example
 * ```ts
 * const tunables: Partial<OnlineDpoTunables> = { beta: 0.1, maxNewTokens: 8, temperature: 1, missingEosPenalty: 1, lora: { r: 16 }, lr: 1e-3 };
 * ```
 */
export interface OnlineDpoTunables extends FineTuneTrainerOptions, OptimizerTunables {
  /** What ranks the two completions: reward functions in TRL's shape, or reward models (`@posttrain/reward`'s `RewardModel`), one or several (TRL's `reward_funcs`). */
  rewardFunctions: RewardFunction | ScalarRewardModel | readonly (RewardFunction | ScalarRewardModel)[];
  /** One weight per reward function; null: all 1 (TRL's `reward_weights`). */
  rewardWeights: readonly number[] | null;
  /** Held-out prompt records: every `evalEvery` steps one sampled completion each is scored (`eval_reward`, `eval_rewards/<name>/mean`). */
  eval: readonly PromptRecord[] | undefined;
  /** The objective, as {@link dpoTrain} takes it: a DPO-family loss (run with `beta`) or an objective (`dpoObjective`, `simpoObjective`, `orpoObjective`). Default `dpoSigmoidLoss` (TRL's `loss_type="sigmoid"`; `ipoLoss` is its `"ipo"`). */
  loss: PreferenceObjective | PreferenceLossFn<{ beta: number }> | undefined;
  /** β of a loss given as a function (TRL's default 0.1); an objective carries its own. One number: TRL's per-epoch list is not taken. */
  beta: number;
  /** The reference: 'adapters-disabled' (LoRA: the policy without its adapters, the default with LoRA) or `{ model: frozenCopy }`. Never precomputed: the completions are not known before training. Left out for SimPO and ORPO. */
  reference: 'adapters-disabled' | { model: CausalLM } | undefined;
  /** New tokens per completion at most, the EOS included (TRL's `max_new_tokens`, default 64; the other online trainers' `maxCompletionLength`). */
  maxNewTokens: number;
  /** Longest prompt + completion in tokens (TRL's `max_length`): a prompt longer than `maxLength − maxNewTokens` loses its start. null: the model's context. */
  maxLength: number | null;
  /** Sampling temperature, > 0 (TRL's default 0.9). Completions are scored at temperature 1, as TRL's online DPO scores them. */
  temperature: number;
  /** Top-k filter of sampling, 0: off (TRL's `top_k`). */
  topK: number;
  /** Nucleus filter of sampling, 1: off (TRL's `top_p`). */
  topP: number;
  /** Min-p filter of sampling, 0: off (TRL's `min_p`). */
  minP: number;
  /** Subtracted from the reward of a completion that did not end with a stop token (the EOS) before the ranking (TRL's `missing_eos_penalty`); null: none. */
  missingEosPenalty: number | null;
  /** Where completions come from; undefined: `inProcessGenerator` on the policy with the sampling options above. */
  generator: Generator | undefined;
  /** LoRA options (`applyLora`; `targetModules` defaults to 'all-linear'): only the adapters train. `false`: the model's trainable parameters (then pass a frozen-copy reference). */
  lora: Partial<LoraOptions> | false;
  /** Prompts per micro-batch, which is also its pairs: B prompts give 2B completions and one `[2B, T]` forward (TRL's `per_device_train_batch_size`). */
  batchSize: number;
  /** JSONL completion table (step, prompt, completion, reward, each function's reward, score after the EOS penalty, chosen 1/0); undefined: `completions.jsonl` beside `logFile`, or none without one. */
  completionsFile: string | undefined;
  /** Seed of the prompt order, the sampling streams, dropout and LoRA's initialisation unless `lora.seed`. */
  seed: number;
}

/**
 * Options of {@link onlineDpoTrain}: model, tokenizer, prompt records and the reward, then the tunables.
 *
 * @example
 * ```ts
 * const options: OnlineDpoTrainOptions = { model, tokenizer, train: records, rewardFunctions: taskReward(reversalTask, { mode: 'partial' }), lora: { r: 16 } };
 * ```
 */
export interface OnlineDpoTrainOptions extends Partial<OnlineDpoTunables> {
  /** The policy: any causal LM, usually an SFT checkpoint. Trained in place. */
  model: CausalLM;
  tokenizer: TokenizerLike;
  /** Prompt records `{ prompt, …columns }` (TRL's prompt-only format); the columns reach the reward functions. */
  train: readonly PromptRecord[];
  rewardFunctions: OnlineDpoTunables['rewardFunctions'];
}

/**
 * The defaults of {@link onlineDpoTrain}'s tunable options: TRL's OnlineDPOConfig (lr 5e-7, β 0.1,
 * sigmoid loss, 64 new tokens, temperature 0.9, no EOS penalty, 8 prompts per micro-batch).
 *
 * @example
 * ```ts
 * await onlineDpoTrain({ ...defaultOnlineDpoOptions, model, tokenizer, train, rewardFunctions, lr: 1e-3 });
 * ```
 */
export const defaultOnlineDpoOptions: Readonly<Omit<OnlineDpoTunables, 'rewardFunctions'>> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  rewardWeights: null,
  eval: undefined,
  loss: undefined,
  beta: 0.1,
  reference: undefined,
  maxNewTokens: 64,
  maxLength: null,
  temperature: 0.9,
  topK: 0,
  topP: 1,
  minP: 0,
  missingEosPenalty: null,
  generator: undefined,
  lora: false,
  batchSize: 8,
  completionsFile: undefined,
  lr: 5e-7,
  weightDecay: 0,
  schedule: 'linear',
  warmupSteps: 0,
  seed: 0,
});

/**
 * What {@link onlineDpoTrain} returns: the trainer's result, the LoRA report, the objective, the reference and the generator.
 *
 * @example
 * ```ts
 * const { history, objective, reference } = await onlineDpoTrain(options); // 'dpoSigmoidLoss', 'adapters disabled'
 * history.at(-1)?.['objective/scores_margin']; // the mean reward gap of the last step's pairs
 * ```
 */
export interface OnlineDpoTrainResult extends TrainResult {
  lora: LoraReport | undefined;
  /** The objective's loss function, e.g. 'dpoSigmoidLoss'. */
  objective: string;
  /** 'adapters disabled', 'frozen copy', or 'none' for SimPO and ORPO. */
  reference: string;
  /** The generator's name, e.g. 'in-process'. */
  generator: string;
}

type Resolved = OnlineDpoTunables & Pick<OnlineDpoTrainOptions, 'model' | 'tokenizer' | 'train'>;

/** One micro-batch: B pairs as `[2B, T]` (chosen rows first), the reference's `[2B]` log-probs and the rollout's host metrics. */
interface OnlineDpoBatch extends PairBatch {
  refLogps: tf.Tensor1D | undefined;
  inputTokens: number;
  /** Mean score (after the EOS penalty) of the 2B completions. */
  scores: number;
  hostMetrics: Record<string, number>;
}

/**
 * Validates `options` against {@link defaultOnlineDpoOptions}: unknown keys are named with the known
 * ones, every number is range-checked, the reward functions and the objective are resolved.
 *
 * @example
 * ```ts
 * const o = resolveOnlineDpoOptions({ model, tokenizer, train, rewardFunctions: taskReward(reversalTask), maxNewTokens: 8 });
 * o.objective.name; // 'dpoSigmoidLoss'
 * ```
 */
export function resolveOnlineDpoOptions(options: OnlineDpoTrainOptions): Resolved & { objective: PreferenceObjective; rewards: { functions: RewardFunction[]; weights: number[] } } {
  const owner = 'onlineDpoTrain';
  const given = (options ?? {}) as OnlineDpoTrainOptions;
  const o = resolveOptions<Resolved>(owner, given, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    train: undefined as unknown as PromptRecord[],
    rewardFunctions: undefined as unknown as OnlineDpoTunables['rewardFunctions'],
    ...defaultOnlineDpoOptions,
  });
  if (!o.model || typeof o.model.forward !== 'function')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${describeValue(o.model)}`);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function' || typeof o.tokenizer.decode !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode; got ${describeValue(o.tokenizer)}`);
  }
  checkPromptRecords(owner, 'train', o.train);
  checkPromptRecords(owner, 'eval', checkEvalRecords(owner, o.eval, { shape: '{ prompt }' }));
  checkFineTuneOptions(owner, o);
  if (o.train.length < o.batchSize) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected at least batchSize = ${o.batchSize} train prompts (one micro-batch of pairs); got ${o.train.length}`, {
      help: `pass more prompt records, or set batchSize to ${o.train.length} or less`,
    });
  }
  checkNumber(owner, 'maxNewTokens', o.maxNewTokens, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (o.maxLength !== null && o.maxLength <= o.maxNewTokens) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected maxLength to exceed maxNewTokens = ${o.maxNewTokens} (room for a prompt); got ${o.maxLength}`, {
      help: `raise maxLength, lower maxNewTokens, or set maxLength to null (the model's context)`,
    });
  }
  checkNumber(owner, 'temperature', o.temperature, 'a number > 0 (two greedy completions of a prompt would be the same)', (v) => v > 0);
  checkNumber(owner, 'topK', o.topK, 'an integer ≥ 0', (v) => Number.isInteger(v) && v >= 0);
  checkNumber(owner, 'topP', o.topP, 'a number in (0, 1]', (v) => v > 0 && v <= 1);
  checkNumber(owner, 'minP', o.minP, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  if (o.missingEosPenalty !== null) checkNumber(owner, 'missingEosPenalty', o.missingEosPenalty, 'a number ≥ 0 or null', (v) => v >= 0);
  if (o.generator !== undefined && (typeof o.generator !== 'object' || o.generator === null || typeof o.generator.generate !== 'function')) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected generator to be a Generator (an object with generate); got ${describeValue(o.generator)}`);
  }
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${describeValue(o.lora)}`, { help: 'for example lora: { r: 16, alpha: 32 }' });
  }
  checkNumber(owner, 'beta', o.beta, 'a number > 0', (v) => v > 0);
  const objective = toObjective(owner, o.loss, o.beta, given.beta !== undefined);
  return { ...o, objective, rewards: resolveRewardFunctions(owner, o.rewardFunctions, o.rewardWeights, o.tokenizer) };
}

/** The reference of an objective that needs one: never precomputed; a frozen copy when there is no LoRA. */
function onlineReference(owner: string, model: CausalLM, option: unknown, objective: PreferenceObjective, hasLora: boolean): Reference | undefined {
  if (!objective.usesReference) return resolveReference(owner, model, option, false, objective.name, hasLora);
  if (option === 'precomputed' || (typeof option === 'object' && option !== null && 'precompute' in option)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected reference 'adapters-disabled' or { model }; got ${describeValue(option)}: online completions are not known before training`, {
      help: "leave reference out with LoRA ('adapters-disabled'), or pass { model: frozenCopy }",
    });
  }
  if (option === undefined && !hasLora) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: ${objective.name} needs a reference model; got none (no LoRA, no reference option)`, {
      help: 'pass reference: { model: await loadModel(sameCheckpoint) } (a frozen copy), or train LoRA (lora: { r: 8 }) to use the policy with its adapters disabled',
    });
  }
  return createReference(model, option as 'adapters-disabled' | { model: CausalLM }, { owner, hasLora });
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/**
 * Online DPO (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback",
 * arXiv 2402.04792) as TRL's OnlineDPOTrainer runs it, with any DPO-family objective of
 * {@link dpoTrain}.
 *
 * Each micro-batch takes `batchSize` prompts (shuffled per epoch) and samples two completions of
 * each from the generator (seeded per micro-batch, so a resumed run samples what the uninterrupted
 * one did). The reward functions score them (weighted sum, `null` skipped); `missingEosPenalty` is
 * subtracted from a completion that did not stop. The higher-scored completion is chosen, the other
 * rejected; on a tie the first sample is chosen, as TRL's `first_half >= second_half` (a tie between
 * two identical completions gives no gradient; between two different ones it is a coin the sampler
 * tossed). The reference's log-probs of the pair batch are computed then, outside the gradient tape;
 * the policy's, the objective and the update follow in `@posttrain/trainer`'s loop.
 *
 * Logged each step under TRL's online DPO keys (docs/dpo.md): `loss`, `objective/scores`,
 * `objective/scores_margin`, `objective/kl`, `objective/entropy`, `objective/non_score_reward`,
 * `objective/rlhf_reward`, `val/contain_eos_token`, `rewards/chosen|rejected|accuracies|margins`,
 * `logps/chosen|rejected`, `logits/chosen|rejected`, `beta`, and the rollout metrics of the other
 * online trainers (`reward`, `reward_std`, `rewards/<name>/mean|std`, `frac_reward_zero_std`,
 * `completions/*`); the completion table goes to `completions.jsonl` beside `logFile`.
 *
 * @example
 * ```ts
 * const { train } = generateSplit(reversalTask, 0, { train: 2000, test: 200 });
 * const result = await onlineDpoTrain({
 *   model, tokenizer,                        // an SFT checkpoint
 *   train: train.map((e) => ({ prompt: e.prompt, answer: e.answer })),
 *   rewardFunctions: taskReward(reversalTask, { mode: 'partial' }),
 *   maxNewTokens: 8, temperature: 1, batchSize: 16, lora: { r: 16, alpha: 32 }, lr: 1e-3, maxSteps: 100,
 * });
 * result.history.at(-1)?.['objective/scores'];
 * ```
 */
export async function onlineDpoTrain(options: OnlineDpoTrainOptions): Promise<OnlineDpoTrainResult> {
  const owner = 'onlineDpoTrain';
  const o = resolveOnlineDpoOptions(options);
  const { model, tokenizer, objective, rewards } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  // maxLength bounds prompt + completion: prompts lose their start to leave maxNewTokens (TRL's max_length).
  const fit: PromptFit = {
    maxPromptTokens: o.maxLength === null ? null : o.maxLength - o.maxNewTokens,
    newTokens: o.maxNewTokens,
    newTokensOption: 'maxNewTokens',
    cutOption: 'maxLength',
    cutLimits: 'sequence',
  };
  const promptIds = encodePrompts(owner, 'train', tokenizer, o.train, fit, model.config.maxPositions);
  const evalRecords = o.eval ?? [];
  const evalPromptIds = encodePrompts(owner, 'eval', tokenizer, evalRecords, fit, model.config.maxPositions);
  const hasLora = o.lora !== false || loraLayers(model).size > 0;
  const reference = onlineReference(owner, model, o.reference, objective, hasLora);
  const report = o.lora === false ? undefined : applyLora(model, { targetModules: 'all-linear', seed: o.seed, ...o.lora });
  const generator = o.generator ?? inProcessGenerator(model, tokenizer, { temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP });
  const completionsFile = await completionsPath(o);

  const makePairs = async (indices: number[], seed: number, index: number): Promise<OnlineDpoBatch> => {
    const step = Math.floor(index / o.gradientAccumulationSteps);
    if (index > 0) await generator.syncWeights?.();
    const rollout: Rollout = await collectRollout({
      generator,
      tokenizer,
      records: indices.map((i) => o.train[i]),
      promptIds: indices.map((i) => promptIds[i]),
      n: 2,
      maxTokens: o.maxNewTokens,
      seed,
      rewardFunctions: rewards.functions,
      rewardWeights: rewards.weights,
      step,
    });
    const stopped = rollout.completions.map((c) => c.finishReason === 'stop');
    const scores = Array.from(rollout.rewards.total, (r, i) => r - (o.missingEosPenalty !== null && !stopped[i] ? o.missingEosPenalty : 0));
    // Completions 2p and 2p + 1 are prompt p's two samples; the first is chosen on a tie (TRL).
    const chosen = indices.map((_, p) => (scores[2 * p] >= scores[2 * p + 1] ? 2 * p : 2 * p + 1));
    const rejected = chosen.map((c) => c ^ 1);
    const example = (i: number): TokenizedExample => {
      const prompt = rollout.promptIds[i >> 1];
      const ids = rollout.completions[i].ids;
      return { inputIds: [...prompt, ...ids], labels: [...prompt.map(() => -100), ...ids], attentionMask: [...prompt, ...ids].map(() => 1), promptLength: prompt.length };
    };
    const isChosen = new Set(chosen);
    await appendJsonl(completionsFile, completionRows(rollout, step, { score: scores, chosen: scores.map((_, i) => (isChosen.has(i) ? 1 : 0)) }));
    const batch = collatePairs(
      chosen.map((c, p) => ({ chosen: example(c), rejected: example(rejected[p]) })),
      { padTokenId },
    );
    let refLogps: tf.Tensor1D | undefined;
    try {
      refLogps = reference?.run((m) => tf.tidy(() => sequenceLogps(m, batch, { average: objective.averageLogps }).logps));
    } catch (error) {
      tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
      throw error;
    }
    const hostMetrics = {
      ...rolloutMetrics(rollout),
      'objective/scores': mean(scores),
      'objective/scores_margin': mean(chosen.map((c, p) => scores[c] - scores[rejected[p]])),
      'val/contain_eos_token': mean(stopped.map(Number)),
      beta: objective.beta,
    };
    const inputTokens = rollout.completions.reduce((n, c, i) => n + c.ids.length + rollout.promptIds[i >> 1].length, 0);
    return { ...batch, refLogps, inputTokens, scores: mean(scores), hostMetrics };
  };

  const step = (batch: OnlineDpoBatch): StepOutput => {
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
    const metrics: Record<string, tf.Scalar | number> = {
      ...batch.hostMetrics,
      ...preferenceMetrics(out, inputs, { chosen: meanLogit(stats, 0, B), rejected: meanLogit(stats, B, B) }),
    };
    // TRL's objective/* use each completion's summed log-probs (per-token means × tokens for IPO, SimPO, ORPO).
    const sums = (logps: tf.Tensor1D) => (objective.averageLogps ? tf.mul(logps, stats.tokens) : logps);
    metrics['objective/entropy'] = tf.neg(tf.mean(sums(stats.logps))) as tf.Scalar;
    if (batch.refLogps) {
      const kl = tf.mean(tf.sub(sums(stats.logps), sums(batch.refLogps))) as tf.Scalar;
      metrics['objective/kl'] = kl;
      metrics['objective/non_score_reward'] = tf.mul(kl, -objective.beta) as tf.Scalar;
      metrics['objective/rlhf_reward'] = tf.sub(batch.scores, tf.mul(kl, objective.beta)) as tf.Scalar;
    }
    return { lossSum: tf.sum(out.losses) as tf.Scalar, pairs: B, inputTokens: batch.inputTokens, metrics };
  };

  const evaluate = async (): Promise<Record<string, number>> => {
    const rollout = await collectRollout({
      generator,
      tokenizer,
      records: evalRecords,
      promptIds: evalPromptIds,
      n: 1,
      maxTokens: o.maxNewTokens,
      seed: (o.seed ^ 0x6a09e667) | 0,
      rewardFunctions: rewards.functions,
      rewardWeights: rewards.weights,
      step: 0,
    });
    const metrics = rolloutMetrics(rollout);
    const out: Record<string, number> = { reward: metrics.reward, 'completions/mean_length': metrics['completions/mean_length'] };
    for (const name of rollout.rewards.names) out[`rewards/${name}/mean`] = metrics[`rewards/${name}/mean`];
    return out;
  };

  const schedule = rolloutSchedule<OnlineDpoBatch, OnlineDpoBatch>(
    { prompts: o.train.length, promptsPerRollout: o.batchSize, microBatchesPerRollout: 1, iterations: 1, seed: o.seed },
    { rollout: makePairs, microBatch: (batch) => batch, dispose: (b) => tf.dispose([b.inputIds, b.attentionMask, b.labels, ...(b.refLogps ? [b.refLogps] : [])]) },
  );
  const result = await fineTune<OnlineDpoBatch>({
    model,
    source: { batches: schedule, batchesPerEpoch: schedule.batchesPerEpoch },
    step,
    evaluate: evalRecords.length ? evaluate : undefined,
    options: o,
  });
  return { ...result, lora: report, objective: objective.name, reference: reference ? reference.source : 'none', generator: generator.name };
}
