// Completion log-probs of preference pairs under a model, outside training: for a reference cache,
// or to measure how often a model already prefers the chosen answer.
import { checkNumber, resolveOptions, type CausalLM } from '@posttrain/tensor-core';
import { tokenizePreference, type PreferenceRecord, type TokenizerLike } from '@posttrain/data';
import { exampleLogps, padTokenIdOf } from '@posttrain/policy';

/**
 * Options of {@link preferenceLogps}.
 *
 * @example
 * ```ts
 * const options: Partial<PreferenceLogpsOptions> = { batchSize: 64, average: true };
 * ```
 */
export interface PreferenceLogpsOptions {
  /** Sequences per forward pass (default 32). */
  batchSize: number;
  /** Per-token averages instead of sums (default false). */
  average: boolean;
  /** Longest prompt + completion in tokens, as in training; null: no limit (default). */
  maxLength: number | null;
}

/**
 * The defaults of {@link preferenceLogps}.
 *
 * @example
 * ```ts
 * await preferenceLogps(model, tokenizer, pairs, { ...defaultPreferenceLogpsOptions, average: true });
 * ```
 */
export const defaultPreferenceLogpsOptions: Readonly<PreferenceLogpsOptions> = Object.freeze({ batchSize: 32, average: false, maxLength: null });

/**
 * What {@link preferenceLogps} returns, one entry per record.
 *
 * @example
 * ```ts
 * const { chosen, rejected, accuracy } = await preferenceLogps(model, tokenizer, pairs); // Float32Array, Float32Array, number
 * ```
 */
export interface PreferenceLogpsResult {
  /** log π(chosen | prompt), summed over the completion's tokens and EOS (or their mean with `average`). */
  chosen: Float32Array;
  /** log π(rejected | prompt). */
  rejected: Float32Array;
  /** Share of records whose chosen completion has the higher log-prob, in [0, 1]: how often the model itself prefers the chosen answer. */
  accuracy: number;
}

/**
 * Each preference record's completion log-probs under `model`, tokenized as {@link dpoTrain} does
 * (`tokenizePreference`: EOS appended, the prompt not scored), in eval mode with no gradient (the
 * model's mode is restored). `accuracy` is the share of pairs the model ranks right by log-prob — a
 * measure that, unlike `rewards/accuracies`, needs no reference and is meaningful before training.
 *
 * @example
 * ```ts
 * const pairs = test.map((e, i) => reversalTask.preferencePair(e, i));
 * const { accuracy } = await preferenceLogps(model, tokenizer, pairs); // e.g. 0.62 after SFT
 * ```
 */
export async function preferenceLogps(model: CausalLM, tokenizer: TokenizerLike, records: readonly PreferenceRecord[], options?: Partial<PreferenceLogpsOptions>): Promise<PreferenceLogpsResult> {
  const owner = 'preferenceLogps';
  const o = resolveOptions(owner, options, defaultPreferenceLogpsOptions);
  checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (o.maxLength !== null) checkNumber(owner, 'maxLength', o.maxLength, 'an integer ≥ 2 or null', (v) => Number.isInteger(v) && v >= 2);
  const pairs = records.map((r, i) => tokenizePreference(tokenizer, r, { maxLength: o.maxLength, name: `record ${i}` }));
  const settings = { batchSize: o.batchSize, average: o.average === true, padTokenId: padTokenIdOf(tokenizer) };
  const training = model.training;
  model.eval();
  try {
    const chosen = await exampleLogps(
      model,
      pairs.map((p) => p.chosen),
      settings,
    );
    const rejected = await exampleLogps(
      model,
      pairs.map((p) => p.rejected),
      settings,
    );
    const right = chosen.reduce((n, c, i) => n + (c > rejected[i] ? 1 : 0), 0);
    return { chosen, rejected, accuracy: records.length ? right / records.length : 0 };
  } finally {
    model.train(training);
  }
}
