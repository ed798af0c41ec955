import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { causalLmLoss } from './causal-lm-loss.js';
import { BACKENDS, checkCase, loadReference } from './testing/reference.js';
import { defaultDistillOptions, defaultGeneralizedJsdOptions, defaultHintonKdLossOptions, forwardKl, generalizedJsd, hintonKdLoss, reverseKl, totalVariation, type DistillOutput } from './distill.js';

// PyTorch references (fixtures/distill_ref.json, written by scripts/reference/losses_distill.py):
// values (loss and perToken, or loss, kd and ce) and the gradient of loss with respect to both
// logits, float64 from the float32 inputs, within 1e-5 · max(1, max|ref|) per tensor.
type Inputs = Record<string, tf.Tensor>;
type Run = (i: Inputs, o: Record<string, unknown>) => Record<string, unknown>;

const RUN: Record<string, Run> = {
  forwardKl: (i, o) => ({ ...forwardKl(i.studentLogits, i.teacherLogits, i.mask, o) }),
  reverseKl: (i, o) => ({ ...reverseKl(i.studentLogits, i.teacherLogits, i.mask, o) }),
  totalVariation: (i, o) => ({ ...totalVariation(i.studentLogits, i.teacherLogits, i.mask, o) }),
  generalizedJsd: (i, o) => ({ ...generalizedJsd(i.studentLogits, i.teacherLogits, i.mask, o) }),
  hintonKdLoss: (i, o) => ({ ...hintonKdLoss(i.studentLogits, i.teacherLogits, i.labels, i.mask, o) }),
};

const reference = Object.entries(loadReference('distill_ref')).filter(([, c]) => c.fn in RUN);

const divergences = { forwardKl, reverseKl, totalVariation, generalizedJsd } as const;

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e), String(e)).toBe(true);
    return e as Error & { code?: string };
  }
  return expect.unreachable('expected a PosttrainError') as never;
}

/** Reads and disposes. */
function take(t: tf.Tensor): number[] {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

it('the fixture covers every function, β ∈ {0, 0.5, 0.9, 1}, T ∈ {1, 2}, extreme logits and an all-masked row', () => {
  const fns = new Set(reference.map(([, c]) => c.fn));
  expect([...fns].sort()).toEqual(Object.keys(RUN).sort());
  const betas = new Set(reference.filter(([, c]) => c.fn === 'generalizedJsd').map(([, c]) => c.options.beta));
  for (const b of [0, 0.5, 0.9, 1]) expect(betas.has(b), `β = ${b}`).toBe(true);
  for (const fn of Object.keys(RUN)) {
    const cases = reference.filter(([, c]) => c.fn === fn);
    expect(new Set(cases.map(([, c]) => c.options.temperature ?? 1)), fn).toEqual(new Set([1, 2]));
    expect(
      cases.some(([n]) => n.includes('extreme')),
      fn,
    ).toBe(true);
    const maxAbs = Math.max(...cases.flatMap(([, c]) => c.inputs.studentLogits.data.map(Math.abs)));
    expect(maxAbs, fn).toBe(100);
    // some row of some case is masked throughout
    const [, c] = cases.find(([, c]) => {
      const [B, T] = c.inputs.mask.shape;
      return Array.from({ length: B }, (_, b) => c.inputs.mask.data.slice(b * T, (b + 1) * T).every((v) => v === 0)).some(Boolean);
    })!;
    expect(c, fn).toBeDefined();
  }
});

describe.each(BACKENDS)('against PyTorch on %s', (backend) => {
  it.each(reference)('%s', async (_name, c) => {
    await initBackend(backend);
    checkCase(c, RUN[c.fn]);
  });
});

describe.each(BACKENDS)('edge cases on %s', (backend) => {
  const student = () =>
    tf.tensor3d([
      [
        [1, 2, -3],
        [0.5, 0, 4],
      ],
      [
        [-2, 1, 0],
        [3, 3, 1],
      ],
    ]); // [2, 2, 3]
  const teacher = () =>
    tf.tensor3d([
      [
        [0, 1, 2],
        [2, -1, 0],
      ],
      [
        [1, 1, 1],
        [-4, 0, 2],
      ],
    ]); // [2, 2, 3]

  it('an all-masked batch gives loss 0 and a zero, finite gradient for every function', async () => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const [s, t, mask] = [student(), teacher(), tf.zeros([2, 2])];
    const labels = tf.tensor2d(
      [
        [0, 1],
        [2, -100],
      ],
      [2, 2],
      'int32',
    );
    const fns: [string, (x: tf.Tensor) => tf.Scalar][] = [
      ...Object.entries(divergences).map(([name, f]) => [name, (x: tf.Tensor) => f(x, t, mask).loss] as [string, (x: tf.Tensor) => tf.Scalar]),
      ...[0, 0.3, 1].map((beta) => [`generalizedJsd β=${beta}`, (x: tf.Tensor) => generalizedJsd(x, t, mask, { beta, temperature: 2 }).loss] as [string, (x: tf.Tensor) => tf.Scalar]),
      ['hintonKdLoss', (x: tf.Tensor) => hintonKdLoss(x, t, labels, mask).loss],
    ];
    for (const [name, f] of fns) {
      const { value, grad } = tf.valueAndGrad(f)(s);
      expect(take(value), name).toEqual([0]);
      expect(
        take(grad).every((g) => g === 0),
        name,
      ).toBe(true);
    }
    const out = hintonKdLoss(s, t, labels, mask);
    expect([take(out.kd), take(out.ce), take(out.loss)]).toEqual([[0], [0], [0]]);
    tf.dispose([s, t, mask, labels]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('an empty batch (B = 0 or T = 0) gives loss 0, not NaN or uninitialised memory', async () => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    for (const shape of [
      [0, 3, 4],
      [2, 0, 4],
    ] as const) {
      const [s, t, mask] = [tf.zeros([...shape]), tf.zeros([...shape]), tf.zeros([shape[0], shape[1]])];
      const labels = tf.zeros([shape[0], shape[1]], 'int32');
      for (const f of Object.values(divergences)) {
        const out = f(s, t, mask, { temperature: 2 });
        expect(take(out.loss), `${f.name} ${shape}`).toEqual([0]);
        expect(take(out.perToken)).toEqual([]);
      }
      const out = hintonKdLoss(s, t, labels, mask);
      expect([take(out.loss), take(out.kd), take(out.ce)]).toEqual([[0], [0], [0]]);
      tf.dispose([s, t, mask, labels]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a masked row adds nothing: perToken is 0 there and the loss is the mean over the other tokens', async () => {
    await initBackend(backend);
    const [s, t] = [student(), teacher()];
    const all = forwardKl(s, t, tf.ones([2, 2]));
    const full = take(all.perToken);
    all.loss.dispose();
    const mask = tf.tensor2d([
      [1, 1],
      [0, 0],
    ]);
    const { loss, perToken } = forwardKl(s, t, mask);
    const per = take(perToken);
    expect(per.slice(2)).toEqual([0, 0]);
    expect(per.slice(0, 2)).toEqual(full.slice(0, 2));
    expect(take(loss)[0]).toBeCloseTo((full[0] + full[1]) / 2, 6);
    tf.dispose([s, t, mask]);
  });

  it('identical distributions give 0 everywhere, with a zero gradient', async () => {
    await initBackend(backend);
    const [s, mask] = [student(), tf.ones([2, 2])];
    for (const [name, f] of Object.entries(divergences)) {
      const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => f(x, s, mask, { temperature: 2 }).loss)(s);
      expect(Math.abs(take(value)[0]), name).toBeLessThan(1e-6);
      expect(Math.max(...take(grad).map(Math.abs)), name).toBeLessThan(1e-6);
    }
    tf.dispose([s, mask]);
  });

  it('generalizedJsd at β = 0 and β = 1 is exactly forwardKl and reverseKl; near the ends it is β·forward and (1 − β)·reverse', async () => {
    await initBackend(backend);
    const [s, t, mask] = [
      student(),
      teacher(),
      tf.tensor2d([
        [1, 0],
        [1, 1],
      ]),
    ];
    const value = (out: DistillOutput) => (out.perToken.dispose(), take(out.loss)[0]);
    const forward = value(forwardKl(s, t, mask, { temperature: 2 }));
    const reverse = value(reverseKl(s, t, mask, { temperature: 2 }));
    expect(value(generalizedJsd(s, t, mask, { beta: 0, temperature: 2 }))).toBe(forward);
    expect(value(generalizedJsd(s, t, mask, { beta: 1, temperature: 2 }))).toBe(reverse);
    const beta = 1e-3;
    expect(value(generalizedJsd(s, t, mask, { beta, temperature: 2 })) / beta).toBeCloseTo(forward, 1);
    expect(value(generalizedJsd(s, t, mask, { beta: 1 - beta, temperature: 2 })) / beta).toBeCloseTo(reverse, 1);
    tf.dispose([s, t, mask]);
  });

  it('stays finite with logits of ±10⁴ (log-probs of −2·10⁴), values and gradients', async () => {
    await initBackend(backend);
    const s = tf.tensor3d([
      [
        [1e4, -1e4, 0],
        [-1e4, 1e4, 5e3],
      ],
    ]);
    const t = tf.tensor3d([
      [
        [-1e4, 1e4, 0],
        [-1e4, 1e4, -5e3],
      ],
    ]);
    const mask = tf.ones([1, 2]);
    const labels = tf.tensor2d([[1, 2]], [1, 2], 'int32');
    const fns: ((x: tf.Tensor) => tf.Scalar)[] = [
      ...Object.values(divergences).map((f) => (x: tf.Tensor) => f(x, t, mask).loss),
      (x) => generalizedJsd(x, t, mask, { beta: 0.9 }).loss,
      (x) => hintonKdLoss(x, t, labels, mask).loss,
    ];
    for (const f of fns) {
      const { value, grad } = tf.valueAndGrad(f)(s);
      expect(take(value).every(Number.isFinite)).toBe(true);
      expect(take(grad).every(Number.isFinite)).toBe(true);
    }
    tf.dispose([s, t, mask, labels]);
  });

  it('keeps no [B, T, V] buffer for the backward pass but the two logits (one tape node per divergence)', async () => {
    await initBackend(backend);
    const [B, T, V] = [2, 4, 500];
    const [s, t, mask] = [tf.randomNormal([B, T, V]), tf.randomNormal([B, T, V]), tf.ones([B, T])];
    // The distinct [B, T, V] buffers that the gradient tape saves for the backward, other than the
    // inputs' (read from tfjs's engine state, as no public API reports them).
    const tapedBuffers = () => {
      const tape = (tf.engine().state as unknown as { activeTape: { saved?: tf.Tensor[] }[] | null }).activeTape ?? [];
      const ids = new Set(
        tape
          .flatMap((node) => node.saved ?? [])
          .filter((x) => x.size === B * T * V)
          .map((x) => x.dataId),
      );
      for (const x of [s, t]) ids.delete(x.dataId);
      return ids.size;
    };
    const composed = (x: tf.Tensor) => tf.sum(tf.mul(tf.exp(tf.logSoftmax(t)), tf.sub(tf.logSoftmax(t), tf.logSoftmax(x)))) as tf.Scalar;
    for (const [name, f] of [...Object.entries(divergences).map(([n, d]) => [n, (x: tf.Tensor) => d(x, t, mask, { temperature: 2 }).loss] as const), ['composed from tfjs ops', composed] as const]) {
      let kept = 0;
      tf.grad((x: tf.Tensor) => {
        const loss = f(x);
        kept = tapedBuffers();
        return loss;
      })(s).dispose();
      // The saved logits share their buffers on cpu; wasm's Identity kernel copies them.
      if (name === 'composed from tfjs ops') expect(kept, 'the check has teeth').toBeGreaterThan(4);
      else expect(kept, name).toBe(backend === 'wasm' ? 2 : 0);
    }
    tf.dispose([s, t, mask]);
  });

  it('hintonKdLoss with α = 0 on logits[:, :-1] and labels[:, 1:] is the package causalLmLoss (mean over label tokens)', async () => {
    await initBackend(backend);
    const logits = tf.randomNormal([2, 6, 9], 0, 3, 'float32', 7);
    const labels = tf.tensor2d(
      [
        [-100, -100, 3, 1, 8, -100],
        [-100, 4, 0, 2, 2, 5],
      ],
      [2, 6],
      'int32',
    );
    const shifted = tf.slice(logits, [0, 0, 0], [2, 5, 9]);
    const next = tf.slice(labels, [0, 1], [2, 5]);
    const ones = tf.ones([2, 5]);
    const ours = hintonKdLoss(shifted, shifted, next, ones, { alpha: 0 });
    const theirs = causalLmLoss(logits, labels);
    expect(take(ours.loss)[0]).toBeCloseTo(take(theirs.loss)[0], 6);
    tf.dispose([ours.kd, ours.ce, ...Object.values(theirs), logits, labels, shifted, next, ones]);
  });

  it('hintonKdLoss: labels of −100 and masked tokens are out of ce; α = 1 is the KD term alone, α = 0 the cross-entropy', async () => {
    await initBackend(backend);
    const [s, t] = [student(), teacher()];
    const labels = tf.tensor2d(
      [
        [2, -100],
        [0, 1],
      ],
      [2, 2],
      'int32',
    );
    const mask = tf.tensor2d([
      [1, 1],
      [0, 1],
    ]);
    const { loss, kd, ce } = hintonKdLoss(s, t, labels, mask, { temperature: 2, alpha: 0.25 });
    const [l, k, c] = [take(loss)[0], take(kd)[0], take(ce)[0]];
    const logp = tf.tidy(() => tf.logSoftmax(s));
    const lp = take(logp);
    expect(c).toBeCloseTo(-(lp[2] + lp[9 + 1]) / 2, 5); // (b=0, t=0, label 2) and (b=1, t=1, label 1)
    const fk = forwardKl(s, t, mask, { temperature: 2 });
    fk.perToken.dispose();
    expect(k).toBeCloseTo(take(fk.loss)[0], 6);
    expect(l).toBeCloseTo(0.25 * k + 0.75 * c, 5);
    const only = (alpha: number) => {
      const out = hintonKdLoss(s, t, labels, mask, { temperature: 2, alpha });
      return [take(out.loss)[0], take(out.kd)[0], take(out.ce)[0]];
    };
    const [l1, k1] = only(1);
    expect(l1).toBe(k1);
    const [l0, , c0] = only(0);
    expect(l0).toBe(c0);
    tf.dispose([s, t, labels, mask]);
  });
});

describe('errors', () => {
  let [s, t, mask, labels] = [] as tf.Tensor[];
  beforeAll(async () => {
    await initBackend('cpu');
    [s, t, mask, labels] = [tf.zeros([2, 3, 5]), tf.zeros([2, 3, 5]), tf.ones([2, 3]), tf.zeros([2, 3], 'int32')];
  });
  afterAll(() => tf.dispose([s, t, mask, labels]));

  it('meaningless options throw INVALID_OPTION naming the option, the range and the value', () => {
    const cases: [() => unknown, string][] = [
      [() => forwardKl(s, t, mask, { temperature: 0 }), 'forwardKl: expected temperature to be a positive number; got 0'],
      [() => reverseKl(s, t, mask, { temperature: -1 }), 'reverseKl: expected temperature to be a positive number; got -1'],
      [() => totalVariation(s, t, mask, { temperature: Number.NaN }), 'totalVariation: expected temperature to be a positive number; got NaN'],
      [() => generalizedJsd(s, t, mask, { beta: 1.5 }), 'generalizedJsd: expected beta to be a number in [0, 1] (0 = forward KL, 1 = reverse KL); got 1.5'],
      [() => generalizedJsd(s, t, mask, { beta: -0.1 }), 'generalizedJsd: expected beta to be a number in [0, 1] (0 = forward KL, 1 = reverse KL); got -0.1'],
      [() => forwardKl(s, t, mask, { scaleByTemperatureSquared: 'yes' as unknown as boolean }), 'forwardKl: expected scaleByTemperatureSquared to be true or false; got "yes"'],
      [() => hintonKdLoss(s, t, labels, mask, { alpha: 2 }), 'hintonKdLoss: expected alpha to be a number in [0, 1] (the weight of the soft-target term); got 2'],
      [() => hintonKdLoss(s, t, labels, mask, { temperature: 0 }), 'hintonKdLoss: expected temperature to be a positive number; got 0'],
      [() => generalizedJsd(s, t, mask, { temprature: 2 } as never), 'generalizedJsd: unknown option "temprature"; known options are beta, temperature, scaleByTemperatureSquared'],
      [() => forwardKl(s, t, mask, { beta: 0.5 } as never), 'forwardKl: unknown option "beta"; known options are temperature, scaleByTemperatureSquared'],
    ];
    for (const [fn, message] of cases) {
      const e = thrown(fn);
      expect(e.code).toBe('INVALID_OPTION');
      expect(e.message).toBe(message);
    }
  });

  it('shape mismatches throw SHAPE_MISMATCH naming the inputs and their shapes, with help', () => {
    const wrongV = tf.zeros([2, 3, 4]);
    const wrongMask = tf.ones([2]);
    const wrongLabels = tf.zeros([2, 4], 'int32');
    let e = thrown(() => forwardKl(s, wrongV, mask));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toBe(
      'forwardKl: expected studentLogits and teacherLogits [B, T, V] and mask [B, T]; got studentLogits [2, 3, 5], teacherLogits [2, 3, 4], mask [2, 3]\n' +
        'help: run student and teacher on the same batch (same tokenizer, same positions); the mask is float32 1 where a token counts and 0 elsewhere',
    );
    e = thrown(() => generalizedJsd(s, t, wrongMask));
    expect(e.message.split('\n')[0]).toBe('generalizedJsd: expected studentLogits and teacherLogits [B, T, V] and mask [B, T]; got studentLogits [2, 3, 5], teacherLogits [2, 3, 5], mask [2]');
    e = thrown(() => hintonKdLoss(s, t, wrongLabels, mask));
    expect(e.message.split('\n')[0]).toBe(
      'hintonKdLoss: expected studentLogits and teacherLogits [B, T, V], labels and mask [B, T]; got studentLogits [2, 3, 5], teacherLogits [2, 3, 5], labels [2, 4], mask [2, 3]',
    );
    const flat = tf.zeros([15]);
    e = thrown(() => totalVariation(flat, t, mask));
    expect(e.code).toBe('SHAPE_MISMATCH');
    e = thrown(() => reverseKl(s, undefined as unknown as tf.Tensor, mask));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toBe('reverseKl: expected teacherLogits to be a tensor; got undefined');
    tf.dispose([wrongV, wrongMask, wrongLabels, flat]);
  });

  it('exports frozen defaults: TRL GKD β 0.5 and T 1, Hinton T 2 and α 0.5', () => {
    expect(defaultGeneralizedJsdOptions).toEqual({ beta: 0.5, temperature: 1, scaleByTemperatureSquared: true });
    expect(defaultDistillOptions).toEqual({ temperature: 1, scaleByTemperatureSquared: true });
    expect(defaultHintonKdLossOptions).toEqual({ temperature: 2, alpha: 0.5 });
    for (const d of [defaultGeneralizedJsdOptions, defaultDistillOptions, defaultHintonKdLossOptions]) expect(Object.isFrozen(d)).toBe(true);
  });
});
