// grpoTrain: prompts → rollouts of numGenerations completions each → rewards → group-relative
// advantages → the clipped GRPO loss of @posttrain/losses → the shared trainer loop.
import { PosttrainError, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { LoraReport } from '@posttrain/lora';
import { grpoAdvantages, grpoLoss, type GrpoNormalization } from '@posttrain/losses';
import { rolloutMetrics, sequenceLogps, type PromptRecord, type Rollout } from '@posttrain/policy';
import { defaultFineTuneTrainerOptions, type StepOutput, type TrainResult } from '@posttrain/trainer';
import { appendCompletions, checkOnline, completionBatch, disposeCompletionBatch, onlineDefaults, prepareOnline, type CompletionBatch, type OnlineTunables } from './online.js';

/**
 * The tunable options of {@link grpoTrain}, each with its default in {@link defaultGrpoOptions};
 * TRL's GRPOConfig names in camelCase.
 *
 * @example
 * ```ts
 * const tunables: Partial<GrpoTunables> = { numGenerations: 8, lossType: 'dapo', epsilonHigh: 0.28, beta: 0, scaleRewards: 'group' };
 * ```
 */
export interface GrpoTunables extends OnlineTunables {
  /** How per-token losses are reduced (TRL's `loss_type`, default 'dapo'): see `grpoLoss` in @posttrain/losses. */
  lossType: GrpoNormalization;
  /** Lower clip ε of the ratio, in (0, 1) (TRL's `epsilon`, default 0.2). */
  epsilon: number;
  /** Upper clip ε_high, > 0; null: `epsilon` (TRL's `epsilon_high`; DAPO uses 0.28). */
  epsilonHigh: number | null;
  /** Weight β of the k3 KL to the reference, ≥ 0 (TRL's default 0: no reference model). */
  beta: number;
  /** Optimisation passes over each rollout (TRL's `num_iterations`, μ of the GRPO paper); above 1 the sampling policy's log-probs are cached for the ratio. */
  numIterations: number;
  /** What the centred rewards are divided by: the group's std, the batch's, or nothing (TRL's `scale_rewards`; 'none' is Dr. GRPO). */
  scaleRewards: 'group' | 'batch' | 'none';
  /** Leave completions that hit `maxCompletionLength` without a stop token out of the loss (TRL's `mask_truncated_completions`, DAPO). */
  maskTruncatedCompletions: boolean;
  /** 'token' (GRPO) or 'sequence' (GSPO: one importance ratio per completion) (TRL's `importance_sampling_level`). */
  importanceSamplingLevel: 'token' | 'sequence';
}

/**
 * Options of {@link grpoTrain}: model, tokenizer, prompt records and reward functions, then the tunables.
 *
 * @example
 * ```ts
 * const options: GrpoTrainOptions = { model, tokenizer, train: records, rewardFunctions: [taskReward(reversalTask)], lora: { r: 8 } };
 * ```
 */
export interface GrpoTrainOptions extends Partial<GrpoTunables> {
  /** The policy: any causal LM, usually an SFT checkpoint. Trained in place. */
  model: CausalLM;
  tokenizer: TokenizerLike;
  /** Prompt records `{ prompt, …columns }` (TRL's prompt-only format); the columns reach the reward functions. */
  train: readonly PromptRecord[];
  rewardFunctions: GrpoTunables['rewardFunctions'];
}

/**
 * The defaults of {@link grpoTrain}'s tunable options: TRL's GRPOConfig (lr 1e-6, 8 completions per
 * prompt, 256 new tokens, loss 'dapo', ε 0.2, β 0, one iteration, group scaling).
 *
 * @example
 * ```ts
 * await grpoTrain({ ...defaultGrpoOptions, model, tokenizer, train, rewardFunctions, lr: 1e-3 });
 * ```
 */
export const defaultGrpoOptions: Readonly<Omit<GrpoTunables, 'rewardFunctions'>> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  ...onlineDefaults,
  lossType: 'dapo',
  epsilon: 0.2,
  epsilonHigh: null,
  beta: 0,
  numIterations: 1,
  scaleRewards: 'group',
  maskTruncatedCompletions: false,
  importanceSamplingLevel: 'token',
});

/**
 * What {@link grpoTrain} returns: the trainer's result, the LoRA report, the reference and the generator.
 *
 * @example
 * ```ts
 * const { history, reference } = await grpoTrain(options);
 * history.at(-1)?.reward; // the mean reward of the last step's rollout
 * ```
 */
export interface GrpoTrainResult extends TrainResult {
  lora: LoraReport | undefined;
  /** 'adapters disabled', 'frozen copy', or 'none' (β = 0). */
  reference: string;
  /** The generator's name, e.g. 'in-process'. */
  generator: string;
}

/** One micro-batch of a rollout: completions as a right-padded batch, their mask and advantages, and the cached log-probs. */
interface GrpoBatch extends CompletionBatch {
  advantages: tf.Tensor1D;
  /** The rollout's metrics (TRL's reward, reward_std, rewards/…, completions/…). */
  rolloutMetrics: Record<string, number>;
}

const LOSS_TYPES: readonly GrpoNormalization[] = ['grpo', 'bnpo', 'dr_grpo', 'dapo'];

/**
 * Validates `options` against {@link defaultGrpoOptions}: unknown keys are named with the known
 * ones, every number is range-checked, and the batch geometry is worked out.
 *
 * @example
 * ```ts
 * const o = resolveGrpoOptions({ model, tokenizer, train, rewardFunctions, numGenerations: 4, batchSize: 8 });
 * o.geometry.promptsPerRollout; // 2
 * ```
 */
export function resolveGrpoOptions(options: GrpoTrainOptions) {
  const owner = 'grpoTrain';
  const o = resolveOptions<GrpoTunables & Pick<GrpoTrainOptions, 'model' | 'tokenizer' | 'train'>>(owner, (options ?? {}) as GrpoTrainOptions, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    train: undefined as unknown as PromptRecord[],
    rewardFunctions: undefined as unknown as GrpoTunables['rewardFunctions'],
    ...defaultGrpoOptions,
  });
  if (o.numIterations === undefined || !Number.isInteger(o.numIterations) || o.numIterations < 1) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected numIterations to be an integer ≥ 1; got ${describeValue(o.numIterations)}`);
  }
  const geometry = checkOnline(owner, o, o.numIterations);
  if (!LOSS_TYPES.includes(o.lossType)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lossType to be one of ${LOSS_TYPES.map((t) => `'${t}'`).join(', ')}; got ${describeValue(o.lossType)}`);
  }
  if (!['group', 'batch', 'none'].includes(o.scaleRewards)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected scaleRewards to be 'group', 'batch' or 'none'; got ${describeValue(o.scaleRewards)}`);
  }
  if (!['token', 'sequence'].includes(o.importanceSamplingLevel)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected importanceSamplingLevel to be 'token' or 'sequence'; got ${describeValue(o.importanceSamplingLevel)}`);
  }
  if (typeof o.maskTruncatedCompletions !== 'boolean') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected maskTruncatedCompletions to be true or false; got ${describeValue(o.maskTruncatedCompletions)}`);
  }
  if (!(typeof o.epsilon === 'number' && o.epsilon > 0 && o.epsilon < 1))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected epsilon to be a number in (0, 1); got ${describeValue(o.epsilon)}`);
  if (o.epsilonHigh !== null && !(typeof o.epsilonHigh === 'number' && o.epsilonHigh > 0)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected epsilonHigh to be a number > 0 or null (= epsilon); got ${describeValue(o.epsilonHigh)}`);
  }
  if (!(typeof o.beta === 'number' && o.beta >= 0 && Number.isFinite(o.beta))) throw new PosttrainError('INVALID_OPTION', `${owner}: expected beta to be a number ≥ 0; got ${describeValue(o.beta)}`);
  return { ...o, geometry };
}

/**
 * Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300) as TRL's
 * GRPOTrainer runs it, with its DAPO (Yu et al. 2025, arXiv 2503.14476), Dr. GRPO (Liu et al.
 * 2025, arXiv 2503.20783) and GSPO (Zheng et al. 2025, arXiv 2507.18071) options.
 *
 * Each rollout takes `generationBatchSize / numGenerations` prompts (shuffled per epoch), samples
 * `numGenerations` completions of each from the generator (seeded per rollout, so a resumed run
 * samples what the uninterrupted one did), scores them with the reward functions (weighted sum,
 * `null` skipped), and turns each group's rewards into advantages (`grpoAdvantages`, `scaleRewards`).
 * The rollout is split into micro-batches of `batchSize` completions, trained on `numIterations`
 * times through `@posttrain/trainer`'s loop with `grpoLoss` (`lossType`, `epsilon`, `epsilonHigh`,
 * `beta` with the k3 KL to the reference, `importanceSamplingLevel`). Completions are scored with
 * the logits divided by `temperature`, as they were sampled.
 *
 * Logged each step under TRL's keys (docs/metrics.md): `loss`, `reward`, `reward_std`,
 * `rewards/<name>/mean|std`, `frac_reward_zero_std`, `completions/mean_length|min_length|max_length|
 * clipped_ratio|mean_terminated_length|…`, `entropy`, `clip_ratio/low_mean|high_mean|region_mean`,
 * `kl` (β > 0), `learning_rate`, `grad_norm`, `num_tokens`; the completion table goes to
 * `completions.jsonl` beside `logFile`.
 *
 * @example
 * ```ts
 * const { train, test } = generateSplit(reversalTask, 0, { train: 2000, test: 200 });
 * const result = await grpoTrain({
 *   model, tokenizer,
 *   train: train.map((e) => ({ prompt: e.prompt, answer: e.answer })),
 *   rewardFunctions: [taskReward(reversalTask)],
 *   numGenerations: 8, batchSize: 32, maxCompletionLength: 8, lora: { r: 8 }, lr: 2e-3, maxSteps: 60,
 * });
 * ```
 */
export async function grpoTrain(options: GrpoTrainOptions): Promise<GrpoTrainResult> {
  const o = resolveGrpoOptions(options);
  const { model, geometry } = o;
  const run = await prepareOnline('grpoTrain', o, { weight: o.beta, why: `beta = ${o.beta}` });
  const { padTokenId, reference, completionsFile } = run;
  const needOld = geometry.stepsPerRollout > 1;
  const score = { temperature: o.temperature };

  const makeRollout = async (indices: number[], seed: number, index: number): Promise<GrpoBatch[]> => {
    const { rollout, step } = await run.collect(indices, seed, index);
    const advantages = await readAdvantages(rollout.rewards.total, o.numGenerations, o.scaleRewards);
    const metrics = rolloutMetrics(rollout);
    await appendCompletions(completionsFile, rollout, step, { advantage: Array.from(advantages) });
    const batches: GrpoBatch[] = [];
    try {
      for (let k = 0; k < geometry.microBatchesPerRollout; k++) {
        const rows = Array.from({ length: o.batchSize }, (_, j) => k * o.batchSize + j);
        batches.push(await makeBatch(rollout, rows, advantages, metrics));
      }
    } catch (error) {
      batches.forEach(disposeBatch);
      throw error;
    }
    return batches;
  };

  const makeBatch = async (rollout: Rollout, rows: number[], advantages: Float64Array, metrics: Record<string, number>): Promise<GrpoBatch> => {
    const dropped = rows.map((i) => o.maskTruncatedCompletions && rollout.completions[i].finishReason === 'length');
    return {
      ...completionBatch(model, rollout, rows, { padTokenId, temperature: o.temperature, old: needOld, reference, dropped }),
      advantages: tf.tensor1d(rows.map((i) => advantages[i])),
      rolloutMetrics: metrics,
    };
  };

  const step = (batch: GrpoBatch): StepOutput => {
    const { tokenLogps, tokenEntropy } = sequenceLogps(model, batch, { ...score, gradient: true, entropy: true });
    const out = grpoLoss(
      { logprobs: tokenLogps, oldLogprobs: batch.oldLogps, refLogprobs: batch.refLogps, advantages: batch.advantages, mask: batch.mask },
      {
        epsilonLow: o.epsilon,
        epsilonHigh: o.epsilonHigh ?? o.epsilon,
        beta: o.beta,
        normalization: o.lossType,
        maxCompletionLength: o.maxCompletionLength,
        importanceSamplingLevel: o.importanceSamplingLevel,
      },
    );
    const entropy = tf.div(tf.sum(tf.mul(tokenEntropy as tf.Tensor2D, batch.mask)), Math.max(batch.maskTokens, 1)) as tf.Scalar;
    const metrics: Record<string, tf.Scalar | number> = {
      ...batch.rolloutMetrics,
      entropy,
      'clip_ratio/low_mean': out.clipRatioLow,
      'clip_ratio/high_mean': out.clipRatioHigh,
      'clip_ratio/region_mean': out.clipRatio,
      ...(out.kl ? { kl: out.kl } : {}),
    };
    // The trainer divides the summed lossSum by the step's units: tokens for the token mean ('dapo'),
    // completions for the per-sequence reductions (and for 'bnpo', the mean of micro-batch token means).
    if (o.lossType === 'dapo') return { lossSum: tf.mul(out.loss, batch.maskTokens) as tf.Scalar, tokens: batch.maskTokens, inputTokens: batch.inputTokens, metrics };
    return { lossSum: tf.mul(out.loss, batch.rows) as tf.Scalar, sequences: batch.rows, inputTokens: batch.inputTokens, metrics };
  };

  const result = await run.train<GrpoBatch, GrpoBatch[]>(
    o.numIterations,
    { rollout: makeRollout, microBatch: (batches, k) => batches[k % batches.length], dispose: (batches) => batches.forEach(disposeBatch) },
    step,
  );
  return { ...result, lora: run.lora, reference: reference ? reference.source : 'none', generator: run.generator.name };
}

function disposeBatch(b: GrpoBatch): void {
  disposeCompletionBatch(b, [b.advantages]);
}

/** GRPO's advantages of a rollout's rewards, read back to the host. */
async function readAdvantages(total: Float64Array, groupSize: number, scale: GrpoTunables['scaleRewards']): Promise<Float64Array> {
  const rewards = tf.tensor1d(Float32Array.from(total));
  const { advantages, mean, std } = grpoAdvantages(rewards, { groupSize, scale });
  try {
    return Float64Array.from(await advantages.data());
  } finally {
    tf.dispose([rewards, advantages, mean, std]);
  }
}
