import { describe, expect, it } from 'vitest';
import { isPosttrainError } from './errors.js';
import { checkNumber, describe as describeValue, resolveOptions } from './options.js';
import { thrown } from './testing/assert.js';

interface AdamLike {
  lr: number;
  eps: number;
  weightDecay: number;
  name: string | undefined;
}
const defaults: AdamLike = { lr: 1e-3, eps: 1e-8, weightDecay: 0.01, name: undefined };

describe('resolveOptions', () => {
  it('merges given options over the defaults without mutating either', () => {
    const given = { lr: 3e-4 };
    const out = resolveOptions('AdamW', given, defaults);
    expect(out).toEqual({ lr: 3e-4, eps: 1e-8, weightDecay: 0.01, name: undefined });
    expect(out).not.toBe(defaults);
    expect(defaults.lr).toBe(1e-3);
    expect(given).toEqual({ lr: 3e-4 });
  });

  it('returns a copy of the defaults for undefined or null', () => {
    const out = resolveOptions('AdamW', undefined, defaults);
    expect(out).toEqual(defaults);
    expect(out).not.toBe(defaults);
    expect(resolveOptions('AdamW', null as unknown as undefined, defaults)).toEqual(defaults);
  });

  it('lets an explicit undefined keep the default', () => {
    expect(resolveOptions('AdamW', { lr: undefined, eps: 1e-6 }, defaults)).toEqual({ ...defaults, eps: 1e-6 });
  });

  it('accepts a key whose default is undefined', () => {
    expect(resolveOptions('AdamW', { name: 'run' }, defaults).name).toBe('run');
  });

  it('rejects an unknown key, naming it and listing the known ones', () => {
    const error = thrown(() => resolveOptions('AdamW', { weightDeacy: 0.1 } as Partial<AdamLike>, defaults));
    expect(isPosttrainError(error)).toBe(true);
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toBe('AdamW: unknown option "weightDeacy"; known options are lr, eps, weightDecay, name');
  });

  it('rejects a non-object', () => {
    for (const [given, got] of [
      [5, 'got 5'],
      ['lr', 'got "lr"'],
      [[1, 2], 'got an array of length 2'],
    ] as const) {
      const error = thrown(() => resolveOptions('AdamW', given as unknown as Partial<AdamLike>, defaults));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toBe(`AdamW: expected an options object; ${got}`);
    }
  });
});

describe('checkNumber', () => {
  const positive = (v: number): boolean => v > 0;

  it('returns a valid number', () => {
    expect(checkNumber('SGD', 'lr', 0.1, 'a positive number', positive)).toBe(0.1);
  });

  it('says who, which option, the valid range and what it got', () => {
    const cases: [unknown, string][] = [
      [-1, '-1'],
      [0, '0'],
      [Number.NaN, 'NaN'],
      [Number.POSITIVE_INFINITY, 'Infinity'],
      ['0.1', '"0.1"'],
      [undefined, 'undefined'],
      [null, 'null'],
      [{ value: 1 }, 'an object with keys [value]'],
    ];
    for (const [value, got] of cases) {
      const error = thrown(() => checkNumber('SGD', 'lr', value, 'a positive number', positive));
      expect(isPosttrainError(error)).toBe(true);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toBe(`SGD: expected lr to be a positive number; got ${got}`);
    }
  });
});

describe('describe', () => {
  it('describes values briefly', () => {
    expect(describeValue(true)).toBe('true');
    expect(describeValue([])).toBe('an array of length 0');
    expect(describeValue(() => 1)).toBe('function');
  });
});
