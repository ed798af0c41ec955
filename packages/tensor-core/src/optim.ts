import { tf } from './tf.js';
import { PosttrainError, formatShape } from './errors.js';
import { checkNumber, describe, resolveOptions } from './options.js';

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
export function adamwUpdate(
  param: tf.Tensor,
  grad: tf.Tensor,
  expAvg: tf.Tensor,
  expAvgSq: tf.Tensor,
  h: AdamWHyper,
): { param: tf.Tensor; expAvg: tf.Tensor; expAvgSq: tf.Tensor } {
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

/**
 * Options of {@link SGD}; the defaults ({@link defaultSGDOptions}) are torch.optim.SGD's.
 *
 * @example
 * ```ts
 * const options: Partial<SGDOptions> = { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-4 };
 * const optimizer = new SGD(model.trainableParameters(), options);
 * ```
 */
export interface SGDOptions {
  /** Learning rate, ≥ 0 (default 1e-3). */
  lr: number;
  /** Momentum factor, ≥ 0 (default 0: plain SGD). */
  momentum: number;
  /** Dampening of the momentum, in [0, 1] (default 0). */
  dampening: number;
  /** L2 penalty added to the gradient (`g + weightDecay·p`), ≥ 0 (default 0). */
  weightDecay: number;
  /** Nesterov momentum (default false); needs momentum > 0 and dampening 0. */
  nesterov: boolean;
}

/**
 * The defaults of {@link SGD}, torch.optim.SGD's.
 *
 * @example
 * ```ts
 * const optimizer = new SGD(params, { ...defaultSGDOptions, lr: 0.1, momentum: 0.9 });
 * ```
 */
export const defaultSGDOptions: Readonly<SGDOptions> = Object.freeze({ lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false });

/**
 * The per-step hyper-parameters of {@link sgdUpdate}: the options of {@link SGD}, with the current lr.
 *
 * @example
 * ```ts
 * const hyper: SGDHyper = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false };
 * ```
 */
export type SGDHyper = SGDOptions;

/**
 * One SGD update of one parameter, as torch.optim.SGD's single-tensor path: `d = g + wd·p`; with
 * momentum, `b = d` on the first step and `b ← μ·b + (1 − dampening)·d` after, then `d = d + μ·b`
 * (Nesterov) or `d = b`; finally `p ← p − lr·d`. Pass `momentumBuffer` undefined on a parameter's
 * first step. Returns new tensors (`momentumBuffer` only when momentum ≠ 0) and disposes nothing.
 *
 * @example
 * ```ts
 * const next = sgdUpdate(p, g, undefined, { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: true });
 * p.assign(next.param);
 * ```
 */
export function sgdUpdate(
  param: tf.Tensor,
  grad: tf.Tensor,
  momentumBuffer: tf.Tensor | undefined,
  h: SGDHyper,
): { param: tf.Tensor; momentumBuffer: tf.Tensor | undefined } {
  return tf.tidy(() => {
    let d = h.weightDecay !== 0 ? tf.add(grad, tf.mul(param, h.weightDecay)) : grad;
    let buffer: tf.Tensor | undefined;
    if (h.momentum !== 0) {
      const b = momentumBuffer === undefined ? tf.clone(d) : tf.add(tf.mul(momentumBuffer, h.momentum), tf.mul(d, 1 - h.dampening));
      d = h.nesterov ? tf.add(d, tf.mul(b, h.momentum)) : b;
      buffer = b;
    }
    return { param: tf.add(param, tf.mul(d, -h.lr)), momentumBuffer: buffer };
  });
}

/**
 * Stochastic gradient descent with momentum, dampening, Nesterov momentum and (coupled, L2)
 * weight decay, the same update as torch.optim.SGD (see {@link sgdUpdate}). Momentum buffers are
 * created at a parameter's first update.
 *
 * State dict keys: `momentum_buffer.<path>` (only when momentum ≠ 0).
 *
 * @example
 * ```ts
 * const optimizer = new SGD(model.namedParameters(), { lr: 0.05, momentum: 0.9, nesterov: true });
 * optimizer.step(grads);
 * ```
 */
export class SGD implements Optimizer {
  readonly params: ReadonlyMap<string, tf.Variable>;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  private learningRate: number;
  private buffers = new Map<string, tf.Tensor>();

  constructor(params: ReadonlyMap<string, tf.Variable>, options: Partial<SGDOptions> = {}) {
    const o = resolveOptions('SGD', options, defaultSGDOptions);
    this.params = checkParams('SGD', params);
    this.learningRate = checkLr('SGD', o.lr);
    this.momentum = checkNumber('SGD', 'momentum', o.momentum, '≥ 0', (v) => v >= 0);
    this.dampening = checkNumber('SGD', 'dampening', o.dampening, 'in [0, 1]', (v) => v >= 0 && v <= 1);
    this.weightDecay = checkNumber('SGD', 'weightDecay', o.weightDecay, '≥ 0', (v) => v >= 0);
    if (typeof o.nesterov !== 'boolean') {
      throw new PosttrainError('INVALID_OPTION', `SGD: expected nesterov to be a boolean; got ${describe(o.nesterov)}`);
    }
    if (o.nesterov && (this.momentum === 0 || this.dampening !== 0)) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `SGD: Nesterov momentum needs momentum > 0 and dampening 0; got momentum ${this.momentum} and dampening ${this.dampening}`,
        { help: 'set { momentum: 0.9, dampening: 0 } or nesterov: false' },
      );
    }
    this.nesterov = o.nesterov;
  }

  get lr(): number {
    return this.learningRate;
  }

  set lr(value: number) {
    this.learningRate = checkLr('SGD', value);
  }

  step(grads: ReadonlyMap<string, tf.Tensor>): void {
    const hyper: SGDHyper = { lr: this.learningRate, momentum: this.momentum, dampening: this.dampening, weightDecay: this.weightDecay, nesterov: this.nesterov };
    for (const [path, param, grad] of checkGrads('SGD', this.params, grads)) {
      const old = this.buffers.get(path);
      const next = sgdUpdate(param, grad, old, hyper);
      param.assign(next.param);
      next.param.dispose();
      if (next.momentumBuffer) {
        old?.dispose();
        this.buffers.set(path, tf.keep(next.momentumBuffer));
      }
    }
  }

  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [path, b] of this.buffers) out[`momentum_buffer.${path}`] = tf.clone(b);
    return out;
  }

  loadStateDict(state: Record<string, tf.Tensor>): void {
    const parsed = parseStateDict('SGD', state, this.params, ['momentum_buffer'], ['momentum_buffer']);
    const next = new Map<string, tf.Tensor>();
    for (const [path, entry] of parsed) next.set(path, entry.momentum_buffer as tf.Tensor);
    this.dispose();
    this.buffers = next;
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}

function checkLr(owner: string, lr: unknown): number {
  return checkNumber(owner, 'lr', lr, '≥ 0', (v) => v >= 0);
}

function checkParams(owner: string, params: ReadonlyMap<string, tf.Variable>): Map<string, tf.Variable> {
  if (!(params instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected parameters as a Map of path → tf.Variable; got ${describe(params)}`, {
      help: 'pass model.namedParameters() or model.trainableParameters()',
    });
  }
  if (params.size === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one parameter; got an empty map`);
  }
  for (const [path, p] of params) {
    if (!(p instanceof tf.Variable)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected "${path}" to be a tf.Variable; got ${describe(p)}`);
    }
    if (p.dtype !== 'float32') {
      throw new PosttrainError('DTYPE_MISMATCH', `${owner}: expected float32 parameters; "${path}" is ${p.dtype}`);
    }
  }
  return new Map(params);
}

/** Validates every gradient before anything is updated; returns [path, param, grad] triples. */
function checkGrads(owner: string, params: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>): [string, tf.Variable, tf.Tensor][] {
  if (!(grads instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: expected gradients as a Map of path → tf.Tensor; got ${describe(grads)}`, {
      help: 'compute them with valueAndGrads(fn, params)',
    });
  }
  const out: [string, tf.Variable, tf.Tensor][] = [];
  const seen = new Map<tf.Variable, string>();
  for (const [path, grad] of grads) {
    const param = params.get(path);
    if (!param) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: got a gradient for "${path}", which is not one of the optimiser's ${params.size} parameters`, {
        help: `known paths start with ${[...params.keys()].slice(0, 5).map((k) => `"${k}"`).join(', ')}${params.size > 5 ? ', …' : ''}`,
      });
    }
    if (!(grad instanceof tf.Tensor) || grad.isDisposed) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: expected the gradient of "${path}" to be a live tf.Tensor; got ${grad instanceof tf.Tensor ? 'a disposed tensor' : describe(grad)}`);
    }
    if (!sameShape(grad.shape, param.shape)) {
      throw new PosttrainError(
        'SHAPE_MISMATCH',
        `${owner}.step: expected the gradient of "${path}" to have the parameter's shape ${formatShape(param.shape)}; got ${formatShape(grad.shape)}`,
      );
    }
    if (grad.dtype !== 'float32') {
      throw new PosttrainError('DTYPE_MISMATCH', `${owner}.step: expected a float32 gradient for "${path}"; got ${grad.dtype}`);
    }
    const other = seen.get(param);
    if (other !== undefined) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: got gradients for "${other}" and "${path}", which are the same variable (tied weights)`, {
        help: 'pass one gradient per variable; valueAndGrads returns tied weights under their first path',
      });
    }
    seen.set(param, path);
    out.push([path, param, grad]);
  }
  return out;
}

/**
 * Splits `<kind>.<path>` keys, checks kinds, paths, shapes and completeness, and returns per-path
 * entries: `step` kinds as numbers, the others as kept float32 copies. Throws listing every
 * problem; allocates nothing then.
 */
function parseStateDict(
  owner: string,
  state: Record<string, tf.Tensor>,
  params: ReadonlyMap<string, tf.Variable>,
  kinds: string[],
  required: string[],
): Map<string, Record<string, tf.Tensor | number>> {
  if (typeof state !== 'object' || state === null || Array.isArray(state)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}.loadStateDict: expected a record of tensors; got ${describe(state)}`);
  }
  const problems: string[] = [];
  const byPath = new Map<string, Record<string, tf.Tensor>>();
  const present = new Map<string, Set<string>>(); // kinds given per known path, valid or not
  for (const [key, tensor] of Object.entries(state)) {
    const dot = key.indexOf('.');
    const kind = dot < 0 ? key : key.slice(0, dot);
    const path = dot < 0 ? '' : key.slice(dot + 1);
    const param = params.get(path);
    if (!kinds.includes(kind)) {
      problems.push(`${key}: unknown state kind "${kind}" (expected ${kinds.join(', ')})`);
      continue;
    }
    if (!param) {
      problems.push(`${key}: "${path}" is not a parameter of this optimiser`);
      continue;
    }
    if (!present.has(path)) present.set(path, new Set());
    present.get(path)?.add(kind);
    if (!(tensor instanceof tf.Tensor) || tensor.isDisposed) {
      problems.push(`${key}: expected a live tf.Tensor`);
    } else if (kind === 'step' ? tensor.size !== 1 : !sameShape(tensor.shape, param.shape)) {
      problems.push(`${key}: expected shape ${kind === 'step' ? '[] (a scalar)' : formatShape(param.shape)}, got ${formatShape(tensor.shape)}`);
    } else {
      const entry = byPath.get(path) ?? {};
      entry[kind] = tensor;
      byPath.set(path, entry);
    }
  }
  for (const [path, kindsGiven] of present) {
    const missing = required.filter((k) => !kindsGiven.has(k));
    if (missing.length > 0) problems.push(`${path}: missing ${missing.map((k) => `${k}.${path}`).join(', ')}`);
  }
  const steps = new Map<string, number>();
  for (const [path, entry] of byPath) {
    if (entry.step) {
      // Scalars read one by one: a freshly created or file-loaded tensor is readable on every backend.
      const value = entry.step.dataSync()[0];
      if (!Number.isInteger(value) || value < 0) problems.push(`step.${path}: expected a non-negative integer; got ${value}`);
      steps.set(path, value);
    }
  }
  if (problems.length > 0) {
    throw new PosttrainError('STATE_DICT_MISMATCH', `${owner}.loadStateDict: the state dict does not match the optimiser:\n  ${problems.join('\n  ')}`, {
      help: 'load a state dict saved by the same kind of optimiser over the same parameters',
    });
  }
  const out = new Map<string, Record<string, tf.Tensor | number>>();
  for (const [path, entry] of byPath) {
    const copy: Record<string, tf.Tensor | number> = {};
    for (const [kind, t] of Object.entries(entry)) {
      copy[kind] = kind === 'step' ? (steps.get(path) as number) : tf.keep(tf.tidy(() => (t.dtype === 'float32' ? tf.clone(t) : tf.cast(t, 'float32'))));
    }
    out.set(path, copy);
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
