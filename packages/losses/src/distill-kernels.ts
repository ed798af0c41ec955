// The per-token divergence kernels of distill.ts, each one tape node with a hand-written gradient.
import { tf } from '@posttrain/tensor-core';

// Per-token divergences as single tape nodes (tf.customGrad) on the raw logits: the forward frees
// its [B, T, V] temporaries as it goes and saves only the logits and [B, T] results; the backward
// recomputes the log-softmaxes in a tidy. Composed from tfjs ops, the tape would keep every
// [B, T, V] intermediate (about 18 buffers for the JSD) until the backward. The temperature is
// folded in: d/dlogits = (1/T)·d/d(logits / T).

export type Kernel = (student: tf.Tensor, teacher: tf.Tensor) => tf.Tensor; // [B, T, V] × 2 → [B, T]

/** log softmax(x / T) over the last axis with the max subtracted; two [B, T, V] alive at most. */
function logSoftmaxAt(x: tf.Tensor, temperature: number): tf.Tensor {
  const z = temperature === 1 ? x : tf.div(x, temperature);
  const shifted = tf.sub(z, tf.max(z, -1, true));
  if (z !== x) z.dispose();
  const e = tf.exp(shifted);
  const logNorm = tf.log(tf.sum(e, -1, true)); // [B, T, 1]
  e.dispose();
  const logp = tf.sub(shifted, logNorm);
  shifted.dispose();
  return logp;
}

/** f(...xs), then frees xs: keeps one [B, T, V] temporary from outliving the op that uses it. */
function freeing(f: (...xs: tf.Tensor[]) => tf.Tensor, ...xs: tf.Tensor[]): tf.Tensor {
  const out = f(...xs);
  tf.dispose(xs);
  return out;
}

/** Σ_v a·b over the last axis, freeing a and b. [B, T, V] → [B, T] */
const dot = (a: tf.Tensor, b: tf.Tensor): tf.Tensor => freeing((x) => tf.sum(x, -1), freeing(tf.mul, a, b));

/** dy [B, T] as the [B, T, 1] factor c·dy / T. */
const upstream = (dy: tf.Tensor, temperature: number, c = 1): tf.Tensor => tf.expandDims(tf.mul(dy, c / temperature), -1);

/** A per-token divergence op with a hand-written backward run in a tidy (tfjs would otherwise keep its temporaries to the end of the backward pass). */
function kernel(forward: (a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => tf.Tensor, backward: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[]): Kernel {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    return { value: forward(a, b, save), gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => backward(dy, saved)) };
  }) as Kernel;
}

/**
 * KL(p ‖ q) per token from the logits of p (first) and of q: Σ_v p (log p − log q). Gradients:
 * d/dp-logits = p ⊙ (log p − log q − KL) / T and d/dq-logits = (q − p) / T.
 */
export function klKernel(temperature: number): Kernel {
  return kernel(
    (a, b, save) => {
      const logp = logSoftmaxAt(a, temperature);
      const diff = freeing(tf.sub, logp.clone(), logSoftmaxAt(b, temperature)); // log p − log q
      const value = dot(freeing(tf.exp, logp), diff);
      save([a, b, value]);
      return value;
    },
    (dy, [a, b, kl]) => {
      const k = upstream(dy, temperature);
      const logp = logSoftmaxAt(a, temperature);
      const logq = logSoftmaxAt(b, temperature);
      const centred = freeing((d) => tf.sub(d, tf.expandDims(kl, -1)), tf.sub(logp, logq)); // log p − log q − KL
      const p = freeing(tf.exp, logp);
      const dp = freeing((x) => tf.mul(x, k), freeing(tf.mul, p.clone(), centred));
      const dq = freeing((x) => tf.mul(x, k), freeing(tf.sub, freeing(tf.exp, logq), p));
      return [dp, dq];
    },
  );
}

/**
 * Generalized JSD per token, student first (0 < β < 1). With x = log p_s − log p_t + log((1 − β)/β)
 * and s(·) = softplus: log p_t − log m = −log β − s(x) and log p_s − log m = −log(1 − β) − s(−x), so
 * JSD = H(β) − β·S_t − (1 − β)·S_s with S_t = Σ p_t s(x), S_s = Σ p_s s(−x) and H(β) the binary
 * entropy (Σ p = 1). dJSD/dlog p_s = (1 − β) p_s (log p_s − log m); through the log-softmax,
 * d/dstudent = −(1 − β) p_s ⊙ (s(−x) − S_s) / T and d/dteacher = −β p_t ⊙ (s(x) − S_t) / T.
 */
export function jsdKernel(temperature: number, beta: number): Kernel {
  const offset = Math.log((1 - beta) / beta);
  const entropy = -beta * Math.log(beta) - (1 - beta) * Math.log1p(-beta);
  /** x, log p_s and log p_t, each [B, T, V] (the caller frees them). */
  const parts = (s: tf.Tensor, t: tf.Tensor) => {
    const logps = logSoftmaxAt(s, temperature);
    const logpt = logSoftmaxAt(t, temperature);
    return { logps, logpt, x: freeing((d) => tf.add(d, offset), tf.sub(logps, logpt)) };
  };
  const softplusNeg = (x: tf.Tensor) => freeing(tf.softplus, tf.neg(x));
  return kernel(
    (s, t, save) => {
      const { logps, logpt, x } = parts(s, t);
      const sumT = dot(freeing(tf.exp, logpt), tf.softplus(x)); // [B, T]
      const sumS = dot(freeing(tf.exp, logps), freeing(softplusNeg, x)); // [B, T]
      save([s, t, sumT, sumS]);
      return tf.sub(entropy, tf.add(tf.mul(sumT, beta), tf.mul(sumS, 1 - beta))); // [B, T]
    },
    (dy, [s, t, sumT, sumS]) => {
      const { logps, logpt, x } = parts(s, t);
      const spS = freeing((v) => tf.sub(v, tf.expandDims(sumS, -1)), softplusNeg(x)); // s(−x) − S_s
      const ds = freeing((v) => tf.mul(v, upstream(dy, temperature, beta - 1)), freeing(tf.mul, freeing(tf.exp, logps), spS));
      const spT = freeing((v) => tf.sub(v, tf.expandDims(sumT, -1)), freeing(tf.softplus, x)); // s(x) − S_t
      const dt = freeing((v) => tf.mul(v, upstream(dy, temperature, -beta)), freeing(tf.mul, freeing(tf.exp, logpt), spT));
      return [ds, dt];
    },
  );
}

/**
 * Total variation ½ Σ_v |p_t − p_s| per token, student first. With r = sign(p_t − p_s) (0 at ties,
 * as PyTorch): d/dstudent = −½ p_s ⊙ (r − Σ r p_s) / T and d/dteacher = ½ p_t ⊙ (r − Σ r p_t) / T.
 */
export function tvKernel(temperature: number): Kernel {
  const probs = (x: tf.Tensor) => freeing(tf.exp, logSoftmaxAt(x, temperature));
  return kernel(
    (s, t, save) => {
      save([s, t]);
      return tf.mul(tf.sum(freeing(tf.abs, freeing(tf.sub, probs(t), probs(s))), -1), 0.5); // [B, T]
    },
    (dy, [s, t]) => {
      const ps = probs(s);
      const pt = probs(t);
      const r = freeing(tf.sign, tf.sub(pt, ps));
      // ±½ p ⊙ (r − Σ r p) / T, freeing p
      const grad = (p: tf.Tensor, c: number) => {
        const centred = tf.sub(r, tf.expandDims(dot(r.clone(), p.clone()), -1));
        return freeing((v) => tf.mul(v, upstream(dy, temperature, c)), freeing(tf.mul, p, centred));
      };
      return [grad(ps, -0.5), grad(pt, 0.5)];
    },
  );
}

/** The float32 value nearest −∞: a teacher log-prob of −∞ is clamped to it inside the product, so 0 · (log 0 − …) counts as 0. */
const LOWEST = -3.4028234663852886e38;

/**
 * Forward KL from a teacher's top-K log-probs to the student, per token: Σ_k q_k (log q_k − log p_s[id_k])
 * with q = softmax(teacherLogprobs / T) over the K entries and log p_s = log softmax(student / T) over
 * the V logits, read at `flat` ([B, T, K] int32, (b·T + t)·V + id_k, the flat indices into the
 * student's [B·T·V] logits). One tape node whose only input is the student's logits; the teacher's
 * tensors are saved, not differentiated. d/dstudent = (p_s − Q) / T with Q = q written at the ids
 * (a scatter that overwrites, so each row's ids must be distinct). At K = V, with ids 0 … V − 1 and
 * the teacher's logits as its log-probs, every op is {@link klKernel}'s (teacher first) on the same
 * values, so the two agree bit for bit.
 */
export function topKKlKernel(temperature: number, flat: tf.Tensor, teacherLogprobs: tf.Tensor): (student: tf.Tensor) => tf.Tensor {
  /** x[at] for x [B, T, V] → [B, T, K], without a second [B, T, V] (the reshape shares x's buffer and is freed here). */
  const pick = (x: tf.Tensor, at: tf.Tensor) => {
    const all = tf.reshape(x, [x.size]);
    const picked = tf.reshape(tf.gather(all, tf.reshape(at, [at.size])), at.shape);
    all.dispose();
    return picked;
  };
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
    // log p_s[id] = (z − max z)[id] − log Σ exp(z − max z), z = x / T: logSoftmaxAt's values at the ids.
    const z = temperature === 1 ? x : tf.div(x, temperature);
    const shifted = tf.sub(z, tf.max(z, -1, true)); // [B, T, V]
    if (z !== x) z.dispose();
    const picked = pick(shifted, flat); // [B, T, K]
    const logNorm = freeing(
      tf.log,
      freeing((e) => tf.sum(e, -1, true), freeing(tf.exp, shifted)),
    ); // [B, T, 1]
    const logps = freeing(tf.sub, picked, logNorm); // [B, T, K]
    const logq = logSoftmaxAt(teacherLogprobs, temperature); // [B, T, K]
    const value = dot(tf.exp(logq), freeing(tf.sub, tf.maximum(logq, LOWEST), logps)); // [B, T]
    save([x, logq, flat]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xs, lq, at] = saved;
          const p = freeing(tf.exp, logSoftmaxAt(xs, temperature)); // [B, T, V]
          const all = tf.reshape(p, [p.size]); // shares p's buffer
          const atIds = tf.sub(pick(p, at), tf.exp(lq)); // [B, T, K] p_s − q at the ids
          const written = tf.tensorScatterUpdate(all, tf.reshape(at, [at.size, 1]), tf.reshape(atIds, [atIds.size])); // [B·T·V]
          tf.dispose([p, all]);
          return freeing(
            (g) => tf.mul(g, upstream(dy, temperature)),
            freeing((w) => tf.reshape(w, xs.shape), written),
          );
        }),
    };
  }) as (student: tf.Tensor) => tf.Tensor;
}
