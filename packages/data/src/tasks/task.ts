import { PosttrainError, Rng, resolveOptions } from '@posttrain/tensor-core';

/**
 * One example of a {@link VerifiableTask}: a prompt, its reference answer and what the generator
 * knew when it drew it (`metadata.task` names the task, so mixed datasets can be routed back).
 *
 * @example
 * ```ts
 * const example: TaskExample = { prompt: '12+7=', answer: '19', metadata: { task: 'addition' } };
 * ```
 */
export interface TaskExample<M = { task: string }> {
  prompt: string;
  answer: string;
  metadata: M;
}

/**
 * What {@link VerifiableTask.verify} says of a completion: `correct` for an exact answer, `score` in
 * [0, 1] for partial credit (1 exactly when `correct`).
 *
 * @example
 * ```ts
 * const { correct, score } = additionTask.verify('12+7=', '18'); // false, 0.5
 * ```
 */
export interface VerifyResult {
  correct: boolean;
  score: number;
}

/**
 * A synthetic task whose answers a program can check: seeded generation, a verifier with exact and
 * partial credit, and the renderings the post-training pipeline needs (language-modeling text for a
 * tiny base, TRL prompt-completion records for SFT, TRL preference records for DPO and reward
 * models; the verifier is the reward for RL). Prompts end with a separator and the answer follows
 * it directly: `'12+7='` → `'19'`.
 *
 * @example
 * ```ts
 * const [example] = additionTask.generate(0, 1);  // { prompt: '30+15=', answer: '45', metadata: { task: 'addition', a: 30, b: 15, carries: 0 } }
 * additionTask.verify(example, '45\n');             // { correct: true, score: 1 }
 * additionTask.verify(example, '44');               // { correct: false, score: 0.5 }
 * additionTask.toLanguageModelText(example);        // '30+15=45\n'
 * additionTask.toPromptCompletion(example);         // { prompt: '30+15=', completion: '45' }
 * additionTask.preferencePair(example, 1);          // { prompt: '30+15=', chosen: '45', rejected: '46' }
 * ```
 */
export interface VerifiableTask<O extends object = object, M = { task: string }> {
  /** The task's name, also found in each example's `metadata.task`. */
  readonly name: string;
  /** The generator's defaults; `generate` merges its `options` over them. */
  readonly defaultOptions: Readonly<O>;
  /**
   * `count` examples drawn with replacement (prompts may repeat; {@link generateSplit} gives distinct
   * ones). A seed gives the same examples every time; an `Rng` is advanced, so successive calls differ.
   */
  generate(rng: Rng | number, count: number, options?: Partial<O>): TaskExample<M>[];
  /** The reference answer of a prompt in this task's format; throws `INVALID_ARGUMENT` on any other. */
  solve(prompt: string): string;
  /**
   * Checks `completion` against the example's answer (or the answer {@link solve} gives for a prompt)
   * after {@link trimCompletion}: only trailing whitespace and end-of-sequence markers are forgiven.
   */
  verify(example: TaskExample<unknown> | string, completion: string): VerifyResult;
  /** The text a tiny base model is pretrained on: prompt, answer and a newline that ends it. */
  toLanguageModelText(example: TaskExample<unknown>): string;
  /** A TRL prompt-completion record; the tokenizer appends EOS to the completion. */
  toPromptCompletion(example: TaskExample<unknown>): { prompt: string; completion: string };
  /** A TRL preference record whose `rejected` has the answer's length and format and verifies wrong. */
  preferencePair(example: TaskExample<unknown>, rng: Rng | number): { prompt: string; chosen: string; rejected: string };
  /** How many distinct prompts the options allow (may be `Infinity` for wide options). */
  promptSpaceSize(options?: Partial<O>): number;
}

/**
 * What {@link defineVerifiableTask} needs to build a {@link VerifiableTask}: the task-specific parts only.
 *
 * @example
 * ```ts
 * const echo = defineVerifiableTask({ name: 'echo', defaults: {}, validate: () => {}, align: 'left',
 *   sample: (rng) => ({ prompt: 'ab'[rng.int(2)] + '#', metadata: {} }),
 *   solve: (prompt) => prompt.slice(0, -1), promptSpaceSize: () => 2,
 *   reject: ({ answer }) => (answer === 'a' ? 'b' : 'a') });
 * ```
 */
export interface VerifiableTaskSpec<O extends object, M extends object> {
  name: string;
  defaults: O;
  /** Throws `INVALID_OPTION`, naming the option, when the merged options are unusable. */
  validate(options: O): void;
  /** One prompt and its metadata (without `task`, which is added). */
  sample(rng: Rng, options: O): { prompt: string; metadata: M };
  solve(prompt: string): string;
  /** How partial credit lines the completion up with the answer: numbers right, strings left. */
  align: 'left' | 'right';
  /** A plausible wrong answer of the answer's length; `preferencePair` checks both. */
  reject(example: TaskExample<unknown>, rng: Rng): string;
  promptSpaceSize(options: O): number;
}

/**
 * Builds a {@link VerifiableTask} from its {@link VerifiableTaskSpec}: option merging and validation, seeds,
 * verification with partial credit, and the LM, prompt-completion and preference renderings.
 *
 * @example
 * ```ts
 * const echo = defineVerifiableTask({ name: 'echo', defaults: {}, validate: () => {}, align: 'left',
 *   sample: (rng) => ({ prompt: 'ab'[rng.int(2)] + '#', metadata: {} }),
 *   solve: (prompt) => prompt.slice(0, -1), promptSpaceSize: () => 2,
 *   reject: ({ answer }) => (answer === 'a' ? 'b' : 'a') });
 * echo.verify('a#', 'a'); // { correct: true, score: 1 }
 * ```
 */
export function defineVerifiableTask<O extends object, M extends object>(spec: VerifiableTaskSpec<O, M>): VerifiableTask<O, M & { task: string }> {
  const { name } = spec;
  const options = (given: Partial<O> | undefined): O => {
    const merged = resolveOptions(name, given, spec.defaults);
    spec.validate(merged);
    return merged;
  };
  const task: VerifiableTask<O, M & { task: string }> = {
    name,
    defaultOptions: Object.freeze({ ...spec.defaults }),
    generate(rng, count, given) {
      const o = options(given);
      const random = toRng(`${name}.generate`, rng);
      if (!Number.isInteger(count) || count < 0) {
        throw new PosttrainError('INVALID_ARGUMENT', `${name}.generate: expected count to be a non-negative integer; got ${String(count)}`);
      }
      return Array.from({ length: count }, () => {
        const { prompt, metadata } = spec.sample(random, o);
        return { prompt, answer: spec.solve(prompt), metadata: { task: name, ...metadata } };
      });
    },
    solve: (prompt) => spec.solve(checkString(`${name}.solve`, 'prompt', prompt)),
    verify(example, completion) {
      const answer = typeof example === 'string' ? task.solve(example) : checkString(`${name}.verify`, 'example.answer', example?.answer);
      return scoreCompletion(answer, trimCompletion(checkString(`${name}.verify`, 'completion', completion)), spec.align);
    },
    toLanguageModelText: (example) => `${example.prompt}${example.answer}\n`,
    toPromptCompletion: (example) => ({ prompt: example.prompt, completion: example.answer }),
    preferencePair(example, rng) {
      const rejected = spec.reject(example, toRng(`${name}.preferencePair`, rng));
      if (rejected.length !== example.answer.length || task.verify(example, rejected).correct) {
        throw new PosttrainError(
          'INVALID_ARGUMENT',
          `${name}.preferencePair: expected a wrong answer of length ${example.answer.length} for ${JSON.stringify(example.prompt)}; got ${JSON.stringify(rejected)}`,
        );
      }
      return { prompt: example.prompt, chosen: example.answer, rejected };
    },
    promptSpaceSize: (given) => spec.promptSpaceSize(options(given)),
  };
  return task;
}

// An end-of-sequence marker decoded as text: `<|endoftext|>`, `<|im_end|>`, `</s>`, `<eos>`, `<end_of_turn>`.
const endMarker = /^(?:<\|\w+\|>|<\/?\w+>)$/;

/**
 * A completion without what may follow the answer at the end: whitespace (the newline that ends the
 * LM rendering) and end-of-sequence markers decoded as text (`<|name|>`, `<name>` or `</name>`, as in
 * `<|endoftext|>`, `<|im_end|>`, `</s>`, `<eos>`). Nothing at the start is forgiven, and nothing in
 * the middle: `'19\n3+4=7'` stays as it is, so generate with the newline's token among the stop ids.
 *
 * @example
 * ```ts
 * trimCompletion('19 \n<|endoftext|>'); // '19'
 * trimCompletion(' 19');                // ' 19'
 * ```
 */
export function trimCompletion(completion: string): string {
  // From the end, one marker at a time: linear in the length, whatever the completion holds.
  let text = checkString('trimCompletion', 'completion', completion).trimEnd();
  for (let start = text.lastIndexOf('<'); start >= 0 && endMarker.test(text.slice(start)); start = text.lastIndexOf('<')) {
    text = text.slice(0, start).trimEnd();
  }
  return text;
}

/** Exact match, and the fraction of aligned positions that agree over the longer of the two. */
function scoreCompletion(answer: string, completion: string, align: 'left' | 'right'): VerifyResult {
  const length = Math.max(answer.length, completion.length);
  if (length === 0) return { correct: true, score: 1 };
  const answerStart = align === 'right' ? length - answer.length : 0;
  const completionStart = align === 'right' ? length - completion.length : 0;
  let same = 0;
  for (let i = 0; i < length; i++) {
    const expected = answer[i - answerStart];
    if (expected !== undefined && expected === completion[i - completionStart]) same++;
  }
  return { correct: answer === completion, score: same / length };
}

/** An `Rng` from a seed, or the caller's own (matched by shape, so two package copies agree). */
export function toRng(owner: string, rng: Rng | number): Rng {
  if (typeof rng === 'number' && Number.isInteger(rng)) return new Rng(rng);
  if (typeof rng === 'object' && rng !== null && typeof (rng as Rng).int === 'function' && typeof (rng as Rng).fork === 'function') return rng;
  throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected an Rng or an integer seed; got ${typeof rng === 'number' ? rng : typeof rng}`, {
    help: 'pass a seed such as 0, or new Rng(seed) from @posttrain/tensor-core',
  });
}

function checkString(owner: string, name: string, value: unknown): string {
  if (typeof value !== 'string') throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} to be a string; got ${value === null ? 'null' : typeof value}`);
  return value;
}

/** `rng.int` over an inclusive range. */
export function intBetween(rng: Rng, low: number, high: number): number {
  return low + rng.int(high - low + 1);
}
