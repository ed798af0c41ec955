// The held-out measurements of the RL starting points: the reversal split, greedy and sampled
// accuracy of a policy, and reward-model scores of answers next to the right ones.
import { tf, type CausalLM } from '@posttrain/tensor-core';
import { generateSplit, reversalTask, type TaskExample, type TokenizerLike } from '@posttrain/data';
import { generate } from '@posttrain/policy';
import { evaluateRewardModel, type RewardEvaluation, type RewardModel } from '@posttrain/reward';
import { STRING_OPTIONS } from './tiny-base.js';

/** A reversal example of the split (prompt `'abc>'`, answer `'cba'`). */
export type ReversalExample = TaskExample<{ task: string; length: number }>;

/**
 * The reversal split every RL run of this example uses: 20,000 training prompts drawn from the task
 * (repeats allowed, as examples/dpo draws them) and 200 held-out prompts never trained on, from
 * `generateSplit(reversalTask, seed, …)` with 3–4 of the letters a–h. Seed 0 is the split of the
 * shipped checkpoints.
 *
 * @example
 * ```ts
 * const { train, test } = reversalSplit(0);
 * test.length; // 200
 * ```
 */
export function reversalSplit(seed = 0): { train: ReversalExample[]; test: ReversalExample[] } {
  return generateSplit(reversalTask, seed, { train: 20_000, test: 200, taskOptions: STRING_OPTIONS, uniqueTrain: false });
}

/**
 * Held-out preference pairs: the right reversal chosen, the unreversed string or two letters swapped
 * rejected (`reversalTask.preferencePair` with seeds 1,000,000 + i, apart from any training pair's).
 *
 * @example
 * ```ts
 * heldOutPairs(reversalSplit(0).test)[0]; // { prompt: 'gcff>', chosen: 'ffcg', rejected: 'ffgc' }
 * ```
 */
export function heldOutPairs(test: readonly ReversalExample[]): { prompt: string; chosen: string; rejected: string }[] {
  return test.map((e, i) => reversalTask.preferencePair(e, 1_000_000 + i));
}

/** Options of {@link sampledAccuracy}; every field has a default. */
export interface SampledAccuracyOptions {
  /** Completions per prompt (default 8). */
  samples: number;
  /** Sampling temperature (default 1: the policy's own distribution, as RL samples it). */
  temperature: number;
  /** Tokens per completion at most, EOS included (default 8). */
  maxNewTokens: number;
  /** Seed of the sampler (default 0). */
  seed: number;
}

/** What {@link sampledAccuracy} measured. */
export interface SampledAccuracy {
  /** Fraction of all sampled completions that are exactly right. */
  accuracy: number;
  /** Fraction of prompts with at least one right completion (pass@n). */
  anyCorrect: number;
  /** Fraction of prompts whose completions are neither all right nor all wrong: groups whose exact-match reward has a non-zero spread (GRPO's signal). */
  mixed: number;
  /** The completions of each prompt (EOS dropped), in example order. */
  completions: string[][];
}

/**
 * Samples `samples` completions per held-out prompt from the policy (temperature, seeded) and checks
 * each with `reversalTask.verify`. Prompts of one token length are decoded together.
 *
 * @example
 * ```ts
 * const { accuracy, mixed } = await sampledAccuracy(model, tokenizer, test, { samples: 8 });
 * ```
 */
export async function sampledAccuracy(model: CausalLM, tokenizer: TokenizerLike, examples: readonly ReversalExample[], options: Partial<SampledAccuracyOptions> = {}): Promise<SampledAccuracy> {
  const { samples = 8, temperature = 1, maxNewTokens = 8, seed = 0 } = options;
  const eos = tokenizer.eosTokenId ?? 0;
  const encoded = examples.map((e) => tokenizer.encode(e.prompt));
  const byLength = new Map<number, number[]>();
  encoded.forEach((ids, i) => byLength.set(ids.length, [...(byLength.get(ids.length) ?? []), i]));
  const completions: string[][] = examples.map(() => []);
  let batchIndex = 0;
  for (const [, indices] of [...byLength].sort(([a], [b]) => a - b)) {
    const prompt = tf.tensor2d(
      indices.map((i) => encoded[i]),
      undefined,
      'int32',
    );
    try {
      const { tokens, finishReasons } = await generate(model, prompt, { temperature, maxNewTokens, numReturnSequences: samples, stopTokenIds: [eos], padTokenId: eos, seed: seed + batchIndex++ });
      indices.forEach((example, j) => {
        for (let s = 0; s < samples; s++) {
          const row = j * samples + s;
          completions[example].push(tokenizer.decode(finishReasons[row] === 'stop' ? tokens[row].slice(0, -1) : tokens[row]));
        }
      });
    } finally {
      prompt.dispose();
    }
  }
  const right = examples.map((e, i) => completions[i].filter((c) => reversalTask.verify(e, c).correct).length);
  const n = Math.max(examples.length, 1);
  return {
    accuracy: right.reduce((s, k) => s + k, 0) / (n * samples),
    anyCorrect: right.filter((k) => k > 0).length / n,
    mixed: right.filter((k) => k > 0 && k < samples).length / n,
    completions,
  };
}

/** What {@link scoreAnswers} measured. */
export interface AnswerScores {
  /** Mean RM score of the right answers. */
  correct: number;
  /** Mean RM score of the given completions. */
  given: number;
  /** Mean RM score of the given completions that are right (NaN when none is). */
  givenRight: number;
  /** Mean RM score of the given completions that are wrong (NaN when none is). */
  givenWrong: number;
  /** Fraction of the wrong completions the RM scores below the right answer of their prompt (NaN when none is wrong). */
  wrongRankedBelow: number;
  /** The evaluation behind these figures: chosen = the right answers, rejected = the given completions. */
  evaluation: RewardEvaluation;
}

/**
 * Scores the right answer and a given completion (a policy's, say) of each example with the reward
 * model: the mean scores, split by whether the completion is right, and how often a wrong completion
 * scores below the right answer — whether the RM can tell the policy's own mistakes, which need not
 * look like the rejected answers it was trained on.
 *
 * @example
 * ```ts
 * const greedy = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
 * const { correct, given } = await scoreAnswers(rm, tokenizer, test, greedy.samples.map((s) => s.completion));
 * ```
 */
export async function scoreAnswers(rm: RewardModel, tokenizer: TokenizerLike, examples: readonly ReversalExample[], completions: readonly string[]): Promise<AnswerScores> {
  const evaluation = await evaluateRewardModel(
    rm,
    tokenizer,
    examples.map((e, i) => ({ prompt: e.prompt, chosen: e.answer, rejected: completions[i] })),
  );
  const mean = (xs: number[]) => (xs.length ? xs.reduce((s, v) => s + v, 0) / xs.length : Number.NaN);
  const right = examples.map((e, i) => reversalTask.verify(e, completions[i]).correct);
  const wrong = right.flatMap((ok, i) => (ok ? [] : [i]));
  return {
    correct: evaluation.chosenScore,
    given: evaluation.rejectedScore,
    givenRight: mean(evaluation.rejectedScores.filter((_, i) => right[i])),
    givenWrong: mean(wrong.map((i) => evaluation.rejectedScores[i])),
    wrongRankedBelow: wrong.length ? wrong.filter((i) => evaluation.rejectedScores[i] < evaluation.chosenScores[i]).length / wrong.length : Number.NaN,
    evaluation,
  };
}
