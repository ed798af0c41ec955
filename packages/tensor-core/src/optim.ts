import { tf } from './tf.js';
import { PosttrainError } from './errors.js';
import { checkNumber, describe, resolveOptions } from './options.js';
import { checkGrads, checkLr, checkParams, parseStateDict } from './optim-state.js';

/**
 * What every optimiser of posttrain does: update parameters (a map of path → `tf.Variable`, as
 * `Module.namedParameters()` gives) from gradients keyed by the same paths, with a learning rate a
 * schedule may set before each step, and a state dict that resumes training exactly.
 *
 * @example
 * ```ts
 * const optimizer: Optimizer = new AdamW(model.trainableParameters(), { lr: 3e-4 });
 * const schedule = cosineSchedule({ lr: 3e-4, warmupSteps: 10, totalSteps: 100 });
 * for (let step = 0; step < 100; step++) {
 *   const { value, grads } = valueAndGrads(() => model.loss(batch), optimizer.params);
 *   optimizer.lr = schedule(step);
 *   optimizer.step(grads);
 *   value.dispose(); tf.dispose([...grads.values()]);
 * }
 * ```
 */
export interface Optimizer {
  /** The learning rate of the next {@link step}; must be ≥ 0. Schedules set it before each step. */
  lr: number;
  /** The parameters being optimised, by path. */
  readonly params: ReadonlyMap<string, tf.Variable>;
  /**
   * Updates every parameter whose path appears in `grads` (others are left alone and keep their
   * state). The caller keeps ownership of `grads`. Throws, naming the path, for a gradient whose
   * path is not a parameter or whose shape differs from the parameter's; nothing is updated then.
   */
  step(grads: ReadonlyMap<string, tf.Tensor>): void;
  /**
   * The optimiser's state as new tensors the caller owns (dispose them after saving), keyed
   * `<kind>.<path>` as in PyTorch's per-parameter state (`exp_avg.model.embed_tokens.weight`).
   * Hyper-parameters are not included: build the resuming optimiser with the same options.
   */
  stateDict(): Record<string, tf.Tensor>;
  /**
   * Replaces the state with `state` (as {@link stateDict} returns it; the caller keeps ownership).
   * Throws, listing the offending keys, for a key that names no parameter or state kind, a tensor
   * of the wrong shape, or an incomplete entry; nothing is changed then.
   */
  loadStateDict(state: Record<string, tf.Tensor>): void;
  /** Disposes the optimiser's state (not the parameters). */
  dispose(): void;
}

/**
 * Options of {@link AdamW}; the defaults ({@link defaultAdamWOptions}) are torch.optim.AdamW's.
 *
 * @example
 * ```ts
 * const options: Partial<AdamWOptions> = { lr: 3e-4, betas: [0.9, 0.95], weightDecay: 0.1 };
 * const optimizer = new AdamW(model.trainableParameters(), options);
 * ```
 */
export interface AdamWOptions {
  /** Learning rate, ≥ 0 (default 1e-3). */
  lr: number;
  /** Decay rates of the first and second moment estimates, each in [0, 1) (default [0.9, 0.999]). */
  betas: readonly [number, number];
  /** Added to the denominator for numerical stability, ≥ 0 (default 1e-8). */
  eps: number;
  /** Decoupled weight decay coefficient, ≥ 0 (default 1e-2): each step multiplies a parameter by 1 − lr·weightDecay. */
  weightDecay: number;
}

/**
 * The defaults of {@link AdamW}, torch.optim.AdamW's.
 *
 * @example
 * ```ts
 * const optimizer = new AdamW(params, { ...defaultAdamWOptions, lr: 3e-4 });
 * ```
 */
export const defaultAdamWOptions: Readonly<AdamWOptions> = Object.freeze({
  lr: 1e-3,
  betas: Object.freeze([0.9, 0.999]) as readonly [number, number],
  eps: 1e-8,
  weightDecay: 1e-2,
});

/**
 * The per-step hyper-parameters of {@link adamwUpdate}.
 *
 * @example
 * ```ts
 * const hyper: AdamWHyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
 * ```
 */
export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The 1-based step number of this update, for the bias corrections. */
  step: number;
}

/**
 * One AdamW update of one parameter, exactly as torch.optim.AdamW's single-tensor path computes
 * it: `p ← p·(1 − lr·wd)`, `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`,
 * `p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)`. Returns new tensors and disposes
 * nothing it was given. The one place a fused kernel would replace.
 *
 * @example
 * ```ts
 * const next = adamwUpdate(p, g, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 });
 * p.assign(next.param);
 * ```
 */
export function adamwUpdate(param: tf.Tensor, grad: tf.Tensor, expAvg: tf.Tensor, expAvgSq: tf.Tensor, h: AdamWHyper): { param: tf.Tensor; expAvg: tf.Tensor; expAvgSq: tf.Tensor } {
  return tf.tidy(() => {
    const decay = 1 - h.lr * h.weightDecay;
    const decayed = decay === 1 ? param : tf.mul(param, decay);
    const m = tf.add(tf.mul(expAvg, h.beta1), tf.mul(grad, 1 - h.beta1));
    const v = tf.add(tf.mul(expAvgSq, h.beta2), tf.mul(tf.mul(grad, 1 - h.beta2), grad));
    const stepSize = h.lr / (1 - h.beta1 ** h.step);
    const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - h.beta2 ** h.step)), h.eps);
    return { param: tf.add(decayed, tf.div(tf.mul(m, -stepSize), denom)), expAvg: m, expAvgSq: v };
  });
}

interface AdamWState {
  step: number;
  expAvg: tf.Tensor;
  expAvgSq: tf.Tensor;
}

/**
 * Adam with decoupled weight decay (Loshchilov & Hutter, 2019), the same update as
 * torch.optim.AdamW (see {@link adamwUpdate}), with its defaults. Moments are created at a
 * parameter's first update; each parameter counts its own steps, as in PyTorch.
 *
 * State dict keys: `step.<path>` (int32 scalar), `exp_avg.<path>`, `exp_avg_sq.<path>`.
 *
 * @example
 * ```ts
 * const model = new Linear(4, 2);
 * const optimizer = new AdamW(model.namedParameters(), { lr: 1e-2, weightDecay: 0.1 });
 * const { value, grads } = valueAndGrads(() => tf.mean(tf.square(model.forward(x))) as tf.Scalar, model.namedParameters());
 * optimizer.step(grads);
 * value.dispose(); tf.dispose([...grads.values()]);
 * ```
 */
export class AdamW implements Optimizer {
  readonly params: ReadonlyMap<string, tf.Variable>;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private learningRate: number;
  private state = new Map<string, AdamWState>();

  constructor(params: ReadonlyMap<string, tf.Variable>, options: Partial<AdamWOptions> = {}) {
    const o = resolveOptions('AdamW', options, defaultAdamWOptions);
    this.params = checkParams('AdamW', params);
    this.learningRate = checkLr('AdamW', o.lr);
    if (!Array.isArray(o.betas) || o.betas.length !== 2) {
      throw new PosttrainError('INVALID_OPTION', `AdamW: expected betas to be [beta1, beta2]; got ${describe(o.betas)}`);
    }
    const beta1 = checkNumber('AdamW', 'betas[0]', o.betas[0], 'in [0, 1)', (v) => v >= 0 && v < 1);
    const beta2 = checkNumber('AdamW', 'betas[1]', o.betas[1], 'in [0, 1)', (v) => v >= 0 && v < 1);
    this.betas = [beta1, beta2];
    this.eps = checkNumber('AdamW', 'eps', o.eps, '≥ 0', (v) => v >= 0);
    this.weightDecay = checkNumber('AdamW', 'weightDecay', o.weightDecay, '≥ 0', (v) => v >= 0);
  }

  get lr(): number {
    return this.learningRate;
  }

  set lr(value: number) {
    this.learningRate = checkLr('AdamW', value);
  }

  step(grads: ReadonlyMap<string, tf.Tensor>): void {
    for (const [path, param, grad] of checkGrads('AdamW', this.params, grads)) {
      let s = this.state.get(path);
      if (!s) {
        s = { step: 0, expAvg: tf.keep(tf.zerosLike(param)), expAvgSq: tf.keep(tf.zerosLike(param)) };
        this.state.set(path, s);
      }
      const hyper = { lr: this.learningRate, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay, step: s.step + 1 };
      const next = adamwUpdate(param, grad, s.expAvg, s.expAvgSq, hyper);
      param.assign(next.param);
      next.param.dispose();
      s.expAvg.dispose();
      s.expAvgSq.dispose();
      s.expAvg = tf.keep(next.expAvg);
      s.expAvgSq = tf.keep(next.expAvgSq);
      s.step += 1;
    }
  }

  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [path, s] of this.state) {
      out[`step.${path}`] = tf.scalar(s.step, 'int32');
      out[`exp_avg.${path}`] = tf.clone(s.expAvg);
      out[`exp_avg_sq.${path}`] = tf.clone(s.expAvgSq);
    }
    return out;
  }

  loadStateDict(state: Record<string, tf.Tensor>): void {
    const parsed = parseStateDict('AdamW', state, this.params, ['step', 'exp_avg', 'exp_avg_sq'], ['step', 'exp_avg', 'exp_avg_sq']);
    const next = new Map<string, AdamWState>();
    for (const [path, entry] of parsed) {
      next.set(path, { step: entry.step as number, expAvg: entry.exp_avg as tf.Tensor, expAvgSq: entry.exp_avg_sq as tf.Tensor });
    }
    this.dispose();
    this.state = next;
  }

  dispose(): void {
    for (const s of this.state.values()) {
      s.expAvg.dispose();
      s.expAvgSq.dispose();
    }
    this.state.clear();
  }
}
