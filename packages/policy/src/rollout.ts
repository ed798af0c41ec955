// Rollouts of the online trainers: prompts → a Generator → rewards, the batch of completions as
// training examples, TRL's rollout metrics and completion-table rows, and the seekable schedule that
// turns a prompt dataset into rollouts and micro-batches (GRPO, RLOO, PPO, online DPO share it).
import { PosttrainError, Rng, checkNumber, describeValue } from '@posttrain/tensor-core';
import type { LabeledExample, TokenizerLike } from '@posttrain/data';
import type { Completion, Generator } from './generator.js';
import { scoreRewards, type RewardFunction, type ScoredRewards } from './rewards.js';

/**
 * A prompt record of an online trainer: `prompt` text and any other columns, which reach the reward
 * functions as columns of their batch (TRL's prompt-only format).
 *
 * @example
 * ```ts
 * const record: PromptRecord = { prompt: 'abc>', answer: 'cba' };
 * ```
 */
export interface PromptRecord {
  prompt: string;
  [column: string]: unknown;
}

/**
 * One rollout: `n` completions of each prompt, in order (the completions of prompt p at p·n …
 * p·n + n − 1), decoded, and their rewards.
 *
 * @example
 * ```ts
 * const rollout: Rollout = await collectRollout({ generator, tokenizer, records, promptIds, n: 4, maxTokens: 8, seed: 0, rewardFunctions: [taskReward(reversalTask)], step: 0 });
 * rollout.rewards.total; // one weighted reward per completion
 * ```
 */
export interface Rollout {
  records: readonly PromptRecord[];
  /** The token ids of each prompt. */
  promptIds: readonly (readonly number[])[];
  n: number;
  /** B = prompts · n completions. */
  completions: Completion[];
  /** Each completion's text, the stop token dropped. */
  texts: string[];
  rewards: ScoredRewards;
}

/**
 * Options of {@link collectRollout}.
 *
 * @example
 * ```ts
 * const options: CollectRolloutOptions = { generator, tokenizer, records, promptIds, n: 4, maxTokens: 8, seed: 1, rewardFunctions: [reward], step: 3 };
 * ```
 */
export interface CollectRolloutOptions {
  generator: Generator;
  tokenizer: TokenizerLike;
  records: readonly PromptRecord[];
  promptIds: readonly (readonly number[])[];
  n: number;
  maxTokens: number;
  seed: number;
  rewardFunctions: readonly RewardFunction[];
  /** One weight per function (default all 1). */
  rewardWeights?: readonly number[];
  /** Optimizer steps done, passed to the reward functions. */
  step: number;
}

/**
 * Samples `n` completions of each prompt from the generator, decodes them (the stop token dropped,
 * special tokens skipped) and scores them with the reward functions ({@link scoreRewards}: the batch
 * holds each record's columns, repeated for its n completions). Checks that the generator returned
 * n completions per prompt with ids and log-probs of one length.
 *
 * @example
 * ```ts
 * const rollout = await collectRollout({ generator, tokenizer, records, promptIds, n: 8, maxTokens: 16, seed: 0, rewardFunctions: [taskReward(reversalTask)], step: 0 });
 * ```
 */
export async function collectRollout(o: CollectRolloutOptions): Promise<Rollout> {
  const { generator, tokenizer, records, promptIds, n, maxTokens, seed, rewardFunctions, step } = o;
  const weights = o.rewardWeights ?? rewardFunctions.map(() => 1);
  const groups = await generator.generate({ prompts: records.map((r) => r.prompt), promptIds, n, maxTokens, seed });
  if (!Array.isArray(groups) || groups.length !== records.length || groups.some((g) => !Array.isArray(g) || g.length !== n)) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `generator '${generator.name}': expected ${records.length} lists of ${n} completions (one list per prompt); got ${Array.isArray(groups) ? `lengths [${groups.map((g) => (Array.isArray(g) ? g.length : describeValue(g))).join(', ')}]` : describeValue(groups)}`,
    );
  }
  const completions = groups.flat();
  completions.forEach((c, i) => {
    if (!c || !Array.isArray(c.ids) || !Array.isArray(c.logprobs) || c.ids.length !== c.logprobs.length || c.ids.length === 0 || c.ids.length > maxTokens) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `generator '${generator.name}': expected completion ${i} to have 1 to ${maxTokens} ids and one log-prob per id; got ${c && Array.isArray(c.ids) ? `${c.ids.length} ids and ${Array.isArray(c.logprobs) ? c.logprobs.length : 'no'} log-probs` : describeValue(c)}`,
      );
    }
  });
  const texts = completions.map((c) => tokenizer.decode(c.finishReason === 'stop' ? c.ids.slice(0, -1) : c.ids, { skipSpecialTokens: true }));
  const repeat = <T>(values: readonly T[]) => values.flatMap((v) => Array.from({ length: n }, () => v));
  const columns: Record<string, unknown[]> = {};
  for (const record of records) for (const key of Object.keys(record)) if (key !== 'prompt') columns[key] ??= [];
  for (const key of Object.keys(columns)) columns[key] = repeat(records.map((r) => r[key]));
  const rewards = await scoreRewards(rewardFunctions, weights, {
    ...columns,
    prompts: repeat(records.map((r) => r.prompt)),
    completions: texts,
    completionIds: completions.map((c) => [...c.ids]),
    step,
  });
  return { records, promptIds, n, completions, texts, rewards };
}

/**
 * The completions `indices` of a rollout as training examples: prompt ids then completion ids, with
 * labels −100 on the prompt, so `sequenceLogps` scores the completion tokens only.
 *
 * @example
 * ```ts
 * const batch = collateForTraining(rolloutExamples(rollout, [0, 1, 2, 3]), { padTokenId });
 * ```
 */
export function rolloutExamples(rollout: Rollout, indices: readonly number[]): LabeledExample[] {
  return indices.map((i) => {
    const prompt = rollout.promptIds[Math.floor(i / rollout.n)];
    const ids = rollout.completions[i].ids;
    return { inputIds: [...prompt, ...ids], labels: [...prompt.map(() => -100), ...ids] };
  });
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
/** Bessel-corrected standard deviation (torch's default, as TRL logs it); 0 for fewer than 2 values. */
function std(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

/**
 * TRL's rollout metrics of a rollout: `reward` and `reward_std` (the mean of the groups' reward
 * stds), `rewards/<name>/mean` and `/std` over the completions each function applies to,
 * `frac_reward_zero_std` (groups whose rewards are all equal), and `completions/mean_length`,
 * `min_length`, `max_length`, `clipped_ratio` (completions that hit the length limit without a stop
 * token), `mean_terminated_length`, `min_terminated_length`, `max_terminated_length`.
 *
 * @example
 * ```ts
 * rolloutMetrics(rollout)['completions/clipped_ratio']; // e.g. 0.125
 * ```
 */
export function rolloutMetrics(rollout: Rollout): Record<string, number> {
  const { n, completions, rewards } = rollout;
  const total = [...rewards.total];
  const groups = Array.from({ length: total.length / n }, (_, g) => total.slice(g * n, g * n + n));
  const lengths = completions.map((c) => c.ids.length);
  const terminated = completions.filter((c) => c.finishReason === 'stop').map((c) => c.ids.length);
  const metrics: Record<string, number> = {
    reward: mean(total),
    reward_std: mean(groups.map(std)),
    frac_reward_zero_std: mean(groups.map((g) => (g.every((r) => r === g[0]) ? 1 : 0))),
  };
  rewards.names.forEach((name, f) => {
    const applies = [...rewards.perFunction[f]].filter((v) => !Number.isNaN(v));
    metrics[`rewards/${name}/mean`] = mean(applies);
    metrics[`rewards/${name}/std`] = std(applies);
  });
  Object.assign(metrics, {
    'completions/mean_length': mean(lengths),
    'completions/min_length': Math.min(...lengths),
    'completions/max_length': Math.max(...lengths),
    'completions/clipped_ratio': 1 - terminated.length / lengths.length,
    'completions/mean_terminated_length': mean(terminated),
    'completions/min_terminated_length': terminated.length ? Math.min(...terminated) : 0,
    'completions/max_terminated_length': terminated.length ? Math.max(...terminated) : 0,
  });
  return metrics;
}

/**
 * The rows of the completion table (`completions.jsonl`, TRL's completions log): for each
 * completion the step, prompt, completion text, total reward and each function's reward (null where
 * it did not apply), plus `extra` fields (e.g. the advantage).
 *
 * @example
 * ```ts
 * const lines = completionRows(rollout, 3).map((row) => JSON.stringify(row)).join('\n');
 * ```
 */
export function completionRows(rollout: Rollout, step: number, extra: Record<string, readonly number[]> = {}): Record<string, unknown>[] {
  const { names, perFunction, total } = rollout.rewards;
  return rollout.texts.map((completion, i) => {
    const row: Record<string, unknown> = { step, prompt: rollout.records[Math.floor(i / rollout.n)].prompt, completion, reward: total[i] };
    names.forEach((name, f) => (row[name] = Number.isNaN(perFunction[f][i]) ? null : perFunction[f][i]));
    for (const [key, values] of Object.entries(extra)) row[key] = values[i];
    return row;
  });
}

/**
 * How {@link rolloutSchedule} walks a prompt dataset: `promptsPerRollout` prompts per rollout (whole
 * rollouts only: a pass over `prompts` records is ⌊prompts / promptsPerRollout⌋ rollouts, in an
 * order shuffled per (seed, epoch)), each turned into `microBatchesPerRollout` micro-batches that
 * are visited `iterations` times (GRPO's `numIterations`, PPO's epochs).
 *
 * @example
 * ```ts
 * const shape: RolloutScheduleShape = { prompts: 1000, promptsPerRollout: 8, microBatchesPerRollout: 4, iterations: 2, seed: 0 };
 * ```
 */
export interface RolloutScheduleShape {
  prompts: number;
  promptsPerRollout: number;
  microBatchesPerRollout: number;
  iterations: number;
  seed: number;
}

/**
 * What {@link rolloutSchedule} asks of the trainer: the rollout of `records` (prompt indices of the
 * dataset) sampled with `seed`, turned into micro-batches (the ones of every iteration, in order:
 * `iterations · microBatchesPerRollout` of them), and freed after its last micro-batch.
 *
 * @example
 * ```ts
 * const hooks: RolloutHooks<Batch, State> = { rollout: async (indices, seed, index) => makeState(indices, seed), microBatch: (state, k) => state.batches[k % 4], dispose: (state) => free(state) };
 * ```
 */
export interface RolloutHooks<B, S> {
  /** The rollout state of these prompts (generation, rewards, advantages, old log-probs), sampled with `seed`; `index` counts rollouts from the start of the run. */
  rollout(indices: number[], seed: number, index: number): Promise<S>;
  /** Micro-batch `k` (0 ≤ k < iterations · microBatchesPerRollout) of a rollout. */
  microBatch(state: S, k: number): B;
  /** Frees a micro-batch once the trainer moved on. */
  disposeMicroBatch?(batch: B): void;
  /** Frees a rollout once its last micro-batch is done (or the run stopped). */
  dispose(state: S): void;
}

/**
 * A seekable batch source (`@posttrain/trainer`'s `SeekableBatchSource`) over rollouts: epoch e
 * visits ⌊prompts / promptsPerRollout⌋ rollouts of prompts in a shuffled order of (seed, e); rollout
 * r of the run (counted from its start) samples with a seed of (seed, r), so a resumed run, opened
 * at the first micro-batch it has not trained on, generates exactly what the uninterrupted run did
 * without generating the rollouts before it. A resume inside a rollout (its old log-probs are gone)
 * is refused.
 *
 * @example
 * ```ts
 * const source = rolloutSchedule({ prompts: records.length, promptsPerRollout: 4, microBatchesPerRollout: 2, iterations: 1, seed: 0 }, hooks);
 * await train({ ..., batches: source, batchesPerEpoch: source.batchesPerEpoch });
 * ```
 */
export function rolloutSchedule<B, S>(
  shape: RolloutScheduleShape,
  hooks: RolloutHooks<B, S>,
): { open(epoch: number, start: number): AsyncGenerator<B>; batchesPerEpoch: number; rolloutsPerEpoch: number } {
  const { prompts, promptsPerRollout, microBatchesPerRollout, iterations, seed } = shape;
  checkNumber('rolloutSchedule', 'prompts', prompts, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  for (const key of ['promptsPerRollout', 'microBatchesPerRollout', 'iterations'] as const) checkNumber('rolloutSchedule', key, shape[key], 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber('rolloutSchedule', 'seed', seed, 'an integer', Number.isInteger);
  const rolloutsPerEpoch = Math.floor(prompts / promptsPerRollout);
  if (rolloutsPerEpoch < 1) {
    throw new PosttrainError('INVALID_OPTION', `rolloutSchedule: expected at least ${promptsPerRollout} prompts (one rollout); got ${prompts}`, {
      help: 'pass more prompt records, or fewer prompts per rollout (a smaller generationBatchSize)',
    });
  }
  const perRollout = microBatchesPerRollout * iterations;
  return {
    rolloutsPerEpoch,
    batchesPerEpoch: rolloutsPerEpoch * perRollout,
    async *open(epoch: number, start: number) {
      checkNumber('rolloutSchedule.open', 'epoch', epoch, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
      checkNumber('rolloutSchedule.open', 'start', start, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
      if (start % perRollout !== 0) {
        throw new PosttrainError('INVALID_OPTION', `rolloutSchedule: expected to resume at a rollout boundary (a multiple of ${perRollout} micro-batches into the epoch); got micro-batch ${start}`, {
          help: 'checkpoint only after whole rollouts: make checkpointEvery (and maxSteps) multiples of the optimizer steps per rollout',
        });
      }
      const order = new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) | 0).shuffle(Array.from({ length: prompts }, (_, i) => i));
      for (let r = start / perRollout; r < rolloutsPerEpoch; r++) {
        const index = epoch * rolloutsPerEpoch + r;
        const state = await hooks.rollout(order.slice(r * promptsPerRollout, (r + 1) * promptsPerRollout), (seed ^ Math.imul(index + 1, 0x85ebca6b) ^ 0x5bd1e995) | 0, index);
        try {
          for (let k = 0; k < perRollout; k++) {
            const batch = hooks.microBatch(state, k);
            try {
              yield batch;
            } finally {
              hooks.disposeMicroBatch?.(batch);
            }
          }
        } finally {
          hooks.dispose(state);
        }
      }
    },
  };
}
