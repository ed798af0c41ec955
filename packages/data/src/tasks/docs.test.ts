import { describe, expect, it } from 'vitest';
import { additionTask, generateSplit, reversalTask, sortingTask, trimCompletion, verifiableTasks, type VerifiableTaskName } from './index.js';

// The @example comments of this folder say what the code does.
describe('task doc examples', () => {
  it('VerifiableTask', () => {
    const [example] = additionTask.generate(0, 1);
    expect(example).toEqual({ prompt: '30+15=', answer: '45', metadata: { task: 'addition', a: 30, b: 15, carries: 0 } });
    expect(additionTask.verify(example, '45\n')).toEqual({ correct: true, score: 1 });
    expect(additionTask.verify(example, '44')).toEqual({ correct: false, score: 0.5 });
    expect(additionTask.toLanguageModelText(example)).toBe('30+15=45\n');
    expect(additionTask.toPromptCompletion(example)).toEqual({ prompt: '30+15=', completion: '45' });
    expect(additionTask.preferencePair(example, 1)).toEqual({ prompt: '30+15=', chosen: '45', rejected: '46' });
  });

  it('the tasks', () => {
    expect(additionTask.solve('12+7=')).toBe('19');
    expect(additionTask.verify('12+7=', '18')).toEqual({ correct: false, score: 0.5 });
    expect(additionTask.preferencePair({ prompt: '58+67=', answer: '125', metadata: {} }, 2).rejected).toBe('115');
    const reversals = reversalTask.generate(0, 3);
    expect(reversals.map((e) => [e.prompt, e.answer])).toEqual([
      ['cafa>', 'afac'],
      ['ace>', 'eca'],
      ['ha>', 'ah'],
    ]);
    expect(reversalTask.verify('abc>', 'cab')).toEqual({ correct: false, score: 1 / 3 });
    expect(reversalTask.preferencePair(reversals[0], 0)).toEqual({ prompt: 'cafa>', chosen: 'afac', rejected: 'cafa' });
    const sorts = sortingTask.generate(0, 3);
    expect(sorts[0]).toEqual({ prompt: 'cafa|', answer: 'aacf', metadata: { task: 'sorting', length: 4 } });
    expect(sortingTask.verify('bca|', 'acb')).toEqual({ correct: false, score: 1 / 3 });
    expect(sortingTask.preferencePair(sorts[0], 0)).toEqual({ prompt: 'cafa|', chosen: 'aacf', rejected: 'aafc' });
  });

  it('helpers', () => {
    expect(trimCompletion('19 \n<|endoftext|>')).toBe('19');
    expect(trimCompletion(' 19')).toBe(' 19');
    const { train, test } = generateSplit(additionTask, 0, { train: 2000, test: 200 });
    const held = new Set(test.map((e) => e.prompt));
    expect(train.some((e) => held.has(e.prompt))).toBe(false);
    const example = sortingTask.generate(0, 1)[0];
    const task = verifiableTasks[example.metadata.task as VerifiableTaskName];
    expect(task.verify(example, 'aacf')).toEqual({ correct: true, score: 1 });
  });
});
