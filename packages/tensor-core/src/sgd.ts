import { tf } from './tf.js';
import { PosttrainError } from './errors.js';
import { checkNumber, describe, resolveOptions } from './options.js';
import type { Optimizer } from './optim.js';
import { checkGrads, checkLr, checkParams, parseStateDict } from './optim-state.js';

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
export function sgdUpdate(param: tf.Tensor, grad: tf.Tensor, momentumBuffer: tf.Tensor | undefined, h: SGDHyper): { param: tf.Tensor; momentumBuffer: tf.Tensor | undefined } {
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
      throw new PosttrainError('INVALID_OPTION', `SGD: Nesterov momentum needs momentum > 0 and dampening 0; got momentum ${this.momentum} and dampening ${this.dampening}`, {
        help: 'set { momentum: 0.9, dampening: 0 } or nesterov: false',
      });
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
