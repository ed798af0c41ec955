// The one rule for the id written on padding.
import type { TokenizerLike } from '@posttrain/data';

/**
 * The id the collators write on padding: the tokenizer's pad token, else its EOS token (the first
 * of several), else 0. Padding is masked out of attention and loss, so any valid id works; this is
 * the one Hugging Face's trainers fall back to (`tokenizer.pad_token = tokenizer.eos_token`).
 *
 * @example
 * ```ts
 * const batch = collateForTraining(examples, { padTokenId: padTokenIdOf(tokenizer) });
 * ```
 */
export function padTokenIdOf(tokenizer: Pick<TokenizerLike, 'eosTokenId'> & { padTokenId?: number | null }): number {
  const eos = tokenizer.eosTokenId as number | readonly number[] | null | undefined;
  return tokenizer.padTokenId ?? (Array.isArray(eos) ? eos[0] : (eos as number | null | undefined)) ?? 0;
}
