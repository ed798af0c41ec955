// The records sftTrain (and estimateFisher) take, and how one becomes token ids with labels.
import { PosttrainError } from '@posttrain/tensor-core';
import { modelLimits, tokenizeLanguageModeling, tokenizePromptCompletion, type LanguageModelingRecord, type PromptCompletionRecord, type TokenizedExample, type TokenizerLike } from '@posttrain/data';

/** A training record: TRL prompt-completion (`{ prompt, completion }`) or language modeling (`{ text }`), strings. */
export type SftRecord = { prompt: string; completion: string } | { text: string };

/**
 * Tokenizes one record with its labels (−100 on the prompt when completion-only, EOS appended);
 * ids the model has no embedding for, and records with nothing to train on, are errors naming
 * `owner` and the record by `name`. @internal
 */
export function tokenizeSftRecord(
  owner: string,
  tokenizer: TokenizerLike,
  record: SftRecord,
  name: string,
  completionOnly: boolean,
  maxLength: number | null,
  model: ReturnType<typeof modelLimits>,
): TokenizedExample {
  const options = { completionOnly, maxLength, name, ...model, requireLabels: true };
  if (record && typeof record === 'object' && 'prompt' in record && 'completion' in record) return tokenizePromptCompletion(tokenizer, record as PromptCompletionRecord, options);
  if (record && typeof record === 'object' && 'text' in record) return tokenizeLanguageModeling(tokenizer, record as LanguageModelingRecord, options);
  throw new PosttrainError(
    'INVALID_ARGUMENT',
    `${owner}: ${name}: expected { prompt, completion } or { text }; got ${record && typeof record === 'object' ? `keys [${Object.keys(record).join(', ')}]` : typeof record}`,
  );
}
