// Perplexity over dataset records (JSONL text or TRL records), token-weighted.
import { PosttrainError, resolveOptions, checkNumber, describeValue, type CausalLM } from '@posttrain/tensor-core';
import {
  IGNORE_INDEX,
  detectFormat,
  tokenizeLanguageModeling,
  tokenizePromptCompletion,
  type ChatEncoder,
  type LanguageModelingRecord,
  type PromptCompletionRecord,
  type TokenizedExample,
  type TokenizerLike,
} from '@posttrain/data';
import { exampleLogps, inEvalMode, padTokenIdOf, type PerplexityResult } from '@posttrain/policy';

/** Options of {@link recordsPerplexity}. */
export interface RecordsPerplexityOptions {
  /** Records per forward pass (default 16). */
  batchSize: number;
  /** Prompt-completion records score only their completion tokens (default true, as SFT trains them). */
  completionOnly: boolean;
  /** Longest record in tokens; a longer one is cut on the right (null: the model's maxPositions). */
  maxLength: number | null;
  /** Renders conversational records ({ messages } or message-list prompts); null: such records are an error. */
  chat: ChatEncoder | null;
}

/** Defaults of {@link recordsPerplexity}. */
export const defaultRecordsPerplexityOptions: Readonly<RecordsPerplexityOptions> = Object.freeze({ batchSize: 16, completionOnly: true, maxLength: null, chat: null });

/**
 * Token-weighted perplexity of `model` over records: each record is tokenized as the trainers do
 * (`{ text }` / `{ messages }` language modelling: every token after the first; `{ prompt,
 * completion }`: the completion tokens and EOS), and `nll` is the total negative log-likelihood
 * over all scored tokens divided by their number — so a long record weighs more than a short one,
 * unlike a mean of per-record perplexities. For one long text stream use `perplexity` (sliding
 * windows), re-exported here from `@posttrain/policy`.
 *
 * @example
 * ```ts
 * const records = []; for await (const { record } of readJsonl(openSync('held-out.jsonl'))) records.push(record);
 * const { perplexity, tokens } = await recordsPerplexity(model, tokenizer, records);
 * ```
 */
export async function recordsPerplexity(
  model: CausalLM,
  tokenizer: TokenizerLike,
  records: readonly (LanguageModelingRecord | PromptCompletionRecord)[],
  options?: Partial<RecordsPerplexityOptions>,
): Promise<PerplexityResult & { records: number }> {
  const owner = 'recordsPerplexity';
  const o = resolveOptions(owner, options, defaultRecordsPerplexityOptions);
  checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (records.length === 0) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one record; got none`);
  const maxLength = o.maxLength ?? model.config.maxPositions;
  const tokenize = { chat: o.chat, maxLength, completionOnly: o.completionOnly, vocabSize: model.config.vocabSize } as const;
  const examples: TokenizedExample[] = records.map((record, index) => {
    const format = detectFormat(record, { index });
    if (format === 'language-modeling') return tokenizeLanguageModeling(tokenizer, record as LanguageModelingRecord, tokenize);
    if (format === 'prompt-completion') return tokenizePromptCompletion(tokenizer, record as PromptCompletionRecord, tokenize);
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${owner}: record ${index}: expected a language-modeling ({ text } or { messages }) or prompt-completion record; got a ${format} record ${describeValue(record)}`,
    );
  });
  // A label counts when it is not ignored and is not the first token (nothing predicts it).
  const scored = examples.map((e) => e.labels.filter((label, t) => t > 0 && label !== IGNORE_INDEX).length);
  const tokens = scored.reduce((s, n) => s + n, 0);
  if (tokens === 0) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one scored token; every record is empty after tokenization`);
  const logps = await inEvalMode(model, () => exampleLogps(model, examples, { batchSize: o.batchSize, average: false, padTokenId: padTokenIdOf(tokenizer) }));
  let sum = 0;
  for (const l of logps) sum -= l;
  const nll = sum / tokens;
  return { perplexity: Math.exp(nll), nll, tokens, records: records.length };
}
