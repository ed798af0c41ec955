// pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
// Trained on Code", §2.1): n ≥ k samples per problem, c of them correct.
import { PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { Generator } from '@posttrain/policy';

/**
 * The unbiased estimate of pass@k for one problem from `n` samples of which `c` are correct:
 * 1 − C(n − c, k) / C(n, k), the probability that a random k-subset of the samples holds at least
 * one correct one. Computed as 1 − ∏_{i = n − c + 1}^{n} (1 − k / i), the paper's numerically
 * stable product (no factorials); 1 when n − c < k.
 *
 * @example
 * ```ts
 * passAtK(10, 3, 1); // 0.3
 * passAtK(10, 3, 5); // 1 − C(7,5)/C(10,5) = 1 − 21/252 ≈ 0.9167
 * ```
 */
export function passAtK(n: number, c: number, k: number): number {
  checkNumber('passAtK', 'n', n, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber('passAtK', 'c', c, `an integer in [0, n = ${n}]`, (v) => Number.isInteger(v) && v >= 0 && v <= n);
  checkNumber('passAtK', 'k', k, `an integer in [1, n = ${n}]`, (v) => Number.isInteger(v) && v >= 1 && v <= n);
  if (n - c < k) return 1;
  let fail = 1;
  for (let i = n - c + 1; i <= n; i++) fail *= 1 - k / i;
  return 1 - fail;
}

/**
 * pass@k averaged over problems, for each k in `ks`: the mean of {@link passAtK} over every
 * problem's `{ n, c }` (problems may have different n; each needs n ≥ k).
 *
 * @example
 * ```ts
 * meanPassAtK([{ n: 4, c: 1 }, { n: 4, c: 0 }], [1, 2]); // { 1: 0.125, 2: 0.25 }
 * ```
 */
export function meanPassAtK(problems: readonly { n: number; c: number }[], ks: readonly number[]): Record<number, number> {
  if (!Array.isArray(problems) || problems.length === 0)
    throw new PosttrainError('INVALID_ARGUMENT', `meanPassAtK: expected problems to be a non-empty array of { n, c }; got ${describeValue(problems)}`);
  if (!Array.isArray(ks) || ks.length === 0) throw new PosttrainError('INVALID_ARGUMENT', `meanPassAtK: expected ks to be a non-empty array of integers ≥ 1; got ${describeValue(ks)}`);
  const out: Record<number, number> = {};
  for (const k of ks) out[k] = problems.reduce((sum, p) => sum + passAtK(p.n, p.c, k), 0) / problems.length;
  return out;
}

/** Options of {@link samplePassAtK}. */
export interface SamplePassAtKOptions {
  /** Completions sampled per problem (default 10); every k must be ≤ n. */
  n: number;
  /** The k of pass@k to report (default [1, 5, 10]). */
  ks: readonly number[];
  /** New tokens per completion at most (default 64). */
  maxTokens: number;
  /** Seed of the sampling (default 0). */
  seed: number;
  /** Problems per generation request (default 16). */
  batchSize: number;
}

/** Defaults of {@link samplePassAtK}. */
export const defaultSamplePassAtKOptions: Readonly<SamplePassAtKOptions> = Object.freeze({ n: 10, ks: Object.freeze([1, 5, 10]), maxTokens: 64, seed: 0, batchSize: 16 });

/**
 * pass@k of a model on a verifiable task: `n` completions of each prompt are sampled through
 * `generator`, each is checked with `task.verify`, and {@link meanPassAtK} estimates pass@k for
 * every k in `ks` from the per-problem counts.
 *
 * @example
 * ```ts
 * const { passAtK } = await samplePassAtK(inProcessGenerator(model, tokenizer), tokenizer, reversalTask, test, { n: 10, ks: [1, 10], maxTokens: 8 });
 * passAtK[10]; // ≥ passAtK[1]
 * ```
 */
export async function samplePassAtK<E extends { prompt: string }>(
  generator: Generator,
  tokenizer: TokenizerLike,
  task: { verify(example: NoInfer<E>, completion: string): { correct: boolean } },
  examples: readonly E[],
  options?: Partial<SamplePassAtKOptions>,
): Promise<{ passAtK: Record<number, number>; problems: { prompt: string; n: number; c: number }[] }> {
  const owner = 'samplePassAtK';
  const o = resolveOptions(owner, options, defaultSamplePassAtKOptions);
  checkNumber(owner, 'n', o.n, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'maxTokens', o.maxTokens, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  for (const k of o.ks) checkNumber(owner, 'ks', k, `integers in [1, n = ${o.n}]`, (v) => Number.isInteger(v) && v >= 1 && v <= o.n);
  if (examples.length === 0) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one example; got none`);
  const problems: { prompt: string; n: number; c: number }[] = [];
  for (let start = 0; start < examples.length; start += o.batchSize) {
    const chunk = examples.slice(start, start + o.batchSize);
    const prompts = chunk.map((e) => e.prompt);
    const completions = await generator.generate({ prompts, promptIds: prompts.map((p) => tokenizer.encode(p)), n: o.n, maxTokens: o.maxTokens, seed: o.seed + start });
    chunk.forEach((example, i) => {
      const c = completions[i].filter((s) => task.verify(example, tokenizer.decode(s.finishReason === 'stop' ? s.ids.slice(0, -1) : s.ids)).correct).length;
      problems.push({ prompt: example.prompt, n: o.n, c });
    });
  }
  return { passAtK: meanPassAtK(problems, o.ks), problems };
}
