// What GRPO, RLOO and PPO share: the rollout tunables (generation, rewards, batch geometry), their
// checks, the encoded prompts, the reward functions (a reward model given directly is wrapped), the
// completion table, held-out evaluation by sampling, the reference for the KL, and a rollout's
// completions as micro-batch tensors with their cached log-probs.
import { PosttrainError, checkNumber, describeValue, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, type TokenizerLike } from '@posttrain/data';
import { applyLora, loraLayers, type LoraOptions, type LoraReport } from '@posttrain/lora';
import {
  appendJsonl,
  checkPromptRecords,
  collectRollout,
  completionRows,
  completionsPath,
  encodePrompts as encodeWithin,
  createReference,
  inEvalMode,
  inProcessGenerator,
  padTokenIdOf,
  resolveRewardFunctions,
  rolloutExamples,
  rolloutSchedule,
  sequenceLogps,
  type Generator,
  type PromptRecord,
  type Reference,
  type RewardFunction,
  type Rollout,
  type RolloutHooks,
  type ScalarRewardModel,
} from '@posttrain/policy';
import { checkEvalRecords, checkFineTuneOptions, fineTune, type FineTuneTrainerOptions, type OptimizerTunables, type StepOutput, type TrainableModel, type TrainResult } from '@posttrain/trainer';

/**
 * The tunables every online trainer of this package shares, named as TRL's (camelCase).
 *
 * @example
 * ```ts
 * const shared: Partial<OnlineTunables> = { numGenerations: 8, maxCompletionLength: 16, temperature: 1, lora: { r: 8 }, lr: 1e-3 };
 * ```
 */
export interface OnlineTunables extends FineTuneTrainerOptions, OptimizerTunables {
  /** The reward: functions in TRL's shape, or reward models (`@posttrain/reward`'s `RewardModel`, scored by {@link rewardModelReward}), one or several. */
  rewardFunctions: RewardFunction | ScalarRewardModel | readonly (RewardFunction | ScalarRewardModel)[];
  /** One weight per reward function; null: all 1 (TRL's `reward_weights`). */
  rewardWeights: readonly number[] | null;
  /** Held-out prompt records: every `evalEvery` steps one sampled completion each is scored (`eval_reward`, `eval_rewards/<name>/mean`). */
  eval: readonly PromptRecord[] | undefined;
  /** Completions per prompt (TRL's `num_generations`). */
  numGenerations: number;
  /** Completions per rollout; null: `batchSize · gradientAccumulationSteps` (one rollout per optimizer step). A multiple of `numGenerations` and of `batchSize · gradientAccumulationSteps` (TRL's `generation_batch_size`). */
  generationBatchSize: number | null;
  /** Longest prompt in tokens; longer prompts lose their start (TRL's `max_prompt_length`). null: no limit. */
  maxPromptLength: number | null;
  /** New tokens per completion at most (TRL's `max_completion_length`, default 256). */
  maxCompletionLength: number;
  /** Sampling temperature, > 0; also divides the logits when completions are scored, as TRL does (default 1). */
  temperature: number;
  /** Top-k filter of sampling, 0: off (TRL's `top_k`). */
  topK: number;
  /** Nucleus filter of sampling, 1: off (TRL's `top_p`). */
  topP: number;
  /** Min-p filter of sampling, 0: off (TRL's `min_p`). */
  minP: number;
  /** Where completions come from; undefined: {@link inProcessGenerator} on the policy with the sampling options above. */
  generator: Generator | undefined;
  /** The reference of the KL term: 'adapters-disabled' (LoRA: the policy without its adapters) or `{ model: frozenCopy }`; undefined picks 'adapters-disabled' with LoRA. */
  reference: 'adapters-disabled' | { model: CausalLM } | undefined;
  /** LoRA options (`applyLora`; `targetModules` defaults to 'all-linear'): only the adapters train. `false`: the model's trainable parameters. */
  lora: Partial<LoraOptions> | false;
  /** Completions per micro-batch (TRL's `per_device_train_batch_size`). */
  batchSize: number;
  /** JSONL completion table (step, prompt, completion, reward, each function's reward, advantage); undefined: `completions.jsonl` beside `logFile`, or none without one. */
  completionsFile: string | undefined;
  /** Seed of the prompt order, the sampling streams, dropout and LoRA's initialisation. */
  seed: number;
}

/** The shared defaults (TRL's GRPOConfig where it has one). @internal */
export const onlineDefaults = {
  rewardWeights: null,
  eval: undefined,
  numGenerations: 8,
  generationBatchSize: null,
  maxPromptLength: null,
  maxCompletionLength: 256,
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  generator: undefined,
  reference: undefined,
  lora: false,
  batchSize: 8,
  completionsFile: undefined,
  lr: 1e-6,
  weightDecay: 0,
  schedule: 'linear',
  warmupSteps: 0,
  seed: 0,
} as const;

/** The batch geometry of a run: completions per rollout, prompts per rollout, micro-batches per rollout, optimizer steps per rollout. @internal */
export interface Geometry {
  generationBatchSize: number;
  promptsPerRollout: number;
  microBatchesPerRollout: number;
  stepsPerRollout: number;
}

/**
 * Checks the shared options (model, tokenizer, prompt records, every number) and works out the
 * batch geometry; `iterations` is how often a rollout is trained on (GRPO's `numIterations`, PPO's
 * `numPpoEpochs`). Throws INVALID_OPTION naming the option, the value and what to change. @internal
 */
export function checkOnline(owner: string, o: OnlineTunables & { model: CausalLM; tokenizer: TokenizerLike; train: readonly PromptRecord[] }, iterations: number, minGenerations = 2): Geometry {
  if (!o.model || typeof o.model.forward !== 'function')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${describeValue(o.model)}`);
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function' || typeof o.tokenizer.decode !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode; got ${describeValue(o.tokenizer)}`);
  }
  checkPromptRecords(owner, 'train', o.train);
  checkPromptRecords(owner, 'eval', checkEvalRecords(owner, o.eval, { shape: '{ prompt }' }));
  checkFineTuneOptions(owner, o);
  if (!Number.isInteger(o.numGenerations) || o.numGenerations < minGenerations) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected numGenerations to be an integer ≥ ${minGenerations}; got ${describeValue(o.numGenerations)}`, {
      help: minGenerations === 2 ? 'the advantage compares the completions of one prompt with each other: sample at least 2 per prompt (TRL: num_generations ≥ 2)' : undefined,
    });
  }
  checkNumber(owner, 'maxCompletionLength', o.maxCompletionLength, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (o.maxPromptLength !== null) checkNumber(owner, 'maxPromptLength', o.maxPromptLength, 'an integer ≥ 1 or null', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'temperature', o.temperature, 'a number > 0', (v) => v > 0);
  checkNumber(owner, 'topK', o.topK, 'an integer ≥ 0', (v) => Number.isInteger(v) && v >= 0);
  checkNumber(owner, 'topP', o.topP, 'a number in (0, 1]', (v) => v > 0 && v <= 1);
  checkNumber(owner, 'minP', o.minP, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  if (o.generator !== undefined && (typeof o.generator !== 'object' || o.generator === null || typeof o.generator.generate !== 'function')) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected generator to be a Generator (an object with generate); got ${describeValue(o.generator)}`);
  }
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${describeValue(o.lora)}`, { help: 'for example lora: { r: 8, alpha: 16 }' });
  }
  const perStep = o.batchSize * o.gradientAccumulationSteps;
  const generationBatchSize = o.generationBatchSize ?? perStep;
  if (!Number.isInteger(generationBatchSize) || generationBatchSize < 1) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected generationBatchSize to be a positive integer or null; got ${describeValue(o.generationBatchSize)}`);
  }
  if (generationBatchSize % o.numGenerations !== 0) {
    const what = o.generationBatchSize === null ? `batchSize · gradientAccumulationSteps = ${o.batchSize} · ${o.gradientAccumulationSteps}` : 'generationBatchSize';
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected the completions per rollout (${what} = ${generationBatchSize}) to be a multiple of numGenerations = ${o.numGenerations}; got ${generationBatchSize}`,
      {
        help: `each prompt's ${o.numGenerations} completions must fall in one rollout: set generationBatchSize to a multiple of ${lcm(o.numGenerations, perStep)} (or make batchSize · gradientAccumulationSteps a multiple of ${o.numGenerations}), or change numGenerations to a divisor of ${generationBatchSize}`,
      },
    );
  }
  if (generationBatchSize % perStep !== 0) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected generationBatchSize = ${generationBatchSize} to be a multiple of batchSize · gradientAccumulationSteps = ${perStep} (the completions of one optimizer step)`,
      {
        help: `set generationBatchSize to a multiple of ${lcm(o.numGenerations, perStep)}, or leave it null (one rollout per optimizer step)`,
      },
    );
  }
  const microBatchesPerRollout = generationBatchSize / o.batchSize;
  const stepsPerRollout = (microBatchesPerRollout * iterations) / o.gradientAccumulationSteps;
  if (stepsPerRollout > 1) {
    for (const name of ['checkpointEvery', 'maxSteps'] as const) {
      const v = o[name];
      if (v !== undefined && v % stepsPerRollout !== 0) {
        throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be a multiple of the ${stepsPerRollout} optimizer steps of one rollout; got ${v}`, {
          help: 'a checkpoint inside a rollout could not be resumed exactly (its samples and old log-probs are not saved): round it to whole rollouts',
        });
      }
    }
  }
  return { generationBatchSize, promptsPerRollout: generationBatchSize / o.numGenerations, microBatchesPerRollout, stepsPerRollout };
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;

/** Each record's prompt ids (left-truncated to `maxPromptLength`), with room for `maxCompletionLength` new tokens in the context. @internal */
export function encodePrompts(
  owner: string,
  tokenizer: TokenizerLike,
  records: readonly PromptRecord[],
  o: { maxPromptLength: number | null; maxCompletionLength: number },
  maxPositions: number | undefined,
  what: string,
): number[][] {
  return encodeWithin(
    owner,
    what,
    tokenizer,
    records,
    { maxPromptTokens: o.maxPromptLength, newTokens: o.maxCompletionLength, newTokensOption: 'maxCompletionLength', cutOption: 'maxPromptLength', cutLimits: 'prompt' },
    maxPositions,
  );
}

/** The reward functions of the option (reward models wrapped), their names and weights. @internal */
export function resolveRewards(
  owner: string,
  o: Pick<OnlineTunables, 'rewardFunctions' | 'rewardWeights'>,
  tokenizer: TokenizerLike,
): { functions: RewardFunction[]; names: string[]; weights: number[] } {
  return resolveRewardFunctions(owner, o.rewardFunctions, o.rewardWeights, tokenizer);
}

/** The generator of the run: the given one, or the in-process one with the sampling options. @internal */
export function resolveGenerator(model: CausalLM, tokenizer: TokenizerLike, o: OnlineTunables): Generator {
  return o.generator ?? inProcessGenerator(model, tokenizer, { temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP });
}

/** The KL reference: 'adapters-disabled' with LoRA by default; a full fine-tune needs a frozen copy. @internal */
export function resolveOnlineReference(owner: string, model: CausalLM, option: OnlineTunables['reference'], hasLora: boolean, why: string): Reference {
  if ((option as unknown) === 'precomputed' || (typeof option === 'object' && option !== null && 'precompute' in option)) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected reference 'adapters-disabled' or { model }; got ${describeValue(option)}: the completions of an online run are not known before training`,
    );
  }
  if (option === undefined && !hasLora) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: ${why} needs a reference model; got none (no LoRA, no reference option)`, {
      help: 'pass reference: { model: await loadModel(sameCheckpoint) } (a frozen copy), or train LoRA (lora: { r: 8 }) to use the policy with its adapters disabled',
    });
  }
  return createReference(model, option, { owner, hasLora });
}

/** Completions `rows` of a rollout as one right-padded micro-batch, with the log-probs cached at rollout time. @internal */
export interface CompletionBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  labels: tf.Tensor2D;
  /** `[b, T]` 1 on the completion tokens that count (0 on the prompt, padding and `dropped` completions). */
  mask: tf.Tensor2D;
  /** `[b, T]` the sampling policy's token log-probs (eval mode, logits / temperature), when asked for. */
  oldLogps: tf.Tensor2D | undefined;
  /** `[b, T]` the reference's token log-probs, when there is a reference. */
  refLogps: tf.Tensor2D | undefined;
  rows: number;
  /** Completion tokens under `mask`. */
  maskTokens: number;
  /** Prompt + completion tokens. */
  inputTokens: number;
}

/**
 * The micro-batch of completions `rows` of a rollout (prompt ids then completion ids, labels −100
 * on the prompt), its mask (`dropped[r]` zeroes row r, e.g. truncated completions), and the token
 * log-probs of the policy as it is now (`old`) and of the reference, scored with the logits
 * divided by `temperature` as they were sampled. @internal
 */
export function completionBatch(
  model: CausalLM,
  rollout: Rollout,
  rows: readonly number[],
  o: { padTokenId: number; temperature: number; old: boolean; reference: Reference | undefined; dropped?: readonly boolean[] },
): CompletionBatch {
  const examples = rolloutExamples(rollout, rows);
  const collated = collateForTraining(examples, { padTokenId: o.padTokenId });
  const keep = rows.map((_, r) => (o.dropped?.[r] ? 0 : 1));
  const mask = tf.tidy(() => tf.mul(tf.cast(tf.notEqual(collated.labels, tf.scalar(-100, 'int32')), 'float32'), tf.tensor2d(keep, [rows.length, 1])) as tf.Tensor2D);
  const tokenLogps = (m: CausalLM) => tf.tidy(() => sequenceLogps(m, collated, { temperature: o.temperature }).tokenLogps);
  let oldLogps: tf.Tensor2D | undefined;
  let refLogps: tf.Tensor2D | undefined;
  try {
    oldLogps = o.old ? inEvalMode(model, () => tokenLogps(model)) : undefined;
    refLogps = o.reference ? o.reference.run(tokenLogps) : undefined;
  } catch (error) {
    tf.dispose([collated.inputIds, collated.attentionMask, collated.labels, mask, ...(oldLogps ? [oldLogps] : [])]);
    throw error;
  }
  return {
    ...collated,
    mask,
    oldLogps,
    refLogps,
    rows: rows.length,
    maskTokens: rows.reduce((n, i, r) => n + keep[r] * rollout.completions[i].ids.length, 0),
    inputTokens: examples.reduce((n, e) => n + e.inputIds.length, 0),
  };
}

/** Frees a {@link CompletionBatch}'s tensors and any `extra` ones (e.g. its advantages). @internal */
export function disposeCompletionBatch(b: CompletionBatch, extra: readonly (tf.Tensor | undefined)[] = []): void {
  tf.dispose([b.inputIds, b.attentionMask, b.labels, b.mask, b.oldLogps, b.refLogps, ...extra].filter((t): t is tf.Tensor => t !== undefined));
}

/** Appends a rollout's rows to the completion table (none without a file). @internal */
export async function appendCompletions(file: string | undefined, rollout: Rollout, step: number, extra: Record<string, readonly number[]>): Promise<void> {
  await appendJsonl(file, completionRows(rollout, step, extra));
}

/**
 * Held-out evaluation: one sampled completion per eval prompt (a fixed seed, so evaluations compare),
 * scored by the reward functions; `reward`, `rewards/<name>/mean` and `completions/mean_length`
 * (the trainer logs them as `eval_…`). @internal
 */
export async function evaluateByReward(
  generator: Generator,
  tokenizer: TokenizerLike,
  records: readonly PromptRecord[],
  promptIds: readonly number[][],
  rewards: { functions: RewardFunction[]; names: string[]; weights: number[] },
  maxTokens: number,
  seed: number,
  step: number,
): Promise<Record<string, number>> {
  const rollout = await collectRollout({
    generator,
    tokenizer,
    records,
    promptIds,
    n: 1,
    maxTokens,
    seed: (seed ^ 0x6a09e667) | 0,
    rewardFunctions: rewards.functions,
    rewardWeights: rewards.weights,
    step,
  });
  const mean = (xs: ArrayLike<number>) => {
    const kept = Array.from(xs).filter((x) => !Number.isNaN(x));
    return kept.length ? kept.reduce((a, b) => a + b, 0) / kept.length : 0;
  };
  const out: Record<string, number> = { reward: mean(rollout.rewards.total), 'completions/mean_length': mean(rollout.completions.map((c) => c.ids.length)) };
  rollout.rewards.names.forEach((name, f) => (out[`rewards/${name}/mean`] = mean(rollout.rewards.perFunction[f])));
  return out;
}

/**
 * What every online trainer sets up before its first rollout, from its resolved options: the
 * reward functions, the encoded train and eval prompts, the KL reference (when `kl` says one is
 * needed), the LoRA adapters, the generator and the completion table; `collect` samples and scores
 * the rollout of a schedule's prompt indices, and `train` runs a {@link rolloutSchedule} of
 * micro-batches through `fineTune`. @internal
 */
export interface OnlineRun {
  rewards: ReturnType<typeof resolveRewards>;
  padTokenId: number;
  reference: Reference | undefined;
  lora: LoraReport | undefined;
  generator: Generator;
  completionsFile: string | undefined;
  /** The rollout of these prompt indices with `seed` (the schedule's), and the optimizer steps done when it is sampled. */
  collect(indices: readonly number[], seed: number, index: number, n?: number): Promise<{ rollout: Rollout; step: number }>;
  /** Runs the schedule of `iterations` passes per rollout through the trainer loop, with held-out evaluation when there are eval prompts. */
  train<B, S>(iterations: number, hooks: RolloutHooks<B, S>, step: (batch: B) => StepOutput, model?: TrainableModel): Promise<TrainResult>;
}

/** Sets up an {@link OnlineRun}; `kl.weight` > 0 resolves the reference (`kl.why` names the option in the error); `makeRewards` replaces the plain reward resolution (PPO scores on token ids). @internal */
export async function prepareOnline(
  owner: string,
  o: OnlineTunables & { model: CausalLM; tokenizer: TokenizerLike; train: readonly PromptRecord[]; geometry: Geometry },
  kl: { weight: number; why: string },
  makeRewards: (encoded: { promptIds: number[][]; evalPromptIds: number[][]; padTokenId: number }) => ReturnType<typeof resolveRewards> = () => resolveRewards(owner, o, o.tokenizer),
): Promise<OnlineRun> {
  const { model, tokenizer, geometry } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  const maxPositions = model.config.maxPositions;
  const promptIds = encodePrompts(owner, tokenizer, o.train, o, maxPositions, 'train');
  const evalRecords = o.eval ?? [];
  const evalPromptIds = encodePrompts(owner, tokenizer, evalRecords, o, maxPositions, 'eval');
  const rewards = makeRewards({ promptIds, evalPromptIds, padTokenId });
  const hasLora = o.lora !== false || loraLayers(model).size > 0;
  const reference = kl.weight > 0 ? resolveOnlineReference(owner, model, o.reference, hasLora, kl.why) : undefined;
  const lora = o.lora === false ? undefined : applyLora(model, { targetModules: 'all-linear', seed: o.seed, ...o.lora });
  const generator = resolveGenerator(model, tokenizer, o);
  const completionsFile = await completionsPath(o);
  return {
    rewards,
    padTokenId,
    reference,
    lora,
    generator,
    completionsFile,
    async collect(indices, seed, index, n = o.numGenerations) {
      const step = index * geometry.stepsPerRollout;
      if (index > 0) await generator.syncWeights?.();
      const rollout = await collectRollout({
        generator,
        tokenizer,
        records: indices.map((i) => o.train[i]),
        promptIds: indices.map((i) => promptIds[i]),
        n,
        maxTokens: o.maxCompletionLength,
        seed,
        rewardFunctions: rewards.functions,
        rewardWeights: rewards.weights,
        step,
      });
      return { rollout, step };
    },
    async train(iterations, hooks, step, trained = model) {
      const schedule = rolloutSchedule(
        { prompts: o.train.length, promptsPerRollout: geometry.promptsPerRollout, microBatchesPerRollout: geometry.microBatchesPerRollout, iterations, seed: o.seed },
        hooks,
      );
      return fineTune({
        model: trained,
        source: { batches: schedule, batchesPerEpoch: schedule.batchesPerEpoch },
        step,
        evaluate: evalRecords.length ? () => evaluateByReward(generator, tokenizer, evalRecords, evalPromptIds, rewards, o.maxCompletionLength, o.seed, 0) : undefined,
        options: o,
      });
    },
  };
}
