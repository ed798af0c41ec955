// TRL's dataset formats: which fields a record of each type carries, detected from its keys and
// validated with errors that name the record, the field, what was expected and what was found.
import { PosttrainError } from '@posttrain/tensor-core';
import { checkOneOf } from './check-options.js';

/**
 * One chat message, as in TRL's conversational format. Other keys (`name`, `tool_calls`, …) are
 * kept as they are.
 *
 * @example
 * ```ts
 * const message: Message = { role: 'user', content: 'What color is the sky?' };
 * ```
 */
export interface Message {
  role: string;
  content: string;
  [key: string]: unknown;
}

/**
 * A field's value: a string (TRL's standard format) or a list of messages (conversational).
 *
 * @example
 * ```ts
 * const prompt: TextOrMessages = [{ role: 'user', content: 'What color is the sky?' }];
 * ```
 */
export type TextOrMessages = string | Message[];

/**
 * TRL's dataset types, named by what their records carry:
 * - `language-modeling`: `text`, or `messages`;
 * - `prompt-only`: `prompt`;
 * - `prompt-completion`: `prompt`, `completion`;
 * - `preference`: `prompt`, `chosen`, `rejected` (or only `chosen`, `rejected`: the implicit prompt);
 * - `unpaired-preference`: `prompt`, `completion`, `label` (a boolean).
 *
 * @example
 * ```ts
 * const format: DatasetFormat = detectFormat({ prompt: 'The sky is', completion: ' blue.' }); // 'prompt-completion'
 * ```
 */
export type DatasetFormat = 'language-modeling' | 'prompt-only' | 'prompt-completion' | 'preference' | 'unpaired-preference';

/** A `language-modeling` record: exactly one of `text` and `messages`. @example `{ text: 'The sky is blue.' }` */
export interface LanguageModelingRecord {
  text?: string;
  messages?: Message[];
  [key: string]: unknown;
}

/** A `prompt-only` record. @example `{ prompt: 'The sky is' }` */
export interface PromptOnlyRecord {
  prompt: TextOrMessages;
  [key: string]: unknown;
}

/** A `prompt-completion` record. @example `{ prompt: 'The sky is', completion: ' blue.' }` */
export interface PromptCompletionRecord {
  prompt: TextOrMessages;
  completion: TextOrMessages;
  [key: string]: unknown;
}

/** A `preference` record; without `prompt` the prompt is implicit in both answers. @example `{ prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }` */
export interface PreferenceRecord {
  prompt?: TextOrMessages;
  chosen: TextOrMessages;
  rejected: TextOrMessages;
  [key: string]: unknown;
}

/** An `unpaired-preference` record: one completion, labelled good (`true`) or bad. @example `{ prompt: 'The sky is', completion: ' blue.', label: true }` */
export interface UnpairedPreferenceRecord {
  prompt: TextOrMessages;
  completion: TextOrMessages;
  label: boolean;
  [key: string]: unknown;
}

/**
 * The record type of each format.
 *
 * @example
 * ```ts
 * const record: RecordOf<'preference'> = { chosen: 'The sky is blue.', rejected: 'The sky is green.' };
 * ```
 */
export interface RecordOf {
  'language-modeling': LanguageModelingRecord;
  'prompt-only': PromptOnlyRecord;
  'prompt-completion': PromptCompletionRecord;
  preference: PreferenceRecord;
  'unpaired-preference': UnpairedPreferenceRecord;
}

/**
 * A record of any format.
 *
 * @example
 * ```ts
 * const records: DatasetRecord[] = [{ text: 'The sky is blue.' }];
 * ```
 */
export type DatasetRecord = RecordOf[DatasetFormat];

/**
 * Where a record came from, for messages.
 *
 * @example
 * ```ts
 * detectFormat(record, { line: 12 }); // errors start "line 12: …"
 * ```
 */
export interface RecordLocation {
  /** 1-based line of a JSONL file. */
  line?: number;
  /** 0-based index in an array. */
  index?: number;
}

/**
 * A record that does not fit its format, or a JSONL line that is not a record. Says where
 * (`line` of a file or `index` of an array), which `field`, what was `expected` and what was
 * `received`. Its `code` is `INVALID_ARGUMENT`.
 *
 * @example
 * ```ts
 * try { validateRecord({ prompt: 'The sky is', completion: 42 }, 'prompt-completion', { line: 7 }); }
 * catch (e) { const { line, field, expected, received } = e as RecordError; } // 7, 'completion', 'a string (…)', 'number 42'
 * ```
 */
export class RecordError extends PosttrainError {
  readonly line: number | null;
  readonly index: number | null;
  /** The field, as a path into the record (`messages[1].content`); null when the whole record is wrong. */
  readonly field: string | null;
  readonly expected: string;
  readonly received: string;

  constructor(where: RecordLocation, field: string | null, expected: string, received: string, options: { help?: string; cause?: unknown } = {}) {
    const place = describeLocation(where);
    const subject = field === null ? '' : `field "${field}": `;
    super('INVALID_ARGUMENT', `${place}: ${subject}expected ${expected}; got ${received}`, options);
    this.name = 'RecordError';
    this.line = where.line ?? null;
    this.index = where.index ?? null;
    this.field = field;
    this.expected = expected;
    this.received = received;
  }
}

/** `line 7`, `record at index 3`, or `record`. */
export function describeLocation(where: RecordLocation): string {
  if (where.line !== undefined) return `line ${where.line}`;
  if (where.index !== undefined) return `record at index ${where.index}`;
  return 'record';
}

/** A short description of a found value for messages: quoted strings cut to 60 characters. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  if (value === null) return 'null';
  if (typeof value === 'string') return value.length > 60 ? `${JSON.stringify(value.slice(0, 57))}… (${value.length} characters)` : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `a list of ${value.length} item${value.length === 1 ? '' : 's'}`;
  if (typeof value === 'object') return `an object with keys [${Object.keys(value).join(', ')}]`;
  return typeof value;
}

const forms = '"text" or "messages" (language modeling), "prompt" (prompt-only), "prompt" + "completion", "chosen" + "rejected" (with or without "prompt"), or "prompt" + "completion" + "label"';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The format of a record, from its keys (TRL's precedence: `chosen`/`rejected` make a preference,
 * `completion` with `label` an unpaired preference, `completion` a prompt-completion, `text` or
 * `messages` language modeling, `prompt` alone prompt-only). Only the keys are read: check the
 * values with {@link validateRecord}. Throws a {@link RecordError} for a record of no format.
 *
 * @example
 * ```ts
 * detectFormat({ chosen: 'The sky is blue.', rejected: 'The sky is green.' }); // 'preference'
 * detectFormat({ prompt: 'The sky is', completion: ' blue.', label: true }); // 'unpaired-preference'
 * ```
 */
export function detectFormat(record: unknown, where: RecordLocation = {}): DatasetFormat {
  if (!isObject(record)) throw new RecordError(where, null, 'a JSON object (one record)', describeValue(record));
  const has = (key: string) => Object.hasOwn(record, key);
  if (has('chosen') || has('rejected')) return 'preference';
  if (has('completion') || has('label')) return has('label') ? 'unpaired-preference' : 'prompt-completion';
  if (has('text') || has('messages')) return 'language-modeling';
  if (has('prompt')) return 'prompt-only';
  throw new RecordError(where, null, `the fields of one of TRL's formats: ${forms}`, describeValue(record), {
    help: "rename the columns to TRL's names; see docs/data.md",
  });
}

/**
 * True when the record's text fields are message lists (TRL's conversational format).
 *
 * @example
 * ```ts
 * isConversational({ prompt: [{ role: 'user', content: 'Hi' }] }); // true
 * isConversational({ text: 'Hi' }); // false
 * ```
 */
export function isConversational(record: object): boolean {
  const r = record as Record<string, unknown>;
  return ['messages', 'prompt', 'completion', 'chosen', 'rejected'].some((key) => Array.isArray(r[key]));
}

/** Every dataset format (internal: the public list is the {@link DatasetFormat} type). */
export const datasetFormats: readonly DatasetFormat[] = ['language-modeling', 'prompt-only', 'prompt-completion', 'preference', 'unpaired-preference'];

/** `a prompt-completion`, `an unpaired-preference` (internal). */
export function withArticle(format: string): string {
  return `${/^[aeiou]/.test(format) ? 'an' : 'a'} ${format}`;
}

/** The text fields of `format` in `record`, without its extra fields, for {@link isConversational} (internal). */
export function textFieldsOf(format: DatasetFormat | 'any', record: object): Record<string, unknown> {
  if (format === 'any') return {};
  const r = record as Record<string, unknown>;
  const fields = [...fieldsOf[format], ...(format === 'language-modeling' ? ['text', 'messages'] : format === 'preference' ? ['prompt'] : [])];
  return Object.fromEntries(fields.filter((field) => field in r).map((field) => [field, r[field]]));
}

/** The text fields each format requires (`prompt` of a preference is optional). */
const fieldsOf: Record<DatasetFormat, readonly string[]> = {
  'language-modeling': [],
  'prompt-only': ['prompt'],
  'prompt-completion': ['prompt', 'completion'],
  preference: ['chosen', 'rejected'],
  'unpaired-preference': ['prompt', 'completion'],
};

/**
 * Options of {@link validateRecord}: where the record came from, and the form the dataset has.
 *
 * @example
 * ```ts
 * validateRecord(record, 'prompt-completion', { line: 8, conversational: false, conversationalFrom: 'line 1' });
 * ```
 */
export interface ValidateRecordOptions extends RecordLocation {
  /**
   * Require the conversational (`true`) or standard (`false`) format, as the readers do after the
   * first record so that a dataset does not mix them; `undefined` accepts either.
   */
  conversational?: boolean;
  /** Where the expectation came from, for messages (`line 1`). */
  conversationalFrom?: string;
}

/**
 * Checks that `record` is a valid record of `format` and returns it typed. Strings and message
 * lists must not be mixed within a record (a string prompt with a message completion is an
 * error); extra fields are kept. Throws a {@link RecordError} naming the field, what was expected
 * and what was found.
 *
 * @example
 * ```ts
 * const record = validateRecord({ prompt: 'The sky is', completion: ' blue.', id: 3 }, 'prompt-completion');
 * record.completion; // ' blue.'
 * validateRecord({ prompt: 'The sky is', completion: ' blue.', label: 'yes' }, 'unpaired-preference', { line: 4 });
 * // throws: line 4: field "label": expected a boolean (true for a good completion); got "yes"
 * ```
 */
export function validateRecord<F extends DatasetFormat>(record: unknown, format: F, options: ValidateRecordOptions = {}): RecordOf[F] {
  const where: RecordLocation = { line: options.line, index: options.index };
  checkOneOf('validateRecord', 'format', format, datasetFormats);
  if (!isObject(record)) throw new RecordError(where, null, `a JSON object (${withArticle(format)} record)`, describeValue(record));
  const fields = [...fieldsOf[format]];
  if (format === 'language-modeling') {
    const hasText = 'text' in record;
    const hasMessages = 'messages' in record;
    if (hasText === hasMessages) {
      throw new RecordError(where, hasText ? 'messages' : 'text', 'exactly one of "text" (a string) and "messages" (a list of messages)', hasText ? 'both' : 'neither');
    }
    fields.push(hasText ? 'text' : 'messages');
  }
  if (format === 'preference' && 'prompt' in record) fields.unshift('prompt');
  for (const field of fields) {
    if (!(field in record)) throw new RecordError(where, field, `${withArticle(format)} record to have "${field}"`, `a record with keys [${Object.keys(record).join(', ')}]`);
  }

  // Every text field is a string, or every one is a message list.
  let conversational = options.conversational;
  let from = options.conversationalFrom;
  for (const field of fields) {
    const value = record[field];
    if (typeof value === 'string' && field !== 'messages' && conversational !== true) {
      conversational = false;
    } else if (Array.isArray(value) && field !== 'text' && conversational !== false) {
      checkMessages(value, field, where);
      conversational = true;
    } else if (conversational === undefined) {
      throw new RecordError(where, field, field === 'text' ? 'a string' : field === 'messages' ? 'a list of messages' : 'a string or a list of messages', describeValue(value));
    } else {
      const [kind, name] = conversational ? ['a list of messages', 'conversational'] : ['a string', 'standard'];
      throw new RecordError(where, field, `${kind} (the ${name} format, like ${from})`, describeValue(value), {
        help: 'a record, and a dataset, is either standard (strings) or conversational (message lists), not a mix',
      });
    }
    from ??= `"${field}"`;
  }
  if (format === 'unpaired-preference' && typeof record.label !== 'boolean') {
    throw new RecordError(where, 'label', 'a boolean (true for a good completion, false for a bad one)', describeValue(record.label));
  }
  return record as RecordOf[F];
}

function checkMessages(messages: unknown[], field: string, where: RecordLocation): void {
  if (messages.length === 0) throw new RecordError(where, field, 'a non-empty list of messages', 'an empty list');
  messages.forEach((message, i) => {
    if (!isObject(message)) throw new RecordError(where, `${field}[${i}]`, 'a message { "role": string, "content": string }', describeValue(message));
    if (typeof message.role !== 'string' || message.role === '')
      throw new RecordError(where, `${field}[${i}].role`, 'a non-empty string ("system", "user", "assistant", …)', describeValue(message.role));
    if (typeof message.content !== 'string') throw new RecordError(where, `${field}[${i}].content`, 'a string', describeValue(message.content));
  });
}

/**
 * Turns an implicit-prompt preference record into an explicit one: the prompt is the longest
 * common start of `chosen` and `rejected` (characters of strings, whole messages of message
 * lists; for strings, a space just before the first difference goes with the answers), as TRL's
 * `extract_prompt`. A record that already has a prompt is returned unchanged.
 *
 * @example
 * ```ts
 * extractPrompt({ chosen: 'The sky is blue.', rejected: 'The sky is green.' });
 * // { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }
 * ```
 */
export function extractPrompt(record: PreferenceRecord): PreferenceRecord & { prompt: TextOrMessages } {
  if (record.prompt !== undefined) return record as PreferenceRecord & { prompt: TextOrMessages };
  const { chosen, rejected } = record;
  const same = (i: number) => (typeof chosen === 'string' ? chosen[i] === rejected[i] : JSON.stringify(chosen[i]) === JSON.stringify(rejected[i]));
  let n = 0;
  while (n < Math.min(chosen.length, rejected.length) && same(n)) n++;
  if (typeof chosen === 'string' && n > 0 && chosen[n - 1] === ' ') n--;
  return { ...record, prompt: chosen.slice(0, n), chosen: chosen.slice(n), rejected: rejected.slice(n) } as PreferenceRecord & { prompt: TextOrMessages };
}
