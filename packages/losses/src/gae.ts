// Generalized advantage estimation over the tokens of a batch of responses.
import { checkNumber, resolveOptions, stopGradient, tf } from '@posttrain/tensor-core';
import { checkTokenMatrices } from './ppo.js';

/** Options of {@link gae}. */
export interface GaeOptions {
  /** Discount γ per token, in [0, 1]. TRL's PPO default 1. */
  gamma: number;
  /** GAE's λ, in [0, 1]: 0 gives the one-step TD error, 1 the Monte-Carlo return minus the value. TRL's `lam`, default 0.95. */
  lambda: number;
}

export const defaultGaeOptions: Readonly<GaeOptions> = Object.freeze({ gamma: 1, lambda: 0.95 });

/** What {@link gae} returns: new `[B, T]` tensors, without gradient, the caller disposes. */
export interface GaeOutput {
  /** Â_t, 0 at masked positions. Not whitened: TRL whitens them next (`maskedWhiten`). */
  advantages: tf.Tensor2D;
  /** Â_t + V_t, the value head's regression target; 0 at masked positions. */
  returns: tf.Tensor2D;
}

/**
 * Generalized advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control
 * Using Generalized Advantage Estimation", arXiv 1506.02438, eq. 16), by a reverse scan over the tokens:
 * `δ_t = r_t + γ·V_{t+1} − V_t`, `Â_t = δ_t + γλ·Â_{t+1}`, and `returns = Â + V`.
 *
 * Masked steps are skipped, not treated as steps: the scan carries `V_{t+1}` and `Â_{t+1}` over
 * them from the next unmasked token, and after the last unmasked token of a row both are 0 —
 * bootstrapping stops at the end of the response, whose final reward is the terminal one. For
 * a right- or left-padded mask this is exactly TRL's PPO scan on `rewards·mask` and
 * `values·mask`; a mask with holes (e.g. tool output inside a multi-turn response) is also
 * handled, the masked tokens being invisible to the recursion. Rewards and values at masked
 * positions may hold anything. TRL scores the response at the position after its last token
 * and fits values there too (its `padding_mask_p1`): to reproduce that, pass that longer mask
 * here and to {@link ppoValueLoss}, and the response mask to {@link ppoPolicyLoss}.
 *
 * Rewards are per token (the KL penalty on every token, the score on the last one). The outputs
 * carry no gradient (they are targets); one `[B]`-sized step per token, so T up to a few hundred
 * is cheap. Masks are float32 0/1 (bool is cast).
 *
 * @example
 * ```ts
 * const { advantages, returns } = gae(rewards, values, mask, { gamma: 1, lambda: 0.95 }); // [B, T] each
 * ```
 */
export function gae(rewards: tf.Tensor, values: tf.Tensor, mask: tf.Tensor, options?: Partial<GaeOptions>): GaeOutput {
  const owner = 'gae';
  const { gamma, lambda } = resolveOptions(owner, options, defaultGaeOptions);
  checkNumber(owner, 'gamma', gamma, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  checkNumber(owner, 'lambda', lambda, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  const [B, T] = checkTokenMatrices(
    owner,
    { rewards, values, mask },
    'pass per-token rewards [B, T] (KL penalty per token, score at the last one), the value head output [B, T] and the response mask [B, T]',
  );
  return tf.tidy(() => {
    if (T === 0) return { advantages: tf.zeros([B, 0]) as tf.Tensor2D, returns: tf.zeros([B, 0]) as tf.Tensor2D };
    const m = tf.cast(mask, 'float32');
    const keep = tf.greater(m, 0); // [B, T]
    const zeros = tf.zerosLike(m);
    const r = tf.where(keep, tf.cast(rewards, 'float32'), zeros);
    const v = tf.where(keep, tf.cast(values, 'float32'), zeros);
    const rs = tf.unstack(r, 1); // T × [B]
    const vs = tf.unstack(v, 1);
    const ks = tf.unstack(m, 1).map((mt) => tf.greater(mt, 0));
    let nextValue: tf.Tensor = tf.zeros([B]);
    let nextAdvantage: tf.Tensor = tf.zeros([B]);
    const out: tf.Tensor[] = new Array(T);
    for (let t = T - 1; t >= 0; t--) {
      const delta = tf.sub(tf.add(rs[t], tf.mul(nextValue, gamma)), vs[t]);
      const a = tf.add(delta, tf.mul(nextAdvantage, gamma * lambda));
      out[t] = tf.where(ks[t], a, tf.zerosLike(a));
      nextAdvantage = tf.where(ks[t], a, nextAdvantage);
      nextValue = tf.where(ks[t], vs[t], nextValue);
    }
    const advantages = tf.stack(out, 1); // [B, T]
    const returns = tf.where(keep, tf.add(advantages, v), zeros);
    return { advantages: stopGradient(advantages) as tf.Tensor2D, returns: stopGradient(returns) as tf.Tensor2D };
  });
}
