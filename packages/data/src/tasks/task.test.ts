import { describe, expect, it } from 'vitest';
import { Rng } from '@posttrain/tensor-core';
import { defineVerifiableTask, trimCompletion, type VerifiableTaskSpec } from './task.js';
import { thrown } from '../testing/assert.js';

// The smallest task: echo a character.
const echoSpec: VerifiableTaskSpec<{ letters: string }, { drawn: boolean }> = {
  name: 'echo',
  defaults: { letters: 'ab' },
  validate: () => {},
  sample: (rng, o) => ({ prompt: `${o.letters[rng.int(o.letters.length)]}#`, metadata: { drawn: true } }),
  solve: (prompt) => prompt.slice(0, -1),
  align: 'left',
  reject: ({ answer }) => (answer === 'a' ? 'b' : 'a'),
  promptSpaceSize: (o) => o.letters.length,
};
const echo = defineVerifiableTask(echoSpec);

describe('trimCompletion', () => {
  it('forgives trailing whitespace and end-of-sequence markers, nothing else', () => {
    expect(trimCompletion('19')).toBe('19');
    expect(trimCompletion('19\n')).toBe('19');
    expect(trimCompletion('19 \t\n\n')).toBe('19');
    expect(trimCompletion('19<|endoftext|>')).toBe('19');
    expect(trimCompletion('19\n<|im_end|>\n')).toBe('19');
    expect(trimCompletion('19</s>')).toBe('19');
    expect(trimCompletion('19<eos><pad><pad>')).toBe('19');
    expect(trimCompletion(' 19')).toBe(' 19');
    expect(trimCompletion('19\n3+4=7')).toBe('19\n3+4=7');
    expect(trimCompletion('1 9')).toBe('1 9');
    expect(trimCompletion('19<|end of text|>')).toBe('19<|end of text|>');
    expect(trimCompletion('')).toBe('');
    expect(trimCompletion('\n<eos>')).toBe('');
    expect(trimCompletion('19<|im_end|><pad><pad>')).toBe('19');
    expect(trimCompletion('19<|im_end|>x')).toBe('19<|im_end|>x');
    expect(trimCompletion('19<')).toBe('19<');
    expect(trimCompletion('1<9</s>')).toBe('1<9');
  });

  it('takes linear time on long adversarial completions', () => {
    const start = performance.now();
    expect(trimCompletion(' '.repeat(200_000) + 'x')).toHaveLength(200_001);
    expect(trimCompletion('<a'.repeat(100_000) + '</s>')).toHaveLength(200_000);
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it('rejects a non-string', () => {
    expect(thrown(() => trimCompletion(undefined as unknown as string)).message).toBe('trimCompletion: expected completion to be a string; got undefined');
  });
});

describe('defineVerifiableTask', () => {
  it('builds generate, solve, verify and the three renderings from a spec', () => {
    const examples = echo.generate(3, 4);
    expect(examples).toHaveLength(4);
    for (const example of examples) {
      expect(example.answer).toBe(example.prompt[0]);
      expect(example.metadata).toEqual({ task: 'echo', drawn: true });
      expect(echo.verify(example, example.answer)).toEqual({ correct: true, score: 1 });
      expect(echo.toLanguageModelText(example)).toBe(`${example.prompt}${example.answer}\n`);
      expect(echo.toPromptCompletion(example)).toEqual({ prompt: example.prompt, completion: example.answer });
    }
    expect(echo.preferencePair({ prompt: 'a#', answer: 'a', metadata: {} }, 0)).toEqual({ prompt: 'a#', chosen: 'a', rejected: 'b' });
    expect(echo.generate(0, 0)).toEqual([]);
    expect(echo.defaultOptions).toEqual({ letters: 'ab' });
    expect(Object.isFrozen(echo.defaultOptions)).toBe(true);
    expect(echo.promptSpaceSize({ letters: 'abc' })).toBe(3);
  });

  it('scores partial credit position by position over the longer string', () => {
    expect(echo.verify({ prompt: '', answer: 'abcd', metadata: {} }, 'abxd')).toEqual({ correct: false, score: 0.75 });
    expect(echo.verify({ prompt: '', answer: 'ab', metadata: {} }, 'abab')).toEqual({ correct: false, score: 0.5 });
    expect(echo.verify({ prompt: '', answer: 'ab', metadata: {} }, '')).toEqual({ correct: false, score: 0 });
    expect(echo.verify({ prompt: '', answer: '', metadata: {} }, '\n')).toEqual({ correct: true, score: 1 });
  });

  it('takes a seed or an Rng: a seed repeats, an Rng advances', () => {
    expect(echo.generate(5, 20)).toEqual(echo.generate(5, 20));
    expect(echo.generate(new Rng(5), 20)).toEqual(echo.generate(5, 20));
    const rng = new Rng(5);
    const [first, second] = [echo.generate(rng, 20), echo.generate(rng, 20)];
    expect(first).not.toEqual(second);
  });

  it('refuses a preference pair whose rejected answer is right or of another length', () => {
    const lazy = defineVerifiableTask({ ...echoSpec, reject: ({ answer }) => answer });
    expect(thrown(() => lazy.preferencePair({ prompt: 'a#', answer: 'a', metadata: {} }, 0)).message).toBe('echo.preferencePair: expected a wrong answer of length 1 for "a#"; got "a"');
    const long = defineVerifiableTask({ ...echoSpec, reject: () => 'bb' });
    expect(thrown(() => long.preferencePair({ prompt: 'a#', answer: 'a', metadata: {} }, 0)).code).toBe('INVALID_ARGUMENT');
  });

  it('rejects bad seeds, counts, options and inputs by name', () => {
    expect(thrown(() => echo.generate(1.5, 2)).message).toContain('echo.generate: expected an Rng or an integer seed; got 1.5');
    expect(thrown(() => echo.generate('0' as unknown as number, 2)).message).toContain('got string');
    expect(thrown(() => echo.preferencePair({ prompt: 'a#', answer: 'a', metadata: {} }, {} as Rng)).code).toBe('INVALID_ARGUMENT');
    expect(thrown(() => echo.generate(0, -1)).message).toBe('echo.generate: expected count to be a non-negative integer; got -1');
    expect(thrown(() => echo.generate(0, 2.5)).code).toBe('INVALID_ARGUMENT');
    const unknown = thrown(() => echo.generate(0, 2, { leters: 'xy' } as never));
    expect(unknown.code).toBe('INVALID_OPTION');
    expect(unknown.message).toBe('echo: unknown option "leters"; known options are letters');
    expect(thrown(() => echo.verify('a#', 7 as unknown as string)).message).toBe('echo.verify: expected completion to be a string; got number');
    expect(thrown(() => echo.verify({ prompt: 'a#' } as never, 'a')).message).toBe('echo.verify: expected example.answer to be a string; got undefined');
    expect(thrown(() => echo.solve(null as unknown as string)).message).toBe('echo.solve: expected prompt to be a string; got null');
  });
});
