// The inputs every online trainer (GRPO, RLOO, PPO, online DPO) checks the same way: prompt
// records, their token ids against the model's context, the reward option, and the completion table.
import { PosttrainError, describeValue } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { PromptRecord } from './rollout.js';
import { rewardModelReward, rewardNames, type RewardFunction, type ScalarRewardModel } from './rewards.js';

/**
 * Checks an online trainer's prompt records: `train` must be a non-empty array, and every record
 * `{ prompt: string, … }`; throws INVALID_OPTION / INVALID_ARGUMENT naming the record (a message
 * list gets a pointer to the chat template).
 *
 * @example
 * ```ts
 * checkPromptRecords('grpoTrain', 'train', [{ prompt: 'abc>', answer: 'cba' }]);
 * ```
 */
export function checkPromptRecords(owner: string, what: string, records: readonly PromptRecord[]): void {
  if (what === 'train' && (!Array.isArray(records) || records.length === 0)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of { prompt } records; got ${Array.isArray(records) ? 'an empty array' : describeValue(records)}`, {
      help: "for example [{ prompt: 'abc>', answer: 'cba' }]: a prompt, and any columns the reward functions read",
    });
  }
  records.forEach((r, i) => {
    if (!r || typeof r !== 'object' || typeof r.prompt !== 'string') {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `${owner}: ${what} record ${i}: expected { prompt: string, … }; got ${r && typeof r === 'object' ? `prompt ${describeValue(r.prompt)}` : describeValue(r)}`,
        { help: Array.isArray(r?.prompt) ? 'conversational prompts are not supported: render them to a string first (applyChatTemplate from @posttrain/data)' : undefined },
      );
    }
  });
}

/**
 * How {@link encodePrompts} fits prompts to the context: at most `maxPromptTokens` tokens (longer
 * prompts lose their start; null: no cut), and room for `newTokens` new tokens, the option named
 * `newTokensOption` in errors; `cutOption` names the option that sets the cut, which limits the
 * prompt (`cutLimits: 'prompt'`, as TRL's `max_prompt_length`) or prompt + completion ('sequence',
 * as online DPO's `max_length`).
 *
 * @example
 * ```ts
 * const fit: PromptFit = { maxPromptTokens: null, newTokens: 8, newTokensOption: 'maxCompletionLength', cutOption: 'maxPromptLength', cutLimits: 'prompt' };
 * ```
 */
export interface PromptFit {
  maxPromptTokens: number | null;
  newTokens: number;
  newTokensOption: string;
  cutOption: string;
  cutLimits: 'prompt' | 'sequence';
}

/**
 * Each record's prompt ids, left-truncated to `fit.maxPromptTokens`, checked to leave room for
 * `fit.newTokens` new tokens in the model's context (`maxPositions`): an empty prompt is
 * INVALID_ARGUMENT, one without room INVALID_OPTION with the two values to change.
 *
 * @example
 * ```ts
 * const ids = encodePrompts('grpoTrain', 'train', tokenizer, records, { maxPromptTokens: null, newTokens: 8, newTokensOption: 'maxCompletionLength', cutOption: 'maxPromptLength', cutLimits: 'prompt' }, 64);
 * ```
 */
export function encodePrompts(owner: string, what: string, tokenizer: TokenizerLike, records: readonly PromptRecord[], fit: PromptFit, maxPositions: number | undefined): number[][] {
  const { maxPromptTokens, newTokens, newTokensOption, cutOption, cutLimits } = fit;
  return records.map((r, i) => {
    let ids = tokenizer.encode(r.prompt);
    if (maxPromptTokens !== null && ids.length > maxPromptTokens) ids = ids.slice(ids.length - maxPromptTokens);
    if (ids.length === 0) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${what} record ${i}: expected a prompt of at least one token; got ${JSON.stringify(r.prompt)}`);
    if (maxPositions !== undefined && ids.length + newTokens > maxPositions) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: ${what} record ${i}: expected prompt + ${newTokensOption} to fit the model's context of ${maxPositions} tokens; got a prompt of ${ids.length} tokens + ${newTokensOption} ${newTokens} = ${ids.length + newTokens}`,
        {
          help: `lower ${newTokensOption} to ${Math.max(1, maxPositions - ids.length)}, or set ${cutOption} to ${cutLimits === 'prompt' ? Math.max(1, maxPositions - newTokens) : maxPositions} (prompts lose their start)`,
        },
      );
    }
    return ids;
  });
}

/**
 * An online trainer's `rewardFunctions` / `rewardWeights` options as functions (a reward model
 * given directly is wrapped by {@link rewardModelReward}), their metric names and weights (null: all
 * 1); throws INVALID_OPTION naming the option.
 *
 * @example
 * ```ts
 * const { functions, names, weights } = resolveRewardFunctions('grpoTrain', [taskReward(reversalTask), rm], [1, 0.5], tokenizer);
 * ```
 */
export function resolveRewardFunctions(
  owner: string,
  rewardFunctions: RewardFunction | ScalarRewardModel | readonly (RewardFunction | ScalarRewardModel)[],
  rewardWeights: readonly number[] | null,
  tokenizer: TokenizerLike,
): { functions: RewardFunction[]; names: string[]; weights: number[] } {
  const given = Array.isArray(rewardFunctions) ? rewardFunctions : [rewardFunctions];
  if (given.length === 0 || given.some((f) => typeof f !== 'function' && !(f && typeof (f as ScalarRewardModel).forward === 'function'))) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected rewardFunctions to be reward functions or reward models, at least one; got ${describeValue(rewardFunctions)}`, {
      help: 'for example rewardFunctions: [taskReward(reversalTask)], or a RewardModel from @posttrain/reward',
    });
  }
  const functions = given.map((f) => (typeof f === 'function' ? (f as RewardFunction) : rewardModelReward(f as ScalarRewardModel, tokenizer)));
  const names = rewardNames(functions);
  const weights = rewardWeights === null ? functions.map(() => 1) : Array.isArray(rewardWeights) ? [...rewardWeights] : [];
  if (weights.length !== functions.length || weights.some((w) => typeof w !== 'number' || !Number.isFinite(w))) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected rewardWeights to be ${functions.length} finite numbers (one per reward function: ${names.join(', ')}) or null; got ${describeValue(rewardWeights)}`,
    );
  }
  return { functions, names, weights };
}

/**
 * The completion table's path: `completionsFile` when given, else `completions.jsonl` beside
 * `logFile`, else none.
 *
 * @example
 * ```ts
 * await completionsPath({ completionsFile: undefined, logFile: 'runs/a/metrics.jsonl' }); // 'runs/a/completions.jsonl'
 * ```
 */
export async function completionsPath(o: { completionsFile: string | undefined; logFile: string | undefined }): Promise<string | undefined> {
  if (o.completionsFile !== undefined) return o.completionsFile;
  if (o.logFile === undefined) return undefined;
  const path = await import('node:path');
  return path.join(path.dirname(o.logFile), 'completions.jsonl');
}

/**
 * Appends rows to a JSONL file (the completion table), creating its directory; nothing without a file.
 *
 * @example
 * ```ts
 * await appendJsonl('runs/a/completions.jsonl', completionRows(rollout, step));
 * ```
 */
export async function appendJsonl(file: string | undefined, rows: readonly Record<string, unknown>[]): Promise<void> {
  if (file === undefined || rows.length === 0) return;
  const [fs, path] = await Promise.all([import('node:fs/promises'), import('node:path')]);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.appendFile(file, `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
}
