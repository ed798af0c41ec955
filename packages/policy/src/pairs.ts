// Preference pairs as one batch: chosen and rejected completions of B pairs in one [2B, T] forward
// pass (TRL's concatenated_inputs), used by reward models and the DPO family alike.
import { PosttrainError, type tf } from '@posttrain/tensor-core';
import { collateForTraining, type TokenizedExample } from '@posttrain/data';

/**
 * A tokenized preference pair (prompt + chosen, prompt + rejected), as `tokenizePreference` returns it.
 *
 * @example
 * ```ts
 * const pair: TokenizedPair = tokenizePreference(tokenizer, { prompt: 'abc>', chosen: 'cba', rejected: 'abc' });
 * ```
 */
export interface TokenizedPair {
  chosen: TokenizedExample;
  rejected: TokenizedExample;
}

/**
 * B pairs as one right-padded `[2B, T]` batch: rows 0 … B − 1 are the chosen sequences, rows
 * B … 2B − 1 the rejected ones, in the same pair order. Labels are −100 on prompt and padding, so
 * they double as the completion mask. The caller disposes the tensors.
 *
 * @example
 * ```ts
 * const { inputIds, attentionMask, labels, pairs } = collatePairs(tokenized, { padTokenId: 0 });
 * ```
 */
export interface PairBatch {
  /** `[2B, T]` int32. */
  inputIds: tf.Tensor2D;
  /** `[2B, T]` int32, 1 on real tokens. */
  attentionMask: tf.Tensor2D;
  /** `[2B, T]` int32, the completion's ids, −100 elsewhere. */
  labels: tf.Tensor2D;
  /** B, the number of pairs. */
  pairs: number;
}

/**
 * Collates B pairs into one {@link PairBatch}, chosen rows first, right-padded with `padTokenId`
 * (see {@link padTokenIdOf}).
 *
 * @example
 * ```ts
 * const pairs = records.map((r) => tokenizePreference(tokenizer, r));
 * const batch = collatePairs(pairs, { padTokenId: padTokenIdOf(tokenizer) }); // [2B, T]
 * tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
 * ```
 */
export function collatePairs(pairs: readonly TokenizedPair[], options: { padTokenId: number }): PairBatch {
  if (!Array.isArray(pairs) || pairs.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `collatePairs: expected a non-empty array of { chosen, rejected } tokenized pairs; got ${Array.isArray(pairs) ? 'an empty array' : typeof pairs}`);
  }
  const batch = collateForTraining([...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)], { padTokenId: options.padTokenId });
  return { ...batch, pairs: pairs.length };
}
