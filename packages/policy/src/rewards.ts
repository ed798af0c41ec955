// Reward functions in TRL's shape, their weighted sum with TRL's "None is not applicable" rule, and
// the built-ins: a verifiable task's check, a regex format reward, DAPO's soft overlong penalty and a
// scalar reward model.
import { PosttrainError, describeValue, tf } from '@posttrain/tensor-core';
import { collateForGeneration, type TokenizerLike, type VerifiableTask } from '@posttrain/data';
import { padTokenIdOf } from './pad.js';
import { inEvalMode } from './reference.js';

/**
 * What a reward function receives: one entry per completion, in rollout order (the completions of
 * one prompt consecutive), as TRL passes its keyword arguments. `prompts[i]` is the prompt of
 * completion i, `completions[i]` its text (the stop token dropped), `completionIds[i]` its token
 * ids (the stop token kept), `step` the optimizer steps done, and every other field of the training
 * records is a column, `batch[column][i]` (for example `answer` of the data package's tasks).
 *
 * @example
 * ```ts
 * const batch: RewardBatch = { prompts: ['abc>'], completions: ['cba'], completionIds: [[99, 98, 97, 258]], step: 0, answer: ['cba'] };
 * ```
 */
export interface RewardBatch {
  prompts: string[];
  completions: string[];
  completionIds: number[][];
  step: number;
  [column: string]: unknown;
}

/**
 * A reward function: one number per completion of the batch, or `null` where it does not apply
 * (TRL's `None`: left out of the weighted sum). Sync or async. Its metrics are logged under its
 * `rewardName`, else its function name (`rewards/<name>/mean`); {@link namedReward} sets one.
 *
 * @example
 * ```ts
 * const short: RewardFunction = ({ completions }) => completions.map((c) => (c.length <= 4 ? 1 : 0));
 * ```
 */
export type RewardFunction = ((batch: RewardBatch) => readonly (number | null)[] | Promise<readonly (number | null)[]>) & { rewardName?: string };

/**
 * `fn` with the name its metrics are logged under.
 *
 * @example
 * ```ts
 * const length = namedReward('length', ({ completions }) => completions.map((c) => -c.length));
 * ```
 */
export function namedReward(name: string, fn: RewardFunction): RewardFunction {
  if (typeof name !== 'string' || name.length === 0) throw new PosttrainError('INVALID_ARGUMENT', `namedReward: expected a non-empty name; got ${describeValue(name)}`);
  if (typeof fn !== 'function') throw new PosttrainError('INVALID_ARGUMENT', `namedReward: expected fn to be a function; got ${describeValue(fn)}`);
  const named: RewardFunction = (batch) => fn(batch);
  named.rewardName = name;
  return named;
}

/**
 * The metric names of `functions`: each one's `rewardName`, else its function name, else
 * `reward_<i>`; throws INVALID_OPTION when two share a name (their metrics would collide).
 *
 * @example
 * ```ts
 * rewardNames([taskReward(reversalTask), formatReward(/^[a-h]+$/)]); // ['reversal_exact_match', 'format']
 * ```
 */
export function rewardNames(functions: readonly RewardFunction[]): string[] {
  const names = functions.map((fn, i) => fn.rewardName ?? (fn.name && fn.name !== 'anonymous' ? fn.name : `reward_${i}`));
  const seen = new Map<string, number>();
  names.forEach((name, i) => {
    if (seen.has(name)) {
      throw new PosttrainError('INVALID_OPTION', `rewardFunctions: expected distinct names; got '${name}' for functions ${seen.get(name)} and ${i}`, {
        help: "name them with namedReward('name', fn) so rewards/<name>/mean tells them apart",
      });
    }
    seen.set(name, i);
  });
  return names;
}

/**
 * The rewards of a batch: `perFunction[f][i]` (NaN where function f returned null) and `total[i]`,
 * the weighted sum Σ_f w_f · r_f[i] over the functions that apply to completion i (TRL's nansum: a
 * completion no function applies to gets 0).
 *
 * @example
 * ```ts
 * const { total, perFunction } = await scoreRewards([taskReward(reversalTask)], [1], batch);
 * ```
 */
export interface ScoredRewards {
  names: string[];
  perFunction: Float64Array[];
  total: Float64Array;
}

/**
 * Runs each reward function on `batch` and sums their weighted rewards ({@link ScoredRewards}).
 * Errors name the function: one that throws is run again on each completion alone to name the
 * first completion it fails on (error `CALLBACK_FAILED`, that completion's error as `cause`; the
 * original when it fails on none alone); a result of the wrong length, or a value that is not a
 * finite number or null, is `INVALID_ARGUMENT` naming the function and the completion, as are
 * `weights` that are not one finite number per function.
 *
 * @example
 * ```ts
 * const scored = await scoreRewards([taskReward(reversalTask), formatReward(/^[a-h]+$/)], [1, 0.1], batch);
 * scored.total; // Float64Array, one weighted reward per completion
 * ```
 */
export async function scoreRewards(functions: readonly RewardFunction[], weights: readonly number[], batch: RewardBatch): Promise<ScoredRewards> {
  const names = rewardNames(functions);
  if (!Array.isArray(weights) || weights.length !== functions.length || weights.some((w) => typeof w !== 'number' || !Number.isFinite(w))) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `scoreRewards: expected weights to be ${functions.length} finite numbers (one per reward function: ${names.join(', ')}); got ${Array.isArray(weights) ? `[${weights.join(', ')}]` : describeValue(weights)}`,
    );
  }
  const count = batch.completions.length;
  const perFunction: Float64Array[] = [];
  for (let f = 0; f < functions.length; f++) {
    const name = names[f];
    let values: readonly (number | null)[];
    try {
      values = await functions[f](batch);
    } catch (error) {
      throw await locateFailure(functions[f], name, batch, error);
    }
    if (!Array.isArray(values) || values.length !== count) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `reward function '${name}': expected an array of ${count} rewards (one per completion of the batch); got ${Array.isArray(values) ? `${values.length} values` : describeValue(values)}`,
        { help: 'return one number (or null where the reward does not apply) for each entry of batch.completions, in order' },
      );
    }
    const out = new Float64Array(count);
    values.forEach((v, i) => {
      if (v === null || v === undefined) out[i] = Number.NaN;
      else if (typeof v === 'number' && Number.isFinite(v)) out[i] = v;
      else {
        throw new PosttrainError('INVALID_ARGUMENT', `reward function '${name}': expected a finite number or null for completion ${i}; got ${describeValue(v)}`, {
          help: `the completion was ${JSON.stringify(batch.completions[i])} for prompt ${JSON.stringify(batch.prompts[i])}; return null where a reward does not apply`,
        });
      }
    });
    perFunction.push(out);
  }
  const total = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let sum = 0;
    for (let f = 0; f < functions.length; f++) if (!Number.isNaN(perFunction[f][i])) sum += weights[f] * perFunction[f][i];
    total[i] = sum;
  }
  return { names, perFunction, total };
}

/** Reruns a failed function on one completion at a time to name the first that fails. */
async function locateFailure(fn: RewardFunction, name: string, batch: RewardBatch, error: unknown): Promise<PosttrainError> {
  const count = batch.completions.length;
  const message = error instanceof Error ? error.message : String(error);
  for (let i = 0; i < count; i++) {
    try {
      await fn(sliceBatch(batch, i));
    } catch (single) {
      return new PosttrainError(
        'CALLBACK_FAILED',
        `reward function '${name}' threw on completion ${i} of the batch (prompt ${JSON.stringify(batch.prompts[i])}, completion ${JSON.stringify(batch.completions[i])}): ${single instanceof Error ? single.message : String(single)}`,
        {
          cause: single,
          help: 'the run stopped before this rollout was trained on; fix the function and resume from the last checkpoint',
        },
      );
    }
  }
  return new PosttrainError('CALLBACK_FAILED', `reward function '${name}' threw on the batch of ${count} completions (on none alone): ${message}`, {
    cause: error,
    help: 'the run stopped before this rollout was trained on; fix the function and resume from the last checkpoint',
  });
}

/** The batch of completion `i` alone: each column of completion length sliced to its entry. */
function sliceBatch(batch: RewardBatch, i: number): RewardBatch {
  const count = batch.completions.length;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(batch)) out[key] = Array.isArray(value) && value.length === count ? [value[i]] : value;
  return out as RewardBatch;
}

/**
 * Options of {@link taskReward}.
 *
 * @example
 * ```ts
 * const options: TaskRewardOptions = { mode: 'partial' };
 * ```
 */
export interface TaskRewardOptions {
  /** 'exact' (default): 1 when the task verifies the completion, else 0. 'partial': the task's score in [0, 1] (the share of positions right). */
  mode: 'exact' | 'partial';
}

/**
 * A verifiable task's check as a reward: each completion is verified against its record's `answer`
 * column when the batch has one (the data package's task examples do), else against the task's
 * solution of the prompt. Named `<task>_exact_match` or `<task>_score`.
 *
 * @example
 * ```ts
 * const reward = taskReward(reversalTask); // 1 for 'cba' after 'abc>', else 0
 * ```
 */
export function taskReward(task: Pick<VerifiableTask, 'name' | 'verify'>, options: Partial<TaskRewardOptions> = {}): RewardFunction {
  const mode = options.mode ?? 'exact';
  if (mode !== 'exact' && mode !== 'partial') throw new PosttrainError('INVALID_OPTION', `taskReward: expected mode to be 'exact' or 'partial'; got ${describeValue(mode)}`);
  if (!task || typeof task.verify !== 'function') throw new PosttrainError('INVALID_ARGUMENT', `taskReward: expected a verifiable task (with verify); got ${describeValue(task)}`);
  return namedReward(`${task.name}_${mode === 'exact' ? 'exact_match' : 'score'}`, (batch) => {
    const answers = Array.isArray(batch.answer) ? (batch.answer as unknown[]) : undefined;
    return batch.completions.map((completion, i) => {
      const example = typeof answers?.[i] === 'string' ? { prompt: batch.prompts[i], answer: answers[i] as string, metadata: {} } : batch.prompts[i];
      const { correct, score } = task.verify(example, completion);
      return mode === 'exact' ? (correct ? 1 : 0) : score;
    });
  });
}

/**
 * A format reward: `reward` (default 1) for a completion the regular expression matches, else 0
 * (the "format reward" of DeepSeek-R1, arXiv 2501.12948, §2.2.2). Anchor the pattern (`^…$`) to
 * require the whole completion to match.
 *
 * @example
 * ```ts
 * const think = formatReward(/^<think>[\s\S]*<\/think>[\s\S]+$/); // 1 when the reasoning is wrapped in think tags
 * ```
 */
export function formatReward(pattern: RegExp, options: { reward?: number } = {}): RewardFunction {
  if (!(pattern instanceof RegExp)) throw new PosttrainError('INVALID_ARGUMENT', `formatReward: expected a RegExp; got ${describeValue(pattern)}`);
  const reward = options.reward ?? 1;
  if (!Number.isFinite(reward)) throw new PosttrainError('INVALID_OPTION', `formatReward: expected reward to be a finite number; got ${describeValue(reward)}`);
  const regex = new RegExp(pattern.source, pattern.flags.replace('g', '').replace('y', ''));
  return namedReward('format', ({ completions }) => completions.map((c) => (regex.test(c) ? reward : 0)));
}

/**
 * DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, eq. 13): with L the
 * completion's token count, L_max = `maxCompletionLength` and L_cache = `softPunishCache`, the
 * reward is 0 for L ≤ L_max − L_cache, ((L_max − L_cache) − L) / L_cache up to L_max, and −1 beyond.
 * Named `overlong_penalty`; give it weight 1 beside the task reward.
 *
 * @example
 * ```ts
 * const penalty = overlongPenalty({ maxCompletionLength: 16, softPunishCache: 4 }); // 13 tokens → −0.25
 * ```
 */
export function overlongPenalty(options: { maxCompletionLength: number; softPunishCache: number }): RewardFunction {
  const { maxCompletionLength: max, softPunishCache: cache } = options ?? ({} as { maxCompletionLength: number; softPunishCache: number });
  if (!Number.isInteger(max) || max < 1) throw new PosttrainError('INVALID_OPTION', `overlongPenalty: expected maxCompletionLength to be an integer ≥ 1; got ${describeValue(max)}`);
  if (!Number.isInteger(cache) || cache < 1 || cache > max) {
    throw new PosttrainError('INVALID_OPTION', `overlongPenalty: expected softPunishCache to be an integer in [1, maxCompletionLength = ${max}]; got ${describeValue(cache)}`);
  }
  return namedReward('overlong_penalty', ({ completionIds }) =>
    completionIds.map((ids) => {
      const length = ids.length;
      if (length <= max - cache) return 0;
      if (length <= max) return (max - cache - length) / cache;
      return -1;
    }),
  );
}

/**
 * What {@link rewardModelReward} needs of a reward model: `forward` giving one scalar per row, read
 * at the last non-padding token (`@posttrain/reward`'s `RewardModel`), and train/eval switches.
 *
 * @example
 * ```ts
 * const scorer: ScalarRewardModel = rewardModel; // a RewardModel from @posttrain/reward
 * ```
 */
export interface ScalarRewardModel {
  forward(inputIds: tf.Tensor, options: { attentionMask?: tf.Tensor }): { rewards: tf.Tensor };
  readonly training: boolean;
  train(on?: boolean): unknown;
  eval(): unknown;
}

/**
 * A reward model's score as a reward: each prompt + completion is encoded, the EOS appended as the
 * reward trainer's sequences end (`tokenizePreference`), and scored in eval mode without gradient,
 * `batchSize` rows at a time. Named `reward_model`.
 *
 * @example
 * ```ts
 * const rm = await loadRewardModel('runs/rm');
 * const reward = rewardModelReward(rm, tokenizer);
 * ```
 */
export function rewardModelReward(model: ScalarRewardModel, tokenizer: TokenizerLike, options: { batchSize?: number; name?: string } = {}): RewardFunction {
  if (!model || typeof model.forward !== 'function') throw new PosttrainError('INVALID_ARGUMENT', `rewardModelReward: expected a reward model with forward; got ${describeValue(model)}`);
  const batchSize = options.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new PosttrainError('INVALID_OPTION', `rewardModelReward: expected batchSize to be a positive integer; got ${describeValue(batchSize)}`);
  const eos = tokenizer.eosTokenId as number | null | undefined;
  const padTokenId = padTokenIdOf(tokenizer);
  return namedReward(options.name ?? 'reward_model', async ({ prompts, completions }) => {
    const rows = prompts.map((p, i) => [...tokenizer.encode(p + completions[i]), ...(eos === null || eos === undefined ? [] : [eos])]);
    const out: number[] = [];
    await inEvalMode(model, async () => {
      for (let start = 0; start < rows.length; start += batchSize) {
        // Left-padded: the score is read at each row's last real token, which is the last column.
        const batch = collateForGeneration(rows.slice(start, start + batchSize), { padTokenId });
        let rewards: tf.Tensor | undefined;
        try {
          rewards = tf.tidy(() => model.forward(batch.inputIds, { attentionMask: batch.attentionMask }).rewards);
          out.push(...(await rewards.data()));
        } finally {
          tf.dispose([batch.inputIds, batch.attentionMask, ...(rewards ? [rewards] : [])]);
        }
      }
    });
    return out;
  });
}
