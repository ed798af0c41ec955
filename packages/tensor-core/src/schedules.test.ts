import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isPosttrainError } from './errors.js';
import { constantSchedule, cosineSchedule, defaultConstantScheduleOptions, defaultCosineScheduleOptions, defaultLinearScheduleOptions, linearSchedule, type LrSchedule } from './schedules.js';
import { thrown } from './testing/assert.js';

// Reference: scripts/reference/optim_ref.py, torch.optim.lr_scheduler.LambdaLR driven by the
// lambdas of transformers' get_{constant,linear,cosine}_schedule_with_warmup (and the min-lr cosine).
interface ScheduleCase {
  schedule: 'constant' | 'linear' | 'cosine';
  options: Record<string, number>;
  lrs: number[];
}
const fixture = JSON.parse(readFileSync(new URL('../fixtures/schedules.json', import.meta.url), 'utf8')) as { cases: ScheduleCase[] };

function make(c: ScheduleCase): LrSchedule {
  const o = c.options as { lr: number; totalSteps: number };
  return c.schedule === 'constant' ? constantSchedule(o) : c.schedule === 'linear' ? linearSchedule(o) : cosineSchedule(o);
}

describe('schedules vs LambdaLR with the transformers lambdas', () => {
  for (const c of fixture.cases) {
    it(`${c.schedule} ${JSON.stringify(c.options)} (1e-12 relative)`, () => {
      const schedule = make(c);
      c.lrs.forEach((expected, step) => {
        expect(Math.abs(schedule(step) - expected)).toBeLessThanOrEqual(1e-12 * Math.max(expected, 1e-3));
      });
    });
  }
});

describe('schedules by hand', () => {
  it('warm up linearly from 0 over warmupSteps, starting at step 0', () => {
    for (const s of [constantSchedule({ lr: 1, warmupSteps: 4 }), linearSchedule({ lr: 1, warmupSteps: 4, totalSteps: 8 }), cosineSchedule({ lr: 1, warmupSteps: 4, totalSteps: 8 })]) {
      expect([0, 1, 2, 3, 4].map(s)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    }
  });

  it('linear reaches 0 at totalSteps and stays there; cosine reaches minLr at totalSteps', () => {
    const linear = linearSchedule({ lr: 2, totalSteps: 4 });
    expect([0, 1, 2, 3, 4, 5, 100].map(linear)).toEqual([2, 1.5, 1, 0.5, 0, 0, 0]);
    const cosine = cosineSchedule({ lr: 2, totalSteps: 4 });
    expect(cosine(0)).toBe(2);
    expect(cosine(2)).toBeCloseTo(1, 12);
    expect(cosine(4)).toBeCloseTo(0, 12);
    const floored = cosineSchedule({ lr: 2, totalSteps: 4, minLr: 0.5 });
    expect(floored(2)).toBeCloseTo(1.25, 12);
    expect(floored(4)).toBeCloseTo(0.5, 12);
  });

  it('constant without warm-up is constant', () => {
    const s = constantSchedule({ lr: 3e-4 });
    expect([0, 1, 1000].map(s)).toEqual([3e-4, 3e-4, 3e-4]);
  });

  it('exports its defaults', () => {
    expect(defaultConstantScheduleOptions).toEqual({ warmupSteps: 0 });
    expect(defaultLinearScheduleOptions).toEqual({ warmupSteps: 0 });
    expect(defaultCosineScheduleOptions).toEqual({ warmupSteps: 0, numCycles: 0.5, minLr: 0 });
  });
});

describe('schedule validation', () => {
  const cases: [() => unknown, string][] = [
    [() => linearSchedule({ lr: 1, totalSteps: 10, warmup: 2 } as never), 'linearSchedule: unknown option "warmup"; known options are lr, totalSteps, warmupSteps'],
    [() => cosineSchedule({ lr: 1, totalSteps: 10, cycles: 1 } as never), 'cosineSchedule: unknown option "cycles"; known options are lr, totalSteps, warmupSteps, numCycles, minLr'],
    [() => constantSchedule({} as never), 'constantSchedule: expected an lr option'],
    [() => constantSchedule({ lr: -1 }), 'constantSchedule: expected lr to be ≥ 0; got -1'],
    [() => constantSchedule({ lr: 1, warmupSteps: -1 }), 'expected warmupSteps to be a non-negative integer; got -1'],
    [() => constantSchedule({ lr: 1, warmupSteps: 2.5 }), 'expected warmupSteps to be a non-negative integer; got 2.5'],
    [() => linearSchedule({ lr: 1 } as never), 'linearSchedule: expected a totalSteps option'],
    [() => linearSchedule({ lr: 1, warmupSteps: 10, totalSteps: 10 }), 'expected totalSteps to be an integer > warmupSteps (10); got 10'],
    [() => cosineSchedule({ lr: 1, totalSteps: 7.5 }), 'expected totalSteps to be an integer > warmupSteps (0); got 7.5'],
    [() => cosineSchedule({ lr: 1, totalSteps: 10, numCycles: 0 }), 'expected numCycles to be > 0; got 0'],
    [() => cosineSchedule({ lr: 1, totalSteps: 10, minLr: 2 }), 'expected minLr to be in [0, lr] = [0, 1]; got 2'],
  ];
  for (const [fn, message] of cases) {
    it(`rejects: ${message}`, () => {
      const error = thrown(fn);
      expect(isPosttrainError(error)).toBe(true);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toContain(message);
    });
  }

  it('rejects a negative or fractional step', () => {
    const s = linearSchedule({ lr: 1, totalSteps: 10 });
    expect(thrown(() => s(-1)).message).toContain('linearSchedule: expected the step to be a non-negative integer; got -1');
    expect(thrown(() => s(0.5)).code).toBe('INVALID_ARGUMENT');
  });
});
