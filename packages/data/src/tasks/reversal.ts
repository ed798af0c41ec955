import { defineVerifiableTask, type VerifiableTask } from './task.js';
import { parseStringPrompt, sampleString, stringDefaults, stringSpaceSize, substituteOne, swap, validateStringOptions, type StringTaskMetadata, type StringTaskOptions } from './strings.js';

/**
 * The defaults of {@link reversalTask}: strings of 2 to 4 characters from `'abcdefgh'`.
 *
 * @example
 * ```ts
 * reversalTask.generate(0, 8, { ...defaultReversalOptions, maxLength: 6 });
 * ```
 */
export const defaultReversalOptions: Readonly<StringTaskOptions> = Object.freeze({ ...stringDefaults });

/**
 * String reversal: `'abc>'` → `'cba'`. Partial credit is the fraction of positions right, over the
 * longer of answer and completion. Rejected answers of preference pairs are the unreversed string or
 * the answer with two different characters swapped (a character replaced when all are equal).
 *
 * @example
 * ```ts
 * const examples = reversalTask.generate(0, 3);  // [{ prompt: 'cafa>', answer: 'afac', … }, { prompt: 'ace>', … }, …]
 * reversalTask.verify('abc>', 'cab');             // { correct: false, score: 0.333… }
 * reversalTask.preferencePair(examples[0], 0);    // { prompt: 'cafa>', chosen: 'afac', rejected: 'cafa' }
 * ```
 */
export const reversalTask: VerifiableTask<StringTaskOptions, StringTaskMetadata & { task: string }> = defineVerifiableTask({
  name: 'reversal',
  defaults: defaultReversalOptions,
  validate: (o) => validateStringOptions('reversal', o),
  sample(rng, o) {
    const text = sampleString(rng, o);
    return { prompt: `${text}>`, metadata: { length: text.length } };
  },
  solve: (prompt) => [...parseStringPrompt('reversal', prompt, '>', 'abc>')].reverse().join(''),
  align: 'left',
  reject({ prompt, answer }, rng) {
    const candidates: string[] = [];
    const unreversed = prompt.slice(0, -1);
    if (unreversed !== answer) candidates.push(unreversed);
    const pairs: [number, number][] = [];
    for (let i = 0; i < answer.length; i++) for (let j = i + 1; j < answer.length; j++) if (answer[i] !== answer[j]) pairs.push([i, j]);
    if (pairs.length > 0) {
      const [i, j] = pairs[rng.int(pairs.length)];
      candidates.push(swap(answer, i, j));
    }
    return candidates.length > 0 ? candidates[rng.int(candidates.length)] : substituteOne(answer, rng);
  },
  promptSpaceSize: stringSpaceSize,
});
