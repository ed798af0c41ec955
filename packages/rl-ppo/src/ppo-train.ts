// ppoTrain: RLHF with PPO as TRL's PPOTrainer runs it — prompts → completions → a score per completion
// (reward model or reward functions) → per-token rewards −klCoef·KL plus the score at the end → GAE on
// a value model → whitened advantages → PPO's clipped policy and value losses, numPpoEpochs passes
// over each rollout in numMiniBatches optimizer steps, on the shared trainer loop.
import { PosttrainError, Rng, checkNumber, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForGeneration, collateForTraining, type TokenizerLike } from '@posttrain/data';
import { type LoraReport } from '@posttrain/lora';
import { gae, k1, k3, maskedWhiten, ppoPolicyLoss, ppoValueLoss } from '@posttrain/losses';
import { inEvalMode, namedReward, rolloutExamples, rolloutMetrics, sequenceLogps, type PromptRecord, type RewardFunction, type ScalarRewardModel } from '@posttrain/policy';
import { RewardModel } from '@posttrain/reward';
import { defaultFineTuneTrainerOptions, type StepOutput, type TrainResult } from '@posttrain/trainer';
import { appendCompletions, checkOnline, onlineDefaults, prepareOnline, resolveRewards, type OnlineTunables } from './online.js';

/**
 * What {@link ppoTrain} needs of a value model: `values` giving one value per position `[B, T]`
 * (`@posttrain/reward`'s `RewardModel.values`: its scalar head applied at every token), trainable
 * parameters, and train/eval switches.
 *
 * @example
 * ```ts
 * const valueModel: ValueModel = await loadRewardModel('runs/rm', { backbone }); // a second copy of the reward model, as TRL initialises it
 * ```
 */
export interface ValueModel {
  values(inputIds: tf.Tensor, options: { attentionMask?: tf.Tensor }): tf.Tensor2D;
  trainableParameters(): Map<string, tf.Variable>;
  readonly training: boolean;
  train(on?: boolean): unknown;
  eval(): unknown;
}

/**
 * The tunable options of {@link ppoTrain}, each with its default in {@link defaultPpoOptions}; TRL's
 * PPOConfig names in camelCase (`cliprange`, `vfCoef`, `lam`, …).
 *
 * @example
 * ```ts
 * const tunables: Partial<PpoTunables> = { numPpoEpochs: 4, numMiniBatches: 1, klCoef: 0.05, missingEosPenalty: 1, cliprange: 0.2, vfCoef: 0.1 };
 * ```
 */
export interface PpoTunables extends OnlineTunables {
  /** Optimisation passes over each rollout (TRL's `num_ppo_epochs`, default 4); each pass visits the completions in a fresh order. */
  numPpoEpochs: number;
  /** Optimizer steps per pass: the rollout is split into this many mini-batches of `batchSize · gradientAccumulationSteps` completions (TRL's `num_mini_batches`, default 1). */
  numMiniBatches: number;
  /** Weight of the per-token KL penalty in the reward, ≥ 0 (TRL's `kl_coef`, default 0.05); 0: no reference model. */
  klCoef: number;
  /** 'k1' (log π − log π_ref, TRL's default) or 'k3' (low-variance, ≥ 0) per-token KL estimate (TRL's `kl_estimator`). */
  klEstimator: 'k1' | 'k3';
  /** Subtracted from the score of a completion that ends without the stop token, ≥ 0; null: none (TRL's `missing_eos_penalty`). */
  missingEosPenalty: number | null;
  /** Whiten the per-token rewards over the rollout before GAE, keeping their mean (TRL's `whiten_rewards`, default false). */
  whitenRewards: boolean;
  /** ε of the policy ratio clip, in (0, 1) (TRL's `cliprange`, default 0.2). */
  cliprange: number;
  /** ε of the value clip around the rollout's values, > 0 (TRL's `cliprange_value`, default 0.2). */
  cliprangeValue: number;
  /** Weight of the value loss in the loss, ≥ 0 (TRL's `vf_coef`, default 0.1). */
  vfCoef: number;
  /** Discount per token, in [0, 1] (TRL's `gamma`, default 1). */
  gamma: number;
  /** GAE's λ, in [0, 1] (TRL's `lam`, default 0.95). */
  lam: number;
}

/**
 * Options of {@link ppoTrain}: policy, tokenizer, prompt records, the reward (a reward model or reward
 * functions) and the value model, then the tunables.
 *
 * @example
 * ```ts
 * const options: PpoTrainOptions = { model: sft, tokenizer, train: records, rewardFunctions: rewardModel, valueModel, lora: { r: 8 } };
 * ```
 */
export interface PpoTrainOptions extends Partial<PpoTunables> {
  /** The policy: any causal LM, usually an SFT checkpoint. Trained in place. */
  model: CausalLM;
  tokenizer: TokenizerLike;
  /** Prompt records `{ prompt, …columns }`; the columns reach the reward functions. */
  train: readonly PromptRecord[];
  /** The score of each completion: a `RewardModel` (read at the completion's last token, as TRL does) or reward functions (their weighted sum). */
  rewardFunctions: PpoTunables['rewardFunctions'];
  /**
   * The value model, trained with the policy: a separate {@link ValueModel} (TRL's recipe: a second
   * copy of the reward model, so the values start as its scores), or 'shared': a new scalar head on
   * the policy's own hidden states (`new RewardModel(model)`), the value loss then reaching the
   * policy's trainable parameters too.
   */
  valueModel: ValueModel | 'shared';
}

/**
 * The defaults of {@link ppoTrain}'s tunable options: TRL's PPOConfig (lr 3e-6, temperature 0.7, 53
 * new tokens, one completion per prompt, 4 PPO epochs, 1 mini-batch, kl_coef 0.05 with k1,
 * cliprange 0.2, cliprange_value 0.2, vf_coef 0.1, γ 1, λ 0.95).
 *
 * @example
 * ```ts
 * await ppoTrain({ ...defaultPpoOptions, model, tokenizer, train, rewardFunctions: rm, valueModel, lr: 1e-3 });
 * ```
 */
export const defaultPpoOptions: Readonly<Omit<PpoTunables, 'rewardFunctions'>> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  ...onlineDefaults,
  lr: 3e-6,
  temperature: 0.7,
  maxCompletionLength: 53,
  numGenerations: 1,
  numPpoEpochs: 4,
  numMiniBatches: 1,
  klCoef: 0.05,
  klEstimator: 'k1',
  missingEosPenalty: null,
  whitenRewards: false,
  cliprange: 0.2,
  cliprangeValue: 0.2,
  vfCoef: 0.1,
  gamma: 1,
  lam: 0.95,
});

/**
 * What {@link ppoTrain} returns: the trainer's result, the LoRA report, the reference, the generator
 * and the value model (the one passed, or the shared head made on the policy).
 *
 * @example
 * ```ts
 * const { history, valueModel } = await ppoTrain(options);
 * history.at(-1)?.['objective/scores']; // the mean score of the last step's rollout
 * ```
 */
export interface PpoTrainResult extends TrainResult {
  lora: LoraReport | undefined;
  /** 'adapters disabled', 'frozen copy', or 'none' (klCoef = 0). */
  reference: string;
  generator: string;
  valueModel: ValueModel;
}

/** One micro-batch: completions right-padded, and per-token constants at predictor positions (position s scores token s + 1). */
interface PpoBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  labels: tf.Tensor2D;
  oldLogps: tf.Tensor2D;
  oldValues: tf.Tensor2D;
  advantages: tf.Tensor2D;
  returns: tf.Tensor2D;
  /** 1 where a completion token is predicted (the policy loss). */
  policyMask: tf.Tensor2D;
  /** The policy mask plus the position after the last token, where the score lands (the value loss). */
  valueMask: tf.Tensor2D;
  rows: number;
  inputTokens: number;
  rolloutMetrics: Record<string, number>;
}

/** A rollout's tensors over all its completions, from which each epoch's micro-batches are gathered. */
interface PpoRolloutState {
  tensors: Omit<PpoBatch, 'rows' | 'inputTokens' | 'rolloutMetrics'>;
  /** Input tokens (prompt + completion) of each completion. */
  lengths: number[];
  /** One order of the completions per PPO epoch. */
  orders: number[][];
  metrics: Record<string, number>;
}

/**
 * Validates `options` against {@link defaultPpoOptions}: unknown keys named with the known ones,
 * every number range-checked, the value model checked, and the batch geometry worked out.
 *
 * @example
 * ```ts
 * const o = resolvePpoOptions({ model, tokenizer, train, rewardFunctions: rm, valueModel, batchSize: 8, numMiniBatches: 2 });
 * o.geometry.generationBatchSize; // 16
 * ```
 */
export function resolvePpoOptions(options: PpoTrainOptions) {
  const owner = 'ppoTrain';
  const o = resolveOptions<PpoTunables & Pick<PpoTrainOptions, 'model' | 'tokenizer' | 'train' | 'valueModel'>>(owner, (options ?? {}) as PpoTrainOptions, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    train: undefined as unknown as PromptRecord[],
    rewardFunctions: undefined as unknown as PpoTunables['rewardFunctions'],
    valueModel: undefined as unknown as ValueModel,
    ...defaultPpoOptions,
  });
  checkNumber(owner, 'numPpoEpochs', o.numPpoEpochs, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'numMiniBatches', o.numMiniBatches, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'batchSize', o.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'gradientAccumulationSteps', o.gradientAccumulationSteps, 'a positive integer', (v) => Number.isInteger(v) && v >= 1);
  const miniBatch = o.batchSize * o.gradientAccumulationSteps;
  const perRollout = miniBatch * o.numMiniBatches;
  if (o.generationBatchSize !== null && o.generationBatchSize !== perRollout) {
    const fits = Number.isInteger(o.generationBatchSize) && o.generationBatchSize > 0 && o.generationBatchSize % miniBatch === 0;
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected generationBatchSize to be null or batchSize · gradientAccumulationSteps · numMiniBatches = ${o.batchSize} · ${o.gradientAccumulationSteps} · ${o.numMiniBatches} = ${perRollout} (each mini-batch is one optimizer step); got ${describeValue(o.generationBatchSize)}`,
      {
        help: fits
          ? `leave generationBatchSize null and set numMiniBatches to ${(o.generationBatchSize as number) / miniBatch}`
          : 'leave generationBatchSize null: the rollout size follows from the batch size, the accumulation and numMiniBatches',
      },
    );
  }
  const geometry = checkOnline(owner, { ...o, generationBatchSize: perRollout }, o.numPpoEpochs, 1);
  checkNumber(owner, 'klCoef', o.klCoef, 'a number ≥ 0', (v) => v >= 0);
  if (o.klEstimator !== 'k1' && o.klEstimator !== 'k3') throw new PosttrainError('INVALID_OPTION', `${owner}: expected klEstimator to be 'k1' or 'k3'; got ${describeValue(o.klEstimator)}`);
  if (o.missingEosPenalty !== null) checkNumber(owner, 'missingEosPenalty', o.missingEosPenalty, 'a number ≥ 0 or null', (v) => v >= 0);
  if (typeof o.whitenRewards !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected whitenRewards to be true or false; got ${describeValue(o.whitenRewards)}`);
  checkNumber(owner, 'cliprange', o.cliprange, 'a number in (0, 1)', (v) => v > 0 && v < 1);
  checkNumber(owner, 'cliprangeValue', o.cliprangeValue, 'a number > 0', (v) => v > 0);
  checkNumber(owner, 'vfCoef', o.vfCoef, 'a number ≥ 0', (v) => v >= 0);
  checkNumber(owner, 'gamma', o.gamma, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  checkNumber(owner, 'lam', o.lam, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  const v = o.valueModel as unknown;
  if (v !== 'shared' && !(v && typeof v === 'object' && typeof (v as ValueModel).values === 'function' && typeof (v as ValueModel).trainableParameters === 'function')) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected valueModel to be a value model (an object with values and trainableParameters, e.g. a RewardModel) or 'shared'; got ${describeValue(v)}`,
      {
        help: "pass a second copy of the reward model (TRL's recipe: valueModel: await loadRewardModel(rmDir, { backbone })), or 'shared' for a value head on the policy",
      },
    );
  }
  return { ...o, geometry };
}

/**
 * Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347) for RLHF (Ziegler et al.
 * 2019, arXiv 1909.08593; Ouyang et al. 2022, InstructGPT, arXiv 2203.02155) as TRL's PPOTrainer
 * runs it.
 *
 * Each rollout samples one completion (`numGenerations`) of `batchSize · gradientAccumulationSteps ·
 * numMiniBatches` prompts. A completion's score is the reward model's value at its last token (the
 * stop token included; a `RewardModel` given in `rewardFunctions` is read on the token ids, as TRL
 * does) or the weighted sum of the reward functions, minus `missingEosPenalty` when it ran out of
 * tokens. The per-token reward is `−klCoef · KL_t` (k1: log π_old − log π_ref of the sampled token)
 * with the score added one position past the last token (at the last token when the completion is
 * `maxCompletionLength` long) — TRL's placement, where the value model reads the last token's
 * hidden state, as the reward model does. `gae` (γ, λ) on the value model's values gives the
 * advantages and returns; the advantages are whitened over the rollout's tokens (`maskedWhiten`).
 * Then `numPpoEpochs` passes, each over the completions in a fresh order, split into
 * `numMiniBatches` optimizer steps of `gradientAccumulationSteps` micro-batches of `batchSize`
 * (TRL's loop order: epochs → mini-batches → micro-batches), with the loss `ppoPolicyLoss`
 * (`cliprange`) + `vfCoef · ppoValueLoss` (`cliprangeValue`), each a token mean over the
 * micro-batch. The optimizer trains the policy's trainable parameters (LoRA adapters with `lora`)
 * and the value model's.
 *
 * Logged each step under TRL's keys (docs/metrics.md): `loss`, `objective/kl`, `objective/entropy`,
 * `objective/non_score_reward`, `objective/rlhf_reward`, `objective/scores`, `policy/approxkl_avg`,
 * `policy/clipfrac_avg`, `policy/entropy_avg`, `loss/policy_avg`, `loss/value_avg`,
 * `val/clipfrac_avg`, `val/ratio`, `val/num_eos_tokens`, `episode`, and the shared rollout metrics
 * (`reward`, `rewards/<name>/mean|std`, `completions/…`); TRL logs once per rollout, this logs each
 * optimizer step (the `_avg` keys average that step's micro-batches).
 *
 * Rollout size matters more than the learning rate: every rollout is reused for `numPpoEpochs ×
 * numMiniBatches` optimizer steps, so a small one (32 completions × 4 epochs) is fitted noise, and
 * `objective/kl` grows while `objective/scores` does not. From examples/rl's weak SFT with its reward
 * model, 128 completions per rollout (`batchSize` 64 × `numMiniBatches` 2) × 2 epochs at lr 1e-3
 * (LoRA r 16) raised held-out greedy exact match 25% → 39.5–50% in 320 steps (seeds 0–2), where 32 × 4
 * epochs for as long left it at 26.5% with the KL at 3.7.
 *
 * @example
 * ```ts
 * const rm = await loadRewardModel('runs/rm', { backbone });
 * const result = await ppoTrain({
 *   model: sft, tokenizer, train: prompts,
 *   rewardFunctions: rm,
 *   valueModel: await loadRewardModel('runs/rm', { backbone }),
 *   batchSize: 64, numMiniBatches: 2, numPpoEpochs: 2, maxCompletionLength: 8, temperature: 1,
 *   missingEosPenalty: 1, lora: { r: 16, alpha: 32 }, lr: 1e-3, schedule: 'constant', maxSteps: 320,
 * });
 * ```
 */
export async function ppoTrain(options: PpoTrainOptions): Promise<PpoTrainResult> {
  const owner = 'ppoTrain';
  const o = resolvePpoOptions(options);
  const { model, tokenizer, geometry } = o;
  const run = await prepareOnline(owner, o, { weight: o.klCoef, why: `klCoef = ${o.klCoef}` }, ({ promptIds, evalPromptIds, padTokenId }) => {
    const evalRecords = o.eval ?? [];
    const idsOfPrompt = new Map<string, number[]>();
    [...o.train, ...evalRecords].forEach((r, i) => idsOfPrompt.set(r.prompt, i < o.train.length ? promptIds[i] : evalPromptIds[i - o.train.length]));
    const rewards = resolvePpoRewards(owner, o, tokenizer, idsOfPrompt, padTokenId);
    // Before any LoRA is applied: a bad value model is refused with the model untouched.
    if (o.valueModel !== 'shared') checkValueModel(owner, o.valueModel, rewards.models);
    return rewards;
  });
  const { padTokenId, reference, completionsFile } = run;
  // 'shared': a head on the policy's hidden states, made after LoRA so it reads the adapted layers.
  const valueModel: ValueModel = o.valueModel === 'shared' ? new RewardModel(model, { seed: o.seed }) : o.valueModel;
  const trained = policyAndValue(model, valueModel);
  const score = { temperature: o.temperature, chunkSize: o.batchSize };

  const makeRollout = async (indices: number[], seed: number, index: number): Promise<PpoRolloutState> => {
    const { rollout, step } = await run.collect(indices, seed, index);
    const N = rollout.completions.length;
    const all = Array.from({ length: N }, (_, i) => i);
    const examples = rolloutExamples(rollout, all);
    const collated = collateForTraining(examples, { padTokenId });
    const L = collated.inputIds.shape[1];
    const scores = rollout.completions.map((c, i) => rollout.rewards.total[i] - (o.missingEosPenalty !== null && c.finishReason !== 'stop' ? o.missingEosPenalty : 0));
    const layout = completionLayout(
      rollout.completions.map((c, i) => ({ promptLength: rollout.promptIds[Math.floor(i / rollout.n)].length, completionLength: c.ids.length })),
      L,
      o.maxCompletionLength,
    );
    const predicted = (m: CausalLM) => tf.tidy(() => shiftLeft(sequenceLogps(m, collated, score).tokenLogps));
    const made: tf.Tensor[] = [collated.inputIds, collated.attentionMask, collated.labels];
    try {
      const oldLogps = inEvalMode(model, () => predicted(model));
      made.push(oldLogps);
      const oldValues = inEvalMode(valueModel, () => tf.tidy(() => valueModel.values(collated.inputIds, { attentionMask: collated.attentionMask })));
      made.push(oldValues);
      const policyMask = tf.tensor2d(layout.policyMask, [N, L]);
      const valueMask = tf.tensor2d(layout.valueMask, [N, L]);
      made.push(policyMask, valueMask);
      const refLogps = reference ? reference.run(predicted) : undefined;
      let advantages: tf.Tensor2D, returns: tf.Tensor2D, perRow: tf.Tensor2D;
      try {
        [advantages, returns, perRow] = tf.tidy(() => {
          const scoreAt = new Float32Array(N * L);
          layout.scorePositions.forEach((s, i) => (scoreAt[i * L + s] = scores[i]));
          const t = ppoTargets({ logprobs: oldLogps, refLogprobs: refLogps, values: oldValues, scores: tf.tensor2d(scoreAt, [N, L]), policyMask, valueMask }, o);
          // [3, N]: each completion's summed KL, summed KL penalty, and surprisal −Σ log π_old.
          const sums = tf.stack([tf.sum(t.kl, 1), tf.sum(t.nonScoreRewards, 1), tf.neg(tf.sum(tf.mul(oldLogps, policyMask), 1))]) as tf.Tensor2D;
          return [t.advantages, t.returns, sums];
        });
      } finally {
        refLogps?.dispose();
      }
      made.push(advantages, returns);
      let sums: number[][];
      try {
        sums = (await perRow.array()) as number[][];
      } finally {
        perRow.dispose();
      }
      const [kl, nonScore, surprisal] = sums;
      const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const metrics: Record<string, number> = {
        ...rolloutMetrics(rollout),
        'objective/kl': mean(kl),
        'objective/entropy': mean(surprisal),
        'objective/non_score_reward': mean(nonScore),
        'objective/rlhf_reward': mean(nonScore) + mean(scores),
        'objective/scores': mean(scores),
        'val/num_eos_tokens': rollout.completions.filter((c) => c.finishReason === 'stop').length,
        episode: (index + 1) * N,
      };
      await appendCompletions(completionsFile, rollout, step, { score: scores });
      const orders = Array.from({ length: o.numPpoEpochs }, (_, e) => new Rng((seed ^ Math.imul(e + 1, 0x27d4eb2f)) | 0).shuffle([...all]));
      return {
        tensors: {
          inputIds: collated.inputIds,
          attentionMask: collated.attentionMask,
          labels: collated.labels,
          oldLogps,
          oldValues,
          advantages,
          returns,
          policyMask,
          valueMask,
        } as PpoRolloutState['tensors'],
        lengths: examples.map((e) => e.inputIds.length),
        orders,
        metrics,
      };
    } catch (error) {
      tf.dispose(made);
      throw error;
    }
  };

  const microBatch = (state: PpoRolloutState, k: number): PpoBatch => {
    const epoch = Math.floor(k / geometry.microBatchesPerRollout);
    const j = k % geometry.microBatchesPerRollout;
    const rows = state.orders[epoch].slice(j * o.batchSize, (j + 1) * o.batchSize);
    const width = Math.max(...rows.map((r) => state.lengths[r]));
    const gathered = tf.tidy(() => {
      const index = tf.tensor1d(rows, 'int32');
      const out: Record<string, tf.Tensor> = {};
      for (const [name, t] of Object.entries(state.tensors)) out[name] = tf.slice(tf.gather(t as tf.Tensor2D, index), [0, 0], [rows.length, width]);
      return out;
    }) as unknown as PpoRolloutState['tensors'];
    return { ...gathered, rows: rows.length, inputTokens: rows.reduce((n, r) => n + state.lengths[r], 0), rolloutMetrics: state.metrics };
  };

  const step = (batch: PpoBatch): StepOutput => {
    const { tokenLogps, tokenEntropy } = sequenceLogps(model, batch, { temperature: o.temperature, gradient: true, entropy: true });
    const logprobs = shiftLeft(tokenLogps);
    const values = valueModel.values(batch.inputIds, { attentionMask: batch.attentionMask });
    const policy = ppoPolicyLoss({ logprobs, oldLogprobs: batch.oldLogps, advantages: batch.advantages, mask: batch.policyMask }, { clipRange: o.cliprange });
    const value = ppoValueLoss({ values, oldValues: batch.oldValues, returns: batch.returns, mask: batch.valueMask }, { clipRangeValue: o.cliprangeValue });
    const loss = tf.add(policy.loss, tf.mul(value.loss, o.vfCoef)) as tf.Scalar;
    const entropy = tf.div(tf.sum(tf.mul(shiftLeft(tokenEntropy as tf.Tensor2D), batch.policyMask)), tf.maximum(tf.sum(batch.policyMask), 1)) as tf.Scalar;
    // Every micro-batch holds batchSize completions, so the trainer's mean over sequences is the mean of the micro-batch losses.
    return {
      lossSum: tf.mul(loss, batch.rows) as tf.Scalar,
      sequences: batch.rows,
      inputTokens: batch.inputTokens,
      metrics: {
        ...batch.rolloutMetrics,
        'policy/approxkl_avg': policy.approxKl,
        'policy/clipfrac_avg': policy.clipFraction,
        'policy/entropy_avg': entropy,
        'loss/policy_avg': policy.loss,
        'loss/value_avg': value.loss,
        'val/clipfrac_avg': value.clipFraction,
        'val/ratio': policy.ratioMean,
      },
    };
  };

  const result = await run.train<PpoBatch, PpoRolloutState>(
    o.numPpoEpochs,
    {
      rollout: makeRollout,
      microBatch,
      disposeMicroBatch: (b) => tf.dispose([b.inputIds, b.attentionMask, b.labels, b.oldLogps, b.oldValues, b.advantages, b.returns, b.policyMask, b.valueMask]),
      dispose: (state) => tf.dispose(Object.values(state.tensors)),
    },
    step,
    trained,
  );
  return { ...result, lora: run.lora, reference: reference ? reference.source : 'none', generator: run.generator.name, valueModel };
}

/**
 * The per-token inputs of {@link ppoTargets}, each `[N, T]` at predictor positions (position s
 * holds what concerns the token at s + 1). @internal
 */
export interface PpoTargetInputs {
  /** Log-probs of the sampled tokens under the sampling policy; 0 off the policy mask. */
  logprobs: tf.Tensor2D;
  /** Their log-probs under the reference; undefined: no KL term. */
  refLogprobs: tf.Tensor2D | undefined;
  /** The value model's values. */
  values: tf.Tensor2D;
  /** Each completion's score at its score position, 0 elsewhere. */
  scores: tf.Tensor2D;
  policyMask: tf.Tensor2D;
  valueMask: tf.Tensor2D;
}

/**
 * A rollout's PPO targets, as TRL's PPOTrainer computes them: per-token KL (k1 or k3, on the policy
 * mask), rewards `−klCoef · KL + score` (whitened with the mean kept when `whitenRewards`), GAE over
 * the value mask, and the advantages whitened over the policy mask. New tensors, no gradient. @internal
 *
 * @example
 * ```ts
 * const { advantages, returns, kl } = ppoTargets({ logprobs, refLogprobs, values, scores, policyMask, valueMask }, defaultPpoOptions);
 * ```
 */
export function ppoTargets(
  inputs: PpoTargetInputs,
  o: Pick<PpoTunables, 'klCoef' | 'klEstimator' | 'whitenRewards' | 'gamma' | 'lam'>,
): { kl: tf.Tensor2D; nonScoreRewards: tf.Tensor2D; rewards: tf.Tensor2D; advantages: tf.Tensor2D; returns: tf.Tensor2D } {
  const { logprobs, refLogprobs, values, scores, policyMask, valueMask } = inputs;
  return tf.tidy(() => {
    const kl = refLogprobs ? tf.mul((o.klEstimator === 'k3' ? k3 : k1)(logprobs, refLogprobs), policyMask) : tf.zerosLike(logprobs);
    const nonScoreRewards = tf.mul(kl, -o.klCoef);
    let rewards = tf.add(nonScoreRewards, scores);
    if (o.whitenRewards) rewards = maskedWhiten(rewards, valueMask, { shiftMean: false });
    const raw = gae(rewards, values, valueMask, { gamma: o.gamma, lambda: o.lam });
    const advantages = maskedWhiten(raw.advantages, policyMask);
    return { kl, nonScoreRewards, rewards, advantages, returns: raw.returns } as never;
  });
}

/**
 * Where each completion's tokens sit at predictor positions of an `[N, L]` right-padded batch
 * (prompt then completion): the policy mask covers the positions that predict completion tokens
 * (P − 1 … P + C − 2), the value mask adds the last token's position P + C − 1 unless the completion
 * is `maxCompletionLength` long, and the score goes to the value mask's last position (TRL's
 * `padding_mask_p1` and `actual_end`). @internal
 */
export function completionLayout(rows: readonly { promptLength: number; completionLength: number }[], L: number, maxCompletionLength: number) {
  const policyMask = new Float32Array(rows.length * L);
  const valueMask = new Float32Array(rows.length * L);
  const scorePositions = rows.map(({ promptLength: P, completionLength: C }, i) => {
    policyMask.fill(1, i * L + P - 1, i * L + P + C - 1);
    const extra = C < maxCompletionLength ? 1 : 0;
    valueMask.fill(1, i * L + P - 1, i * L + P + C - 1 + extra);
    return P + C - 2 + extra;
  });
  return { policyMask, valueMask, scorePositions };
}

/** `[B, T]` → `[B, T]` shifted one position left (column t holds column t + 1; the last is 0): label positions to predictor positions. */
function shiftLeft(x: tf.Tensor2D): tf.Tensor2D {
  const [b, t] = x.shape;
  return tf.tidy(() => tf.concat([tf.slice(x, [0, 1], [b, t - 1]), tf.zeros([b, 1])], 1) as tf.Tensor2D);
}

/**
 * The reward functions of a PPO run: a reward model is read on the prompt's and completion's token
 * ids (the stop token included, none appended), as TRL's PPO scores, instead of re-encoded text.
 */
function resolvePpoRewards(owner: string, o: Pick<OnlineTunables, 'rewardFunctions' | 'rewardWeights'>, tokenizer: TokenizerLike, idsOfPrompt: Map<string, number[]>, padTokenId: number) {
  const given = Array.isArray(o.rewardFunctions) ? o.rewardFunctions : [o.rewardFunctions];
  const models = given.filter((f): f is ScalarRewardModel => typeof f !== 'function' && !!f && typeof (f as ScalarRewardModel).forward === 'function');
  const onIds = given.map((f) => (models.includes(f as ScalarRewardModel) ? rewardModelOnIds(f as ScalarRewardModel, tokenizer, idsOfPrompt, padTokenId) : f));
  return { ...resolveRewards(owner, { rewardFunctions: models.length ? (onIds as RewardFunction[]) : o.rewardFunctions, rewardWeights: o.rewardWeights }, tokenizer), models };
}

/** A reward model's score of prompt ids + completion ids, read at the last token, in eval mode, 64 rows at a time. */
function rewardModelOnIds(rm: ScalarRewardModel, tokenizer: TokenizerLike, idsOfPrompt: Map<string, number[]>, padTokenId: number): RewardFunction {
  return namedReward('reward_model', async ({ prompts, completionIds }) => {
    const rows = prompts.map((p, i) => [...(idsOfPrompt.get(p) ?? tokenizer.encode(p)), ...completionIds[i]]);
    const out: number[] = [];
    await inEvalMode(rm, async () => {
      for (let start = 0; start < rows.length; start += 64) {
        const batch = collateForGeneration(rows.slice(start, start + 64), { padTokenId });
        const scores = tf.tidy(() => rm.forward(batch.inputIds, { attentionMask: batch.attentionMask }).rewards);
        try {
          out.push(...(await scores.data()));
        } finally {
          tf.dispose([scores, batch.inputIds, batch.attentionMask]);
        }
      }
    });
    return out;
  });
}

/**
 * Refuses a value model without trainable parameters, or one that shares parameters with a reward
 * model (training it would move the reward), before anything is changed.
 */
function checkValueModel(owner: string, valueModel: ValueModel, rewardModels: readonly ScalarRewardModel[]): void {
  const valueParameters = new Set(valueModel.trainableParameters().values());
  if (valueParameters.size === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected valueModel to have trainable parameters; got none`, { help: 'unfreeze it (the value head must train with the policy)' });
  }
  for (const rm of rewardModels) {
    const named = (rm as { namedParameters?: () => Map<string, tf.Variable> }).namedParameters?.();
    const shared = named ? [...named].filter(([, p]) => valueParameters.has(p)).map(([path]) => path) : [];
    if ((rm as unknown) === valueModel || shared.length > 0) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: expected valueModel to be separate from the reward model; got ${shared.length ? `shared parameters (${shared.slice(0, 3).join(', ')}…)` : 'the same object'}`,
        {
          help: 'training the value model would change the rewards: load the reward model a second time for the value model (TRL initialises the value model from the reward model checkpoint)',
        },
      );
    }
  }
}

/**
 * What the trainer optimises: the policy's trainable parameters (`policy.<path>`) and the value
 * model's (`value.<path>`; those it shares with the policy, as the 'shared' head does, listed once
 * under the policy), switched to training mode together.
 */
function policyAndValue(policy: CausalLM, valueModel: ValueModel) {
  return {
    trainableParameters(): Map<string, tf.Variable> {
      const out = new Map<string, tf.Variable>();
      const seen = new Set<tf.Variable>();
      for (const [path, p] of policy.trainableParameters()) {
        out.set(`policy.${path}`, p);
        seen.add(p);
      }
      for (const [path, p] of valueModel.trainableParameters()) if (!seen.has(p)) out.set(`value.${path}`, p);
      return out;
    },
    train(on = true) {
      policy.train(on);
      valueModel.train(on);
    },
  };
}
