// Preference pairs → tokens → one batch of chosen then rejected sequences → their rewards.
import { PosttrainError, tf } from '@posttrain/tensor-core';
import { tokenizePreference, type PreferenceRecord, type TokenizerLike } from '@posttrain/data';
import { collatePairs, type TokenizedPair as PolicyPair } from '@posttrain/policy';
import type { RewardModel } from './reward-model.js';

/**
 * A preference record (TRL's preference format, explicit or implicit prompt, strings) with an
 * optional `margin`: how much the chosen reward should beat the rejected one (Llama 2's m(r)).
 *
 * @example
 * ```ts
 * const record: RewardRecord = { prompt: 'abc>', chosen: 'cba', rejected: 'abc', margin: 1 };
 * ```
 */
export interface RewardRecord {
  prompt?: string;
  chosen: string;
  rejected: string;
  /** The pair's margin m in −log σ(r_c − r_r − m) (default 0). */
  margin?: number;
}

/** A tokenized pair with its margin. */
export interface TokenizedPair extends PolicyPair {
  margin: number;
}

/** A micro-batch of B pairs as one batch of 2B sequences. */
export interface RewardBatch {
  /** `[2B, T]`: the B chosen sequences, then the B rejected ones. */
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  /** `[B]`, or undefined when no record has a margin. */
  margin: tf.Tensor1D | undefined;
  pairs: number;
}

/** The truncation options of a pair: `maxLength` cuts the prompt's start (left), after `maxPromptLength` (left) and `maxCompletionLength` (right). */
export interface PairLengths {
  maxLength: number | null;
  maxPromptLength: number | null;
  maxCompletionLength: number | null;
}

/** Tokenizes one pair (EOS appended to both completions), checking its strings and margin. */
export function tokenizePair(tokenizer: TokenizerLike, record: RewardRecord, index: number, lengths: PairLengths, owner: string): TokenizedPair {
  const where = `${owner}: record ${index}`;
  if (!record || typeof record !== 'object' || typeof record.chosen !== 'string' || typeof record.rejected !== 'string' || (record.prompt !== undefined && typeof record.prompt !== 'string')) {
    const chat = !!record && typeof record === 'object' && [record.prompt, record.chosen, record.rejected].some(Array.isArray);
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${where}: expected { prompt?, chosen, rejected } strings; got ${chat ? 'message lists (a conversational record)' : record && typeof record === 'object' ? `keys [${Object.keys(record).join(', ')}]` : typeof record}`,
      {
        help: chat
          ? 'conversational records are not supported: render each conversation to a string first (applyChatTemplate from @posttrain/data)'
          : "for example { prompt: 'abc>', chosen: 'cba', rejected: 'abc' }",
      },
    );
  }
  const margin = record.margin ?? 0;
  if (typeof margin !== 'number' || !Number.isFinite(margin))
    throw new PosttrainError('INVALID_ARGUMENT', `${where}: expected margin to be a finite number; got ${typeof margin === 'number' ? String(margin) : JSON.stringify(margin)}`);
  const pair = tokenizePreference(tokenizer, record as PreferenceRecord, { ...lengths, truncation: 'left', name: `${owner.endsWith(': eval') ? 'eval ' : ''}record ${index}` });
  return { ...pair, margin };
}

/** One padded batch of 2B sequences (`collatePairs`: the chosen completions, then the rejected ones) with the margins. */
export function collateRewardBatch(pairs: readonly TokenizedPair[], padTokenId: number, withMargin: boolean): RewardBatch {
  const batch = collatePairs(pairs, { padTokenId });
  batch.labels.dispose();
  return {
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    margin: withMargin
      ? tf.tensor1d(
          pairs.map((p) => p.margin),
          'float32',
        )
      : undefined,
    pairs: pairs.length,
  };
}

/** Disposes a batch's tensors. */
export function disposeBatch(batch: RewardBatch): void {
  tf.dispose([batch.inputIds, batch.attentionMask, ...(batch.margin ? [batch.margin] : [])]);
}

/** Chosen and rejected rewards `[B]` each, from one forward pass over the batch. */
export function pairRewards(model: RewardModel, batch: RewardBatch): { chosen: tf.Tensor1D; rejected: tf.Tensor1D } {
  return tf.tidy(() => {
    const { rewards, hidden } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask }); // [2B]
    hidden.dispose();
    return { chosen: rewards.slice(0, batch.pairs) as tf.Tensor1D, rejected: rewards.slice(batch.pairs, batch.pairs) as tf.Tensor1D };
  });
}
