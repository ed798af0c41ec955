// rewardTrain: preference records → tokenized pairs → one batch of chosen and rejected → Bradley–Terry → the shared trainer loop.
import { PosttrainError, checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { modelLimits, type TokenizerLike } from '@posttrain/data';
import { applyLora, matchesTarget, trainableReport, type LoraOptions, type LoraReport, type LoraTargetModules } from '@posttrain/lora';
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
import { bradleyTerryLoss } from '@posttrain/losses';
import { RewardModel } from './reward-model.js';
import { evaluatePairs } from './evaluate.js';
import { padTokenIdOf } from '@posttrain/policy';
import { collateRewardBatch, disposeBatch, pairRewards, tokenizePair, type RewardBatch, type RewardRecord } from './pairs.js';

/**
 * The tunable options of {@link rewardTrain}, each with its default in {@link defaultRewardOptions}.
 *
 * @example
 * ```ts
 * const tunables: Partial<RewardTunables> = { lr: 3e-3, maxSteps: 300, lora: { r: 16, alpha: 32 }, centerCoefficient: 0.01 };
 * ```
 */
export interface RewardTunables extends FineTuneTrainerOptions, OptimizerTunables {
  /** Held-out pairs; `eval_loss`, `eval_accuracy`, `eval_margin`, `eval_rewards/chosen`, `eval_rewards/rejected` and `eval_mean_reward` over them are logged every `evalEvery` steps (default: at the end). */
  eval: readonly RewardRecord[] | undefined;
  /**
   * LoRA options (`@posttrain/lora`'s `applyLora`; `targetModules` defaults to 'all-linear', which
   * here means every linear layer of the backbone and not the head): the adapters and the whole
   * head train (PEFT's `modules_to_save: ['score']`). `false`: whatever is trainable trains (full
   * fine-tuning of a fresh reward model).
   */
  lora: Partial<LoraOptions> | false;
  /** Pairs per micro-batch (default 8): each step scores 2 × batchSize sequences in one forward pass. */
  batchSize: number;
  /** Peak learning rate of AdamW (default 1e-4; the tiny base wants ~2e-3 full, ~3e-3 with LoRA, where 1e-2 collapses to equal rewards). */
  lr: number;
  /** AdamW's decoupled weight decay (default 0). */
  weightDecay: number;
  /** Learning-rate schedule after warm-up (default 'linear' to 0). */
  schedule: 'constant' | 'linear' | 'cosine';
  /** Steps of linear warm-up (default 0). */
  warmupSteps: number;
  /** c of the centring term c·(r_c + r_r)² (TRL's `center_rewards_coefficient`; 0.01 recommended; default 0: off). */
  centerCoefficient: number;
  /** Longest sequence (prompt + completion + EOS) in tokens, TRL's `max_length`; a longer one loses its prompt's start (cut on the left), so the scored end stays. null: no limit. */
  maxLength: number | null;
  /** Longest prompt in tokens, TRL's `max_prompt_length`: a longer one loses its start, BOS included (cut on the left). null: no limit. */
  maxPromptLength: number | null;
  /** Longest completion in tokens, TRL's `max_completion_length`: a longer one loses its end, EOS included (cut on the right; the reward is then read at its last kept token). null: no limit. */
  maxCompletionLength: number | null;
  /** Seed of the shuffling and of LoRA's initialisation unless `lora.seed` is set (default 0). */
  seed: number;
}

/**
 * Options of {@link rewardTrain}: the reward model, the tokenizer and the pairs, then the tunables.
 *
 * @example
 * ```ts
 * const options: RewardTrainOptions = { model: new RewardModel(backbone), tokenizer, train: pairs, lr: 2e-3, batchSize: 64 };
 * ```
 */
export interface RewardTrainOptions extends Partial<RewardTunables> {
  /** A {@link RewardModel} over any causal LM. */
  model: RewardModel;
  tokenizer: TokenizerLike;
  train: readonly RewardRecord[];
}

/**
 * The defaults of {@link rewardTrain}'s tunable options.
 *
 * @example
 * ```ts
 * await rewardTrain({ ...defaultRewardOptions, model, tokenizer, train: pairs, maxSteps: 100 });
 * ```
 */
export const defaultRewardOptions: Readonly<RewardTunables> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  eval: undefined,
  lora: false,
  batchSize: 8,
  lr: 1e-4,
  weightDecay: 0,
  schedule: 'linear',
  warmupSteps: 0,
  centerCoefficient: 0,
  maxLength: null,
  maxPromptLength: null,
  maxCompletionLength: null,
  seed: 0,
});

/**
 * What {@link rewardTrain} returns: the trainer's result, the LoRA report when adapters were added, and the throughput.
 *
 * @example
 * ```ts
 * const { history, evals, lora, pairsPerSec }: RewardTrainResult = await rewardTrain(options);
 * ```
 */
export interface RewardTrainResult extends TrainResult {
  /** Trainable-parameter report after adding adapters (the head counted as trainable); undefined without `lora`. */
  lora: LoraReport | undefined;
  /** Pairs trained on / training seconds. */
  pairsPerSec: number;
}

type Resolved = RewardTunables & Pick<RewardTrainOptions, 'model' | 'tokenizer' | 'train'>;

/**
 * Validates `options` against {@link defaultRewardOptions}: unknown keys are named with the known
 * ones, and numbers are range-checked.
 *
 * @example
 * ```ts
 * const o = resolveRewardOptions({ model, tokenizer, train: pairs, lr: 1e-2 });
 * ```
 */
export function resolveRewardOptions(options: RewardTrainOptions): Resolved {
  const owner = 'rewardTrain';
  const { model, tokenizer, train: records, ...rest } = (options ?? {}) as RewardTrainOptions;
  const o = resolveOptions<Resolved>(
    owner,
    { model, tokenizer, train: records, ...rest },
    { model: undefined as unknown as RewardModel, tokenizer: undefined as unknown as TokenizerLike, train: undefined as unknown as RewardRecord[], ...defaultRewardOptions },
  );
  if (!(o.model instanceof RewardModel)) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected model to be a RewardModel; got ${o.model === undefined ? 'undefined' : ((o.model as object)?.constructor?.name ?? typeof o.model)}`,
      { help: 'wrap the language model: new RewardModel(backbone)' },
    );
  }
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode`);
  if (!Array.isArray(o.train) || o.train.length === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of preference records; got ${Array.isArray(o.train) ? 'an empty array' : typeof o.train}`, {
      help: "for example [{ prompt: 'abc>', chosen: 'cba', rejected: 'abc' }]",
    });
  }
  checkEvalRecords(owner, o.eval, { shape: '{ prompt?, chosen, rejected }' });
  checkFineTuneOptions(owner, o);
  checkNumber(owner, 'centerCoefficient', o.centerCoefficient, 'a number ≥ 0', (v) => v >= 0);
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${JSON.stringify(o.lora)}`, {
      help: "for example lora: { r: 16, alpha: 32, targetModules: 'all-linear' }",
    });
  }
  if (o.lora !== false && o.lora.targetModules !== undefined && o.lora.targetModules !== 'all-linear' && matchesTarget(o.lora.targetModules, 'score', o.model.score)) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected lora.targetModules to leave out the head "score"; got ${o.lora.targetModules instanceof RegExp ? String(o.lora.targetModules) : JSON.stringify(o.lora.targetModules)}`,
      {
        help: "the head trains fully beside the adapters (PEFT's modules_to_save); target the backbone's layers, e.g. ['q_proj', 'v_proj'] or 'all-linear'",
      },
    );
  }
  return o;
}

/** 'all-linear' for a reward model: every linear layer's name in the backbone, never the head. */
function backboneTargets(model: RewardModel, targets: LoraTargetModules | undefined): LoraTargetModules {
  if (targets !== undefined && targets !== 'all-linear') return targets;
  const names = new Set<string>();
  for (const [path, module] of model.namedModules()) {
    if (path === '' || path === 'score' || path.startsWith('score.')) continue;
    if (matchesTarget('all-linear', path, module)) names.add(path.split('.').pop()!);
  }
  return [...names].sort();
}

/**
 * Adds LoRA adapters to the backbone's layers (the head excluded) and makes the head trainable
 * beside them, PEFT's `modules_to_save: ['score']`. Returns the trainable-parameter report.
 */
function addAdapters(model: RewardModel, lora: Partial<LoraOptions>, seed: number): LoraReport {
  const { targets } = applyLora(model, { seed, ...lora, targetModules: backboneTargets(model, lora.targetModules) });
  model.score.unfreeze();
  return trainableReport(model, targets);
}

/**
 * Trains a {@link RewardModel} on preference pairs with the Bradley–Terry loss (`bradleyTerryLoss`
 * from `@posttrain/losses`: −log σ(r_c − r_r − m) + c·(r_c + r_r)²), as TRL's `RewardTrainer`.
 * Each record is tokenized as prompt + completion + EOS for both completions; a micro-batch puts
 * its B chosen and B rejected sequences in one right-padded batch and one forward pass, and the
 * reward is read at each sequence's last real token (the EOS). `lossSum` is the sum of per-pair
 * losses and the trainer divides by the pairs of the optimizer step: the records log `pairs` and
 * `pairs_per_second`. Logged each step under TRL's keys (docs/metrics.md): `loss`, `accuracy`
 * (r_c > r_r), `margin` (mean r_c − r_r), `mean_reward`, `rewards/chosen` and `rewards/rejected`
 * (mean rewards of each side), `learning_rate`, `grad_norm`, `epoch`, `num_tokens`; every
 * `evalEvery` steps the same over `eval` with TRL's `eval_` prefix (`eval_accuracy`, …). With `lora`,
 * adapters go on the backbone's linear layers and the head trains fully beside them (PEFT's
 * `modules_to_save`); save with `saveRewardModel`.
 *
 * @example
 * ```ts
 * const rm = new RewardModel(await loadModel('examples/sft/tiny-base'));
 * const pairs = train.map((e, i) => reversalTask.preferencePair(e, i));
 * const { history } = await rewardTrain({ model: rm, tokenizer, train: pairs, lora: { r: 16, alpha: 32 }, lr: 3e-3, batchSize: 32, maxSteps: 300 });
 * await saveRewardModel(rm, 'out/reward');
 * ```
 */
export async function rewardTrain(options: RewardTrainOptions): Promise<RewardTrainResult> {
  const o = resolveRewardOptions(options);
  const owner = 'rewardTrain';
  const { model, tokenizer } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  // An id the backbone has no embedding for, or a sequence longer than its context, is named by record before any step.
  const lengths = {
    maxLength: o.maxLength,
    maxPromptLength: o.maxPromptLength,
    maxCompletionLength: o.maxCompletionLength,
    ...modelLimits(model.config),
  };
  const pairs = o.train.map((r, i) => tokenizePair(tokenizer, r, i, lengths, owner));
  const evalPairs = (o.eval ?? []).map((r, i) => tokenizePair(tokenizer, r, i, lengths, `${owner}: eval`));
  const withMargin = o.train.some((r) => r.margin !== undefined);
  const report = o.lora === false ? undefined : addAdapters(model, o.lora, o.seed);
  if (model.trainableParameters().size === 0)
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: the reward model has no trainable parameters`, { help: 'unfreeze it (model.unfreeze()) or pass lora options' });
  const makeBatch = (indices: number[]): RewardBatch & { inputTokens: number } => ({
    ...collateRewardBatch(
      indices.map((i) => pairs[i]),
      padTokenId,
      withMargin,
    ),
    inputTokens: indices.reduce((n, i) => n + pairs[i].chosen.inputIds.length + pairs[i].rejected.inputIds.length, 0),
  });
  const step = (batch: RewardBatch & { inputTokens: number }): StepOutput => {
    const { chosen, rejected } = pairRewards(model, batch);
    const out = bradleyTerryLoss(chosen, rejected, { margin: batch.margin, centerCoefficient: o.centerCoefficient });
    const metrics = {
      accuracy: out.accuracy,
      margin: tf.mean(out.margin) as tf.Scalar,
      mean_reward: tf.div(tf.add(tf.sum(chosen), tf.sum(rejected)), 2 * batch.pairs) as tf.Scalar,
      'rewards/chosen': tf.mean(chosen) as tf.Scalar,
      'rewards/rejected': tf.mean(rejected) as tf.Scalar,
    };
    return { lossSum: tf.sum(out.losses) as tf.Scalar, pairs: batch.pairs, inputTokens: batch.inputTokens, metrics };
  };
  const evaluate = async (): Promise<Record<string, number>> => {
    const r = await evaluatePairs(model, evalPairs, padTokenId, o.batchSize);
    // Logged with TRL's eval_ prefix: eval_loss, eval_accuracy, …
    return { loss: r.loss, accuracy: r.accuracy, margin: r.margin, mean_reward: (r.chosenScore + r.rejectedScore) / 2, 'rewards/chosen': r.chosenScore, 'rewards/rejected': r.rejectedScore };
  };
  const result = await fineTune({ model, records: pairs.length, makeBatch, disposeBatch, step, evaluate: evalPairs.length ? evaluate : undefined, options: o });
  const trained = result.history.reduce((sum, r: TrainRecord) => sum + (r.pairs ?? 0), 0);
  return { ...result, lora: report, pairsPerSec: result.elapsed > 0 ? trained / result.elapsed : 0 };
}
