import { PosttrainError, checkNumber, type Rng } from '@posttrain/tensor-core';
import { intBetween } from './task.js';

/**
 * Options of the string tasks ({@link reversalTask}, {@link sortingTask}).
 *
 * @example
 * ```ts
 * const options: StringTaskOptions = { alphabet: 'abc', minLength: 3, maxLength: 3 };
 * reversalTask.generate(0, 4, options);
 * ```
 */
export interface StringTaskOptions {
  /** The characters strings are drawn from: at least 2 distinct ASCII letters or digits (default `'abcdefgh'`). */
  alphabet: string;
  /** The shortest string, an integer ≥ 1 (default 2). */
  minLength: number;
  /** The longest string, an integer ≥ minLength (default 4). Lengths are drawn uniformly. */
  maxLength: number;
}

/**
 * The metadata of a string-task example.
 *
 * @example
 * ```ts
 * const [{ metadata }] = sortingTask.generate(0, 1); // { task: 'sorting', length: 4 }
 * ```
 */
export type StringTaskMetadata = { length: number };

export const stringDefaults: StringTaskOptions = { alphabet: 'abcdefgh', minLength: 2, maxLength: 4 };

/** Characters a string task may use: one byte and one token each, none a separator or marker. */
export const stringPattern = /^[A-Za-z0-9]+$/;

export function validateStringOptions(owner: string, o: StringTaskOptions): void {
  const chars = typeof o.alphabet === 'string' ? [...o.alphabet] : [];
  const duplicate = chars.find((c, i) => chars.indexOf(c) !== i);
  if (typeof o.alphabet !== 'string' || !stringPattern.test(o.alphabet) || duplicate !== undefined || chars.length < 2) {
    const got = typeof o.alphabet === 'string' ? JSON.stringify(o.alphabet) + (duplicate ? ` (repeats "${duplicate}")` : '') : typeof o.alphabet;
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected alphabet to be at least 2 distinct ASCII letters or digits; got ${got}`, {
      help: "for example { alphabet: 'abcdefgh' }",
    });
  }
  checkNumber(owner, 'minLength', o.minLength, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'maxLength', o.maxLength, `an integer ≥ minLength (${o.minLength})`, (v) => Number.isInteger(v) && v >= o.minLength);
}

/** A string of uniformly drawn length and characters. */
export function sampleString(rng: Rng, o: StringTaskOptions): string {
  const length = intBetween(rng, o.minLength, o.maxLength);
  let text = '';
  for (let i = 0; i < length; i++) text += o.alphabet[rng.int(o.alphabet.length)];
  return text;
}

/** Σ |alphabet|^length over the allowed lengths. */
export function stringSpaceSize(o: StringTaskOptions): number {
  let size = 0;
  for (let length = o.minLength; length <= o.maxLength; length++) size += o.alphabet.length ** length;
  return size;
}

/** The prompt's string, checked: `'abc>'` → `'abc'` for separator `'>'`. */
export function parseStringPrompt(owner: string, prompt: string, separator: string, example: string): string {
  const body = prompt.slice(0, -1);
  if (!prompt.endsWith(separator) || !stringPattern.test(body)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a prompt of ASCII letters or digits ending in "${separator}", like "${example}"; got ${JSON.stringify(prompt)}`);
  }
  return body;
}

/** `text` with the characters at `i` and `j` exchanged. */
export function swap(text: string, i: number, j: number): string {
  const chars = [...text];
  [chars[i], chars[j]] = [chars[j], chars[i]];
  return chars.join('');
}

/**
 * The fallback wrong answer when no rearrangement differs (`'aaa'`): one character replaced by the
 * next one of its class (a→b, z→a, 9→0), so the length and the kind of characters stay.
 */
export function substituteOne(text: string, rng: Rng): string {
  const i = rng.int(text.length);
  const code = text.charCodeAt(i);
  const [low, size] = code <= 57 ? [48, 10] : code <= 90 ? [65, 26] : [97, 26];
  return text.slice(0, i) + String.fromCharCode(low + ((code - low + 1) % size)) + text.slice(i + 1);
}
