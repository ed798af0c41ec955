// Held-out pairwise accuracy of a reward model.
import { PosttrainError, checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import { bradleyTerryLoss } from '@posttrain/losses';
import { RewardModel } from './reward-model.js';
import { padTokenIdOf } from '@posttrain/policy';
import { collateRewardBatch, disposeBatch, pairRewards, tokenizePair, type RewardRecord, type TokenizedPair } from './pairs.js';

/**
 * What {@link evaluateRewardModel} measured over a set of pairs.
 *
 * @example
 * ```ts
 * const { accuracy, margin, chosenScores }: RewardEvaluation = await evaluateRewardModel(rm, tokenizer, pairs);
 * ```
 */
export interface RewardEvaluation {
  /** Mean Bradley–Terry loss (with each record's margin; no centring term). */
  loss: number;
  /** Fraction of pairs with r_c > r_r (a tie is wrong). */
  accuracy: number;
  /** Mean r_c − r_r. */
  margin: number;
  /** Mean r_c. */
  chosenScore: number;
  /** Mean r_r. */
  rejectedScore: number;
  /** r_c of each pair, in record order. */
  chosenScores: number[];
  /** r_r of each pair, in record order. */
  rejectedScores: number[];
}

/**
 * Options of {@link evaluateRewardModel}.
 *
 * @example
 * ```ts
 * const options: Partial<EvaluateRewardOptions> = { batchSize: 64 };
 * ```
 */
export interface EvaluateRewardOptions {
  /** Pairs per forward pass (default 32). */
  batchSize: number;
  /** As {@link RewardTunables.maxLength}: the prompt's start is cut (default null). */
  maxLength: number | null;
  /** As {@link RewardTunables.maxPromptLength}: the prompt's start is cut (default null). */
  maxPromptLength: number | null;
  /** As {@link RewardTunables.maxCompletionLength}: the completion's end is cut (default null). */
  maxCompletionLength: number | null;
}

/**
 * The defaults of {@link evaluateRewardModel}.
 *
 * @example
 * ```ts
 * await evaluateRewardModel(rm, tokenizer, pairs, { ...defaultEvaluateRewardOptions, batchSize: 8 });
 * ```
 */
export const defaultEvaluateRewardOptions: Readonly<EvaluateRewardOptions> = Object.freeze({ batchSize: 32, maxLength: null, maxPromptLength: null, maxCompletionLength: null });

/** Scores tokenized pairs in eval mode, `batchSize` pairs per forward pass. */
export async function evaluatePairs(model: RewardModel, pairs: readonly TokenizedPair[], padTokenId: number, batchSize: number): Promise<RewardEvaluation> {
  const wasTraining = model.training;
  model.eval();
  const chosenScores: number[] = [];
  const rejectedScores: number[] = [];
  let loss = 0;
  try {
    for (let start = 0; start < pairs.length; start += batchSize) {
      const slice = pairs.slice(start, start + batchSize);
      const batch = collateRewardBatch(slice, padTokenId, true);
      try {
        const stacked = tf.tidy(() => {
          const { chosen, rejected } = pairRewards(model, batch);
          return tf.stack([chosen, rejected, bradleyTerryLoss(chosen, rejected, { margin: batch.margin }).losses]);
        });
        const values = (await stacked.array()) as number[][];
        stacked.dispose();
        chosenScores.push(...values[0]);
        rejectedScores.push(...values[1]);
        loss += values[2].reduce((s, v) => s + v, 0);
      } finally {
        disposeBatch(batch);
      }
    }
  } finally {
    model.train(wasTraining);
  }
  const n = Math.max(chosenScores.length, 1);
  const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / n;
  return {
    loss: loss / n,
    accuracy: chosenScores.filter((c, i) => c > rejectedScores[i]).length / n,
    margin: mean(chosenScores.map((c, i) => c - rejectedScores[i])),
    chosenScore: mean(chosenScores),
    rejectedScore: mean(rejectedScores),
    chosenScores,
    rejectedScores,
  };
}

/**
 * Scores preference pairs with a reward model (in eval mode) and measures pairwise accuracy, the
 * mean margin r_c − r_r, the mean chosen and rejected rewards and the Bradley–Terry loss.
 *
 * @example
 * ```ts
 * const pairs = test.map((e, i) => reversalTask.preferencePair(e, i));
 * const { accuracy, margin } = await evaluateRewardModel(rm, tokenizer, pairs);
 * ```
 */
export async function evaluateRewardModel(model: RewardModel, tokenizer: TokenizerLike, records: readonly RewardRecord[], options?: Partial<EvaluateRewardOptions>): Promise<RewardEvaluation> {
  const owner = 'evaluateRewardModel';
  const o = resolveOptions(owner, options, defaultEvaluateRewardOptions);
  checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (o.maxLength !== null) checkNumber(owner, 'maxLength', o.maxLength, 'an integer ≥ 2', (v) => Number.isInteger(v) && v >= 2);
  if (o.maxPromptLength !== null) checkNumber(owner, 'maxPromptLength', o.maxPromptLength, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (o.maxCompletionLength !== null) checkNumber(owner, 'maxCompletionLength', o.maxCompletionLength, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (!(model instanceof RewardModel)) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a RewardModel; got ${(model as object)?.constructor?.name ?? typeof model}`);
  if (!Array.isArray(records) || records.length === 0)
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a non-empty array of preference records; got ${Array.isArray(records) ? 'an empty array' : typeof records}`);
  const pairs = records.map((r, i) => tokenizePair(tokenizer, r, i, { maxLength: o.maxLength, maxPromptLength: o.maxPromptLength, maxCompletionLength: o.maxCompletionLength }, owner));
  return evaluatePairs(model, pairs, padTokenIdOf(tokenizer), o.batchSize);
}
