// Held-out exact match of a causal LM on a verifiable task, by greedy decoding with a KV cache.
import { checkNumber, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import { generate } from '@posttrain/policy';

/** The parts of a verifiable task (from `@posttrain/data`) {@link exactMatch} uses. */
export interface ExactMatchTask<E> {
  verify(example: E, completion: string): { correct: boolean };
}

/**
 * Options of {@link exactMatch}.
 *
 * @example
 * ```ts
 * const options: Partial<ExactMatchOptions> = { maxNewTokens: 8, batchSize: 32 };
 * ```
 */
export interface ExactMatchOptions {
  /** Tokens to generate after each prompt (default 16). */
  maxNewTokens: number;
  /** Prompts decoded together (default 64). */
  batchSize: number;
  /** Passed to `tokenizer.encode` for prompts, as the SFT tokenization does (default true). */
  addSpecialTokens: boolean;
}

/**
 * The defaults of {@link exactMatch}.
 *
 * @example
 * ```ts
 * defaultExactMatchOptions.maxNewTokens; // 16
 * ```
 */
export const defaultExactMatchOptions: Readonly<ExactMatchOptions> = Object.freeze({ maxNewTokens: 16, batchSize: 64, addSpecialTokens: true });

/**
 * What {@link exactMatch} returns.
 *
 * @example
 * ```ts
 * const { accuracy, samples } = await exactMatch(model, tokenizer, reversalTask, test);
 * samples[0]; // { prompt: 'abc>', completion: 'cba', correct: true }
 * ```
 */
export interface ExactMatchResult {
  /** correct / total, in [0, 1]. */
  accuracy: number;
  correct: number;
  total: number;
  /** Each example's decoded completion (EOS dropped) and whether it verified. */
  samples: { prompt: string; completion: string; correct: boolean }[];
}

/**
 * Greedy-decodes each example's prompt with `generate` from `@posttrain/policy` (KV cache) and
 * checks the completion with `task.verify`. Prompts of the same token length are decoded together,
 * so no padding is needed. Generation stops at the tokenizer's EOS (not part of the completion) or
 * after `maxNewTokens`. The model is put in eval mode and left there.
 *
 * @example
 * ```ts
 * const { test } = generateSplit(reversalTask, 0, { train: 2000, test: 200 });
 * const { accuracy } = await exactMatch(model, new ByteTokenizer(), reversalTask, test, { maxNewTokens: 8 });
 * ```
 */
export async function exactMatch<E extends { prompt: string }>(
  model: CausalLM,
  tokenizer: TokenizerLike,
  task: ExactMatchTask<NoInfer<E>>,
  examples: readonly E[],
  options?: Partial<ExactMatchOptions>,
): Promise<ExactMatchResult> {
  const o = resolveOptions('exactMatch', options, defaultExactMatchOptions);
  checkNumber('exactMatch', 'maxNewTokens', o.maxNewTokens, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber('exactMatch', 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  model.eval();
  const eos = tokenizer.eosTokenId;
  const stopTokenIds = eos === null ? [] : [eos];
  const encoded = examples.map((e) => tokenizer.encode(e.prompt, { addSpecialTokens: o.addSpecialTokens }));
  const byLength = new Map<number, number[]>();
  encoded.forEach((ids, i) => byLength.set(ids.length, [...(byLength.get(ids.length) ?? []), i]));
  const completions: number[][] = examples.map(() => []);
  for (const indices of byLength.values()) {
    for (let start = 0; start < indices.length; start += o.batchSize) {
      const chunk = indices.slice(start, start + o.batchSize);
      const prompt = tf.tensor2d(
        chunk.map((i) => encoded[i]),
        undefined,
        'int32',
      );
      try {
        const { tokens, finishReasons } = await generate(model, prompt, { greedy: true, maxNewTokens: o.maxNewTokens, stopTokenIds, padTokenId: eos ?? 0 });
        chunk.forEach((example, j) => {
          completions[example] = finishReasons[j] === 'stop' ? tokens[j].slice(0, -1) : tokens[j];
        });
      } finally {
        prompt.dispose();
      }
    }
  }
  const samples = examples.map((e, i) => {
    const completion = tokenizer.decode(completions[i]);
    return { prompt: e.prompt, completion, correct: task.verify(e, completion).correct };
  });
  const correct = samples.filter((s) => s.correct).length;
  return { accuracy: examples.length ? correct / examples.length : 0, correct, total: examples.length, samples };
}
