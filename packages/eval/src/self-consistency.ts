// Self-consistency (Wang et al. 2022, "Self-Consistency Improves Chain of Thought Reasoning in
// Language Models"): sample several answers to each question and keep the most frequent one.
import { PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { Generator } from '@posttrain/policy';

/**
 * The most frequent answer of `answers` (nulls — answers that could not be extracted — are not
 * votes). A tie goes to the answer that reached the winning count first, i.e. the one whose
 * deciding vote came earliest; `answer` is null when there is no vote at all.
 *
 * @example
 * ```ts
 * majorityVote(['12', '15', '12', null]); // { answer: '12', votes: 2, counted: 3 }
 * ```
 */
export function majorityVote(answers: readonly (string | null)[]): { answer: string | null; votes: number; counted: number } {
  const counts = new Map<string, number>();
  let answer: string | null = null;
  let votes = 0;
  let counted = 0;
  for (const a of answers) {
    if (a === null) continue;
    counted += 1;
    const count = (counts.get(a) ?? 0) + 1;
    counts.set(a, count);
    if (count > votes) {
      votes = count;
      answer = a;
    }
  }
  return { answer, votes, counted };
}

/**
 * The zero-shot chain-of-thought trigger of Kojima et al. 2022 ("Let's think step by step."),
 * appended to a question on its own line.
 *
 * @example
 * ```ts
 * chainOfThoughtPrompt('Q: 2+3?'); // "Q: 2+3?\nLet's think step by step."
 * ```
 */
export function chainOfThoughtPrompt(question: string, trigger = "Let's think step by step."): string {
  return `${question}\n${trigger}`;
}

/**
 * The final answer of a chain-of-thought completion: what follows the last "answer is" (Wang et
 * al.'s prompts end "The answer is X.") or the last "####" (GSM8K's format), up to the end of that
 * line, trimmed and without a trailing full stop; null when neither marker occurs.
 *
 * @example
 * ```ts
 * extractFinalAnswer('3 + 4 = 7. The answer is 7.'); // '7'
 * extractFinalAnswer('no marker'); // null
 * ```
 */
export function extractFinalAnswer(completion: string): string | null {
  const lower = completion.toLowerCase();
  const at = Math.max(lower.lastIndexOf('answer is'), lower.lastIndexOf('####'));
  if (at < 0) return null;
  const rest = completion.slice(at + (lower.startsWith('####', at) ? 4 : 'answer is'.length));
  const line = rest.split('\n')[0].trim().replace(/\.$/, '').trim();
  return line.length > 0 ? line : null;
}

/** The whole completion, trimmed: the answer of a prompt asked without a chain of thought. */
export function wholeCompletion(completion: string): string | null {
  const answer = completion.trim();
  return answer.length > 0 ? answer : null;
}

/**
 * Options of {@link selfConsistency}.
 *
 * @example
 * ```ts
 * const options: Partial<SelfConsistencyOptions> = { n: 16, chainOfThought: true, maxTokens: 128 };
 * ```
 */
export interface SelfConsistencyOptions {
  /** Sampled completions per question (default 8; the paper used 40). */
  n: number;
  /** New tokens per completion at most (default 64). */
  maxTokens: number;
  /** Seed of the sampling (default 0). */
  seed: number;
  /** Ask for a chain of thought: the prompt gets {@link chainOfThoughtPrompt}'s trigger and answers are read with {@link extractFinalAnswer} (default false: the prompt as given, the whole completion is the answer). */
  chainOfThought: boolean;
  /** Reads the answer out of a completion; null: the default of `chainOfThought`. */
  extractAnswer: ((completion: string) => string | null) | null;
  /** Questions per generation request (default 16). */
  batchSize: number;
  /** Passed to `tokenizer.encode` for prompts (default true). */
  addSpecialTokens: boolean;
}

/** Defaults of {@link selfConsistency}. */
export const defaultSelfConsistencyOptions: Readonly<SelfConsistencyOptions> = Object.freeze({
  n: 8,
  maxTokens: 64,
  seed: 0,
  chainOfThought: false,
  extractAnswer: null,
  batchSize: 16,
  addSpecialTokens: true,
});

/** One question of {@link SelfConsistencyResult}. */
export interface SelfConsistencyQuestion {
  prompt: string;
  /** Each sample's extracted answer (null: none could be read). */
  answers: (string | null)[];
  /** The majority answer, its votes and whether it verifies. */
  answer: string | null;
  votes: number;
  correct: boolean;
  /** How many of the n samples verify on their own. */
  correctSamples: number;
}

/** What {@link selfConsistency} returns. */
export interface SelfConsistencyResult {
  /** Accuracy of the majority answer. */
  accuracy: number;
  /** Mean accuracy of a single sample (the baseline self-consistency improves on). */
  sampleAccuracy: number;
  /** Fraction of samples from which no answer could be extracted. */
  unanswered: number;
  questions: SelfConsistencyQuestion[];
}

/**
 * Self-consistency: for each example, `n` completions are sampled through `generator` (any
 * {@link Generator}: policy's `inProcessGenerator`, or a server later), an answer is extracted from
 * each, the most frequent one wins ({@link majorityVote}) and is checked with `task.verify(example,
 * answer)`. `sampleAccuracy`, the mean over single samples, is what one sample scores; Wang et al.
 * report the vote's gain over it. With `chainOfThought` the prompt asks for reasoning and the
 * answer is what follows "The answer is".
 *
 * @example
 * ```ts
 * const generator = inProcessGenerator(model, tokenizer, { temperature: 0.7 });
 * const { accuracy, sampleAccuracy } = await selfConsistency(generator, tokenizer, reversalTask, test, { n: 8, maxTokens: 8 });
 * ```
 */
export async function selfConsistency<E extends { prompt: string }>(
  generator: Generator,
  tokenizer: TokenizerLike,
  task: { verify(example: NoInfer<E>, completion: string): { correct: boolean } },
  examples: readonly E[],
  options?: Partial<SelfConsistencyOptions>,
): Promise<SelfConsistencyResult> {
  const owner = 'selfConsistency';
  const o = resolveOptions(owner, options, defaultSelfConsistencyOptions);
  checkNumber(owner, 'n', o.n, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'maxTokens', o.maxTokens, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  if (!generator || typeof generator.generate !== 'function')
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected generator to be a Generator (an object with generate); got ${describeValue(generator)}`);
  const extract = o.extractAnswer ?? (o.chainOfThought ? extractFinalAnswer : wholeCompletion);
  const questions: SelfConsistencyQuestion[] = [];
  for (let start = 0; start < examples.length; start += o.batchSize) {
    const chunk = examples.slice(start, start + o.batchSize);
    const prompts = chunk.map((e) => (o.chainOfThought ? chainOfThoughtPrompt(e.prompt) : e.prompt));
    const promptIds = prompts.map((p) => tokenizer.encode(p, { addSpecialTokens: o.addSpecialTokens }));
    const completions = await generator.generate({ prompts, promptIds, n: o.n, maxTokens: o.maxTokens, seed: o.seed + start });
    chunk.forEach((example, i) => {
      const texts = completions[i].map((c) => tokenizer.decode(c.finishReason === 'stop' ? c.ids.slice(0, -1) : c.ids));
      const answers = texts.map(extract);
      const vote = majorityVote(answers);
      const correctSamples = answers.filter((a) => a !== null && task.verify(example, a).correct).length;
      questions.push({ prompt: prompts[i], answers, answer: vote.answer, votes: vote.votes, correct: vote.answer !== null && task.verify(example, vote.answer).correct, correctSamples });
    });
  }
  const total = questions.length;
  const samples = total * o.n;
  return {
    accuracy: total ? questions.filter((q) => q.correct).length / total : 0,
    sampleAccuracy: samples ? questions.reduce((s, q) => s + q.correctSamples, 0) / samples : 0,
    unanswered: samples ? questions.reduce((s, q) => s + q.answers.filter((a) => a === null).length, 0) / samples : 0,
    questions,
  };
}
