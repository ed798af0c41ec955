// One row of next-token logits → the distribution a sampler draws from, and the draw: temperature,
// then top-k, then top-p (nucleus), then min-p, in the order Hugging Face transformers applies its
// warpers (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper).
import type { Rng } from '@posttrain/tensor-core';

/**
 * The filters of a sampling step.
 *
 * @example
 * ```ts
 * const filters: SamplingFilters = { temperature: 0.7, topK: 50, topP: 0.9, minP: 0 };
 * ```
 */
export interface SamplingFilters {
  /** Divides the logits (> 0). */
  temperature: number;
  /** Keep the k most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the most likely tokens whose probabilities sum to at least p (Holtzman et al. 2020); 1 keeps all. */
  topP: number;
  /** Keep tokens whose probability is at least minP times the most likely one's (Nguyen et al. 2024); 0 keeps all. */
  minP: number;
}

/**
 * The sampling distribution over the vocabulary, `[V]` probabilities summing to 1 with zeros on
 * filtered tokens: softmax(logits / temperature), restricted to the top-k, then to the smallest set
 * of most likely tokens whose mass reaches topP (a token is dropped when the mass of the tokens
 * less likely than or as likely as it is ≤ 1 − topP, as transformers' TopPLogitsWarper), then to the
 * tokens with p ≥ minP · max p, renormalised. The most likely token is always kept. Ties are
 * broken by the lower token id. Computed in float64.
 *
 * @example
 * ```ts
 * const probs = samplingDistribution(new Float32Array([2, 1, 0, -1]), { temperature: 1, topK: 0, topP: 0.8, minP: 0 });
 * // probs[0] + probs[1] === 1; probs[2] === probs[3] === 0
 * ```
 */
export function samplingDistribution(logits: ArrayLike<number>, filters: SamplingFilters): Float64Array {
  const { order, weights, total } = filtered(logits, filters);
  const probs = new Float64Array(logits.length);
  order.forEach((token, k) => {
    probs[token] = weights[k] / total;
  });
  return probs;
}

/** The kept tokens by decreasing probability, their unnormalised weights and the weights' sum. */
function filtered(logits: ArrayLike<number>, { temperature, topK, topP, minP }: SamplingFilters): { order: number[]; weights: number[]; total: number } {
  const n = logits.length;
  // Tokens by decreasing logit (ties: lower id first).
  let order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if (topK > 0 && topK < n) order = order.slice(0, topK);
  const max = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - max) / temperature));
  const sum = (count: number) => weights.slice(0, count).reduce((a, b) => a + b, 0);
  let kept = order.length;
  if (topP < 1) {
    // Token k stays while the mass of the tokens more likely than it is < p: the smallest head of mass ≥ p.
    const total = sum(kept);
    let head = 0;
    for (let k = 0; k < kept; k++) {
      if (k > 0 && head >= topP) {
        kept = k;
        break;
      }
      head += weights[k] / total;
    }
  }
  if (minP > 0) {
    // weights[0] is the most likely token's, so the threshold needs no normalisation.
    const below = weights.findIndex((w, k) => k < kept && w < minP * weights[0]);
    if (below > 0) kept = below;
  }
  return { order: order.slice(0, kept), weights: weights.slice(0, kept), total: sum(kept) };
}

/** The index of the largest value (the first of equal ones). */
export function argMax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** log softmax(values)[index], in float64 with the max subtracted. */
export function logSoftmaxAt(values: ArrayLike<number>, index: number, temperature = 1): number {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += Math.exp((values[i] - max) / temperature);
  return (values[index] - max) / temperature - Math.log(sum);
}

/**
 * Draws one token from the {@link samplingDistribution} of `logits` with one uniform draw of `rng`.
 * Without filters it makes one pass for the normaliser and one to draw, with no sort.
 */
export function sampleToken(logits: ArrayLike<number>, filters: SamplingFilters, rng: Rng): number {
  if (filters.topK === 0 && filters.topP === 1 && filters.minP === 0) {
    let max = -Infinity;
    for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
    let total = 0;
    for (let i = 0; i < logits.length; i++) total += Math.exp((logits[i] - max) / filters.temperature);
    let u = rng.uniform() * total;
    for (let i = 0; i < logits.length; i++) {
      u -= Math.exp((logits[i] - max) / filters.temperature);
      if (u < 0) return i;
    }
    return argMax(logits);
  }
  const { order, weights, total } = filtered(logits, filters);
  let u = rng.uniform() * total;
  for (let k = 0; k < order.length; k++) {
    u -= weights[k];
    if (u < 0) return order[k];
  }
  return order[order.length - 1];
}
