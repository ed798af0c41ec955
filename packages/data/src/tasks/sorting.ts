import { defineVerifiableTask, type VerifiableTask } from './task.js';
import { parseStringPrompt, sampleString, stringDefaults, stringSpaceSize, substituteOne, swap, validateStringOptions, type StringTaskMetadata, type StringTaskOptions } from './strings.js';

/**
 * The defaults of {@link sortingTask}: strings of 2 to 4 characters from `'abcdefgh'`.
 *
 * @example
 * ```ts
 * sortingTask.generate(0, 8, { ...defaultSortingOptions, alphabet: '0123456789' });
 * ```
 */
export const defaultSortingOptions: Readonly<StringTaskOptions> = Object.freeze({ ...stringDefaults });

/**
 * Sorting the characters of a string by code point (digits < upper case < lower case):
 * `'bca|'` → `'abc'`. Partial credit is the fraction of positions right, over the longer of answer
 * and completion. Rejected answers of preference pairs are the answer with one adjacent pair of
 * different characters swapped (a character replaced when all are equal).
 *
 * @example
 * ```ts
 * const examples = sortingTask.generate(0, 3);  // [{ prompt: 'cafa|', answer: 'aacf', … }, { prompt: 'ace|', … }, …]
 * sortingTask.verify('bca|', 'acb');             // { correct: false, score: 0.333… }
 * sortingTask.preferencePair(examples[0], 0);    // { prompt: 'cafa|', chosen: 'aacf', rejected: 'aafc' }
 * ```
 */
export const sortingTask: VerifiableTask<StringTaskOptions, StringTaskMetadata & { task: string }> = defineVerifiableTask({
  name: 'sorting',
  defaults: defaultSortingOptions,
  validate: (o) => validateStringOptions('sorting', o),
  sample(rng, o) {
    const text = sampleString(rng, o);
    return { prompt: `${text}|`, metadata: { length: text.length } };
  },
  solve: (prompt) => [...parseStringPrompt('sorting', prompt, '|', 'bca|')].sort().join(''),
  align: 'left',
  reject({ answer }, rng) {
    const pairs: number[] = [];
    for (let i = 0; i + 1 < answer.length; i++) if (answer[i] !== answer[i + 1]) pairs.push(i);
    if (pairs.length === 0) return substituteOne(answer, rng);
    const i = pairs[rng.int(pairs.length)];
    return swap(answer, i, i + 1);
  },
  promptSpaceSize: stringSpaceSize,
});
