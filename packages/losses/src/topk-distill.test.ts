import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { forwardKl } from './distill.js';
import { BACKENDS, checkCase, expectError, loadReference, useBackend } from './testing/reference.js';
import { topKForwardKl } from './topk-distill.js';

// PyTorch references (fixtures/distill_ref.json, the topKForwardKl/* cases of
// scripts/reference/losses_distill.py): loss, perToken and d loss / d studentLogits, float64 from the
// float32 inputs, within 1e-5 · max(1, max|ref|) per tensor.
const reference = Object.entries(loadReference('distill_ref')).filter(([, c]) => c.fn === 'topKForwardKl');
const run = (i: Record<string, tf.Tensor>, o: Record<string, unknown>) => ({ ...topKForwardKl(i.studentLogits, i.teacherIds, i.teacherLogprobs, i.mask, o) });

/** Reads and disposes. */
function take(t: tf.Tensor): number[] {
  const v = Array.from(t.dataSync());
  t.dispose();
  return v;
}

/** loss, perToken and d loss / d student, read back. */
function valueAndGrad(f: (x: tf.Tensor) => { loss: tf.Scalar; perToken: tf.Tensor }, student: tf.Tensor): { loss: number[]; perToken: number[]; grad: number[] } {
  let perToken: number[] = [];
  const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => {
    const out = f(x);
    perToken = Array.from(out.perToken.dataSync());
    return out.loss;
  })(student);
  return { loss: take(value), perToken, grad: take(grad) };
}

/**
 * The most bytes of distinct tensor buffers of at least `size` bytes alive at once while `f` runs,
 * in units of `size`: read from tfjs's engine, which registers each new buffer (not each tensor: a
 * reshape or a cpu clone shares its input's) in `state.tensorInfo` and deletes it when freed.
 */
function peakBuffers(f: () => void, size: number): number {
  const info = (tf.engine().state as unknown as { tensorInfo: WeakMap<object, { bytes: number }> }).tensorInfo;
  const [set, remove] = [info.set, info.delete];
  const live = new Map<object, number>();
  let [bytes, peak] = [0, 0];
  info.set = (key, value) => {
    if (value.bytes >= size) {
      live.set(key, value.bytes);
      bytes += value.bytes;
      peak = Math.max(peak, bytes);
    }
    return set.call(info, key, value);
  };
  info.delete = (key) => {
    bytes -= live.get(key) ?? 0;
    live.delete(key);
    return remove.call(info, key);
  };
  try {
    f();
  } finally {
    Reflect.deleteProperty(info, 'set');
    Reflect.deleteProperty(info, 'delete');
  }
  return peak / size;
}

it('the fixture covers K < V and K = V, K = 1, T ∈ {1, 2} (scaled and not), logits of ±100 and an all-masked row', () => {
  const names = reference.map(([n]) => n);
  expect(names.length).toBeGreaterThanOrEqual(8);
  const K = (c: (typeof reference)[number][1]) => c.inputs.teacherIds.shape[2];
  const V = (c: (typeof reference)[number][1]) => c.inputs.studentLogits.shape[2];
  expect(reference.some(([, c]) => K(c) < V(c) && K(c) > 1)).toBe(true);
  expect(new Set(reference.filter(([, c]) => K(c) === V(c)).map(([, c]) => c.options.temperature))).toEqual(new Set([1, 2]));
  expect(reference.some(([, c]) => K(c) === 1)).toBe(true);
  expect(new Set(reference.map(([, c]) => c.options.temperature))).toEqual(new Set([1, 2]));
  expect(reference.some(([, c]) => c.options.scaleByTemperatureSquared === false)).toBe(true);
  expect(Math.max(...reference.flatMap(([, c]) => c.inputs.studentLogits.data.map(Math.abs)))).toBe(100);
  const allMaskedRow = reference.some(([, c]) => {
    const [B, T] = c.inputs.mask.shape;
    return Array.from({ length: B }, (_, b) => c.inputs.mask.data.slice(b * T, (b + 1) * T).every((v) => v === 0)).some(Boolean);
  });
  expect(allMaskedRow).toBe(true);
  // Every case's gradient is checked, and only the student's (the teacher's cache is a constant).
  for (const [name, c] of reference) expect(Object.keys(c.grads), name).toEqual(['studentLogits']);
});

describe.each(BACKENDS)('against PyTorch on %s', (backend) => {
  it.each(reference)('%s', async (_name, c) => {
    await initBackend(backend);
    checkCase(c, run);
  });
});

describe.each(BACKENDS)('on %s', (backend) => {
  useBackend(backend);

  const [B, T, V] = [2, 3, 6];
  const student = () => tf.randomNormal([B, T, V], 0, 2, 'float32', 11);
  const teacher = () => tf.randomNormal([B, T, V], 0.5, 3, 'float32', 12);

  it('at K = V with ids 0 … V − 1 it is forwardKl bit for bit (values and gradient), at T = 1 and T = 2, scaled or not', () => {
    const [s, t] = [student(), teacher()];
    const mask = tf.tensor2d([
      [1, 1, 0],
      [0, 1, 1],
    ]);
    const ids = tf.tidy(() => tf.tile(tf.reshape(tf.range(0, V, 1, 'int32'), [1, 1, V]), [B, T, 1]));
    for (const options of [{ temperature: 1 }, { temperature: 2 }, { temperature: 2, scaleByTemperatureSquared: false }]) {
      const full = valueAndGrad((x) => forwardKl(x, t, mask, options), s);
      const topK = valueAndGrad((x) => topKForwardKl(x, ids, t, mask, options), s);
      expect(full.loss[0], 'a real divergence').toBeGreaterThan(0.1);
      expect(topK, JSON.stringify(options)).toEqual(full);
    }
    tf.dispose([s, t, mask, ids]);
  });

  it("at K = V with shuffled ids and the teacher's T = 1 log-probs it is forwardKl within float32 rounding", () => {
    const [s, t] = [student(), teacher()];
    const mask = tf.ones([B, T]);
    // ids: each token's vocabulary in a different order; log-probs: the teacher's, read at those ids
    const [ids, logprobs] = tf.tidy(() => {
      const order = tf.topk(tf.randomNormal([B, T, V], 0, 1, 'float32', 13), V).indices;
      const flat = tf.add(tf.mul(tf.reshape(tf.range(0, B * T, 1, 'int32'), [B, T, 1]), tf.scalar(V, 'int32')), order);
      return [order, tf.reshape(tf.gather(tf.reshape(tf.logSoftmax(t), [-1]), tf.reshape(flat, [-1])), [B, T, V])];
    });
    for (const temperature of [1, 2]) {
      const full = valueAndGrad((x) => forwardKl(x, t, mask, { temperature }), s);
      const topK = valueAndGrad((x) => topKForwardKl(x, ids, logprobs, mask, { temperature }), s);
      expect(Math.abs(topK.loss[0] - full.loss[0])).toBeLessThan(1e-6 * Math.max(1, full.loss[0]));
      topK.grad.forEach((g, i) => expect(Math.abs(g - full.grad[i])).toBeLessThan(1e-7));
    }
    tf.dispose([s, t, mask, ids, logprobs]);
  });

  it('K = 1 is T² times the cross-entropy of the id, whatever its log-prob', () => {
    const s = student();
    const ids = tf.tensor3d(
      [
        [[4], [0], [5]],
        [[1], [1], [2]],
      ],
      [B, T, 1],
      'int32',
    );
    const logprobs = tf.tensor3d(
      [
        [[-3], [-0.1], [-7]],
        [[-1], [-2], [-0.5]],
      ],
      [B, T, 1],
    );
    const mask = tf.ones([B, T]);
    const { loss, perToken } = topKForwardKl(s, ids, logprobs, mask, { temperature: 2 });
    const logp = take(tf.tidy(() => tf.logSoftmax(tf.div(s, 2))));
    const idList = [4, 0, 5, 1, 1, 2];
    const expected = idList.map((id, r) => -4 * logp[r * V + id]);
    take(perToken).forEach((v, r) => expect(v).toBeCloseTo(expected[r], 5));
    expect(take(loss)[0]).toBeCloseTo(expected.reduce((a, b) => a + b) / 6, 5);
    tf.dispose([s, ids, logprobs, mask]);
  });

  it('a masked row adds nothing, ids there may repeat, and an all-masked batch gives 0 with a zero, finite gradient', () => {
    const s = student();
    const ids = tf.tensor3d(
      [
        [
          [0, 1],
          [2, 3],
          [4, 5],
        ],
        [
          [0, 0],
          [0, 0],
          [0, 0],
        ],
      ],
      [B, T, 2],
      'int32',
    ); // row 1: padding
    const logprobs = tf.tensor3d(
      [
        [
          [-0.5, -1],
          [-2, -0.2],
          [-0.1, -3],
        ],
        [
          [-1, -1],
          [-1, -1],
          [-1, -1],
        ],
      ],
      [B, T, 2],
    );
    const rowMask = tf.tensor2d([
      [1, 1, 1],
      [0, 0, 0],
    ]);
    const { loss, perToken, grad } = valueAndGrad((x) => topKForwardKl(x, ids, logprobs, rowMask), s);
    expect(perToken.slice(3)).toEqual([0, 0, 0]);
    expect(perToken.slice(0, 3).every((v) => v > 0)).toBe(true);
    expect(loss[0]).toBeCloseTo((perToken[0] + perToken[1] + perToken[2]) / 3, 6);
    expect(grad.slice((B * T * V) / 2).every((g) => g === 0)).toBe(true);
    const none = tf.zeros([B, T]);
    const masked = valueAndGrad((x) => topKForwardKl(x, ids, logprobs, none, { temperature: 2 }), s);
    expect(masked.loss).toEqual([0]);
    expect(masked.grad.every((g) => g === 0)).toBe(true);
    tf.dispose([s, ids, logprobs, rowMask, none]);
  });

  it('an empty batch (B = 0 or T = 0) gives loss 0, not NaN or uninitialised memory', () => {
    for (const [b, t] of [
      [0, 3],
      [2, 0],
    ]) {
      const [s, ids, logprobs, mask] = [tf.zeros([b, t, 5]), tf.zeros([b, t, 2], 'int32'), tf.zeros([b, t, 2]), tf.zeros([b, t])];
      const { loss, perToken } = topKForwardKl(s, ids, logprobs, mask, { temperature: 2 });
      expect(take(loss), `[${b}, ${t}]`).toEqual([0]);
      expect(take(perToken)).toEqual([]);
      tf.dispose([s, ids, logprobs, mask]);
    }
  });

  it('a cache padded with −∞ log-probs (fewer than K tokens) equals the unpadded one', () => {
    const s = student();
    const mask = tf.ones([B, T]);
    const ids3 = tf.tensor3d(
      [
        [
          [0, 3, 1],
          [2, 5, 4],
          [1, 0, 5],
        ],
        [
          [3, 2, 0],
          [5, 4, 1],
          [0, 2, 3],
        ],
      ],
      [B, T, 3],
      'int32',
    );
    const lp3 = tf.tensor3d([-0.3, -1.5, -2, -0.7, -1, -4, -0.2, -2.5, -3, -1, -1.2, -1.4, -0.9, -1.1, -2, -0.4, -0.6, -5], [B, T, 3]);
    const ids4 = tf.tidy(() =>
      tf.concat(
        [
          ids3,
          tf.tensor3d(
            [
              [[2], [0], [3]],
              [[4], [0], [5]],
            ],
            [B, T, 1],
            'int32',
          ),
        ],
        2,
      ),
    ); // unused ids
    const lp4 = tf.tidy(() => tf.concat([lp3, tf.fill([B, T, 1], Number.NEGATIVE_INFINITY)], 2));
    for (const temperature of [1, 2]) {
      const three = valueAndGrad((x) => topKForwardKl(x, ids3, lp3, mask, { temperature }), s);
      const four = valueAndGrad((x) => topKForwardKl(x, ids4, lp4, mask, { temperature }), s);
      expect(four.loss.every(Number.isFinite) && four.grad.every(Number.isFinite)).toBe(true);
      expect(four.loss[0]).toBeCloseTo(three.loss[0], 6);
      four.grad.forEach((g, i) => expect(g).toBeCloseTo(three.grad[i], 7));
    }
    tf.dispose([s, mask, ids3, lp3, ids4, lp4]);
  });

  it('stays finite with logits of ±10⁴ and teacher log-probs of −2·10⁴', () => {
    const s = tf.tensor3d([
      [
        [1e4, -1e4, 0, 5e3],
        [-1e4, 1e4, 5e3, -5e3],
      ],
    ]);
    const ids = tf.tensor3d(
      [
        [
          [1, 3],
          [0, 2],
        ],
      ],
      [1, 2, 2],
      'int32',
    );
    const logprobs = tf.tensor3d([
      [
        [0, -2e4],
        [-1e-3, -2e4],
      ],
    ]);
    const mask = tf.ones([1, 2]);
    for (const temperature of [1, 2]) {
      const { loss, grad } = valueAndGrad((x) => topKForwardKl(x, ids, logprobs, mask, { temperature }), s);
      expect(loss.every(Number.isFinite) && grad.every(Number.isFinite)).toBe(true);
      expect(loss[0]).toBeGreaterThan(1e3); // the student puts ~e^(−2·10⁴) on the teacher's ids
    }
    tf.dispose([s, ids, logprobs, mask]);
  });

  it("puts the teacher's log-probs on no tape node: the gradient reaches the student's logits only", () => {
    const [s, logprobs] = [student(), tf.tidy(() => tf.slice(tf.logSoftmax(teacher()), [0, 0, 0], [B, T, 2]))];
    const ids = tf.tidy(() => tf.tile(tf.tensor3d([[[5, 2]]], [1, 1, 2], 'int32'), [B, T, 1]));
    const mask = tf.ones([B, T]);
    const readers = (x: tf.Tensor) => {
      const tape = (tf.engine().state as unknown as { activeTape: { inputs: Record<string, tf.Tensor> }[] | null }).activeTape ?? [];
      return tape.filter((node) => Object.values(node.inputs).some((input) => input.dataId === x.dataId)).length;
    };
    let [fromStudent, fromTeacher] = [0, 0];
    tf.grad((x: tf.Tensor) => {
      const { loss, perToken } = topKForwardKl(x, ids, logprobs, mask);
      [fromStudent, fromTeacher] = [readers(x), readers(logprobs)];
      perToken.dispose();
      return loss;
    })(s).dispose();
    expect(fromStudent, 'the check sees the tape').toBeGreaterThan(0);
    expect(fromTeacher).toBe(0);
    tf.dispose([s, logprobs, ids, mask]);
  });

  it('leaks nothing over repeated steps and never holds more than two [B, T, V] buffers at once (no one-hot)', () => {
    const [b, t, v, k] = [2, 4, 4000, 8];
    const s = tf.randomNormal([b, t, v], 0, 2, 'float32', 21);
    const [ids, logprobs] = tf.tidy(() => {
      const top = tf.topk(tf.logSoftmax(tf.randomNormal([b, t, v], 0, 3, 'float32', 22)), k);
      return [top.indices, top.values];
    });
    const mask = tf.ones([b, t]);
    const step = () => tf.dispose(tf.valueAndGrad((x: tf.Tensor) => topKForwardKl(x, ids, logprobs, mask, { temperature: 2 }).loss)(s) as unknown as tf.Tensor[]);
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    // Distinct [B, T, V] buffers alive at once during a forward + backward, the gradient included;
    // wasm adds the copy of the logits saved for the backward pass (its Identity kernel copies).
    const oneHot = () => tf.dispose(tf.valueAndGrad((x: tf.Tensor) => tf.sum(tf.mul(tf.oneHot(ids, v), tf.expandDims(tf.logSoftmax(x), 2))) as tf.Scalar)(s) as unknown as tf.Tensor[]);
    expect(peakBuffers(oneHot, b * t * v * 4), 'the check has teeth').toBeGreaterThan(k);
    expect(peakBuffers(step, b * t * v * 4)).toBeLessThanOrEqual(backend === 'wasm' ? 3 : 2);
    tf.dispose([s, ids, logprobs, mask]);
  });
});

describe('errors', () => {
  let [s, ids, logprobs, mask] = [] as tf.Tensor[];
  beforeAll(async () => {
    await initBackend('cpu');
    [s, ids, logprobs, mask] = [tf.zeros([2, 3, 5]), tf.zeros([2, 3, 4], 'int32'), tf.zeros([2, 3, 4]), tf.ones([2, 3])];
  });
  afterAll(() => tf.dispose([s, ids, logprobs, mask]));

  it('meaningless options throw INVALID_OPTION naming the option, the range and the value', () => {
    expectError(() => topKForwardKl(s, ids, logprobs, mask, { temperature: 0 }), 'INVALID_OPTION', 'topKForwardKl: expected temperature to be a positive number; got 0');
    expectError(
      () => topKForwardKl(s, ids, logprobs, mask, { scaleByTemperatureSquared: 1 as unknown as boolean }),
      'INVALID_OPTION',
      'topKForwardKl: expected scaleByTemperatureSquared to be true or false; got 1',
    );
    expectError(() => topKForwardKl(s, ids, logprobs, mask, { k: 4 } as never), 'INVALID_OPTION', 'topKForwardKl: unknown option "k"; known options are temperature, scaleByTemperatureSquared');
  });

  it('shape mismatches throw SHAPE_MISMATCH naming every input and its shape, with help', () => {
    const expected = 'topKForwardKl: expected studentLogits [B, T, V], teacherIds and teacherLogprobs [B, T, K] and mask [B, T]; got ';
    const help = "\nhelp: cache the teacher's top-K ids and log-probs at the student's positions (same batch, same tokenizer); the mask is float32 1 where a token counts and 0 elsewhere";
    const [ids3, ids2d, mask1, flat] = [tf.zeros([2, 3, 3], 'int32'), tf.zeros([2, 3], 'int32'), tf.ones([2]), tf.zeros([30])];
    expectError(() => topKForwardKl(s, ids3, logprobs, mask), 'SHAPE_MISMATCH', `${expected}studentLogits [2, 3, 5], teacherIds [2, 3, 3], teacherLogprobs [2, 3, 4], mask [2, 3]${help}`);
    expectError(() => topKForwardKl(s, ids2d, logprobs, mask), 'SHAPE_MISMATCH', `${expected}studentLogits [2, 3, 5], teacherIds [2, 3], teacherLogprobs [2, 3, 4], mask [2, 3]${help}`);
    expectError(() => topKForwardKl(s, ids, logprobs, mask1), 'SHAPE_MISMATCH', `${expected}studentLogits [2, 3, 5], teacherIds [2, 3, 4], teacherLogprobs [2, 3, 4], mask [2]${help}`);
    expectError(() => topKForwardKl(flat, ids, logprobs, mask), 'SHAPE_MISMATCH', `${expected}studentLogits [30], teacherIds [2, 3, 4], teacherLogprobs [2, 3, 4], mask [2, 3]${help}`);
    tf.dispose([ids3, ids2d, mask1, flat]);
  });

  it('K > V or K = 0 throws SHAPE_MISMATCH with both numbers', () => {
    const help = '\nhelp: teacher and student must share one vocabulary; K = V (every id once) is the full forwardKl';
    const [ids6, lp6, ids0, lp0] = [tf.zeros([2, 3, 6], 'int32'), tf.zeros([2, 3, 6]), tf.zeros([2, 3, 0], 'int32'), tf.zeros([2, 3, 0])];
    expectError(() => topKForwardKl(s, ids6, lp6, mask), 'SHAPE_MISMATCH', `topKForwardKl: expected 1 ≤ K ≤ V (K teacher ids per token, into the student's vocabulary of V); got K = 6, V = 5${help}`);
    expectError(() => topKForwardKl(s, ids0, lp0, mask), 'SHAPE_MISMATCH', `topKForwardKl: expected 1 ≤ K ≤ V (K teacher ids per token, into the student's vocabulary of V); got K = 0, V = 5${help}`);
    tf.dispose([ids6, lp6, ids0, lp0]);
  });

  it('wrong dtypes throw DTYPE_MISMATCH saying what to cast; a missing input INVALID_ARGUMENT', () => {
    const [floatIds, intLogprobs] = [tf.zeros([2, 3, 4]), tf.zeros([2, 3, 4], 'int32')];
    expectError(() => topKForwardKl(s, floatIds, logprobs, mask), 'DTYPE_MISMATCH', "topKForwardKl: expected teacherIds to be int32 token ids; got float32\nhelp: tf.cast(teacherIds, 'int32')");
    expectError(
      () => topKForwardKl(s, ids, intLogprobs, mask),
      'DTYPE_MISMATCH',
      "topKForwardKl: expected teacherLogprobs to be float32 log-probs; got int32\nhelp: tf.cast(teacherLogprobs, 'float32')",
    );
    expectError(() => topKForwardKl(s, undefined as unknown as tf.Tensor, logprobs, mask), 'INVALID_ARGUMENT', 'topKForwardKl: expected teacherIds to be a tensor; got undefined');
    tf.dispose([floatIds, intLogprobs]);
  });
});
