// Held-out exact match of a causal LM on a verifiable task, by greedy decoding.
import { checkNumber, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';


/** The parts of a verifiable task (from `@posttrain/data`) {@link exactMatch} uses. */
export interface ExactMatchTask<E> {
  verify(example: E, completion: string): { correct: boolean };
}

/** Options of {@link exactMatch}. */
export interface ExactMatchOptions {
  /** Tokens to generate after each prompt (default 16). */
  maxNewTokens: number;
  /** Prompts decoded together (default 64). */
  batchSize: number;
  /** Passed to `tokenizer.encode` for prompts, as the SFT tokenization does (default true). */
  addSpecialTokens: boolean;
}

export const defaultExactMatchOptions: Readonly<ExactMatchOptions> = Object.freeze({ maxNewTokens: 16, batchSize: 64, addSpecialTokens: true });

/** What {@link exactMatch} returns. */
export interface ExactMatchResult {
  /** correct / total, in [0, 1]. */
  accuracy: number;
  correct: number;
  total: number;
  /** Each example's decoded completion (EOS dropped) and whether it verified. */
  samples: { prompt: string; completion: string; correct: boolean }[];
}

/**
 * Greedy-decodes each example's prompt and checks the completion with `task.verify`. Prompts of
 * the same token length are decoded together, so no padding is needed; each step runs a full
 * forward pass without a KV cache (simple and exact; fine for the short prompts of synthetic
 * tasks). Generation stops at EOS or `maxNewTokens`. The model is put in eval mode and left there.
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
  const encoded = examples.map((e) => tokenizer.encode(e.prompt, { addSpecialTokens: o.addSpecialTokens }));
  const byLength = new Map<number, number[]>();
  encoded.forEach((ids, i) => byLength.set(ids.length, [...(byLength.get(ids.length) ?? []), i]));
  const completions: number[][] = examples.map(() => []);
  for (const indices of byLength.values()) {
    for (let start = 0; start < indices.length; start += o.batchSize) {
      const chunk = indices.slice(start, start + o.batchSize);
      const rows = chunk.map((i) => [...encoded[i]]);
      const done = chunk.map(() => false);
      for (let t = 0; t < o.maxNewTokens && done.some((d) => !d); t++) {
        const next = tf.tidy(() => {
          const { logits } = model.forward(tf.tensor2d(rows, undefined, 'int32')); // [B, T, V]
          const [B, T, V] = logits.shape;
          return tf.argMax(tf.reshape(tf.slice(logits, [0, T - 1, 0], [B, 1, V]), [B, V]), -1); // [B]
        });
        const ids = Array.from(await next.data());
        next.dispose();
        ids.forEach((id, j) => {
          rows[j].push(id);
          if (done[j]) return;
          if (eos !== null && id === eos) done[j] = true;
          else completions[chunk[j]].push(id);
        });
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
