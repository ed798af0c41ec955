import { describe, expect, it } from 'vitest';
import { addDecimal, additionTask, defaultAdditionOptions } from './addition.js';
import { thrown } from '../testing/assert.js';

describe('additionTask', () => {
  it('draws short prompts with their sums, the same for the same seed', () => {
    const examples = additionTask.generate(0, 3);
    expect(examples).toEqual([
      { prompt: '30+15=', answer: '45', metadata: { task: 'addition', a: 30, b: 15, carries: 0 } },
      { prompt: '3+19=', answer: '22', metadata: { task: 'addition', a: 3, b: 19, carries: 1 } },
      { prompt: '4+7=', answer: '11', metadata: { task: 'addition', a: 4, b: 7, carries: 1 } },
    ]);
    expect(additionTask.generate(0, 50)).toEqual(additionTask.generate(0, 50));
    expect(additionTask.generate(1, 50)).not.toEqual(additionTask.generate(0, 50));
    for (const { prompt, answer, metadata } of additionTask.generate(7, 500, { minDigits: 3, maxDigits: 6 })) {
      expect(prompt).toBe(`${metadata.a}+${metadata.b}=`);
      expect(answer).toBe(String(metadata.a + metadata.b));
      for (const n of [metadata.a, metadata.b]) expect(String(n).length).toBeGreaterThanOrEqual(3);
      expect(prompt.length + answer.length).toBeLessThanOrEqual(6 + 1 + 6 + 1 + 7);
    }
  });

  it('solves by schoolbook addition, whatever the number of digits', () => {
    expect(additionTask.solve('12+7=')).toBe('19');
    expect(additionTask.solve('0+0=')).toBe('0');
    expect(additionTask.solve('99+1=')).toBe('100');
    expect(additionTask.solve('007+05=')).toBe('12');
    expect(additionTask.solve('99999999999999999999+1=')).toBe('100000000000000000000');
    expect(addDecimal('58', '67')).toEqual({ sum: '125', carries: [0, 1] });
    expect(addDecimal('1234', '5')).toEqual({ sum: '1239', carries: [] });
    for (const bad of ['12+7', '12-7=', '+7=', '1 2+7=', '12+7=19', 'abc', '']) {
      const error = thrown(() => additionTask.solve(bad));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toBe(`addition: expected a prompt like "12+7="; got ${JSON.stringify(bad)}`);
    }
  });

  it('verifies exactly, with per-digit partial credit aligned at the units', () => {
    const v = (completion: string) => additionTask.verify('12+7=', completion);
    expect(v('19')).toEqual({ correct: true, score: 1 });
    expect(v('19\n')).toEqual({ correct: true, score: 1 });
    expect(v('19<|endoftext|>')).toEqual({ correct: true, score: 1 });
    expect(v('18')).toEqual({ correct: false, score: 0.5 });
    expect(v('29')).toEqual({ correct: false, score: 0.5 });
    expect(v('9')).toEqual({ correct: false, score: 0.5 }); // units right, tens missing
    expect(v('119')).toEqual({ correct: false, score: 2 / 3 });
    expect(v('019')).toEqual({ correct: false, score: 2 / 3 }); // no leading zeros in answers
    expect(v(' 19')).toEqual({ correct: false, score: 2 / 3 });
    expect(v('91')).toEqual({ correct: false, score: 0 });
    expect(v('')).toEqual({ correct: false, score: 0 });
    expect(v('\n')).toEqual({ correct: false, score: 0 });
    expect(v('banana')).toEqual({ correct: false, score: 0 });
    expect(v('19x')).toEqual({ correct: false, score: 0 });
    expect(v('19\n3+4=7')).toEqual({ correct: false, score: 0 });
    expect(v('1'.repeat(1000) + '9').score).toBeLessThan(0.01);
    expect(additionTask.verify({ prompt: '99+1=', answer: '100', metadata: {} }, '101')).toEqual({ correct: false, score: 2 / 3 });
  });

  it('rejects with a dropped carry or one digit off by one: always wrong, same length, a number', () => {
    let dropped = 0;
    for (const [i, example] of additionTask.generate(3, 3000, { minDigits: 1, maxDigits: 3 }).entries()) {
      const pair = additionTask.preferencePair(example, i);
      expect(pair.prompt).toBe(example.prompt);
      expect(pair.chosen).toBe(example.answer);
      expect(pair.rejected).toMatch(pair.rejected.length === 1 ? /^\d$/ : /^[1-9]\d*$/);
      expect(pair.rejected).toHaveLength(example.answer.length);
      expect(additionTask.verify(example, pair.rejected).correct).toBe(false);
      const difference = Math.abs(Number(pair.rejected) - Number(example.answer));
      const digitsChanged = [...pair.rejected].filter((c, k) => c !== example.answer[k]).length;
      expect(digitsChanged === 1 || /^10+$/.test(String(difference)), `${example.prompt}${example.answer} vs ${pair.rejected}`).toBe(true);
      if (example.metadata.carries > 0 && /^10+$/.test(String(difference)) && Number(pair.rejected) < Number(example.answer)) dropped++;
    }
    expect(dropped).toBeGreaterThan(300);
    expect(additionTask.preferencePair({ prompt: '0+0=', answer: '0', metadata: {} }, 0).rejected).toBe('1');
    // 58+67 carries out of the units (drop → 115) and the tens (drop → 25, shorter, never used).
    const rejected = new Set(Array.from({ length: 200 }, (_, seed) => additionTask.preferencePair({ prompt: '58+67=', answer: '125', metadata: {} }, seed).rejected));
    expect(rejected.has('115')).toBe(true);
    expect([...rejected].every((r) => r.length === 3 && r !== '125')).toBe(true);
  });

  it('covers carries, one- and two-digit operands and three-digit sums with the defaults', () => {
    const examples = additionTask.generate(11, 4000);
    const share = (predicate: (e: (typeof examples)[number]) => boolean) => examples.filter(predicate).length / examples.length;
    expect(share((e) => e.metadata.carries > 0)).toBeGreaterThan(0.25);
    expect(share((e) => e.metadata.carries > 0)).toBeLessThan(0.6);
    expect(share((e) => e.metadata.carries > 1)).toBeGreaterThan(0.03);
    expect(share((e) => e.answer.length === 3)).toBeGreaterThan(0.05);
    expect(share((e) => e.metadata.a < 10)).toBeCloseTo(0.5, 1);
    expect(share((e) => e.metadata.b < 10)).toBeCloseTo(0.5, 1);
    expect(share((e) => e.metadata.a === 0 || e.metadata.b === 0)).toBeGreaterThan(0);
    expect(Math.max(...examples.map((e) => Math.max(e.metadata.a, e.metadata.b)))).toBe(99);
    expect(new Set(examples.map((e) => e.answer.at(-1))).size).toBe(10);
    expect(Math.max(...examples.map((e) => e.prompt.length + e.answer.length))).toBe(9); // '99+99=198'
  });

  it('counts its prompts', () => {
    expect(additionTask.promptSpaceSize()).toBe(100 * 100);
    expect(additionTask.promptSpaceSize({ minDigits: 2, maxDigits: 2 })).toBe(90 * 90);
    expect(additionTask.promptSpaceSize({ minDigits: 1, maxDigits: 3 })).toBe(1000 * 1000);
  });

  it('rejects bad digit ranges, naming the option', () => {
    expect(defaultAdditionOptions).toEqual({ minDigits: 1, maxDigits: 2 });
    const cases: [object, string][] = [
      [{ minDigits: 0 }, 'addition: expected minDigits to be an integer from 1 to 15; got 0'],
      [{ minDigits: 1.5 }, 'addition: expected minDigits to be an integer from 1 to 15; got 1.5'],
      [{ minDigits: 3 }, 'addition: expected maxDigits to be an integer from minDigits (3) to 15; got 2'],
      [{ maxDigits: 16 }, 'addition: expected maxDigits to be an integer from minDigits (1) to 15; got 16'],
      [{ maxDigits: '2' }, 'addition: expected maxDigits to be an integer from minDigits (1) to 15; got "2"'],
      [{ digits: 2 }, 'addition: unknown option "digits"; known options are minDigits, maxDigits'],
    ];
    for (const [options, message] of cases) {
      const error = thrown(() => additionTask.generate(0, 1, options));
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toBe(message);
      expect(thrown(() => additionTask.promptSpaceSize(options)).message).toBe(message);
    }
  });
});
