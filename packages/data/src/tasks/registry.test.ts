import { describe, expect, it } from 'vitest';
import { Rng } from '@posttrain/tensor-core';
import { verifiableTasks, type VerifiableTaskName } from './registry.js';

// What every shipped task promises, checked the same way for each.
describe.each(Object.keys(verifiableTasks) as VerifiableTaskName[])('%s (the VerifiableTask contract)', (name) => {
  const task = verifiableTasks[name];

  it('is registered under its name and tags its examples with it', () => {
    expect(task.name).toBe(name);
    for (const e of task.generate(0, 20)) expect(e.metadata.task).toBe(name);
  });

  it('repeats for a seed, differs across seeds, and advances a shared Rng', () => {
    expect(task.generate(9, 200)).toEqual(task.generate(9, 200));
    expect(task.generate(9, 200)).not.toEqual(task.generate(10, 200));
    const rng = new Rng(9);
    expect(task.generate(rng, 100)).toEqual(task.generate(9, 100));
    expect(task.generate(rng, 100)).not.toEqual(task.generate(9, 100));
    const example = task.generate(1, 1)[0];
    expect(task.preferencePair(example, 4)).toEqual(task.preferencePair(example, 4));
  });

  it('keeps prompts and answers short, and renders them consistently', () => {
    for (const e of task.generate(2, 500)) {
      expect(e.prompt.length + e.answer.length).toBeLessThanOrEqual(10);
      expect(e.answer).toBe(task.solve(e.prompt));
      expect(task.verify(e, e.answer)).toEqual({ correct: true, score: 1 });
      expect(task.verify(e.prompt, `${e.answer}\n`)).toEqual({ correct: true, score: 1 });
      const text = task.toLanguageModelText(e);
      expect(text).toBe(`${e.prompt}${e.answer}\n`);
      const { prompt, completion } = task.toPromptCompletion(e);
      expect(text.startsWith(prompt + completion)).toBe(true);
      expect(JSON.parse(JSON.stringify(e))).toEqual(e);
    }
  });

  it('has methods that work detached, as callbacks', () => {
    const examples = task.generate(6, 5);
    expect(examples.map(task.toLanguageModelText)).toEqual(examples.map((e) => task.toLanguageModelText(e)));
    expect(examples.map(task.toPromptCompletion)).toEqual(examples.map((e) => task.toPromptCompletion(e)));
    expect(examples.map(task.preferencePair)).toEqual(examples.map((e, i) => task.preferencePair(e, i))); // index as seed
    const { verify } = task;
    expect(verify(examples[0], examples[0].answer).correct).toBe(true);
  });

  it('makes preference pairs whose rejected answer is wrong but of the same length and characters', () => {
    for (const [i, e] of task.generate(3, 1000).entries()) {
      const pair = task.preferencePair(e, i);
      expect(Object.keys(pair)).toEqual(['prompt', 'chosen', 'rejected']);
      expect(pair.chosen).toBe(e.answer);
      expect(pair.rejected).toHaveLength(e.answer.length);
      expect(pair.rejected).toMatch(/^[a-z0-9]+$/);
      const verdict = task.verify(e, pair.rejected);
      expect(verdict.correct).toBe(false);
      expect(verdict.score).toBeLessThan(1);
    }
  });

  it('gives partial credit in [0, 1] to anything, and 0 to an empty completion', () => {
    const rng = new Rng(5);
    const junk = '0123456789abcdefgh+=>| \n<>|';
    for (const e of task.generate(4, 300)) {
      const completion = Array.from({ length: rng.int(8) }, () => junk[rng.int(junk.length)]).join('');
      const { correct, score } = task.verify(e, completion);
      expect(score).toBeGreaterThanOrEqual(0);
      expect(score).toBeLessThanOrEqual(1);
      expect(correct).toBe(score === 1);
      expect(task.verify(e, '')).toEqual({ correct: false, score: 0 });
    }
  });
});
