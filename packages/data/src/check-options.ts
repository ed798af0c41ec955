// Checks of option values shared by the readers, tokenizers and packers (internal).
import { PosttrainError, checkNumber } from '@posttrain/tensor-core';

/** Throws unless `value` is one of `allowed`, naming them; returns it typed. */
export function checkOneOf<T extends string>(owner: string, name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be one of ${allowed.map((a) => `'${a}'`).join(', ')}; got ${show(value)}`);
  }
  return value as T;
}

/** Throws unless `value` is a boolean. */
export function checkBoolean(owner: string, name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be true or false; got ${show(value)}`);
  return value;
}

/** Throws unless `value` is a positive integer. */
export function checkPositiveInteger(owner: string, name: string, value: unknown): number {
  return checkNumber(owner, name, value, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : String(value);
}
