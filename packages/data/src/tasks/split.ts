import { PosttrainError, checkNumber, resolveOptions, type Rng } from '@posttrain/tensor-core';
import { toRng, type TaskExample, type VerifiableTask } from './task.js';

/** The options type of a task (a union for a union of tasks). */
type TaskOptionsOf<T> = T extends VerifiableTask<infer O, unknown> ? O : never;
/** The example type of a task (a union for a union of tasks). */
type TaskExampleOf<T> = T extends VerifiableTask<object, infer M> ? TaskExample<M> : never;

/**
 * Options of {@link generateSplit}.
 *
 * @example
 * ```ts
 * const options: GenerateSplitOptions<AdditionOptions> = { train: 2000, test: 200, taskOptions: { maxDigits: 2 } };
 * ```
 */
export interface GenerateSplitOptions<O extends object = object> {
  /** Training examples, a non-negative integer (default 1000). */
  train: number;
  /** Held-out examples, a non-negative integer (default 200). */
  test: number;
  /** Options passed to the task's `generate` (default: the task's defaults). */
  taskOptions: Partial<O> | undefined;
  /**
   * Every train prompt distinct (default true). `false` draws the train set straight from the
   * task's distribution, repeats allowed, minus the test prompts: short strings and one-digit sums
   * keep their share instead of being thinned out, which matters when the prompt space is small.
   */
  uniqueTrain: boolean;
}

/**
 * The defaults of {@link generateSplit}.
 *
 * @example
 * ```ts
 * generateSplit(reversalTask, 0, { ...defaultGenerateSplitOptions, test: 500 });
 * ```
 */
export const defaultGenerateSplitOptions: Readonly<GenerateSplitOptions> = Object.freeze({ train: 1000, test: 200, taskOptions: undefined, uniqueTrain: true });

/**
 * A train set and a held-out test set with no prompt in common, every prompt distinct within each,
 * drawn from the task's generator by rejection. The test set is drawn first from its own stream, so
 * for a given seed it stays the same whatever the train size. Distinctness thins out the most likely
 * prompts (one-digit sums, say) compared with `generate`; `uniqueTrain: false` keeps the train set's
 * distribution (repeats allowed, still no test prompt). Throws `INVALID_OPTION` when the options
 * allow fewer distinct prompts than `train + test` (`test + 1` with `uniqueTrain: false`).
 *
 * @example
 * ```ts
 * const { train, test } = generateSplit(additionTask, 0, { train: 2000, test: 200 });
 * const held = new Set(test.map((e) => e.prompt));
 * train.some((e) => held.has(e.prompt)); // false
 * ```
 */
export function generateSplit<T extends VerifiableTask<object, unknown>>(
  task: T,
  rng: Rng | number,
  options: Partial<GenerateSplitOptions<TaskOptionsOf<T>>> = {},
): { train: TaskExampleOf<T>[]; test: TaskExampleOf<T>[] } {
  const owner = 'generateSplit';
  const o = resolveOptions(owner, options, defaultGenerateSplitOptions as GenerateSplitOptions<TaskOptionsOf<T>>);
  checkNumber(owner, 'train', o.train, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  checkNumber(owner, 'test', o.test, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  if (typeof o.uniqueTrain !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected uniqueTrain to be a boolean; got ${JSON.stringify(o.uniqueTrain)}`);
  const size = task.promptSpaceSize(o.taskOptions);
  if (!o.uniqueTrain && o.train > 0 && o.test >= size) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected test to leave a prompt for training (fewer than the ${size} distinct prompts ${task.name}'s options allow); got ${o.test}`);
  }
  if (o.uniqueTrain && o.train + o.test > size) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train + test to be at most the ${size} distinct prompts ${task.name}'s options allow; got ${o.train} + ${o.test}`, {
      help: 'ask for fewer examples, or widen the task options (more digits, a longer alphabet or strings)',
    });
  }
  const root = toRng(owner, rng);
  const [testRng, trainRng] = [root.fork(), root.fork()];
  const seen = new Set<string>();
  const draw = (stream: Rng, count: number): TaskExampleOf<T>[] => {
    const out: TaskExampleOf<T>[] = [];
    while (out.length < count) {
      for (const example of task.generate(stream, Math.min(1024, 2 * (count - out.length)), o.taskOptions) as TaskExampleOf<T>[]) {
        if (out.length === count || seen.has(example.prompt)) continue;
        seen.add(example.prompt);
        out.push(example);
      }
    }
    return out;
  };
  const test = draw(testRng, o.test);
  if (o.uniqueTrain) return { train: draw(trainRng, o.train), test };
  const train: TaskExampleOf<T>[] = [];
  while (train.length < o.train) {
    for (const example of task.generate(trainRng, Math.min(1024, 2 * (o.train - train.length)), o.taskOptions) as TaskExampleOf<T>[]) {
      if (train.length < o.train && !seen.has(example.prompt)) train.push(example);
    }
  }
  return { train, test };
}
