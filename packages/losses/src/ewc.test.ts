import { describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf, valueAndGrads } from '@posttrain/tensor-core';
import { BACKENDS, checkCase, loadReference } from './testing/reference.js';
import { defaultEwcPenaltyOptions, ewcPenalty, fisherDiagonal } from './ewc.js';

// PyTorch references (fixtures/distill_ref.json, written by scripts/reference/losses_distill.py):
// fisherDiagonal on three tiny models (the mean over batches of torch.autograd.grad(loss)²), and
// ewcPenalty with its gradient with respect to params, anchors and fisher, float64 from the
// float32 inputs, within 1e-5 · max(1, max|ref|) per tensor.
const reference = Object.entries(loadReference('distill_ref')).filter(([, c]) => c.fn === 'fisherDiagonal' || c.fn === 'ewcPenalty');

/** The fixture's `prefix.name` entries as a Map keyed by name. */
function group(inputs: Record<string, tf.Tensor>, prefix: string): Map<string, tf.Tensor> {
  return new Map(
    Object.entries(inputs)
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => [k.slice(prefix.length), v]),
  );
}

type Loss = (p: Map<string, tf.Variable>, batch: Map<string, tf.Tensor>) => tf.Scalar;

// The scripts' models, written again in tfjs.
const MODELS: Record<string, Loss> = {
  // mean cross-entropy of softmax(x W + b)
  'softmax-regression': (p, b) => {
    const logits = tf.add(tf.matMul(b.get('x')!, p.get('weight')!), p.get('bias')!); // [N, C]
    const target = tf.oneHot(tf.cast(b.get('y')!, 'int32'), logits.shape[1]!); // [N, C]
    return tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), -1))) as tf.Scalar;
  },
  // binary cross-entropy with logits, softplus(z) − y·z, of one example
  'logistic-per-example': (p, b) => {
    const z = tf.add(tf.reshape(tf.matMul(b.get('x')!, tf.reshape(p.get('weight')!, [-1, 1])), [-1]), p.get('bias')!); // [N]
    return tf.mean(tf.sub(tf.softplus(z), tf.mul(tf.cast(b.get('y')!, 'float32'), z))) as tf.Scalar;
  },
  // mean squared error of tanh(x W1 + b1) W2
  'tanh-mlp': (p, b) => {
    const h = tf.tanh(tf.add(tf.matMul(b.get('x')!, p.get('fc1.weight')!), p.get('fc1.bias')!));
    return tf.mean(tf.square(tf.sub(tf.matMul(h, p.get('fc2.weight')!), b.get('target')!))) as tf.Scalar;
  },
};

function runFisher(name: string, inputs: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
  const params = new Map([...group(inputs, 'param.')].map(([k, v]) => [k, tf.variable(v)]));
  const batches: Map<string, tf.Tensor>[] = [];
  for (let i = 0; `batch${i}.x` in inputs; i++) batches.push(group(inputs, `batch${i}.`));
  const fisher = fisherDiagonal(params, batches, (batch) => MODELS[name](params, batch));
  tf.dispose([...params.values()]);
  return Object.fromEntries([...fisher].map(([k, v]) => [`fisher.${k}`, v]));
}

function runPenalty(inputs: Record<string, tf.Tensor>, options: Record<string, unknown>): Record<string, unknown> {
  return { ...ewcPenalty(group(inputs, 'param.'), group(inputs, 'anchor.'), group(inputs, 'fisher.'), options) };
}

/** A variable whose initial tensor is freed (tf.variable keeps its own reference to the data). */
function variable(init: tf.Tensor, trainable = true): tf.Variable {
  const v = tf.variable(init, trainable);
  init.dispose();
  return v;
}

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e), String(e)).toBe(true);
    return e as Error & { code?: string };
  }
  return expect.unreachable('expected a PosttrainError') as never;
}

it('the fixture has the three Fisher models and the two penalty cases', () => {
  expect(reference.map(([n]) => n).sort()).toEqual([
    'ewcPenalty/lambda1',
    'ewcPenalty/lambda5000-large',
    'fisherDiagonal/logistic-per-example',
    'fisherDiagonal/softmax-regression',
    'fisherDiagonal/tanh-mlp',
  ]);
});

describe.each(BACKENDS)('against PyTorch on %s', (backend) => {
  it.each(reference)('%s', async (name, c) => {
    await initBackend(backend);
    if (c.fn === 'fisherDiagonal') checkCase(c, (inputs) => runFisher(name.split('/')[1], inputs));
    else checkCase(c, runPenalty);
  });
});

describe.each(BACKENDS)('fisherDiagonal on %s', (backend) => {
  it('gives zeros to parameters the loss does not reach or that are frozen, and one Fisher to tied weights', async () => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const w = variable(tf.tensor1d([1, -2]));
    const unused = variable(tf.ones([3]));
    const frozen = variable(tf.ones([2]), false);
    const params = new Map<string, tf.Variable>([
      ['w', w],
      ['unused', unused],
      ['frozen', frozen],
      ['tied', w],
    ]);
    const xs = [tf.tensor1d([1, 2]), tf.tensor1d([3, -1])];
    // loss = Σ (w ⊙ frozen) · x, gradient x: F = mean of x² = [5, 2.5]
    const fisher = fisherDiagonal(params, xs, (x) => tf.sum(tf.mul(tf.mul(w, frozen), x)) as tf.Scalar);
    expect([...fisher.keys()]).toEqual(['w', 'unused', 'frozen', 'tied']);
    expect(Array.from(fisher.get('w')!.dataSync())).toEqual([5, 2.5]);
    expect(Array.from(fisher.get('tied')!.dataSync())).toEqual([5, 2.5]);
    expect(fisher.get('tied')).not.toBe(fisher.get('w'));
    expect(Array.from(fisher.get('unused')!.dataSync())).toEqual([0, 0, 0]);
    expect(Array.from(fisher.get('frozen')!.dataSync())).toEqual([0, 0]);
    tf.dispose([...fisher.values(), ...xs, w, unused, frozen]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes a generator of batches, and EWC then pulls a moved parameter back where the Fisher is large', async () => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const theta = variable(tf.tensor1d([0.5, 0.5]));
    const params = new Map([['theta', theta]]);
    function* batches() {
      for (const s of [1, 2, 3]) yield s;
    }
    // d/dθ of s·θ₀ is [s, 0]: F = [(1 + 4 + 9)/3, 0]
    const fisher = fisherDiagonal(params, batches(), (s) => tf.mul(theta.slice(0, 1).sum(), s) as tf.Scalar);
    expect(Array.from(fisher.get('theta')!.dataSync())).toEqual([14 / 3, 0].map(Math.fround));
    const anchors = new Map([['theta', theta.clone()]]);
    const moved = tf.tensor1d([1.5, 1.5]);
    theta.assign(moved);
    moved.dispose();
    const { value, grads } = valueAndGrads(() => ewcPenalty(params, anchors, fisher, { lambda: 3 }).loss, params);
    expect(value.dataSync()[0]).toBeCloseTo((3 / 2) * (14 / 3), 5);
    const g = grads.get('theta')!.dataSync();
    expect(g[0]).toBeCloseTo(3 * (14 / 3) * 1, 5); // λ·F·(θ − θ*)
    expect(g[1]).toBe(0); // zero Fisher: free to move
    tf.dispose([value, ...grads.values(), ...fisher.values(), ...anchors.values(), theta]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('throws on no batches and passes on a bad loss, leaving no tensor behind', async () => {
    await initBackend(backend);
    const w = variable(tf.ones([2]));
    const params = new Map([['w', w]]);
    const before = tf.memory().numTensors;
    let e = thrown(() => fisherDiagonal(params, [], () => tf.sum(w) as tf.Scalar));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message.split('\n')[0]).toBe('fisherDiagonal: expected at least one batch; got none');
    // the second batch returns a vector: valueAndGrads refuses it after the first was accumulated
    e = thrown(() => fisherDiagonal(params, [0, 1], (i) => (i === 0 ? tf.sum(w) : tf.mul(w, 2)) as tf.Scalar));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message.split('\n')[0]).toBe('valueAndGrads: expected fn to return a scalar tensor; got shape [2]');
    e = thrown(() => fisherDiagonal(params, 3 as unknown as number[], () => tf.sum(w) as tf.Scalar));
    expect(e.message).toBe('fisherDiagonal: expected batches to be an iterable (an array or a generator); got number');
    e = thrown(() => fisherDiagonal({} as Map<string, tf.Variable>, [1], () => tf.sum(w) as tf.Scalar));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(tf.memory().numTensors).toBe(before);
    w.dispose();
  });
});

describe('ewcPenalty', () => {
  const a = () => tf.ones([2, 3]);
  const b = () => tf.zeros([4]);

  it('throws STATE_DICT_MISMATCH naming every missing key, and SHAPE_MISMATCH naming the key and the three shapes', () => {
    const [p1, p2, a1, f1, f2, wrong] = [a(), b(), a(), a(), b(), tf.zeros([3, 2])];
    const params = new Map([
      ['layer.weight', p1],
      ['layer.bias', p2],
    ]);
    let e = thrown(() => ewcPenalty(params, new Map([['layer.weight', a1]]), new Map([['layer.weight', f1]])));
    expect(e.code).toBe('STATE_DICT_MISMATCH');
    expect(e.message).toBe(
      'ewcPenalty: expected anchors and fisher to hold every key of params; anchors has no "layer.bias", fisher has no "layer.bias"\n' +
        'help: snapshot the anchors and compute the Fisher from the same parameter map (same keys) after the old task',
    );
    e = thrown(() =>
      ewcPenalty(
        params,
        new Map([
          ['layer.weight', wrong],
          ['layer.bias', p2],
        ]),
        new Map([
          ['layer.weight', f1],
          ['layer.bias', f2],
        ]),
      ),
    );
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message.split('\n')[0]).toBe('ewcPenalty: expected params, anchors and fisher of the same shape under each key; got "layer.weight": params [2, 3], anchors [3, 2], fisher [2, 3]');
    tf.dispose([p1, p2, a1, f1, f2, wrong]);
  });

  it('rejects a negative or non-finite λ and unknown options; ignores extra anchor keys; empty params give 0', () => {
    const m = new Map<string, tf.Tensor>();
    for (const [options, message] of [
      [{ lambda: -1 }, 'ewcPenalty: expected lambda to be a number ≥ 0; got -1'],
      [{ lambda: Infinity }, 'ewcPenalty: expected lambda to be a number ≥ 0; got Infinity'],
      [{ lamda: 1 }, 'ewcPenalty: unknown option "lamda"; known options are lambda'],
    ] as const) {
      const e = thrown(() => ewcPenalty(m, m, m, options as never));
      expect(e.code).toBe('INVALID_OPTION');
      expect(e.message).toBe(message);
    }
    const x = a();
    const extra = new Map([['other', x]]);
    const { loss } = ewcPenalty(m, extra, extra, { lambda: 0 });
    expect(loss.dataSync()[0]).toBe(0);
    tf.dispose([loss, x]);
    expect(defaultEwcPenaltyOptions).toEqual({ lambda: 1 });
    expect(Object.isFrozen(defaultEwcPenaltyOptions)).toBe(true);
  });
});
