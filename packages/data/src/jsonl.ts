// Reading records: from arrays, and from JSONL streamed line by line in constant memory.
import { PosttrainError, resolveOptions } from '@posttrain/tensor-core';
import { checkOneOf, checkPositiveInteger } from './check-options.js';
import {
  RecordError,
  datasetFormats,
  describeLocation,
  describeValue,
  detectFormat,
  isConversational,
  textFieldsOf,
  validateRecord,
  withArticle,
  type DatasetFormat,
  type DatasetRecord,
  type RecordLocation,
  type RecordOf,
} from './formats.js';

/**
 * Where {@link readJsonl} reads from: a file path (Node), a web `ReadableStream`, or any async
 * iterable of byte or text chunks (a Node stream, a `fetch` body, a generator).
 *
 * @example
 * ```ts
 * const source: JsonlSource = (await fetch('/train.jsonl')).body!;
 * ```
 */
export type JsonlSource = string | URL | ReadableStream<Uint8Array | string> | AsyncIterable<Uint8Array | string>;

/**
 * A record with the 1-based line it was read from.
 *
 * @example
 * ```ts
 * for await (const { line, record } of readJsonl('train.jsonl')) console.log(line, record);
 * ```
 */
export interface NumberedRecord<R = DatasetRecord> {
  line: number;
  record: R;
}

/**
 * Options of {@link readJsonl} and {@link readRecords}.
 *
 * @example
 * ```ts
 * const options: Partial<ReadRecordsOptions> = { format: 'preference', maxLineLength: 1 << 20 };
 * ```
 */
export interface ReadRecordsOptions {
  /**
   * The format every record must have: `'auto'` detects it from the first record (and then holds
   * every other record to it, standard or conversational included); `'any'` accepts any JSON object.
   */
  format: DatasetFormat | 'auto' | 'any';
  /** Longest line {@link readJsonl} accepts, in characters, so that a file without newlines cannot fill memory. */
  maxLineLength: number;
}

/**
 * Defaults of {@link readJsonl} and {@link readRecords}.
 *
 * @example
 * ```ts
 * readJsonl('train.jsonl', { ...defaultReadRecordsOptions, format: 'preference' });
 * ```
 */
export const defaultReadRecordsOptions: Readonly<ReadRecordsOptions> = Object.freeze({ format: 'auto', maxLineLength: 64 * 1024 * 1024 });

const readFormats = ['auto', 'any', ...datasetFormats] as const;

function resolveReadOptions(owner: string, options: Partial<ReadRecordsOptions>): ReadRecordsOptions {
  const resolved = resolveOptions<ReadRecordsOptions>(owner, options, defaultReadRecordsOptions);
  checkOneOf(owner, 'format', resolved.format, readFormats);
  checkPositiveInteger(owner, 'maxLineLength', resolved.maxLineLength);
  return resolved;
}

/** Checks records one at a time against the format fixed by the options or by the first record. */
class RecordChecker {
  private format: DatasetFormat | 'any' | undefined;
  private readonly auto: boolean;
  private conversational: boolean | undefined;
  private first: string | undefined; // where the first record was, for messages

  constructor(format: ReadRecordsOptions['format']) {
    this.format = format === 'auto' ? undefined : format;
    this.auto = format === 'auto';
  }

  check(record: unknown, where: RecordLocation): DatasetRecord {
    if (this.format === 'any') {
      if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new RecordError(where, null, 'a JSON object (one record)', describeValue(record));
      return record as DatasetRecord;
    }
    this.format ??= detectFormat(record, where);
    this.first ??= describeLocation(where);
    try {
      const valid = validateRecord(record, this.format, { ...where, conversational: this.conversational, conversationalFrom: this.first });
      this.conversational ??= isConversational(textFieldsOf(this.format, valid));
      return valid;
    } catch (error) {
      // A record of another format than the one detected: say so, rather than name a missing field.
      const own = this.auto && error instanceof RecordError ? tryDetect(record) : undefined;
      if (own !== undefined && own !== this.format) {
        const field = (error as RecordError).field;
        throw new RecordError(where, field, `${withArticle(this.format)} record, like ${this.first}`, `${withArticle(own)} record with keys [${Object.keys(record as object).join(', ')}]`, {
          cause: error,
          help: "a dataset holds records of one format; split it, or read it with format: 'any'",
        });
      }
      throw error;
    }
  }

  get detected(): DatasetFormat | 'any' | undefined {
    return this.format;
  }
}

function tryDetect(record: unknown): DatasetFormat | undefined {
  try {
    return detectFormat(record);
  } catch {
    return undefined;
  }
}

/**
 * Validates an array (or any iterable) of records against one format and returns them with the
 * format: `'auto'` detects it from the first record. Errors name the record's index, the field,
 * what was expected and what was found.
 *
 * @example
 * ```ts
 * const { format, records } = readRecords([{ prompt: 'The sky is', completion: ' blue.' }]);
 * // format: 'prompt-completion'
 * ```
 */
export function readRecords<F extends DatasetFormat = DatasetFormat>(
  records: Iterable<unknown>,
  options: Partial<Omit<ReadRecordsOptions, 'format'>> & { format?: F | 'auto' | 'any' } = {},
): { format: F | 'any' | null; records: RecordOf[F][] } {
  const resolved = resolveReadOptions('readRecords', options);
  const checker = new RecordChecker(resolved.format);
  const out: RecordOf[F][] = [];
  let index = 0;
  for (const record of records) out.push(checker.check(record, { index: index++ }) as RecordOf[F]);
  return { format: (checker.detected ?? null) as F | 'any' | null, records: out };
}

/**
 * Streams the records of a JSONL file, one per line, with their line numbers. Memory stays
 * constant whatever the file's size: chunks are cut at `\n` (a `\r` before it is dropped), each
 * line is decoded as UTF-8 on its own (a line split between chunks is joined first; a byte-order
 * mark at the start is dropped), and each line is parsed and validated before the next is read. Blank lines are skipped; the last line needs no newline.
 * A bad line throws a {@link RecordError} with its line number, the field, what was expected and
 * what was found, after every record before it has been yielded.
 *
 * @example
 * ```ts
 * for await (const { line, record } of readJsonl('train.jsonl', { format: 'prompt-completion' })) {
 *   console.log(line, record.prompt, record.completion);
 * }
 * ```
 */
export async function* readJsonl<F extends DatasetFormat = DatasetFormat>(
  source: JsonlSource,
  options: Partial<Omit<ReadRecordsOptions, 'format'>> & { format?: F | 'auto' | 'any' } = {},
): AsyncGenerator<NumberedRecord<RecordOf[F]>, void, undefined> {
  const resolved = resolveReadOptions('readJsonl', options);
  const checker = new RecordChecker(resolved.format);
  for await (const { line, text } of jsonlLines(source, resolved.maxLineLength)) {
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new RecordError({ line }, null, 'one JSON object per line', `invalid JSON ${describeValue(text)} (${(error as Error).message})`, {
        cause: error,
        help: 'JSONL holds exactly one JSON value per line: a record spread over several lines, or two on one line, is not valid',
      });
    }
    yield { line, record: checker.check(value, { line }) as RecordOf[F] };
  }
}

/**
 * The lines of a JSONL source, numbered from 1, without their `\n` or `\r\n`, and without a
 * byte-order mark at the start of the first. Byte chunks are cut at 0x0A before decoding (a
 * newline byte is never inside a multi-byte UTF-8 sequence), and each line is decoded strictly on
 * its own, so invalid UTF-8 fails its own line after every line before it has been yielded. Only
 * the unfinished last line of a chunk is carried to the next (copied: file chunks reuse a buffer).
 */
async function* jsonlLines(source: JsonlSource, maxLineLength: number): AsyncGenerator<{ line: number; text: string }> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let line = 0;
  let parts: (string | Uint8Array)[] = []; // the current line's pieces from earlier chunks
  let partsLength = 0; // characters of string pieces plus bytes of byte pieces
  // A UTF-8 byte is at most one UTF-16 code unit (3 bytes make 1, 4 make 2), so a line of more
  // than 3 × maxLineLength bytes has more than maxLineLength characters.
  const maxBytes = 3 * maxLineLength;
  const decode = (bytes: Uint8Array) => {
    try {
      return decoder.decode(bytes);
    } catch (error) {
      throw new RecordError({ line: line + 1 }, null, 'UTF-8 text', 'bytes that are not valid UTF-8', {
        cause: error,
        help: 'save the file as UTF-8 (iconv -f <encoding> -t UTF-8)',
      });
    }
  };
  const tooLong = (length: number, unit = 'characters') =>
    new RecordError({ line: line + 1 }, null, `a line of at most ${maxLineLength} characters (maxLineLength)`, `a line of more than ${length} ${unit}`, {
      help: 'check that the file is JSONL (one record per line), or raise maxLineLength',
    });
  const finish = (last: string | Uint8Array) => {
    const pieces = parts.length ? [...parts, last] : [last];
    parts = [];
    partsLength = 0;
    let text = '';
    let bytes: Uint8Array[] = [];
    const flush = () => {
      if (bytes.length === 0) return;
      text += decode(bytes.length === 1 ? bytes[0] : concat(bytes));
      bytes = [];
    };
    for (const piece of pieces) {
      if (typeof piece === 'string') {
        flush();
        text += piece;
      } else bytes.push(piece);
    }
    flush();
    if (text.length > maxLineLength) throw tooLong(text.length);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (line === 0 && text.startsWith('\uFEFF')) text = text.slice(1);
    line++;
    return { line, text };
  };
  const carry = (piece: string | Uint8Array) => {
    partsLength += piece.length;
    if (typeof piece === 'string' ? partsLength > maxLineLength : partsLength > maxBytes) throw tooLong(partsLength, typeof piece === 'string' ? 'characters' : 'bytes');
    parts.push(piece);
  };

  for await (const chunk of chunksOf(source)) {
    if (typeof chunk === 'string') {
      let start = 0;
      for (let end = chunk.indexOf('\n'); end !== -1; end = chunk.indexOf('\n', start)) {
        if (partsLength + end - start > maxLineLength) throw tooLong(partsLength + end - start);
        yield finish(chunk.slice(start, end));
        start = end + 1;
      }
      if (start < chunk.length) carry(chunk.slice(start));
    } else {
      let start = 0;
      for (let end = chunk.indexOf(0x0a); end !== -1; end = chunk.indexOf(0x0a, start)) {
        if (partsLength + end - start > maxBytes) throw tooLong(partsLength + end - start, 'bytes');
        yield finish(chunk.subarray(start, end));
        start = end + 1;
      }
      if (start < chunk.length) carry(chunk.slice(start)); // a copy: the chunk's buffer is reused
    }
  }
  if (parts.length > 0) yield finish('');
}

function concat(arrays: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

/**
 * The chunks of a source. A file is read into one reused 64 KiB buffer (no garbage per chunk), so
 * a chunk is valid only until the next is asked for: the caller decodes it first. The file is
 * closed when reading stops, early or not.
 */
async function* chunksOf(source: JsonlSource): AsyncGenerator<Uint8Array | string> {
  if (typeof source === 'string' || source instanceof URL) {
    const fs = await nodeModule<typeof import('node:fs/promises')>('node:fs/promises');
    let file: Awaited<ReturnType<typeof fs.open>>;
    try {
      file = await fs.open(source, 'r');
      if ((await file.stat()).isDirectory()) {
        await file.close();
        throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      }
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOENT' || code === 'EISDIR') {
        throw new PosttrainError('FILE_NOT_FOUND', `readJsonl: expected a JSONL file at ${String(source)}; got ${code === 'ENOENT' ? 'no such file' : 'a directory'}`, { cause: error });
      }
      throw error;
    }
    try {
      const buffer = new Uint8Array(64 * 1024);
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) return;
        yield buffer.subarray(0, bytesRead);
      }
    } finally {
      await file.close();
    }
  }
  if (typeof (source as ReadableStream).getReader === 'function') {
    const reader = (source as ReadableStream<Uint8Array | string>).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      await reader.cancel().catch(() => undefined);
      reader.releaseLock();
    }
  }
  if (typeof (source as AsyncIterable<unknown>)?.[Symbol.asyncIterator] !== 'function') {
    throw new PosttrainError('INVALID_ARGUMENT', `readJsonl: expected a file path, a ReadableStream or an async iterable of chunks; got ${describeValue(source)}`);
  }
  yield* source as AsyncIterable<Uint8Array | string>;
}

/**
 * Imports a Node built-in at run time. The name goes through a variable so that browser bundlers
 * leave the import alone instead of failing to resolve `node:fs`.
 */
function nodeModule<T>(name: string): Promise<T> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name) as Promise<T>;
}
