// Win rate of model A against model B on the same prompts, by a reward model's scores.
import { PosttrainError } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import { rewardModelReward, type ScalarRewardModel } from '@posttrain/policy';

/** What {@link rewardWinRate} and {@link judgeWinRate} return. */
export interface WinRateResult {
  /** (wins + ties / 2) / prompts: 0.5 is a draw. */
  winRate: number;
  wins: number;
  ties: number;
  losses: number;
  /** Each prompt's outcome for A: 1 win, 0.5 tie, 0 loss. */
  outcomes: number[];
}

/** {@link WinRateResult} with the scores behind it. */
export interface RewardWinRateResult extends WinRateResult {
  meanRewardA: number;
  meanRewardB: number;
  rewardsA: number[];
  rewardsB: number[];
}

/** Throws unless there is one completion of A and one of B per prompt, and at least one prompt. */
export function checkPairs(owner: string, prompts: readonly string[], a: readonly string[], b: readonly string[]): void {
  if (a.length !== prompts.length || b.length !== prompts.length) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected one completion of A and one of B per prompt (${prompts.length} prompts); got ${a.length} of A and ${b.length} of B`);
  }
  if (prompts.length === 0) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one prompt; got none`);
}

/** Win-rate bookkeeping of per-prompt outcomes (1, 0.5, 0). */
export function winRateOf(outcomes: number[]): WinRateResult {
  const wins = outcomes.filter((x) => x === 1).length;
  const ties = outcomes.filter((x) => x === 0.5).length;
  return { winRate: outcomes.reduce((s, x) => s + x, 0) / outcomes.length, wins, ties, losses: outcomes.length - wins - ties, outcomes };
}

/**
 * How often completion A beats completion B of the same prompt under a reward model (a
 * `RewardModel` of `@posttrain/reward`, or anything with a scalar `forward`): each prompt +
 * completion (+ EOS) is scored as in RL's `rewardModelReward`; A wins when its score is higher by
 * more than `tieTolerance` (default 0: only equal scores tie), and ties count half.
 *
 * @example
 * ```ts
 * const { winRate } = await rewardWinRate(rewardModel, tokenizer, prompts, tunedAnswers, baseAnswers);
 * ```
 */
export async function rewardWinRate(
  rewardModel: ScalarRewardModel,
  tokenizer: TokenizerLike,
  prompts: readonly string[],
  completionsA: readonly string[],
  completionsB: readonly string[],
  options: { batchSize?: number; tieTolerance?: number } = {},
): Promise<RewardWinRateResult> {
  checkPairs('rewardWinRate', prompts, completionsA, completionsB);
  const tolerance = options.tieTolerance ?? 0;
  if (!(tolerance >= 0)) throw new PosttrainError('INVALID_OPTION', `rewardWinRate: expected tieTolerance to be a number ≥ 0; got ${tolerance}`);
  const score = rewardModelReward(rewardModel, tokenizer, { batchSize: options.batchSize ?? 64 });
  const batch = (completions: readonly string[]) => ({ prompts: [...prompts], completions: [...completions], completionIds: completions.map(() => []), step: 0 });
  const rewardsA = (await score(batch(completionsA))) as number[];
  const rewardsB = (await score(batch(completionsB))) as number[];
  const outcomes = rewardsA.map((ra, i) => (ra - rewardsB[i] > tolerance ? 1 : rewardsB[i] - ra > tolerance ? 0 : 0.5));
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  return { ...winRateOf(outcomes), meanRewardA: mean(rewardsA), meanRewardB: mean(rewardsB), rewardsA, rewardsB };
}
