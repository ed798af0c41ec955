// The teacher of the distillation example, committed beside this package: where it is, how to load it,
// the data every run of the example uses, and what the teacher measured when it was made
// (npm run make-teacher -w examples/distill).
import { fileURLToPath } from 'node:url';
import { generateSplit, loadTokenizer, sortingTask, type StringTaskOptions, type TaskExample, type Tokenizer } from '@posttrain/data';
import { loadModel, type PretrainedModel } from '@posttrain/models';

/** examples/sft's tiny base (a 90,688-parameter Llama pretrained here on sorting text such as `dbca|abcd`), which the teacher is fine-tuned from. */
export const TINY_BASE_DIR = fileURLToPath(new URL('../../sft/tiny-base/', import.meta.url));

/** The teacher: the tiny base after a short full fine-tune on sorting prompt-completion records (Hugging Face layout). */
export const TEACHER_DIR = fileURLToPath(new URL('../teacher/', import.meta.url));

/** The strings of the task: 3 or 4 of the letters a–h (4,608 prompts), as examples/sft pretrained the tiny base on. */
export const STRING_OPTIONS: StringTaskOptions = Object.freeze({ alphabet: 'abcdefgh', minLength: 3, maxLength: 4 });

/** Held-out prompts of every measurement here: the 200 that examples/sft held out of the tiny base's pretraining, so no model of this example ever trained on them. */
export const HELD_OUT = 200;

/** A sorting example of the split (prompt `'dbca|'`, answer `'abcd'`). */
export type SortingExample = TaskExample<{ task: string; length: number }>;

/**
 * The sorting split of this example: `train` prompts drawn from the task (repeats allowed) and the
 * {@link HELD_OUT} held-out prompts, from `generateSplit(sortingTask, 0, …)`. The held-out set is
 * drawn first from its own stream, so it is the same whatever `train` is: the teacher's 20,000
 * training prompts and the students' 64 exclude the same 200, which are also those examples/sft's
 * tiny base was held out from.
 *
 * @example
 * ```ts
 * const { train, test } = sortingSplit(64);
 * train[0]; // { prompt: 'gcff|', answer: 'cffg', … }
 * ```
 */
export function sortingSplit(train: number): { train: SortingExample[]; test: SortingExample[] } {
  return generateSplit(sortingTask, 0, { train, test: HELD_OUT, taskOptions: STRING_OPTIONS, uniqueTrain: false });
}

/**
 * How the teacher was made and what it measured on the {@link HELD_OUT} held-out prompts (wasm);
 * teacher/README.md has the same figures.
 *
 * @example
 * ```ts
 * TEACHER_FIGURES.exactMatch; // 1
 * ```
 */
export const TEACHER_FIGURES = Object.freeze({
  /** Full fine-tuning steps from the tiny base (batch 32, AdamW lr 1e-3, cosine after 20 warm-up steps, seed 0). */
  steps: 200,
  /** Training prompts the steps drew from (`sortingSplit(20_000).train`). */
  trainExamples: 20_000,
  /** Parameters (hidden 64, 2 layers, 4 query heads over 2 key/value heads, SwiGLU 128, tied embeddings). */
  parameters: 90_688,
  /** Greedy exact match, maxNewTokens 8. */
  exactMatch: 1, // 200 of 200
  /** Mean cross-entropy of the right answers, nats per answer token (EOS included). */
  crossEntropy: 0.0027,
});

/**
 * Loads the teacher from {@link TEACHER_DIR} (or `dir`) frozen and in eval mode, as `distillTrain`
 * wants it, with its tokenizer (the byte tokenizer, read back from the directory's tokenizer.json).
 *
 * @example
 * ```ts
 * const { model: teacher, tokenizer } = await loadTeacher();
 * const { accuracy } = await exactMatch(teacher, tokenizer, sortingTask, sortingSplit(64).test, { maxNewTokens: 8 }); // 1
 * ```
 */
export async function loadTeacher(dir: string = TEACHER_DIR): Promise<{ model: PretrainedModel; tokenizer: Tokenizer }> {
  const tokenizer = await loadTokenizer(dir);
  const model = await loadModel(dir);
  model.freeze();
  model.eval();
  return { model, tokenizer };
}
