import { describe, expect, it } from 'vitest';
import { defaultReversalOptions, reversalTask } from './reversal.js';
import { thrown } from '../testing/assert.js';

describe('reversalTask', () => {
  it('draws short strings from the alphabet, the same for the same seed', () => {
    expect(reversalTask.generate(0, 3)).toEqual([
      { prompt: 'cafa>', answer: 'afac', metadata: { task: 'reversal', length: 4 } },
      { prompt: 'ace>', answer: 'eca', metadata: { task: 'reversal', length: 3 } },
      { prompt: 'ha>', answer: 'ah', metadata: { task: 'reversal', length: 2 } },
    ]);
    const examples = reversalTask.generate(4, 2000, { alphabet: 'xyz019', minLength: 3, maxLength: 5 });
    for (const { prompt, answer, metadata } of examples) {
      expect(prompt).toMatch(/^[xyz019]{3,5}>$/);
      expect(answer).toHaveLength(metadata.length);
    }
    const lengths = new Set(examples.map((e) => e.metadata.length));
    expect([...lengths].sort()).toEqual([3, 4, 5]);
    expect(new Set(examples.flatMap((e) => [...e.answer])).size).toBe(6);
  });

  it('solves by reversing', () => {
    expect(reversalTask.solve('abc>')).toBe('cba');
    expect(reversalTask.solve('a>')).toBe('a');
    expect(reversalTask.solve('Ab9>')).toBe('9bA');
    for (const bad of ['abc', 'abc|', 'a c>', '>', 'abc>>', 'äb>']) {
      const error = thrown(() => reversalTask.solve(bad));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toBe(`reversal: expected a prompt of ASCII letters or digits ending in ">", like "abc>"; got ${JSON.stringify(bad)}`);
    }
  });

  it('verifies exactly, with the fraction of positions right as partial credit', () => {
    const v = (completion: string) => reversalTask.verify('abcd>', completion);
    expect(v('dcba')).toEqual({ correct: true, score: 1 });
    expect(v('dcba\n<eos>')).toEqual({ correct: true, score: 1 });
    expect(v('dcab')).toEqual({ correct: false, score: 0.5 });
    expect(v('abcd')).toEqual({ correct: false, score: 0 });
    expect(v('dcb')).toEqual({ correct: false, score: 0.75 });
    expect(v('dcbaa')).toEqual({ correct: false, score: 0.8 });
    expect(v(' dcba')).toEqual({ correct: false, score: 0 });
    expect(v('')).toEqual({ correct: false, score: 0 });
    expect(v('%%%%')).toEqual({ correct: false, score: 0 });
  });

  it('rejects with the unreversed string or a swap of two characters', () => {
    const kinds = { unreversed: 0, swapped: 0, substituted: 0 };
    for (const [i, example] of reversalTask.generate(5, 2000).entries()) {
      const { rejected } = reversalTask.preferencePair(example, i);
      const text = example.prompt.slice(0, -1);
      expect(rejected).not.toBe(example.answer);
      expect(rejected).toHaveLength(example.answer.length);
      if (new Set(example.answer).size === 1) {
        expect([...rejected].filter((c, k) => c !== example.answer[k])).toHaveLength(1); // 'aa' → 'ab'
        kinds.substituted++;
      } else if (rejected === text) kinds.unreversed++;
      else {
        expect([...rejected].filter((c, k) => c !== example.answer[k])).toHaveLength(2);
        expect([...rejected].sort()).toEqual([...example.answer].sort());
        kinds.swapped++;
      }
    }
    expect(kinds.unreversed).toBeGreaterThan(500);
    expect(kinds.swapped).toBeGreaterThan(500);
    expect(kinds.substituted).toBeGreaterThan(0);
    // A palindrome has no unreversed rejection; a string of one repeated character has no swap either.
    expect(reversalTask.preferencePair({ prompt: 'aba>', answer: 'aba', metadata: {} }, 0).rejected).toMatch(/^(baa|aab)$/);
    expect(reversalTask.preferencePair({ prompt: 'zz>', answer: 'zz', metadata: {} }, 0).rejected).toMatch(/^(az|za)$/);
    expect(reversalTask.preferencePair({ prompt: '9>', answer: '9', metadata: {} }, 0).rejected).toBe('0');
  });

  it('counts its prompts', () => {
    expect(reversalTask.promptSpaceSize()).toBe(8 ** 2 + 8 ** 3 + 8 ** 4);
    expect(reversalTask.promptSpaceSize({ alphabet: 'ab', minLength: 1, maxLength: 1 })).toBe(2);
  });

  it('rejects bad alphabets and lengths, naming the option', () => {
    expect(defaultReversalOptions).toEqual({ alphabet: 'abcdefgh', minLength: 2, maxLength: 4 });
    const alphabet = (got: string) => `reversal: expected alphabet to be at least 2 distinct ASCII letters or digits; got ${got}\nhelp: for example { alphabet: 'abcdefgh' }`;
    const cases: [object, string][] = [
      [{ alphabet: 'a' }, alphabet('"a"')],
      [{ alphabet: '' }, alphabet('""')],
      [{ alphabet: 'abca' }, alphabet('"abca" (repeats "a")')],
      [{ alphabet: 'ab>' }, alphabet('"ab>"')],
      [{ alphabet: 'a b' }, alphabet('"a b"')],
      [{ alphabet: 5 }, alphabet('number')],
      [{ minLength: 0 }, 'reversal: expected minLength to be an integer ≥ 1; got 0'],
      [{ minLength: 5 }, 'reversal: expected maxLength to be an integer ≥ minLength (5); got 4'],
      [{ maxLength: 2.5 }, 'reversal: expected maxLength to be an integer ≥ minLength (2); got 2.5'],
      [{ length: 3 }, 'reversal: unknown option "length"; known options are alphabet, minLength, maxLength'],
    ];
    for (const [options, message] of cases) {
      const error = thrown(() => reversalTask.generate(0, 1, options));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toBe(message);
    }
  });
});
