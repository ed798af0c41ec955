// Token- and sequence-level log-probs of labels under a causal LM's logits, and the entropy of
// its predictive distribution: log-softmax with the max subtracted, the label's logit by a gather.
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';

/** Options of {@link tokenLogprobs}. */
export interface TokenLogprobsOptions {
  /** Labels equal to this get log-prob 0 (and no gradient). Default −100, PyTorch's and Hugging Face's. */
  ignoreIndex: number;
}

/** Defaults of {@link tokenLogprobs}. */
export const defaultTokenLogprobsOptions: Readonly<TokenLogprobsOptions> = Object.freeze({ ignoreIndex: -100 });

/** What {@link tokenLogprobs} returns; the caller disposes it. */
export interface TokenLogprobsOutput {
  /** `[B, T]` log p(labels[b, t] | logits[b, t]), 0 where the label is `ignoreIndex`. */
  logps: tf.Tensor2D;
}

/** Options of {@link sequenceLogprobs}. */
export interface SequenceLogprobsOptions {
  /** Divide each row's sum by its token count (the length-normalised log-prob of IPO, SimPO, ORPO). Default false. */
  average: boolean;
  /** Labels equal to this are not counted, whatever the mask says. Default −100. */
  ignoreIndex: number;
}

/** Defaults of {@link sequenceLogprobs}. */
export const defaultSequenceLogprobsOptions: Readonly<SequenceLogprobsOptions> = Object.freeze({ average: false, ignoreIndex: -100 });

/** What {@link sequenceLogprobs} returns; the caller disposes both tensors. */
export interface SequenceLogprobsOutput {
  /** `[B]` Σ of the counted tokens' log-probs (their mean when `average`); 0 for a row with none. */
  logps: tf.Tensor1D;
  /** `[B]` float32 count of the counted tokens (no gradient). */
  tokens: tf.Tensor1D;
}

/** The float32 value nearest −∞: 0 · LOWEST is 0 where 0 · (−∞) would be NaN. */
const LOWEST = -3.4028234663852886e38;

/**
 * logsumexp over the last axis with the max subtracted, `[..., V] → [...]`, as one tape node: the
 * forward's `[..., V]` temporaries are freed at once instead of being kept for the backward pass,
 * which recomputes softmax(x) = exp(x − lse) from x and the `[...]` result.
 */
const logSumExpLastAxis = /* @__PURE__ */ tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor; // [..., V]
  const save = args[1] as tf.GradSaveFunc;
  const max = tf.max(x, -1, true); // [..., 1]
  const shifted = tf.sub(x, max); // [..., V]
  const e = tf.exp(shifted);
  shifted.dispose(); // so no more than one [..., V] temporary outlives the op that makes it
  const lse = tf.add(tf.log(tf.sum(e, -1, true)), max); // [..., 1]
  save([x, lse]);
  return {
    value: tf.squeeze(lse, [-1]),
    // tfjs runs gradFuncs outside any tidy: free the [..., V] temporaries here, not at the end of backprop.
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => tf.mul(tf.exp(tf.sub(saved[0], saved[1])), tf.expandDims(dy, -1))),
  };
});

/**
 * Entropy over the last axis, `[..., V] → [...]`, in nats, as one tape node (see
 * logSumExpLastAxis). H = log s − Σ e·z / s with z = x − max, e = exp(z), s = Σ e; dH/dx = −p (log p + H).
 * −∞ logits are clamped to LOWEST inside the products only, so 0 · log 0 counts as 0, forward and back.
 */
const entropyLastAxis = /* @__PURE__ */ tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor; // [..., V]
  const save = args[1] as tf.GradSaveFunc;
  const max = tf.max(x, -1, true); // [..., 1]
  const z = tf.sub(x, max); // [..., V], ≤ 0
  const e = tf.exp(z);
  const s = tf.sum(e, -1, true); // [..., 1]
  const logS = tf.log(s);
  const h = tf.sub(logS, tf.div(tf.sum(tf.mul(e, tf.maximum(z, LOWEST)), -1, true), s)); // [..., 1]
  save([x, tf.add(logS, max), h]);
  return {
    value: tf.squeeze(h, [-1]),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [xs, lse, hs] = saved;
        const logp = tf.sub(xs, lse); // [..., V]
        const dH = tf.neg(tf.mul(tf.exp(logp), tf.add(tf.maximum(logp, LOWEST), hs)));
        return tf.mul(dH, tf.expandDims(dy, -1));
      }),
  };
});

/**
 * log p(target) at positions 0 … T′ − 1 of `logits` ([B, T, V], T′ ≤ T) as logit − logsumexp: the
 * label's logit by a gather on the flattened [B·T·V] array with int32 indices (b·T + t)·V + label, so
 * nothing else of size [B, T, V] is made (no one-hot, no log-softmax copy, no slice of the logits) and
 * a −∞ logit elsewhere in the row does not turn the result into NaN. Positions where `keep` is false
 * give 0 and no gradient. Shared by tokenLogprobs, sequenceLogprobs and causalLmLoss; call in a tidy.
 * Indices are int32, so B·T·V must stay below 2³¹.
 * @internal shared with causal-lm-loss.ts; not exported from index.ts.
 */
export function pickLogprobs(logits: tf.Tensor, targets: tf.Tensor, keep: tf.Tensor): tf.Tensor2D {
  const [B, T, V] = logits.shape as [number, number, number];
  const used = targets.shape[1] as number;
  const lse = logSumExpLastAxis(logits); // [B, T]
  const lseUsed = used === T ? lse : tf.slice(lse, [0, 0], [B, used]); // [B, T′]
  const safe = tf.where(keep, targets, tf.zerosLike(targets)); // [B, T′] int32
  const rows = tf.add(tf.mul(tf.reshape(tf.range(0, B, 1, 'int32'), [B, 1]), tf.scalar(T, 'int32')), tf.reshape(tf.range(0, used, 1, 'int32'), [1, used])); // [B, T′]
  const flat = tf.add(tf.mul(rows, tf.scalar(V, 'int32')), safe); // [B, T′]
  const picked = tf.reshape(tf.gather(tf.reshape(logits, [B * T * V]), tf.reshape(flat, [B * used])), [B, used]);
  const logp = tf.sub(picked, lseUsed);
  return tf.where(keep, logp, tf.zerosLike(logp)) as tf.Tensor2D;
}

/**
 * `[B]` zeros that depend on `logits` [B, T, V], for T < 2 where no token is scored: `tf.grad` then
 * finds a path and returns a zero gradient instead of throwing. (A sum over an empty axis is not an
 * option: the wasm backend leaves it uninitialised.) NaN-free whatever the logits hold.
 * @internal shared with causal-lm-loss.ts; not exported from index.ts.
 */
export function zerosFrom(logits: tf.Tensor): tf.Tensor1D {
  const B = logits.shape[0];
  const first = tf.reshape(tf.slice(logits, [0, 0, 0], [B, 1, 1]), [B]);
  return tf.where(tf.zeros([B], 'bool'), first, tf.zeros([B])) as tf.Tensor1D;
}

/**
 * Labels as int32 (a float tensor of integer ids is cast).
 * @internal shared with causal-lm-loss.ts; not exported from index.ts.
 */
export function asIds(labels: tf.Tensor): tf.Tensor {
  return labels.dtype === 'int32' ? labels : tf.cast(labels, 'int32');
}

/**
 * Throws SHAPE_MISMATCH unless logits are [B, T, V] and every other input is [B, T].
 * @internal shared with causal-lm-loss.ts; not exported from index.ts.
 */
export function checkTokenShapes(owner: string, logits: tf.Tensor, others: Record<string, tf.Tensor>, help: string): void {
  const bad = logits.rank !== 3 || Object.values(others).some((t) => t.rank !== 2 || t.shape[0] !== logits.shape[0] || t.shape[1] !== logits.shape[1]);
  if (bad) {
    const names = Object.keys(others);
    const expected = names.map((n) => `${n} [B, T]`).join(' and ');
    const got = [formatShape(logits.shape), ...Object.values(others).map((t) => formatShape(t.shape))].join(' and ');
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected logits [B, T, V] and ${expected}; got ${got}`, { help });
  }
}

const integer = (v: number) => Number.isInteger(v);

/**
 * The log-prob of each label under the logits at the same position — no shift: `logps[b, t] =
 * log softmax(logits[b, t])[labels[b, t]]`. For a causal LM, whose logits at t predict token t + 1,
 * the caller aligns them first (or uses {@link sequenceLogprobs}, which shifts). Labels equal to
 * `ignoreIndex` (−100) give 0 and no gradient; other labels must lie in [0, V) (not checked: that
 * would read the labels back from the device). TRL's `selective_log_softmax`: logit − logsumexp with
 * the max subtracted, the label's logit gathered, so it stays finite for logits of ±100, large V and
 * −∞ entries, and makes no [B, T, V] tensor but logsumexp's one temporary (Radford et al. 2018, eq. 1,
 * the term log P(u_i | u_<i)).
 *
 * Returns `{ logps }`, like {@link sequenceLogprobs}, so both read the same way.
 *
 * @example
 * ```ts
 * const logits = tf.randomNormal([2, 4, 50]);                                      // [B, T, V]
 * const labels = tf.tensor2d([[3, 7, 1, -100], [4, 4, 9, 2]], [2, 4], 'int32');  // [B, T], −100 ignored
 * const { logps } = tokenLogprobs(logits, labels);                                  // [B, T], logps[0, 3] = 0
 * ```
 */
export function tokenLogprobs(logits: tf.Tensor, labels: tf.Tensor, options?: Partial<TokenLogprobsOptions>): TokenLogprobsOutput {
  const { ignoreIndex } = resolveOptions('tokenLogprobs', options, defaultTokenLogprobsOptions);
  checkNumber('tokenLogprobs', 'ignoreIndex', ignoreIndex, 'an integer', integer);
  checkTokenShapes('tokenLogprobs', logits, { labels }, 'pass logits and labels of the same positions (no shift here); labels are int32 token ids, −100 where no log-prob is wanted');
  return tf.tidy(() => {
    const ids = asIds(labels); // [B, T]
    const keep = tf.notEqual(ids, tf.scalar(ignoreIndex, 'int32'));
    return { logps: pickLogprobs(logits, ids, keep) };
  });
}

/**
 * Summed (or averaged) log-prob of each sequence's completion, shifted as in causal-LM training:
 * `logits[:, t − 1]` scores `labels[:, t]` for t = 1 … T − 1, and token t counts when `mask[:, t]` is
 * 1 and `labels[:, t]` is not `ignoreIndex`. So `mask` lines up with `labels` (both are the input ids'
 * positions: mask = the completion mask, 1 on completion tokens, 0 on prompt and padding), exactly
 * TRL's DPO `concatenated_forward`, which rolls its loss mask with the labels; `mask[:, 0]` is unused.
 * `mask` is float32 0/1 (a bool or int32 mask is cast). `average` divides by the row's count, as
 * IPO, SimPO and ORPO do. A row with no counted token gives 0 and no NaN. This is log π(y | x) of
 * DPO (Rafailov et al. 2023, eq. 7), the sum of {@link tokenLogprobs} over the completion.
 *
 * @example
 * ```ts
 * const logits = tf.randomNormal([2, 5, 50]);                                        // [B, T, V] of the policy
 * const inputIds = tf.tensor2d([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]], [2, 5], 'int32'); // prompt 5 6, then the completion
 * const completionMask = tf.tensor2d([[0, 0, 1, 1, 1], [0, 0, 1, 0, 0]]);           // [B, T], 0 on prompt and padding
 * const { logps, tokens } = sequenceLogprobs(logits, inputIds, completionMask);      // [B] sums, tokens [3, 1]
 * const { logps: means } = sequenceLogprobs(logits, inputIds, completionMask, { average: true });
 * ```
 */
export function sequenceLogprobs(logits: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor, options?: Partial<SequenceLogprobsOptions>): SequenceLogprobsOutput {
  const { average, ignoreIndex } = resolveOptions('sequenceLogprobs', options, defaultSequenceLogprobsOptions);
  if (typeof average !== 'boolean') {
    throw new PosttrainError('INVALID_OPTION', `sequenceLogprobs: expected average to be true or false; got ${JSON.stringify(average) ?? String(average)}`);
  }
  checkNumber('sequenceLogprobs', 'ignoreIndex', ignoreIndex, 'an integer', integer);
  checkTokenShapes('sequenceLogprobs', logits, { labels, mask }, 'pass the unshifted input ids as labels and a completion mask of the same [B, T] (1 on completion tokens); the shift happens inside');
  const [B, T] = labels.shape as [number, number];
  return tf.tidy(() => {
    if (T < 2) return { logps: zerosFrom(logits), tokens: tf.zeros([B]) as tf.Tensor1D }; // no next token
    const targets = tf.slice(asIds(labels), [0, 1], [B, T - 1]); // [B, T − 1]
    const counted = tf.greater(tf.slice(tf.cast(mask, 'float32'), [0, 1], [B, T - 1]), 0);
    const keep = tf.logicalAnd(counted, tf.notEqual(targets, tf.scalar(ignoreIndex, 'int32'))); // [B, T − 1]
    const sum = tf.sum(pickLogprobs(logits, targets, keep), 1) as tf.Tensor1D; // [B]
    const tokens = tf.sum(tf.cast(keep, 'float32'), 1) as tf.Tensor1D; // [B]
    return { logps: average ? (tf.div(sum, tf.maximum(tokens, 1)) as tf.Tensor1D) : sum, tokens };
  });
}

/**
 * Entropy of the softmax over the last axis, in nats: `[..., V] → [...]`, H = logsumexp(x) − Σ
 * softmax(x)·x (TRL's `entropy_from_logits`; Shannon 1948), with the max subtracted and 0 · log 0 = 0,
 * so logits of ±100 and −∞ entries (masked vocabulary) stay finite, values and gradients. Differentiable
 * (an entropy bonus can be trained on); its gradient is −p (log p + H).
 *
 * @example
 * ```ts
 * const h = entropyFromLogits(tf.randomNormal([2, 5, 50])); // [B, T, V] → [B, T], each ≤ log 50
 * ```
 */
export function entropyFromLogits(logits: tf.Tensor): tf.Tensor {
  if (logits.rank < 1 || logits.shape[logits.rank - 1] < 1) {
    throw new PosttrainError('SHAPE_MISMATCH', `entropyFromLogits: expected logits [..., V] with V ≥ 1; got ${formatShape(logits.shape)}`, {
      help: 'pass logits whose last axis is the vocabulary, e.g. a model output [B, T, V]',
    });
  }
  return tf.tidy(() => entropyLastAxis(logits));
}
