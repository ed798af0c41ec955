import { PosttrainError } from './errors.js';
import { checkNumber, resolveOptions } from './options.js';

/**
 * A learning-rate schedule: the learning rate of optimizer step `step` (0-based: the first step is
 * step 0). Set it on the optimiser before each step: `optimizer.lr = schedule(step)`.
 *
 * @example
 * ```ts
 * const schedule: LrSchedule = linearSchedule({ lr: 1e-3, warmupSteps: 10, totalSteps: 100 });
 * optimizer.lr = schedule(step);
 * ```
 */
export type LrSchedule = (step: number) => number;

/**
 * Options of {@link constantSchedule}.
 *
 * @example
 * ```ts
 * const schedule = constantSchedule({ lr: 1e-4, warmupSteps: 100 });
 * ```
 */
export interface ConstantScheduleOptions {
  /** The peak learning rate, ≥ 0 (required). */
  lr: number;
  /** Steps of linear warm-up from 0 to `lr`, a non-negative integer (default 0). */
  warmupSteps: number;
}

/**
 * The defaults of {@link constantSchedule} (`lr` has none and must be given).
 *
 * @example
 * ```ts
 * const schedule = constantSchedule({ ...defaultConstantScheduleOptions, lr: 1e-4 });
 * ```
 */
export const defaultConstantScheduleOptions: Readonly<Omit<ConstantScheduleOptions, 'lr'>> = Object.freeze({ warmupSteps: 0 });

/**
 * Options of {@link linearSchedule}.
 *
 * @example
 * ```ts
 * const schedule = linearSchedule({ lr: 1e-4, warmupSteps: 100, totalSteps: 1000 });
 * ```
 */
export interface LinearScheduleOptions {
  /** The peak learning rate, ≥ 0 (required). */
  lr: number;
  /** Steps of linear warm-up from 0 to `lr`, a non-negative integer (default 0). */
  warmupSteps: number;
  /** The step at which the learning rate reaches 0, an integer > warmupSteps (required). */
  totalSteps: number;
}

/**
 * The defaults of {@link linearSchedule} (`lr` and `totalSteps` have none and must be given).
 *
 * @example
 * ```ts
 * const schedule = linearSchedule({ ...defaultLinearScheduleOptions, lr: 1e-4, totalSteps: 1000 });
 * ```
 */
export const defaultLinearScheduleOptions: Readonly<Omit<LinearScheduleOptions, 'lr' | 'totalSteps'>> = Object.freeze({ warmupSteps: 0 });

/**
 * Options of {@link cosineSchedule}.
 *
 * @example
 * ```ts
 * const schedule = cosineSchedule({ lr: 1e-4, warmupSteps: 100, totalSteps: 1000, minLr: 1e-5 });
 * ```
 */
export interface CosineScheduleOptions {
  /** The peak learning rate, ≥ 0 (required). */
  lr: number;
  /** Steps of linear warm-up from 0 to `lr`, a non-negative integer (default 0). */
  warmupSteps: number;
  /** All training steps, warm-up included (the cosine runs from warmupSteps to totalSteps), an integer > warmupSteps (required). */
  totalSteps: number;
  /** Number of cosine periods between warm-up and totalSteps, > 0 (default 0.5: one half-wave from lr down to minLr). */
  numCycles: number;
  /** The floor the cosine decays to, in [0, lr] (default 0); as transformers' `get_cosine_with_min_lr_schedule_with_warmup`. */
  minLr: number;
}

/**
 * The defaults of {@link cosineSchedule} (`lr` and `totalSteps` have none and must be given).
 *
 * @example
 * ```ts
 * const schedule = cosineSchedule({ ...defaultCosineScheduleOptions, lr: 1e-4, totalSteps: 1000 });
 * ```
 */
export const defaultCosineScheduleOptions: Readonly<Omit<CosineScheduleOptions, 'lr' | 'totalSteps'>> = Object.freeze({ warmupSteps: 0, numCycles: 0.5, minLr: 0 });

/**
 * A constant learning rate after a linear warm-up, as transformers'
 * `get_constant_schedule_with_warmup`: `lr·step/max(1, warmupSteps)` while `step < warmupSteps`,
 * then `lr`.
 *
 * @example
 * ```ts
 * const schedule = constantSchedule({ lr: 1e-3, warmupSteps: 4 });
 * [0, 1, 4, 100].map(schedule); // [0, 0.00025, 0.001, 0.001]
 * ```
 */
export function constantSchedule(options: Partial<ConstantScheduleOptions> & { lr: number }): LrSchedule {
  const o = resolveOptions<ConstantScheduleOptions>('constantSchedule', options, { lr: undefined as unknown as number, ...defaultConstantScheduleOptions });
  const lr = checkLr('constantSchedule', o.lr);
  const warmup = checkWarmup('constantSchedule', o.warmupSteps);
  return (step) => {
    checkStep('constantSchedule', step);
    return step < warmup ? lr * (step / Math.max(1, warmup)) : lr;
  };
}

/**
 * Linear warm-up from 0 to `lr`, then linear decay to 0 at `totalSteps` (and 0 after), as
 * transformers' `get_linear_schedule_with_warmup`.
 *
 * @example
 * ```ts
 * const schedule = linearSchedule({ lr: 3e-3, warmupSteps: 3, totalSteps: 10 });
 * [0, 1, 3, 10, 12].map(schedule); // [0, 0.001, 0.003, 0, 0]
 * ```
 */
export function linearSchedule(options: Partial<LinearScheduleOptions> & { lr: number; totalSteps: number }): LrSchedule {
  const owner = 'linearSchedule';
  const o = resolveOptions<LinearScheduleOptions>(owner, options, { lr: undefined as unknown as number, totalSteps: undefined as unknown as number, ...defaultLinearScheduleOptions });
  const lr = checkLr(owner, o.lr);
  const warmup = checkWarmup(owner, o.warmupSteps);
  const total = checkTotal(owner, o.totalSteps, warmup);
  return (step) => {
    checkStep(owner, step);
    if (step < warmup) return lr * (step / Math.max(1, warmup));
    return lr * Math.max(0, (total - step) / Math.max(1, total - warmup));
  };
}

/**
 * Linear warm-up from 0 to `lr`, then a cosine from `lr` down to `minLr` at `totalSteps` (with the
 * default half cycle), as transformers' `get_cosine_schedule_with_warmup` (and, with `minLr`,
 * `get_cosine_with_min_lr_schedule_with_warmup`). Like those, the cosine keeps its period past
 * `totalSteps`: train for `totalSteps` steps.
 *
 * @example
 * ```ts
 * const schedule = cosineSchedule({ lr: 2e-3, warmupSteps: 3, totalSteps: 12 });
 * schedule(3);  // 0.002, the peak
 * schedule(6);  // 0.0015: a third of the way through the half cosine, 75% of the peak
 * ```
 */
export function cosineSchedule(options: Partial<CosineScheduleOptions> & { lr: number; totalSteps: number }): LrSchedule {
  const owner = 'cosineSchedule';
  const o = resolveOptions<CosineScheduleOptions>(owner, options, { lr: undefined as unknown as number, totalSteps: undefined as unknown as number, ...defaultCosineScheduleOptions });
  const lr = checkLr(owner, o.lr);
  const warmup = checkWarmup(owner, o.warmupSteps);
  const total = checkTotal(owner, o.totalSteps, warmup);
  const numCycles = checkNumber(owner, 'numCycles', o.numCycles, '> 0', (v) => v > 0);
  const minLr = checkNumber(owner, 'minLr', o.minLr, `in [0, lr] = [0, ${lr}]`, (v) => v >= 0 && v <= lr);
  const minRate = lr === 0 ? 0 : minLr / lr;
  return (step) => {
    checkStep(owner, step);
    if (step < warmup) return lr * (step / Math.max(1, warmup));
    const progress = (step - warmup) / Math.max(1, total - warmup);
    let factor = 0.5 * (1 + Math.cos(Math.PI * numCycles * 2 * progress));
    if (minRate !== 0) factor = factor * (1 - minRate) + minRate;
    return lr * Math.max(0, factor);
  };
}

function checkLr(owner: string, lr: unknown): number {
  if (lr === undefined) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected an lr option (the peak learning rate); got none`, {
      help: `pass the optimiser's learning rate: ${owner}({ lr: 1e-3, … })`,
    });
  }
  return checkNumber(owner, 'lr', lr, '≥ 0', (v) => v >= 0);
}

function checkWarmup(owner: string, warmupSteps: unknown): number {
  return checkNumber(owner, 'warmupSteps', warmupSteps, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
}

function checkTotal(owner: string, totalSteps: unknown, warmup: number): number {
  if (totalSteps === undefined) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected a totalSteps option (the number of optimizer steps of the run); got none`);
  }
  return checkNumber(owner, 'totalSteps', totalSteps, `an integer > warmupSteps (${warmup})`, (v) => Number.isInteger(v) && v > warmup);
}

function checkStep(owner: string, step: unknown): void {
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected the step to be a non-negative integer; got ${String(step)}`);
  }
}
