import { describe, expect, it } from 'vitest';
import { Rng } from '@posttrain/tensor-core';
import { additionTask } from './addition.js';
import { reversalTask } from './reversal.js';
import { sortingTask } from './sorting.js';
import { defaultGenerateSplitOptions, generateSplit } from './split.js';
import { thrown } from '../testing/assert.js';

const prompts = (examples: { prompt: string }[]) => examples.map((e) => e.prompt);

describe('generateSplit', () => {
  it('gives disjoint train and test prompts, distinct within each, for every task', () => {
    for (const task of [additionTask, reversalTask, sortingTask]) {
      const { train, test } = generateSplit(task, 0, { train: 3000, test: 500 });
      expect(train).toHaveLength(3000);
      expect(test).toHaveLength(500);
      expect(new Set(prompts(train)).size).toBe(3000);
      expect(new Set(prompts(test)).size).toBe(500);
      const held = new Set(prompts(test));
      expect(train.filter((e) => held.has(e.prompt))).toEqual([]);
      for (const e of [...train, ...test]) expect(task.verify(e, e.answer).correct).toBe(true);
    }
  });

  it('is deterministic, and keeps the test set whatever the train size', () => {
    const a = generateSplit(additionTask, 3, { train: 100, test: 50 });
    expect(generateSplit(additionTask, 3, { train: 100, test: 50 })).toEqual(a);
    expect(generateSplit(additionTask, new Rng(3), { train: 100, test: 50 })).toEqual(a);
    expect(generateSplit(additionTask, 3, { train: 2000, test: 50 }).test).toEqual(a.test);
    expect(generateSplit(additionTask, 3, { train: 0, test: 80 }).test.slice(0, 50)).toEqual(a.test);
    expect(generateSplit(additionTask, 4, { train: 100, test: 50 }).test).not.toEqual(a.test);
  });

  it('passes the task options through', () => {
    const { train, test } = generateSplit(additionTask, 0, { train: 200, test: 20, taskOptions: { minDigits: 3, maxDigits: 3 } });
    for (const e of [...train, ...test]) expect(e.prompt).toMatch(/^\d{3}\+\d{3}=$/);
  });

  it('can use every prompt the options allow, and refuses more', () => {
    const taskOptions = { alphabet: 'ab', minLength: 1, maxLength: 2 }; // a, b, aa, ab, ba, bb
    const { train, test } = generateSplit(reversalTask, 0, { train: 4, test: 2, taskOptions });
    expect([...prompts(train), ...prompts(test)].sort()).toEqual(['a>', 'aa>', 'ab>', 'b>', 'ba>', 'bb>']);
    const error = thrown(() => generateSplit(reversalTask, 0, { train: 5, test: 2, taskOptions }));
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toBe(
      "generateSplit: expected train + test to be at most the 6 distinct prompts reversal's options allow; got 5 + 2\n" +
        'help: ask for fewer examples, or widen the task options (more digits, a longer alphabet or strings)',
    );
  });

  it('rejects bad counts and options by name', () => {
    expect(defaultGenerateSplitOptions).toEqual({ train: 1000, test: 200, taskOptions: undefined, uniqueTrain: true });
    expect(thrown(() => generateSplit(additionTask, 0, { train: -1 })).message).toBe('generateSplit: expected train to be a non-negative integer; got -1');
    expect(thrown(() => generateSplit(additionTask, 0, { test: 0.5 })).message).toBe('generateSplit: expected test to be a non-negative integer; got 0.5');
    expect(thrown(() => generateSplit(additionTask, 0, { tests: 5 } as never)).message).toBe('generateSplit: unknown option "tests"; known options are train, test, taskOptions, uniqueTrain');
    expect(thrown(() => generateSplit(additionTask, 0, { taskOptions: { maxDigits: 0 } })).message).toContain('addition: expected maxDigits');
    expect(thrown(() => generateSplit(additionTask, 'x' as never)).code).toBe('INVALID_ARGUMENT');
    expect(thrown(() => generateSplit(additionTask, 0, { uniqueTrain: 'no' as never })).message).toBe('generateSplit: expected uniqueTrain to be a boolean; got "no"');
  });

  it('with uniqueTrain false, keeps the task distribution for training, repeats allowed, and no test prompt', () => {
    const taskOptions = { alphabet: 'abcdefgh', minLength: 2, maxLength: 4 }; // 64 + 512 + 4096 prompts
    const unique = generateSplit(reversalTask, 0, { train: 3000, test: 200, taskOptions });
    const drawn = generateSplit(reversalTask, 0, { train: 3000, test: 200, taskOptions, uniqueTrain: false });
    expect(drawn.test).toEqual(unique.test);
    const held = new Set(prompts(drawn.test));
    expect(drawn.train.filter((e) => held.has(e.prompt))).toEqual([]);
    const shortShare = (examples: { prompt: string }[]) => examples.filter((e) => e.prompt.length === 3).length / examples.length;
    // Distinct draws leave length 2 to the 64 − (its test share) prompts, about 1%; repeats keep it
    // near a third, minus the share of length-2 prompts the test set took (about half of them).
    expect(shortShare(unique.train)).toBeLessThan(0.02);
    expect(shortShare(drawn.train)).toBeGreaterThan(0.12);
    expect(new Set(prompts(drawn.train)).size).toBeLessThan(drawn.train.length);
    // Only the test set is limited by the prompt space.
    const tiny = { alphabet: 'ab', minLength: 1, maxLength: 2 };
    const few = generateSplit(reversalTask, 0, { train: 50, test: 5, taskOptions: tiny, uniqueTrain: false });
    expect(few.train).toHaveLength(50);
    expect(new Set(prompts(few.train)).size).toBe(1);
    expect(thrown(() => generateSplit(reversalTask, 0, { train: 1, test: 6, taskOptions: tiny, uniqueTrain: false })).message).toBe(
      "generateSplit: expected test to leave a prompt for training (fewer than the 6 distinct prompts reversal's options allow); got 6",
    );
  });
});
