// Calibration: does the model's probability of its answer match how often the answer is right?
import { PosttrainError, checkNumber, describeValue, resolveOptions, type CausalLM } from '@posttrain/tensor-core';
import { tokenizePromptCompletion, type TokenizerLike } from '@posttrain/data';
import { exampleLogps, inEvalMode, padTokenIdOf } from '@posttrain/policy';
import { exactMatch, type ExactMatchOptions, type ExactMatchTask } from './exact-match.js';

/** One bin of {@link expectedCalibrationError}. */
export interface CalibrationBin {
  /** The bin's interval (lower, upper]; the first bin also holds confidence 0. */
  lower: number;
  upper: number;
  count: number;
  /** Fraction correct in the bin (0 when empty). */
  accuracy: number;
  /** Mean confidence in the bin (0 when empty). */
  confidence: number;
}

/** What {@link expectedCalibrationError} returns. */
export interface CalibrationResult {
  /** Σ_b (|b| / n)·|accuracy_b − confidence_b|. */
  ece: number;
  /** max_b |accuracy_b − confidence_b| over non-empty bins (MCE). */
  mce: number;
  /** Mean confidence and accuracy over all predictions. */
  confidence: number;
  accuracy: number;
  bins: CalibrationBin[];
}

/**
 * Expected calibration error (Naeini et al. 2015; as in Guo et al. 2017, "On Calibration of Modern
 * Neural Networks", eq. 3): the predictions are put into `bins` equal-width confidence bins
 * ((0, 1/B], (1/B, 2/B], …, the first also taking 0), and ECE is the count-weighted mean of
 * |accuracy − mean confidence| over the bins. 0 is perfectly calibrated.
 *
 * @example
 * ```ts
 * expectedCalibrationError([0.9, 0.9, 0.2, 0.2], [true, false, false, false], 2).ece; // (2·|0.5−0.9| + 2·|0−0.2|)/4 = 0.3
 * ```
 */
export function expectedCalibrationError(confidences: ArrayLike<number>, correct: ArrayLike<boolean>, bins = 10): CalibrationResult {
  const owner = 'expectedCalibrationError';
  checkNumber(owner, 'bins', bins, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (confidences.length !== correct.length) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected as many correct flags as confidences (${confidences.length}); got ${correct.length}`);
  const stats = Array.from({ length: bins }, (_, b) => ({ lower: b / bins, upper: (b + 1) / bins, count: 0, right: 0, sum: 0 }));
  for (let i = 0; i < confidences.length; i++) {
    const p = confidences[i];
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected confidences[${i}] to be a probability in [0, 1]; got ${describeValue(p)}`);
    const b = Math.min(bins - 1, Math.max(0, Math.ceil(p * bins) - 1));
    stats[b].count += 1;
    stats[b].sum += p;
    if (correct[i]) stats[b].right += 1;
  }
  const n = confidences.length;
  let ece = 0;
  let mce = 0;
  const out = stats.map(({ lower, upper, count, right, sum }) => {
    const accuracy = count ? right / count : 0;
    const confidence = count ? sum / count : 0;
    if (count) {
      ece += (count / n) * Math.abs(accuracy - confidence);
      mce = Math.max(mce, Math.abs(accuracy - confidence));
    }
    return { lower, upper, count, accuracy, confidence };
  });
  let meanConfidence = 0;
  let right = 0;
  for (let i = 0; i < n; i++) {
    meanConfidence += confidences[i];
    if (correct[i]) right += 1;
  }
  return { ece, mce, confidence: n ? meanConfidence / n : 0, accuracy: n ? right / n : 0, bins: out };
}

/**
 * The probability the model gives each completion after its prompt, EOS included when the
 * tokenizer has one (so "exactly this answer, then stop"): exp of the summed token log-probs, in
 * eval mode, no gradient.
 *
 * @example
 * ```ts
 * const [p] = await answerProbabilities(model, tokenizer, ['abc>'], ['cba']); // P('cba' + EOS | 'abc>')
 * ```
 */
export async function answerProbabilities(
  model: CausalLM,
  tokenizer: TokenizerLike,
  prompts: readonly string[],
  completions: readonly string[],
  options: { batchSize?: number; addSpecialTokens?: boolean } = {},
): Promise<number[]> {
  if (prompts.length !== completions.length) throw new PosttrainError('INVALID_ARGUMENT', `answerProbabilities: expected one completion per prompt (${prompts.length}); got ${completions.length}`);
  const appendEos = tokenizer.eosTokenId !== null && tokenizer.eosTokenId !== undefined;
  const examples = prompts.map((prompt, i) => tokenizePromptCompletion(tokenizer, { prompt, completion: completions[i] }, { appendEos, addSpecialTokens: options.addSpecialTokens ?? true }));
  const logps = await inEvalMode(model, () => exampleLogps(model, examples, { batchSize: options.batchSize ?? 64, average: false, padTokenId: padTokenIdOf(tokenizer) }));
  return Array.from(logps, (l) => Math.exp(l));
}

/** Options of {@link calibration}: exact match's, plus the number of bins. */
export interface CalibrationOptions extends ExactMatchOptions {
  /** Equal-width confidence bins (default 10). */
  bins: number;
}

/** Defaults of {@link calibration}. */
export const defaultCalibrationOptions: Readonly<CalibrationOptions> = Object.freeze({ maxNewTokens: 16, batchSize: 64, addSpecialTokens: true, bins: 10 });

/**
 * Calibration of greedy answers on a verifiable task: each prompt is answered by {@link exactMatch}
 * (greedy, KV cache), the answer's confidence is its probability under the model
 * ({@link answerProbabilities}: the answer and EOS), and ECE is computed over (confidence, correct).
 *
 * @example
 * ```ts
 * const { ece, accuracy, confidence } = await calibration(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
 * ```
 */
export async function calibration<E extends { prompt: string }>(
  model: CausalLM,
  tokenizer: TokenizerLike,
  task: ExactMatchTask<NoInfer<E>>,
  examples: readonly E[],
  options?: Partial<CalibrationOptions>,
): Promise<CalibrationResult & { confidences: number[]; correct: boolean[] }> {
  const { bins, ...rest } = resolveOptions('calibration', options, defaultCalibrationOptions);
  const { samples } = await exactMatch(model, tokenizer, task, examples, rest);
  const confidences = await answerProbabilities(
    model,
    tokenizer,
    samples.map((s) => s.prompt),
    samples.map((s) => s.completion),
    { batchSize: rest.batchSize, addSpecialTokens: rest.addSpecialTokens },
  );
  const correct = samples.map((s) => s.correct);
  return { ...expectedCalibrationError(confidences, correct, bins), confidences, correct };
}
