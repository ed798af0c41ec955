// The held-out measurement of every model in this example: greedy exact match on the sorting
// prompts, and the cross-entropy of the right answers.
import { sortingTask, tokenizePromptCompletion, type TokenizerLike } from '@posttrain/data';
import { exampleLogps, inEvalMode, padTokenIdOf } from '@posttrain/policy';
import { exactMatch } from '@posttrain/eval';
import type { PretrainedModel } from '@posttrain/models';
import type { SortingExample } from './teacher.js';

/** What {@link measureSorting} measured. */
export interface SortingMeasure {
  /** Greedy exact match (`exactMatch`, maxNewTokens 8), in [0, 1]. */
  accuracy: number;
  correct: number;
  total: number;
  /** Mean cross-entropy of the right answers under the model, nats per answer token, EOS included (lower is better). */
  crossEntropy: number;
  /** Each prompt's greedy completion (EOS dropped) and whether it is right. */
  samples: { prompt: string; completion: string; correct: boolean }[];
}

/**
 * Greedy exact match of `model` on the held-out sorting prompts, and the cross-entropy of their
 * right answers (answer + EOS, teacher-forced): the accuracy the example compares, and the
 * finer measure it would compare if every method got every answer right.
 *
 * @example
 * ```ts
 * const { accuracy, crossEntropy } = await measureSorting(student, tokenizer, sortingSplit(64).test);
 * ```
 */
export async function measureSorting(model: PretrainedModel, tokenizer: TokenizerLike, test: readonly SortingExample[]): Promise<SortingMeasure> {
  const { accuracy, correct, total, samples } = await exactMatch(model, tokenizer, sortingTask, test, { maxNewTokens: 8 });
  const examples = test.map((e) => tokenizePromptCompletion(tokenizer, sortingTask.toPromptCompletion(e)));
  const logps = await inEvalMode(model, () => exampleLogps(model, examples, { batchSize: 64, average: false, padTokenId: padTokenIdOf(tokenizer) }));
  const tokens = examples.reduce((n, e) => n + e.labels.filter((l) => l !== -100).length, 0);
  const crossEntropy = -logps.reduce((s, v) => s + v, 0) / tokens;
  return { accuracy, correct, total, crossEntropy, samples };
}
