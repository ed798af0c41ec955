// rlooTrain: prompts → rollouts of numGenerations completions each → rewards (clipped, minus β·KL to
// the reference) → leave-one-out advantages → TRL's clipped sequence-level RLOO loss → the shared
// trainer loop.
import { PosttrainError, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { LoraReport } from '@posttrain/lora';
import { k1, rlooAdvantages, rlooLoss } from '@posttrain/losses';
import { rolloutMetrics, sequenceLogps, type PromptRecord } from '@posttrain/policy';
import { defaultFineTuneTrainerOptions, type StepOutput, type TrainResult } from '@posttrain/trainer';
import { appendCompletions, checkOnline, completionBatch, disposeCompletionBatch, onlineDefaults, prepareOnline, type CompletionBatch, type OnlineTunables } from './online.js';

/**
 * The tunable options of {@link rlooTrain}, each with its default in {@link defaultRlooOptions};
 * TRL's RLOOConfig names in camelCase.
 *
 * @example
 * ```ts
 * const tunables: Partial<RlooTunables> = { numGenerations: 4, beta: 0.05, rewardClipRange: [-1, 1], normalizeAdvantages: true };
 * ```
 */
export interface RlooTunables extends OnlineTunables {
  /** Weight β of the KL penalty in the reward, ≥ 0 (TRL's default 0.05): r − β·Σ_t (log π_old − log π_ref), k1 summed over the completion. β > 0 needs a reference (LoRA's adapters disabled, or a frozen copy). */
  beta: number;
  /** Lower clip ε of the sequence ratio, in (0, 1) (TRL's `epsilon`, default 0.2). */
  epsilon: number;
  /** Upper clip ε_high, > 0; null: `epsilon` (TRL's `epsilon_high`). */
  epsilonHigh: number | null;
  /** Optimisation passes over each rollout (TRL's `num_iterations`); above 1 the sampling policy's log-probs are cached for the ratio. */
  numIterations: number;
  /** `[lo, hi]`: the weighted rewards are clipped to it before the KL penalty (TRL's `reward_clip_range`); null: no clipping. */
  rewardClipRange: readonly [number, number] | null;
  /** Whiten the advantages over the whole rollout, (A − mean) / (std + 1e-4) (TRL's `normalize_advantages`, default false). */
  normalizeAdvantages: boolean;
}

/**
 * Options of {@link rlooTrain}: model, tokenizer, prompt records and reward functions, then the tunables.
 *
 * @example
 * ```ts
 * const options: RlooTrainOptions = { model, tokenizer, train: records, rewardFunctions: [taskReward(reversalTask)], lora: { r: 8 } };
 * ```
 */
export interface RlooTrainOptions extends Partial<RlooTunables> {
  /** The policy: any causal LM, usually an SFT checkpoint. Trained in place. */
  model: CausalLM;
  tokenizer: TokenizerLike;
  /** Prompt records `{ prompt, …columns }` (TRL's prompt-only format); the columns reach the reward functions. */
  train: readonly PromptRecord[];
  rewardFunctions: RlooTunables['rewardFunctions'];
}

/**
 * The defaults of {@link rlooTrain}'s tunable options: TRL's RLOOConfig (lr 1e-6, 2 completions per
 * prompt, 256 new tokens, β 0.05, ε 0.2, one iteration, no reward clipping, no advantage whitening).
 *
 * @example
 * ```ts
 * await rlooTrain({ ...defaultRlooOptions, model, tokenizer, train, rewardFunctions, lora: { r: 8 }, lr: 1e-3 });
 * ```
 */
export const defaultRlooOptions: Readonly<Omit<RlooTunables, 'rewardFunctions'>> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  ...onlineDefaults,
  numGenerations: 2,
  beta: 0.05,
  epsilon: 0.2,
  epsilonHigh: null,
  numIterations: 1,
  rewardClipRange: null,
  normalizeAdvantages: false,
});

/**
 * What {@link rlooTrain} returns: the trainer's result, the LoRA report, the reference and the generator.
 *
 * @example
 * ```ts
 * const { history, reference } = await rlooTrain(options);
 * history.at(-1)?.kl; // the mean per-token KL to the reference of the last rollout
 * ```
 */
export interface RlooTrainResult extends TrainResult {
  lora: LoraReport | undefined;
  /** 'adapters disabled', 'frozen copy', or 'none' (β = 0). */
  reference: string;
  /** The generator's name, e.g. 'in-process'. */
  generator: string;
}

/** One micro-batch of a rollout with its advantages and the rollout's metrics. */
interface RlooBatch extends CompletionBatch {
  advantages: tf.Tensor1D;
  rolloutMetrics: Record<string, number>;
}

/**
 * Validates `options` against {@link defaultRlooOptions}: unknown keys are named with the known
 * ones, every number is range-checked, and the batch geometry is worked out.
 *
 * @example
 * ```ts
 * const o = resolveRlooOptions({ model, tokenizer, train, rewardFunctions, numGenerations: 4, batchSize: 8 });
 * o.geometry.promptsPerRollout; // 2
 * ```
 */
export function resolveRlooOptions(options: RlooTrainOptions) {
  const owner = 'rlooTrain';
  const o = resolveOptions<RlooTunables & Pick<RlooTrainOptions, 'model' | 'tokenizer' | 'train'>>(owner, (options ?? {}) as RlooTrainOptions, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    train: undefined as unknown as PromptRecord[],
    rewardFunctions: undefined as unknown as RlooTunables['rewardFunctions'],
    ...defaultRlooOptions,
  });
  const invalid = (what: string, value: unknown, help?: string) => new PosttrainError('INVALID_OPTION', `${owner}: expected ${what}; got ${describeValue(value)}`, { help });
  if (!Number.isInteger(o.numIterations) || o.numIterations < 1) throw invalid('numIterations to be an integer ≥ 1', o.numIterations);
  const geometry = checkOnline(owner, o, o.numIterations);
  if (!(typeof o.epsilon === 'number' && o.epsilon > 0 && o.epsilon < 1)) throw invalid('epsilon to be a number in (0, 1)', o.epsilon);
  if (o.epsilonHigh !== null && !(typeof o.epsilonHigh === 'number' && o.epsilonHigh > 0)) throw invalid('epsilonHigh to be a number > 0 or null (= epsilon)', o.epsilonHigh);
  if (!(typeof o.beta === 'number' && o.beta >= 0 && Number.isFinite(o.beta))) throw invalid('beta to be a number ≥ 0', o.beta, 'beta = 0 trains without the KL penalty (and without a reference)');
  if (typeof o.normalizeAdvantages !== 'boolean') throw invalid('normalizeAdvantages to be true or false', o.normalizeAdvantages);
  const range = o.rewardClipRange;
  if (range !== null && !(Array.isArray(range) && range.length === 2 && range.every((v) => typeof v === 'number' && !Number.isNaN(v)) && range[0] < range[1])) {
    throw invalid('rewardClipRange to be [lo, hi] with lo < hi, or null', range, 'for example rewardClipRange: [-1, 1] (TRL: reward_clip_range=(-1.0, 1.0)); null leaves the rewards as they are');
  }
  return { ...o, geometry };
}

/**
 * REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740; Kool et al.
 * 2019) as TRL's RLOOTrainer runs it.
 *
 * Each rollout takes `generationBatchSize / numGenerations` prompts (shuffled per epoch), samples
 * `numGenerations` completions of each from the generator (seeded per rollout, so a resumed run
 * samples what the uninterrupted one did) and scores them with the reward functions (weighted sum,
 * `null` skipped). As in TRL the rewards are then clipped to `rewardClipRange`, and with β > 0
 * penalised by the KL to the reference measured at rollout time, k1 summed over each completion:
 * `r_i − β·Σ_t (log π_old(y_i,t) − log π_ref(y_i,t))`. The advantage of a completion is its reward
 * minus the mean reward of the other completions of its prompt (`rlooAdvantages`), optionally
 * whitened over the rollout (`normalizeAdvantages`). The rollout is split into micro-batches of
 * `batchSize` completions, trained on `numIterations` times through `@posttrain/trainer`'s loop
 * with `rlooLoss`: PPO's clip (`epsilon`, `epsilonHigh`) on the ratio of each completion's summed
 * log-probs, averaged over completions. Completions are scored with the logits divided by
 * `temperature`, as they were sampled.
 *
 * Logged each step under TRL's keys (docs/metrics.md): `loss`, `reward` and `reward_std` (the
 * weighted rewards before clipping and the KL), `rewards/<name>/mean|std`, `frac_reward_zero_std`
 * (groups whose clipped, KL-penalised rewards are all equal), `kl` (β > 0: the mean per-token k1 of
 * the rollout), `entropy`, `clip_ratio/low_mean|low_min|high_mean|high_max|region_mean`,
 * `completions/mean_length|…|clipped_ratio|mean_terminated_length|…`, `learning_rate`, `grad_norm`,
 * `num_tokens`; the completion table (with each completion's advantage and, β > 0, its summed KL)
 * goes to `completions.jsonl` beside `logFile`.
 *
 * @example
 * ```ts
 * const { train, test } = generateSplit(reversalTask, 0, { train: 2000, test: 200 });
 * const result = await rlooTrain({
 *   model, tokenizer,
 *   train: train.map((e) => ({ prompt: e.prompt, answer: e.answer })),
 *   rewardFunctions: [taskReward(reversalTask)],
 *   numGenerations: 4, batchSize: 32, maxCompletionLength: 8, lora: { r: 8 }, lr: 2e-3, maxSteps: 60,
 * });
 * ```
 */
export async function rlooTrain(options: RlooTrainOptions): Promise<RlooTrainResult> {
  const o = resolveRlooOptions(options);
  const { model, geometry } = o;
  const run = await prepareOnline('rlooTrain', o, { weight: o.beta, why: `beta = ${o.beta}` });
  const { padTokenId, reference, completionsFile } = run;
  // Off-policy micro-batches (a rollout spans several optimizer steps) need the sampling policy's log-probs for the ratio; β > 0 needs them for the KL.
  const offPolicy = geometry.stepsPerRollout > 1;

  const makeRollout = async (indices: number[], seed: number, index: number): Promise<RlooBatch[]> => {
    const { rollout, step } = await run.collect(indices, seed, index);
    const parts: CompletionBatch[] = [];
    try {
      for (let k = 0; k < geometry.microBatchesPerRollout; k++) {
        const rows = Array.from({ length: o.batchSize }, (_, j) => k * o.batchSize + j);
        parts.push(completionBatch(model, rollout, rows, { padTokenId, temperature: o.temperature, old: offPolicy || reference !== undefined, reference }));
      }
      const kl = reference ? await rolloutKl(parts) : undefined;
      const shaped = shapeRewards(rollout.rewards.total, o.rewardClipRange, kl?.perCompletion, o.beta);
      const advantages = await readAdvantages(shaped, o.numGenerations, o.normalizeAdvantages);
      const metrics = { ...rolloutMetrics(rollout), frac_reward_zero_std: fracZeroStd(shaped, o.numGenerations), ...(kl ? { kl: kl.tokenMean } : {}) };
      await appendCompletions(completionsFile, rollout, step, { advantage: Array.from(advantages), ...(kl ? { kl: Array.from(kl.perCompletion) } : {}) });
      return parts.map((part, k) => ({
        ...part,
        advantages: tf.tensor1d(Array.from({ length: part.rows }, (_, j) => advantages[k * o.batchSize + j])),
        rolloutMetrics: metrics,
      }));
    } catch (error) {
      for (const part of parts) disposeCompletionBatch(part);
      throw error;
    }
  };

  const step = (batch: RlooBatch): StepOutput => {
    const { tokenLogps, tokenEntropy } = sequenceLogps(model, batch, { temperature: o.temperature, gradient: true, entropy: true });
    const out = rlooLoss(
      { logprobs: tokenLogps, oldLogprobs: offPolicy ? batch.oldLogps : undefined, advantages: batch.advantages, mask: batch.mask },
      { epsilonLow: o.epsilon, epsilonHigh: o.epsilonHigh ?? o.epsilon },
    );
    const entropy = tf.div(tf.sum(tf.mul(tokenEntropy as tf.Tensor2D, batch.mask)), Math.max(batch.maskTokens, 1)) as tf.Scalar;
    const metrics: Record<string, tf.Scalar | number> = {
      ...batch.rolloutMetrics,
      entropy,
      'clip_ratio/low_mean': out.clipRatioLow,
      'clip_ratio/low_min': out.clipRatioLowMin,
      'clip_ratio/high_mean': out.clipRatioHigh,
      'clip_ratio/high_max': out.clipRatioHighMax,
      'clip_ratio/region_mean': out.clipRatio,
    };
    // rlooLoss is a mean over completions: the trainer sums lossSum and divides by the step's completions.
    return { lossSum: tf.mul(out.loss, batch.rows) as tf.Scalar, sequences: batch.rows, inputTokens: batch.inputTokens, metrics };
  };

  const disposeBatch = (b: RlooBatch) => disposeCompletionBatch(b, [b.advantages]);
  const result = await run.train<RlooBatch, RlooBatch[]>(
    o.numIterations,
    { rollout: makeRollout, microBatch: (batches, k) => batches[k % batches.length], dispose: (batches) => batches.forEach(disposeBatch) },
    step,
  );
  return { ...result, lora: run.lora, reference: reference ? reference.source : 'none', generator: run.generator.name };
}

/** The rollout's KL to the reference, k1 = log π_old − log π_ref: summed over each completion's tokens, and its mean per token (TRL's `kl`). */
async function rolloutKl(parts: readonly CompletionBatch[]): Promise<{ perCompletion: Float64Array; tokenMean: number }> {
  const sums = parts.map((p) => tf.tidy(() => tf.sum(tf.mul(k1(p.oldLogps!, p.refLogps!), p.mask), 1)));
  try {
    const perCompletion = Float64Array.from((await Promise.all(sums.map((s) => s.data()))).flatMap((d) => Array.from(d)));
    const tokens = parts.reduce((n, p) => n + p.maskTokens, 0);
    return { perCompletion, tokenMean: perCompletion.reduce((a, b) => a + b, 0) / Math.max(tokens, 1) };
  } finally {
    tf.dispose(sums);
  }
}

/** TRL's RLOO reward: the weighted reward clipped to `range`, minus β times the completion's summed KL. */
function shapeRewards(total: Float64Array, range: readonly [number, number] | null, kl: Float64Array | undefined, beta: number): Float64Array {
  return total.map((r, i) => (range ? Math.min(Math.max(r, range[0]), range[1]) : r) - (kl ? beta * kl[i] : 0));
}

/** Fraction of completions whose group's shaped rewards have a (Bessel) std of 0 (TRL's isclose(std, 0): |std| ≤ 1e-8). */
function fracZeroStd(shaped: Float64Array, n: number): number {
  let zero = 0;
  for (let g = 0; g < shaped.length; g += n) {
    const group = Array.from(shaped.subarray(g, g + n));
    const mean = group.reduce((a, b) => a + b, 0) / n;
    if (Math.sqrt(group.reduce((a, r) => a + (r - mean) ** 2, 0) / (n - 1)) <= 1e-8) zero += 1;
  }
  return (zero * n) / shaped.length;
}

/** The leave-one-out advantages of the shaped rewards (`rlooAdvantages`), whitened over the rollout if asked, read back to the host. */
async function readAdvantages(shaped: Float64Array, groupSize: number, normalize: boolean): Promise<Float64Array> {
  const advantages = tf.tidy(() => {
    const { advantages: a, baseline } = rlooAdvantages(tf.tensor1d(Float32Array.from(shaped)), { groupSize });
    baseline.dispose();
    if (!normalize) return a;
    const centred = tf.sub(a, tf.mean(a));
    const std = tf.sqrt(tf.div(tf.sum(tf.square(centred)), Math.max(shaped.length - 1, 1)));
    return tf.div(centred, tf.add(std, 1e-4));
  });
  try {
    return Float64Array.from(await advantages.data());
  } finally {
    advantages.dispose();
  }
}
