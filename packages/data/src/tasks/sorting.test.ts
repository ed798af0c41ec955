import { describe, expect, it } from 'vitest';
import { defaultSortingOptions, sortingTask } from './sorting.js';
import { thrown } from '../testing/assert.js';

describe('sortingTask', () => {
  it('draws short strings from the alphabet, the same for the same seed', () => {
    expect(sortingTask.generate(0, 3)).toEqual([
      { prompt: 'cafa|', answer: 'aacf', metadata: { task: 'sorting', length: 4 } },
      { prompt: 'ace|', answer: 'ace', metadata: { task: 'sorting', length: 3 } },
      { prompt: 'ha|', answer: 'ah', metadata: { task: 'sorting', length: 2 } },
    ]);
    for (const { prompt, answer } of sortingTask.generate(4, 500, { alphabet: '9876543210', minLength: 5, maxLength: 6 })) {
      expect(prompt).toMatch(/^\d{5,6}\|$/);
      expect(answer).toBe([...prompt.slice(0, -1)].sort((x, y) => Number(x) - Number(y)).join(''));
    }
  });

  it('solves by sorting characters by code point', () => {
    expect(sortingTask.solve('bca|')).toBe('abc');
    expect(sortingTask.solve('bBa1|')).toBe('1Bab');
    expect(sortingTask.solve('aa|')).toBe('aa');
    for (const bad of ['bca', 'bca>', 'b-a|', '|']) {
      const error = thrown(() => sortingTask.solve(bad));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toBe(`sorting: expected a prompt of ASCII letters or digits ending in "|", like "bca|"; got ${JSON.stringify(bad)}`);
    }
  });

  it('verifies exactly, with the fraction of positions right as partial credit', () => {
    const v = (completion: string) => sortingTask.verify('dbca|', completion);
    expect(v('abcd')).toEqual({ correct: true, score: 1 });
    expect(v('abcd </s>')).toEqual({ correct: true, score: 1 });
    expect(v('abdc')).toEqual({ correct: false, score: 0.5 });
    expect(v('dbca')).toEqual({ correct: false, score: 0.5 }); // b and c happen to be in place
    expect(v('abc')).toEqual({ correct: false, score: 0.75 });
    expect(v('')).toEqual({ correct: false, score: 0 });
    expect(v('ABCD')).toEqual({ correct: false, score: 0 });
  });

  it('rejects with one adjacent pair swapped', () => {
    for (const [i, example] of sortingTask.generate(5, 2000).entries()) {
      const { rejected } = sortingTask.preferencePair(example, i);
      expect(rejected).not.toBe(example.answer);
      const changed = [...rejected].flatMap((c, k) => (c !== example.answer[k] ? [k] : []));
      if (new Set(example.answer).size > 1) {
        expect(changed).toHaveLength(2);
        expect(changed[1] - changed[0]).toBe(1);
        expect([...rejected].sort().join('')).toBe(example.answer);
      } else expect(changed).toHaveLength(1); // 'aa' has no swap that changes it
    }
    expect(sortingTask.preferencePair({ prompt: 'ba|', answer: 'ab', metadata: {} }, 0).rejected).toBe('ba');
    expect(sortingTask.preferencePair({ prompt: 'bbb|', answer: 'bbb', metadata: {} }, 0).rejected).toMatch(/^(cbb|bcb|bbc)$/);
  });

  it('rejects bad options, naming the option', () => {
    expect(defaultSortingOptions).toEqual({ alphabet: 'abcdefgh', minLength: 2, maxLength: 4 });
    expect(thrown(() => sortingTask.generate(0, 1, { alphabet: 'ab|' })).message).toContain('sorting: expected alphabet to be at least 2 distinct ASCII letters or digits; got "ab|"');
    expect(thrown(() => sortingTask.generate(0, 1, { minLength: -1 })).message).toBe('sorting: expected minLength to be an integer ≥ 1; got -1');
  });
});
