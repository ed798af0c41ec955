import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { initBackend } from './backend.js';
import { isPosttrainError } from './errors.js';
import { AdamW, adamwUpdate, defaultAdamWOptions, type Optimizer } from './optim.js';
import { SGD } from './sgd.js';
import { clipGradNorm } from './clip.js';
import { valueAndGrads } from './grads.js';
import { thrown } from './testing/assert.js';
import { makeData, makeLoss, makeParams, optimFixture, type OptimRun } from './testing/optim-fixture.js';
import { variable } from './testing/tensors.js';

// Reference: scripts/reference/optim_ref.py (torch.optim.AdamW / SGD + clip_grad_norm_, 20 steps), read by
// testing/optim-fixture.ts.
const fixture = optimFixture;

/**
 * Absolute tolerance on every parameter vs PyTorch after 20 steps (float32; parameters are O(1)).
 * Measured on cpu and wasm: ≤ 2.4e-7.
 */
const PARAM_ATOL = 1e-6;
/**
 * Relative tolerance on the per-step losses and pre-clip gradient norms vs PyTorch. Measured:
 * ≤ 6e-7 (float32 drift over 20 steps); 2e-6 leaves room for other summation orders.
 */
const RTOL = 2e-6;

function makeOptimizer(run: OptimRun, params: Map<string, tf.Variable>): Optimizer {
  return run.optimizer === 'AdamW' ? new AdamW(params, run.options) : new SGD(params, run.options);
}

/** Runs steps [from, to) of a fixture run; returns per-step losses and pre-clip norms. */
function train(run: OptimRun, optimizer: Optimizer, params: Map<string, tf.Variable>, data: Record<string, tf.Tensor>, from: number, to: number) {
  const loss = makeLoss(params, data);
  const losses: number[] = [];
  const norms: number[] = [];
  for (let k = from; k < to; k++) {
    const { value, grads } = valueAndGrads(() => loss(k), params);
    losses.push(value.dataSync()[0]);
    if (run.maxNorm !== null) {
      norms.push(clipGradNorm(grads, run.maxNorm));
    } else {
      const total = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))));
      norms.push(total.dataSync()[0]);
      total.dispose();
    }
    optimizer.step(grads);
    value.dispose();
    tf.dispose([...grads.values()]);
  }
  return { losses, norms };
}

function read(params: Map<string, tf.Variable>): Record<string, number[]> {
  return Object.fromEntries([...params].map(([path, v]) => [path.replace('toy.', ''), Array.from(v.dataSync())]));
}

function maxAbsDiff(a: Record<string, number[]>, b: Record<string, number[]>): number {
  let max = 0;
  for (const key of Object.keys(b)) {
    expect(a[key].length).toBe(b[key].length);
    b[key].forEach((v, i) => (max = Math.max(max, Math.abs(a[key][i] - v))));
  }
  return max;
}

function maxRelDiff(a: number[], b: number[]): number {
  return Math.max(...a.map((v, i) => Math.abs(v - b[i]) / Math.max(Math.abs(b[i]), 1e-12)));
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`optimisers vs PyTorch (${backend})`, () => {
    beforeAll(async () => {
      await initBackend(backend);
    });

    for (const run of fixture.runs) {
      it(`${run.name}: 20 steps match torch.optim.${run.optimizer} within ${PARAM_ATOL} absolute`, () => {
        const params = makeParams();
        const data = makeData();
        const optimizer = makeOptimizer(run, params);
        const { losses, norms } = train(run, optimizer, params, data, 0, fixture.steps);
        expect(maxRelDiff(losses, run.losses)).toBeLessThan(RTOL);
        expect(maxRelDiff(norms, run.gradNorms)).toBeLessThan(RTOL);
        expect(maxAbsDiff(read(params), run.finalParams)).toBeLessThan(PARAM_ATOL);
        // Learning, not just change: the loss at a step with the same scale falls.
        expect(losses[16]).toBeLessThan(losses[0] * (run.name === 'adamw-defaults' ? 0.99 : 0.7));
        optimizer.dispose();
        tf.dispose([...params.values(), ...Object.values(data)]);
      });
    }
  });
}

describe('fixture sanity', () => {
  it('clips on some steps and not others in the clipped runs', () => {
    for (const run of fixture.runs.filter((r) => r.maxNorm !== null)) {
      const n = run.clipped.filter(Boolean).length;
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThan(fixture.steps);
    }
  });
});

describe('resume from a state dict', () => {
  // sgd-plain has no momentum, hence no state to resume.
  for (const run of fixture.runs.filter((r) => r.name !== 'sgd-plain')) {
    it(`${run.name}: 10 steps + save + new optimiser + load + 10 steps equals 20 steps exactly`, () => {
      const data = makeData();
      const straight = makeParams();
      const o1 = makeOptimizer(run, straight);
      train(run, o1, straight, data, 0, 20);

      const resumed = makeParams();
      const o2 = makeOptimizer(run, resumed);
      train(run, o2, resumed, data, 0, 10);
      const saved = o2.stateDict();
      o2.dispose();
      const snapshot = read(resumed);
      const reloaded = new Map([...resumed].map(([p, v]) => [p, variable(snapshot[p.replace('toy.', '')], v.shape)]));
      const o3 = makeOptimizer(run, reloaded);
      o3.loadStateDict(saved);
      tf.dispose(Object.values(saved));
      train(run, o3, reloaded, data, 10, 20);

      expect(read(reloaded)).toEqual(read(straight));
      const withoutState = makeParams();
      const o4 = makeOptimizer(run, withoutState);
      train(run, o4, withoutState, data, 0, 10);
      o4.dispose();
      const o5 = makeOptimizer(run, withoutState);
      train(run, o5, withoutState, data, 10, 20);
      expect(read(withoutState)).not.toEqual(read(straight)); // the state is what made it exact
      for (const o of [o1, o3, o5]) o.dispose();
      tf.dispose([...straight.values(), ...resumed.values(), ...reloaded.values(), ...withoutState.values(), ...Object.values(data)]);
    });
  }

  it('names state keys by kind and parameter path', () => {
    const params = makeParams();
    const adam = new AdamW(params);
    const sgd = new SGD(params, { momentum: 0.9 });
    expect(Object.keys(adam.stateDict())).toEqual([]);
    const grads = new Map([['toy.b', tf.ones([3])]]);
    adam.step(grads);
    sgd.step(grads);
    const a = adam.stateDict();
    const s = sgd.stateDict();
    expect(Object.keys(a).sort()).toEqual(['exp_avg.toy.b', 'exp_avg_sq.toy.b', 'step.toy.b']);
    expect(a['step.toy.b'].dtype).toBe('int32');
    expect(a['step.toy.b'].dataSync()[0]).toBe(1);
    expect(Object.keys(s)).toEqual(['momentum_buffer.toy.b']);
    tf.dispose([...Object.values(a), ...Object.values(s), ...grads.values(), ...params.values()]);
    adam.dispose();
    sgd.dispose();
  });

  it('rejects a state dict that does not match, listing every problem, and keeps its state', () => {
    const params = makeParams();
    const adam = new AdamW(params);
    const g = new Map([['toy.b', tf.ones([3])]]);
    adam.step(g);
    const before = adam.stateDict();
    const bad = {
      'exp_avg.toy.b': tf.zeros([3]),
      'exp_avg_sq.toy.b': tf.zeros([4]),
      'step.toy.b': tf.scalar(1, 'int32'),
      'exp_avg.toy.nope': tf.zeros([3]),
      'momentum_buffer.toy.a': tf.zeros([4, 3]),
      'exp_avg.toy.c': tf.zeros([2, 2, 2]),
    };
    const error = thrown(() => adam.loadStateDict(bad));
    expect(isPosttrainError(error)).toBe(true);
    expect(error.code).toBe('STATE_DICT_MISMATCH');
    expect(error.message).toContain('exp_avg_sq.toy.b: expected shape [3], got [4]');
    expect(error.message).toContain('"toy.nope" is not a parameter');
    expect(error.message).toContain('unknown state kind "momentum_buffer"');
    expect(error.message).not.toContain('toy.b: missing');
    expect(error.message).toContain('toy.c: missing step.toy.c, exp_avg_sq.toy.c');
    const after = adam.stateDict();
    expect(Array.from(after['exp_avg.toy.b'].dataSync())).toEqual(Array.from(before['exp_avg.toy.b'].dataSync()));
    expect(thrown(() => adam.loadStateDict({ 'step.toy.b': tf.scalar(1.5), 'exp_avg.toy.b': tf.zeros([3]), 'exp_avg_sq.toy.b': tf.zeros([3]) })).message).toContain(
      'step.toy.b: expected a non-negative integer; got 1.5',
    );
    tf.dispose([...Object.values(bad), ...Object.values(before), ...Object.values(after), ...g.values(), ...params.values()]);
    adam.dispose();
  });
});

describe('memory', () => {
  for (const run of fixture.runs) {
    it(`${run.name}: tf.memory().numTensors is the same after step 1 and step 10`, () => {
      const params = makeParams();
      const data = makeData();
      const optimizer = makeOptimizer(run, params);
      train(run, optimizer, params, data, 0, 1);
      const afterOne = tf.memory().numTensors;
      train(run, optimizer, params, data, 1, 10);
      expect(tf.memory().numTensors).toBe(afterOne);
      const saved = optimizer.stateDict();
      optimizer.loadStateDict(saved);
      tf.dispose(Object.values(saved));
      expect(tf.memory().numTensors).toBe(afterOne);
      optimizer.dispose();
      tf.dispose([...params.values(), ...Object.values(data)]);
    });
  }

  it('frees everything on dispose, and steps inside a caller tidy keep their state', () => {
    const before = tf.memory().numTensors;
    const params = makeParams();
    const adam = new AdamW(params, { lr: 0.1 });
    const grads = new Map([...params].map(([p, v]) => [p, tf.onesLike(v)]));
    tf.tidy(() => adam.step(grads));
    tf.tidy(() => adam.step(grads)); // would throw on disposed moments if the tidy had freed them
    const state = adam.stateDict();
    expect(state['step.toy.a'].dataSync()[0]).toBe(2);
    tf.dispose(Object.values(state));
    adam.dispose();
    tf.dispose([...grads.values(), ...params.values()]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('AdamW', () => {
  it("has torch.optim.AdamW's defaults", () => {
    expect(defaultAdamWOptions).toEqual({ lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 });
    const v = variable([0, 0], [2]);
    const adam = new AdamW(new Map([['w', v]]));
    expect([adam.lr, adam.betas, adam.eps, adam.weightDecay]).toEqual([1e-3, [0.9, 0.999], 1e-8, 1e-2]);
    v.dispose();
  });

  it('computes one step by hand: decoupled decay, bias-corrected moments', () => {
    // p = 1, g = 0.5, lr 0.1, wd 0.1, β = (0.9, 0.999), step 1:
    // p ← 1·(1 − 0.01) = 0.99; m = 0.05; v = 0.00025; m̂ = 0.5; √v̂ = 0.5; p ← 0.99 − 0.1·0.5/(0.5 + 1e-8)
    const out = tf.tidy(() => {
      const r = adamwUpdate(tf.ones([1]), tf.fill([1], 0.5), tf.zeros([1]), tf.zeros([1]), { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 1 });
      return [r.param, r.expAvg, r.expAvgSq].map((t) => t.dataSync()[0]);
    });
    expect(out[0]).toBeCloseTo(0.99 - 0.1 * (0.5 / (0.5 + 1e-8)), 6);
    expect(out[1]).toBeCloseTo(0.05, 7);
    expect(out[2]).toBeCloseTo(0.00025, 9);
  });

  it('updates only the parameters in grads, and lr is settable', () => {
    const params = makeParams();
    const before = read(params);
    const adam = new AdamW(params, { lr: 0.1 });
    adam.lr = 0.05;
    expect(adam.lr).toBe(0.05);
    const grads = new Map([['toy.b', tf.ones([3])]]);
    adam.step(grads);
    const after = read(params);
    expect(after.a).toEqual(before.a);
    expect(after.c).toEqual(before.c);
    after.b.forEach((v, i) => expect(v).toBeCloseTo(before.b[i] * (1 - 0.05 * 0.01) - 0.05, 5));
    adam.lr = 0;
    adam.step(grads); // lr 0 changes nothing
    expect(read(params).b).toEqual(after.b);
    tf.dispose([...grads.values(), ...params.values()]);
    adam.dispose();
  });

  it('validates options, naming the option', () => {
    const params = makeParams();
    const cases: [Record<string, unknown>, string][] = [
      [{ weightDeacy: 0.1 }, 'unknown option "weightDeacy"; known options are lr, betas, eps, weightDecay'],
      [{ lr: -1e-3 }, 'expected lr to be ≥ 0; got -0.001'],
      [{ lr: Number.NaN }, 'expected lr to be ≥ 0; got NaN'],
      [{ betas: [1, 0.999] }, 'expected betas[0] to be in [0, 1); got 1'],
      [{ betas: [0.9, -0.1] }, 'expected betas[1] to be in [0, 1); got -0.1'],
      [{ betas: [0.9] }, 'expected betas to be [beta1, beta2]; got an array of length 1'],
      [{ eps: -1 }, 'expected eps to be ≥ 0'],
      [{ weightDecay: -0.1 }, 'expected weightDecay to be ≥ 0'],
    ];
    for (const [options, message] of cases) {
      const error = thrown(() => new AdamW(params, options));
      expect(isPosttrainError(error)).toBe(true);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toContain(message);
    }
    const adam = new AdamW(params);
    expect(thrown(() => (adam.lr = -1)).message).toContain('AdamW: expected lr to be ≥ 0; got -1');
    expect(thrown(() => new AdamW(new Map()))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    tf.dispose([...params.values()]);
  });

  it('rejects a gradient for an unknown path or of the wrong shape, naming the path, before updating anything', () => {
    const params = makeParams();
    const before = read(params);
    for (const optimizer of [new AdamW(params), new SGD(params)]) {
      const unknown = new Map([
        ['toy.a', tf.ones([4, 3])],
        ['toy.z', tf.ones([3])],
      ]);
      const e1 = thrown(() => optimizer.step(unknown));
      expect(isPosttrainError(e1)).toBe(true);
      expect(e1.message).toContain('got a gradient for "toy.z", which is not one of the optimiser\'s 3 parameters');
      const misShaped = new Map([
        ['toy.a', tf.ones([4, 3])],
        ['toy.c', tf.ones([2, 4])],
      ]);
      const e2 = thrown(() => optimizer.step(misShaped));
      expect(e2.code).toBe('SHAPE_MISMATCH');
      expect(e2.message).toContain('expected the gradient of "toy.c" to have the parameter\'s shape [2, 2, 2]; got [2, 4]');
      expect(read(params)).toEqual(before);
      expect(optimizer.stateDict()).toEqual({});
      tf.dispose([...unknown.values(), ...misShaped.values()]);
      optimizer.dispose();
    }
    tf.dispose([...params.values()]);
  });

  it('rejects two gradients for one tied variable', () => {
    const w = variable([1, 1], [2]);
    const adam = new AdamW(
      new Map([
        ['embed.weight', w],
        ['head.weight', w],
      ]),
    );
    const g = tf.ones([2]);
    const error = thrown(() =>
      adam.step(
        new Map([
          ['embed.weight', g],
          ['head.weight', g],
        ]),
      ),
    );
    expect(error.message).toContain('got gradients for "embed.weight" and "head.weight", which are the same variable');
    g.dispose();
    w.dispose();
  });
});
