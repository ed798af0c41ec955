// Perplexity of a causal LM on a long token stream, by sliding windows (Hugging Face's perplexity guide).
import { PosttrainError, checkNumber, describeValue as describe, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { causalLmLoss } from '@posttrain/losses';
import { inEvalMode } from './reference.js';

/** Options of {@link perplexity}. */
export interface PerplexityOptions {
  /** Tokens the model sees at once (Hugging Face's `max_length`); null: the model's `maxPositions`. */
  contextLength: number | null;
  /** How far each window starts after the previous one, in [1, contextLength]; null: `contextLength` (disjoint windows). */
  stride: number | null;
  /** Windows per forward pass. */
  batchSize: number;
}

/** Defaults of {@link perplexity}: the model's whole context, disjoint windows, 8 windows a batch. */
export const defaultPerplexityOptions: Readonly<PerplexityOptions> = Object.freeze({ contextLength: null, stride: null, batchSize: 8 });

/** What {@link perplexity} returns. */
export interface PerplexityResult {
  /** exp(nll). */
  perplexity: number;
  /** Mean negative log-likelihood of the scored tokens, nats per token. */
  nll: number;
  /** How many tokens were scored. */
  tokens: number;
}

/** One window of the stream: its tokens [begin, end), the last `target` of which are scored. */
interface Window {
  begin: number;
  end: number;
  target: number;
}

/**
 * The windows of Hugging Face's sliding-window evaluation: starts at 0, stride, 2·stride, … each of
 * up to `contextLength` tokens; of each window only the tokens past the previous window's end are
 * targets, and the loop stops at the first window that reaches the end of the stream.
 */
function slidingWindows(length: number, contextLength: number, stride: number): Window[] {
  const windows: Window[] = [];
  let previousEnd = 0;
  for (let begin = 0; begin < length; begin += stride) {
    const end = Math.min(begin + contextLength, length);
    windows.push({ begin, end, target: end - previousEnd });
    previousEnd = end;
    if (end === length) break;
  }
  return windows;
}

/**
 * Perplexity of `model` on a token stream longer than its context, by the sliding-window
 * evaluation of Hugging Face's perplexity guide ("Perplexity of fixed-length models"): windows of
 * `contextLength` tokens start every `stride` tokens; in each, only the tokens that the previous
 * window did not reach are scored (the others are context, label −100), each predicted from all
 * the window's tokens before it; a window's first token is never a target (nothing precedes it in
 * the window), so disjoint windows (`stride = contextLength`) score `length − windows` tokens and a
 * smaller stride gives each scored token more context at the cost of more forward passes. `nll` is
 * the mean over every scored token (summed in float64 across windows, not a mean of window means)
 * and `perplexity` = exp(nll); a stream no longer than the context is one window scoring
 * `length − 1` tokens. Runs in eval mode (dropout off; the model's mode is restored after), records
 * no gradient and leaves no tensor behind. Ids are checked to be integers in [0, vocabSize).
 *
 * @example
 * ```ts
 * const ids = new ByteTokenizer().encode(heldOutText, { addSpecialTokens: false });
 * const { perplexity: ppl, nll, tokens } = await perplexity(model, ids, { contextLength: 128, stride: 64 });
 * const bitsPerByte = nll / Math.LN2; // byte tokens: nats per token → bits per byte
 * ```
 */
export async function perplexity(model: CausalLM, tokenIds: readonly number[] | Int32Array, options?: Partial<PerplexityOptions>): Promise<PerplexityResult> {
  const owner = 'perplexity';
  const o = resolveOptions(owner, options, defaultPerplexityOptions);
  const maxPositions = model.config.maxPositions;
  const contextLength =
    o.contextLength === null
      ? maxPositions
      : checkNumber(
          owner,
          'contextLength',
          o.contextLength,
          `an integer in [2, ${maxPositions}] (the model's maxPositions), or null for ${maxPositions}`,
          (v) => Number.isInteger(v) && v >= 2 && v <= maxPositions,
        );
  const stride =
    o.stride === null
      ? contextLength
      : checkNumber(owner, 'stride', o.stride, `an integer in [1, contextLength = ${contextLength}], or null for contextLength`, (v) => Number.isInteger(v) && v >= 1 && v <= contextLength);
  const batchSize = checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  const ids = checkTokenIds(owner, tokenIds, model.config.vocabSize);

  const windows = slidingWindows(ids.length, contextLength, stride);
  let nllSum = 0;
  let tokens = 0;
  await inEvalMode(model, async () => {
    // Consecutive windows of one length share a batch (only the last window can be shorter).
    for (let i = 0; i < windows.length; ) {
      const length = windows[i].end - windows[i].begin;
      let j = i;
      while (j < windows.length && j - i < batchSize && windows[j].end - windows[j].begin === length) j++;
      const batch = windows.slice(i, j);
      const input = new Int32Array(batch.length * length);
      const labels = new Int32Array(batch.length * length);
      batch.forEach((w, b) => {
        for (let t = 0; t < length; t++) {
          input[b * length + t] = ids[w.begin + t];
          labels[b * length + t] = t < length - w.target ? -100 : ids[w.begin + t];
        }
      });
      const [lossSum, count] = tf.tidy(() => {
        const inputIds = tf.tensor2d(input, [batch.length, length], 'int32');
        const { logits } = model.forward(inputIds);
        const out = causalLmLoss(logits, tf.tensor2d(labels, [batch.length, length], 'int32'), { reduction: 'sum' });
        return [out.lossSum, out.tokens];
      });
      try {
        nllSum += (await lossSum.data())[0];
        tokens += (await count.data())[0];
      } finally {
        lossSum.dispose();
        count.dispose();
      }
      i = j;
    }
  });
  const nll = nllSum / tokens;
  return { perplexity: Math.exp(nll), nll, tokens };
}

/** The ids as an Int32Array, after checking there are at least 2 and each is an integer in [0, vocabSize). */
function checkTokenIds(owner: string, tokenIds: readonly number[] | Int32Array, vocabSize: number): Int32Array {
  if (!(tokenIds instanceof Int32Array) && !Array.isArray(tokenIds)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected tokenIds to be an array or Int32Array of token ids; got ${describe(tokenIds)}`);
  }
  if (tokenIds.length < 2) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected tokenIds to hold at least 2 tokens (the first is never scored); got ${tokenIds.length}`);
  }
  for (let i = 0; i < tokenIds.length; i++) {
    const id = tokenIds[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected tokenIds[${i}] to be an integer in [0, ${vocabSize}) (the model's vocabSize); got ${describe(id)}`);
    }
  }
  return tokenIds instanceof Int32Array ? tokenIds : Int32Array.from(tokenIds);
}
