// An LLM as a pairwise judge, through any Generator (in process now; an OpenAI-compatible server later).
import { PosttrainError, checkNumber, describeValue } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { Generator } from '@posttrain/policy';
import { checkPairs, winRateOf, type WinRateResult } from './win-rate.js';

/** A verdict on one pair: 0 the first completion is better, 1 the second, null a tie (or no readable verdict). */
export type PairwiseVerdict = 0 | 1 | null;

/**
 * A pairwise judge, the shape of TRL's `BasePairwiseJudge.judge`: for each prompt, which of its two
 * completions is better.
 *
 * @example
 * ```ts
 * const longer: PairwiseJudge = { judge: async (_p, pairs) => pairs.map(([a, b]) => (a.length === b.length ? null : a.length > b.length ? 0 : 1)) };
 * ```
 */
export interface PairwiseJudge {
  judge(prompts: readonly string[], pairs: readonly (readonly [string, string])[]): Promise<PairwiseVerdict[]>;
}

/**
 * The default judge prompt, after MT-Bench's pairwise prompt (Zheng et al. 2023, "Judging
 * LLM-as-a-Judge"): the question, the two answers, and the verdict format "[[A]]", "[[B]]" or "[[C]]" (tie).
 */
export const PAIRWISE_JUDGE_TEMPLATE =
  'Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user question displayed below. ' +
  'Do not let the order or the length of the responses influence your decision. After your explanation, output your final verdict strictly in this format: ' +
  '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.\n\n' +
  "[User Question]\n{prompt}\n\n[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]\n";

/**
 * The verdict of a judge's reply in MT-Bench's format: the last "[[A]]", "[[B]]" or "[[C]]" in it;
 * null when there is none (counted as a tie by {@link judgeWinRate}).
 *
 * @example
 * ```ts
 * parsePairwiseVerdict('A is more accurate. [[A]]'); // 0
 * ```
 */
export function parsePairwiseVerdict(reply: string): PairwiseVerdict {
  const matches = [...reply.matchAll(/\[\[([ABC])\]\]/g)];
  const last = matches.at(-1)?.[1];
  return last === 'A' ? 0 : last === 'B' ? 1 : null;
}

/**
 * A {@link PairwiseJudge} on any {@link Generator}: each pair is written into `template` ({prompt},
 * {a}, {b}), one completion is sampled with `seed`, and `parse` reads its verdict.
 *
 * @example
 * ```ts
 * const judge = generatorJudge(inProcessGenerator(judgeModel, tokenizer, { temperature: 1e-3 }), tokenizer, { maxTokens: 256 });
 * const { winRate } = await judgeWinRate(judge, prompts, answersA, answersB);
 * ```
 */
export function generatorJudge(
  generator: Generator,
  tokenizer: TokenizerLike,
  options: { template?: string; parse?: (reply: string) => PairwiseVerdict; maxTokens?: number; seed?: number } = {},
): PairwiseJudge {
  if (!generator || typeof generator.generate !== 'function')
    throw new PosttrainError('INVALID_ARGUMENT', `generatorJudge: expected generator to be a Generator (an object with generate); got ${describeValue(generator)}`);
  const template = options.template ?? PAIRWISE_JUDGE_TEMPLATE;
  for (const slot of ['{prompt}', '{a}', '{b}']) {
    if (!template.includes(slot)) throw new PosttrainError('INVALID_OPTION', `generatorJudge: expected template to contain ${slot}; got ${describeValue(template)}`);
  }
  const parse = options.parse ?? parsePairwiseVerdict;
  const maxTokens = checkNumber('generatorJudge', 'maxTokens', options.maxTokens ?? 256, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  const seed = options.seed ?? 0;
  return {
    async judge(prompts, pairs) {
      const filled = prompts.map((p, i) => template.replaceAll('{prompt}', p).replaceAll('{a}', pairs[i][0]).replaceAll('{b}', pairs[i][1]));
      const promptIds = filled.map((p) => tokenizer.encode(p));
      const replies = await generator.generate({ prompts: filled, promptIds, n: 1, maxTokens, seed });
      return replies.map(([c]) => parse(tokenizer.decode(c.finishReason === 'stop' ? c.ids.slice(0, -1) : c.ids)));
    },
  };
}

/**
 * Win rate of completions A over B by a pairwise judge. With `swap` (default true) every pair is
 * judged twice, A first and B first, to cancel position bias as MT-Bench does: A wins only when both
 * orders prefer it, loses only when both prefer B, and anything else is a tie.
 *
 * @example
 * ```ts
 * const { winRate, wins, ties, losses } = await judgeWinRate(judge, prompts, tuned, base);
 * ```
 */
export async function judgeWinRate(
  judge: PairwiseJudge,
  prompts: readonly string[],
  completionsA: readonly string[],
  completionsB: readonly string[],
  options: { swap?: boolean } = {},
): Promise<WinRateResult> {
  checkPairs('judgeWinRate', prompts, completionsA, completionsB);
  const forward = await judge.judge(
    prompts,
    prompts.map((_, i) => [completionsA[i], completionsB[i]] as const),
  );
  if (options.swap === false) return winRateOf(forward.map((v) => (v === 0 ? 1 : v === 1 ? 0 : 0.5)));
  const backward = await judge.judge(
    prompts,
    prompts.map((_, i) => [completionsB[i], completionsA[i]] as const),
  );
  return winRateOf(forward.map((v, i) => (v === 0 && backward[i] === 1 ? 1 : v === 1 && backward[i] === 0 ? 0 : 0.5)));
}
