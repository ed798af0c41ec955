// Records → token ids with labels: completion-only and assistant-only loss masks, EOS, truncation.
import { PosttrainError, resolveOptions } from '@posttrain/tensor-core';
import { checkTokenizeOptions, checkTokenized } from './tokenize-checks.js';
import type { Tokenizer } from './tokenizer.js';
import { extractPrompt, type LanguageModelingRecord, type Message, type PreferenceRecord, type PromptCompletionRecord } from './formats.js';

/**
 * The label of a token the loss skips (prompt, non-assistant turns, padding), as in PyTorch's
 * `cross_entropy(ignore_index=-100)` and Hugging Face.
 *
 * @example
 * ```ts
 * const counted = labels.filter((label) => label !== IGNORE_INDEX).length;
 * ```
 */
export const IGNORE_INDEX = -100;

/**
 * What tokenizing needs from a {@link Tokenizer}: any object with these members works, so tests
 * and callers can pass a minimal one.
 *
 * @example
 * ```ts
 * const ids = tokenizer.encode('The sky is', { addSpecialTokens: true });
 * ```
 */
export type TokenizerLike = Pick<Tokenizer, 'encode' | 'decode' | 'eosTokenId'>;

/**
 * Token ids of a conversation rendered by a chat template, with `assistantMask` (1 on tokens the
 * assistant wrote, 0 elsewhere) where the template marks them (`{% generation %}`).
 *
 * @example
 * ```ts
 * const tokens: ChatTokens = { inputIds: [1, 5, 9, 2], assistantMask: [0, 0, 1, 1] };
 * ```
 */
export interface ChatTokens {
  inputIds: number[];
  assistantMask?: number[];
}

/**
 * Renders and tokenizes messages with a chat template, returning {@link ChatTokens} or just the ids.
 * `addGenerationPrompt` appends the start of an assistant turn (what a model is given at
 * inference); `returnAssistantMask` is true only where the mask is used (a `messages` record with
 * `assistantOnly`), so a template without `{% generation %}` (Qwen3's) serves everything else.
 * `tokenize` is always true. The chat-template function of this package fits as it is:
 * `(messages, o) => applyChatTemplate(tokenizer, messages, o)`.
 *
 * @example
 * ```ts
 * const chat: ChatEncoder = (messages, o) => applyChatTemplate(tokenizer, messages, o);
 * ```
 */
export type ChatEncoder = (messages: Message[], options: { addGenerationPrompt: boolean; returnAssistantMask: boolean; tokenize: true }) => ChatTokens | number[];

/**
 * One tokenized example, unpadded: `labels[t]` is the target of the prediction made at `t − 1`
 * (the loss shifts, as in Hugging Face) or {@link IGNORE_INDEX}.
 *
 * @example
 * ```ts
 * const example: TokenizedExample = { inputIds: [1, 5, 9, 2], labels: [-100, -100, 9, 2], attentionMask: [1, 1, 1, 1], promptLength: 2 };
 * ```
 */
export interface TokenizedExample {
  inputIds: number[];
  labels: number[];
  /** All 1: the collators add the 0s of padding. */
  attentionMask: number[];
  /** Tokens before the completion (0 for language modeling). */
  promptLength: number;
}

/**
 * Options of the tokenize functions.
 *
 * @example
 * ```ts
 * const options: Partial<TokenizeOptions> = { maxLength: 1024, truncation: 'left', name: 'line 12' };
 * ```
 */
export interface TokenizeOptions {
  /** Labels only on the completion, −100 on the prompt (TRL's `completion_only_loss`). Else labels everywhere. */
  completionOnly: boolean;
  /** Labels only on assistant tokens of a `messages` conversation (needs the chat encoder's `assistantMask`). */
  assistantOnly: boolean;
  /** Append the EOS id to a standard (string) completion or text, unless it already ends with it; its label is kept even when pad = EOS. */
  appendEos: boolean;
  /** Passed to `tokenizer.encode` (usually: prepend BOS). */
  addSpecialTokens: boolean;
  /** Longest example in tokens; `null`: no limit. */
  maxLength: number | null;
  /**
   * Longest prompt in tokens (TRL's `max_prompt_length`): a longer prompt of a prompt-completion (or
   * preference) record loses its start, BOS included, so the tokens next to the completion stay
   * (cut on the left). Applied before `maxLength`; `null`: no limit. Language-modelling records have no prompt.
   */
  maxPromptLength: number | null;
  /**
   * Longest completion in tokens (TRL's `max_completion_length`): a longer completion loses its end,
   * EOS included (cut on the right). Applied before `maxLength`; `null`: no limit.
   */
  maxCompletionLength: number | null;
  /**
   * Which side an example over `maxLength` loses. `'right'` cuts the end (of a prompt-completion,
   * the completion's end, EOS included; never the prompt: a prompt that leaves no room for the
   * completion is an error). `'left'` cuts the start (of a prompt-completion, the prompt's start,
   * BOS included; never the completion). `'error'` throws instead.
   */
  truncation: 'right' | 'left' | 'error';
  /** Renders conversational records; required for message lists. */
  chat: ChatEncoder | null;
  /** Names the record in errors (`'line 12'`); default: the start of its prompt or text. */
  name: string | null;
  /**
   * The model's vocabulary size: a token id at or above it (a tokenizer larger than the model's) is
   * an error naming the record and both vocabulary sizes; `null`: not checked.
   */
  vocabSize: number | null;
  /**
   * The model's context (`maxPositions`): a sequence longer than it, after `maxLength`'s cut, is an
   * error naming the record and both lengths, before any step runs; `null`: not checked.
   */
  maxPositions: number | null;
  /**
   * Refuse an example that trains on nothing: no label after its first token (labels are shifted by
   * one, so the first token is never a target), as `{ text: '' }` tokenized to its EOS alone.
   */
  requireLabels: boolean;
}

/**
 * Defaults of the tokenize functions: completion-only and assistant-only loss, EOS appended, no
 * length limit.
 *
 * @example
 * ```ts
 * tokenizePromptCompletion(tokenizer, record, { ...defaultTokenizeOptions, maxLength: 512 });
 * ```
 */
export const defaultTokenizeOptions: Readonly<TokenizeOptions> = Object.freeze({
  completionOnly: true,
  assistantOnly: true,
  appendEos: true,
  addSpecialTokens: true,
  maxLength: null,
  maxPromptLength: null,
  maxCompletionLength: null,
  truncation: 'right',
  chat: null,
  name: null,
  vocabSize: null,
  maxPositions: null,
  requireLabels: false,
});

/**
 * Tokenizes a prompt-completion record so that the sequence is exactly what the model sees at
 * inference followed by the completion: prompt and prompt + completion are tokenized (or, for
 * message lists, rendered with `chat`, the prompt with the generation prompt), and the prompt's
 * tokens must be the first tokens of the joint ones, else it throws naming the record. A standard
 * completion ends with EOS. Labels are −100 on the prompt (`completionOnly`, the default).
 *
 * @example
 * ```ts
 * const { inputIds, labels } = tokenizePromptCompletion(tokenizer, { prompt: 'The sky is', completion: ' blue.' });
 * // inputIds: [BOS, The, ␣sky, ␣is, ␣blue, ., EOS]; labels: [-100, -100, -100, -100, ␣blue, ., EOS]
 * ```
 */
export function tokenizePromptCompletion(tokenizer: TokenizerLike, record: PromptCompletionRecord, options: Partial<TokenizeOptions> = {}): TokenizedExample {
  const o = resolveOptions('tokenizePromptCompletion', options, defaultTokenizeOptions);
  checkTokenizeOptions('tokenizePromptCompletion', o);
  const name = o.name ?? `the record with prompt ${preview(record.prompt)}`;
  const { prompt, completion } = record;
  let promptIds: number[];
  let ids: number[];
  if (typeof prompt === 'string' && typeof completion === 'string') {
    promptIds = tokenizer.encode(prompt, { addSpecialTokens: o.addSpecialTokens });
    ids = tokenizer.encode(prompt + completion, { addSpecialTokens: o.addSpecialTokens });
    if (o.appendEos) ids = withEos(tokenizer, ids, 'tokenizePromptCompletion');
  } else if (Array.isArray(prompt) && Array.isArray(completion)) {
    const chat = requireChat(o.chat, 'tokenizePromptCompletion', name);
    promptIds = render(chat, prompt, true, false).inputIds;
    ids = render(chat, [...prompt, ...completion], false, false).inputIds;
  } else {
    throw new PosttrainError('INVALID_ARGUMENT', `tokenizePromptCompletion: ${name}: expected prompt and completion both strings or both message lists; got ${kind(prompt)} and ${kind(completion)}`);
  }
  checkPrefix(tokenizer, promptIds, ids, name);
  let p = promptIds.length;
  // TRL's per-part limits: the prompt keeps its last maxPromptLength tokens, the completion its first maxCompletionLength.
  const cutPrompt = o.maxPromptLength !== null && p > o.maxPromptLength ? p - o.maxPromptLength : 0;
  if (cutPrompt > 0 || (o.maxCompletionLength !== null && ids.length - p > o.maxCompletionLength)) {
    ids = [...ids.slice(cutPrompt, p), ...ids.slice(p, o.maxCompletionLength === null ? ids.length : p + o.maxCompletionLength)];
    p -= cutPrompt;
  }
  const labels = ids.map((id, i) => (o.completionOnly && i < p ? IGNORE_INDEX : id));
  return checkTokenized(tokenizer, truncate({ inputIds: ids, labels, attentionMask: [], promptLength: p }, o, 'tokenizePromptCompletion', name), o, 'tokenizePromptCompletion', name);
}

/**
 * Tokenizes a language-modeling record. `text`: every token is a label, and EOS is appended.
 * `messages`: rendered with `chat`; with `assistantOnly` (the default) labels only on the tokens the
 * chat encoder's `assistantMask` marks, and an error if it marks none.
 *
 * @example
 * ```ts
 * tokenizeLanguageModeling(tokenizer, { text: 'The sky is blue.' }); // labels = inputIds, EOS last
 * tokenizeLanguageModeling(tokenizer, { messages }, { chat }); // labels only on assistant turns
 * ```
 */
export function tokenizeLanguageModeling(tokenizer: TokenizerLike, record: LanguageModelingRecord, options: Partial<TokenizeOptions> = {}): TokenizedExample {
  const o = resolveOptions('tokenizeLanguageModeling', options, defaultTokenizeOptions);
  checkTokenizeOptions('tokenizeLanguageModeling', o);
  const name = o.name ?? `the record with ${record.text !== undefined ? 'text' : 'messages'} ${preview(record.text ?? record.messages ?? '')}`;
  let ids: number[];
  let labels: number[];
  if (typeof record.text === 'string') {
    ids = tokenizer.encode(record.text, { addSpecialTokens: o.addSpecialTokens });
    if (o.appendEos) ids = withEos(tokenizer, ids, 'tokenizeLanguageModeling');
    labels = [...ids];
  } else if (Array.isArray(record.messages)) {
    const rendered = render(requireChat(o.chat, 'tokenizeLanguageModeling', name), record.messages, false, o.assistantOnly);
    ids = rendered.inputIds;
    const mask = rendered.assistantMask;
    if (!o.assistantOnly) {
      labels = [...ids];
    } else if (mask === undefined || mask.length !== ids.length || !mask.some((m) => m === 1)) {
      const got = mask === undefined ? 'no assistantMask' : mask.length !== ids.length ? `an assistantMask of ${mask.length} for ${ids.length} tokens` : 'an assistantMask of all 0';
      throw new PosttrainError('INVALID_ARGUMENT', `tokenizeLanguageModeling: ${name}: expected an assistantMask marking the assistant's tokens (assistantOnly); got ${got}`, {
        help: 'render with a template that marks assistant turns with {% generation %} and returnAssistantMask: true, or pass assistantOnly: false to train on every token',
      });
    } else {
      labels = ids.map((id, i) => (mask[i] === 1 ? id : IGNORE_INDEX));
    }
  } else {
    throw new PosttrainError('INVALID_ARGUMENT', `tokenizeLanguageModeling: ${name}: expected "text" (a string) or "messages" (a list); got ${kind(record.text ?? record.messages)}`);
  }
  return checkTokenized(tokenizer, truncate({ inputIds: ids, labels, attentionMask: [], promptLength: 0 }, o, 'tokenizeLanguageModeling', name), o, 'tokenizeLanguageModeling', name);
}

/**
 * Tokenizes a preference record as two prompt-completions sharing the prompt (an implicit prompt
 * is extracted first, as TRL does): `chosen` and `rejected`, each with the checks and masks of
 * {@link tokenizePromptCompletion}.
 *
 * @example
 * ```ts
 * const { chosen, rejected } = tokenizePreference(tokenizer, { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' });
 * ```
 */
export function tokenizePreference(tokenizer: TokenizerLike, record: PreferenceRecord, options: Partial<TokenizeOptions> = {}): { chosen: TokenizedExample; rejected: TokenizedExample } {
  const { prompt, chosen, rejected } = extractPrompt(record);
  const name = options.name ?? `the record with prompt ${preview(prompt)}`;
  return {
    chosen: tokenizePromptCompletion(tokenizer, { prompt, completion: chosen }, { ...options, name: `${name} (chosen)` }),
    rejected: tokenizePromptCompletion(tokenizer, { prompt, completion: rejected }, { ...options, name: `${name} (rejected)` }),
  };
}

function requireChat(chat: ChatEncoder | null, owner: string, name: string): ChatEncoder {
  if (chat === null) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: ${name}: expected the chat option (a chat encoder) to render message lists; got none`, {
      help: 'pass chat: (messages, o) => applyChatTemplate(tokenizer, messages, o)',
    });
  }
  return chat;
}

/** Calls a chat encoder, asking for the assistant mask only when it is used. */
function render(chat: ChatEncoder, messages: Message[], addGenerationPrompt: boolean, returnAssistantMask: boolean): ChatTokens {
  const out = chat(messages, { addGenerationPrompt, returnAssistantMask, tokenize: true });
  return Array.isArray(out) ? { inputIds: out } : out;
}

/** `ids` ending with EOS: appended unless already last. Compares ids, never text, so pad = EOS changes nothing. */
function withEos(tokenizer: TokenizerLike, ids: number[], owner: string): number[] {
  const eos = tokenizer.eosTokenId;
  if (typeof eos !== 'number') {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a tokenizer with an eosTokenId to end completions with; got ${String(eos)}`, {
      help: "set the tokenizer's EOS token, or pass appendEos: false if the texts end themselves",
    });
  }
  return ids[ids.length - 1] === eos ? ids : [...ids, eos];
}

/** Throws unless `prompt` is a prefix of `joint`, showing where and how they differ. */
function checkPrefix(tokenizer: TokenizerLike, prompt: number[], joint: number[], name: string): void {
  let i = 0;
  while (i < prompt.length && i < joint.length && prompt[i] === joint[i]) i++;
  if (i === prompt.length && joint.length > prompt.length) return;
  const show = (ids: number[]) => `[${ids.join(', ')}] (${JSON.stringify(tokenizer.decode(ids))})`;
  const got =
    i === prompt.length
      ? `prompt + completion tokenized to no more tokens than the prompt alone (${prompt.length}): the completion is empty`
      : `they differ from token ${i}: the prompt alone ends ${show(prompt.slice(i))}, prompt + completion continues ${show(joint.slice(i, prompt.length + 2))}`;
  throw new PosttrainError(
    'INVALID_ARGUMENT',
    `tokenizePromptCompletion: ${name}: expected the prompt's ${prompt.length} tokens to be the first tokens of prompt + completion, as the model sees the prompt at inference; ${got}`,
    {
      help: 'the tokenizer merges characters across the prompt/completion boundary: move the boundary to a token boundary (e.g. end the prompt before a space and start the completion with it, " blue"), or fix the template',
    },
  );
}

/** Applies `maxLength` on the stated side, never cutting a prompt (right) or a completion (left). */
function truncate(example: TokenizedExample, o: TokenizeOptions, owner: string, name: string): TokenizedExample {
  const { inputIds, labels } = example;
  const n = inputIds.length;
  const max = o.maxLength;
  let { promptLength } = example;
  let start = 0;
  let end = n;
  if (max !== null && n > max) {
    const cut = `${owner}: ${name}: ${n} tokens exceed maxLength ${max}`;
    if (o.truncation === 'error') throw new PosttrainError('INVALID_ARGUMENT', `${cut}; truncation is 'error'`, { help: "raise maxLength, or pass truncation: 'right' or 'left'" });
    if (o.truncation === 'right') {
      if (promptLength >= max) {
        throw new PosttrainError('INVALID_ARGUMENT', `${cut}, and the prompt alone has ${promptLength}: right truncation cuts only the completion, and would leave none`, {
          help: "raise maxLength, or pass truncation: 'left' to cut the prompt's start",
        });
      }
      end = max;
    } else {
      const completion = n - promptLength;
      if (promptLength > 0 && completion >= max) {
        throw new PosttrainError('INVALID_ARGUMENT', `${cut}, and the completion alone has ${completion}: left truncation cuts only the prompt, and would leave none`, {
          help: "raise maxLength, or pass truncation: 'right' to cut the completion's end",
        });
      }
      start = n - max;
      promptLength = Math.max(0, promptLength - start);
    }
  }
  const inputIdsKept = inputIds.slice(start, end);
  const labelsKept = labels.slice(start, end);
  if (start > 0 || end < n) {
    const counted = (ls: number[]) => ls.some((label) => label !== IGNORE_INDEX);
    if (!counted(labelsKept) && counted(labels)) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `${owner}: ${name}: ${n} tokens exceed maxLength ${max}, and ${o.truncation} truncation to ${max} would cut every labelled token: the example would train on nothing`,
        {
          help: `raise maxLength, pass truncation: '${o.truncation === 'right' ? 'left' : 'right'}', or drop the record`,
        },
      );
    }
  }
  return { inputIds: inputIdsKept, labels: labelsKept, attentionMask: inputIdsKept.map(() => 1), promptLength: Math.min(promptLength, inputIdsKept.length) };
}

function kind(value: unknown): string {
  return typeof value === 'string' ? 'a string' : Array.isArray(value) ? 'a message list' : value === undefined ? 'nothing' : typeof value;
}

function preview(value: string | Message[]): string {
  const text = typeof value === 'string' ? value : value.map((m) => m.content).join(' | ');
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 37)}…` : text);
}
