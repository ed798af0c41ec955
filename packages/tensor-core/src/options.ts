import { PosttrainError } from './errors.js';

/**
 * Merges user options over defaults and rejects any key the defaults do not know, naming it and
 * listing the known ones, so a typo (`weightDeacy`) fails instead of being silently ignored.
 *
 * @example
 * ```ts
 * const o = resolveOptions('AdamW', { lr: 3e-4 }, { lr: 1e-3, eps: 1e-8 }); // { lr: 3e-4, eps: 1e-8 }
 * ```
 */
export function resolveOptions<T extends object>(owner: string, given: Partial<T> | undefined, defaults: T): T {
  if (given === undefined || given === null) return { ...defaults };
  if (typeof given !== 'object' || Array.isArray(given)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected an options object; got ${describe(given)}`);
  }
  const known = Object.keys(defaults);
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: unknown option "${key}"; known options are ${known.join(', ')}`);
    }
  }
  const out = { ...defaults } as Record<string, unknown>;
  for (const [key, value] of Object.entries(given)) if (value !== undefined) out[key] = value;
  return out as T;
}

/** Throws unless `value` is a finite number satisfying `ok`; `expected` describes the valid range. */
export function checkNumber(owner: string, name: string, value: unknown, expected: string, ok: (v: number) => boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be ${expected}; got ${describe(value)}`);
  }
  return value;
}

/**
 * A short description of a value for error messages: `"abc"` (a string past 60 characters cut with
 * `...`), `42`, `null`, `an array of length 2`, `an object with keys [a, b]`.
 *
 * @example
 * ```ts
 * `expected batchSize to be a positive integer; got ${describeValue(options.batchSize)}`
 * ```
 */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return typeof value === 'object' ? `an object with keys [${Object.keys(value as object).join(', ')}]` : typeof value;
}
