import { describe, expect, it } from 'vitest';
import { Rng, isPosttrainError } from '@posttrain/tensor-core';
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
    expect(defaultGenerateSplitOptions).toEqual({ train: 1000, test: 200, taskOptions: undefined });
    expect(thrown(() => generateSplit(additionTask, 0, { train: -1 })).message).toBe('generateSplit: expected train to be a non-negative integer; got -1');
    expect(thrown(() => generateSplit(additionTask, 0, { test: 0.5 })).message).toBe('generateSplit: expected test to be a non-negative integer; got 0.5');
    expect(thrown(() => generateSplit(additionTask, 0, { tests: 5 } as never)).message).toBe('generateSplit: unknown option "tests"; known options are train, test, taskOptions');
    expect(thrown(() => generateSplit(additionTask, 0, { taskOptions: { maxDigits: 0 } })).message).toContain('addition: expected maxDigits');
    expect(thrown(() => generateSplit(additionTask, 'x' as never)).code).toBe('INVALID_ARGUMENT');
  });
});
