import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { Module, ModuleList } from './module.js';
import { Dropout, Embedding, Linear } from './layers.js';
import { LayerNorm } from './norm.js';
import { Rng } from './rng.js';
import { thrown } from './testing/assert.js';
import { expectNoTensorLeaks } from './testing/tensors.js';

// A small tree shaped like a transformer: embed → layers (ModuleList of blocks) → norm → head.
class Block extends Module {
  readonly attn: Linear;
  readonly mlp: Linear;
  readonly drop: Dropout;
  readonly alias: Linear; // a second field pointing at the same child, re-pointed by replaceModule too

  constructor(rng: Rng) {
    super();
    this.attn = this.registerModule('attn', new Linear(4, 4, { rng }));
    this.mlp = this.registerModule('mlp', new Linear(4, 4, { bias: false, rng }));
    this.drop = this.registerModule('drop', new Dropout(0.5, rng));
    this.alias = this.attn;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.mlp.forward(tf.relu(this.drop.forward(this.attn.forward(x))))));
  }
}

class Tiny extends Module {
  readonly embed: Embedding;
  readonly layers: ModuleList<Block>;
  readonly norm: LayerNorm;
  readonly head: Linear;

  constructor(seed = 0) {
    super();
    const rng = new Rng(seed);
    this.embed = this.registerModule('embed', new Embedding(10, 4, { rng }));
    this.layers = this.registerModule('layers', new ModuleList([new Block(rng), new Block(rng)]));
    this.norm = this.registerModule('norm', new LayerNorm(4));
    this.head = this.registerModule('head', new Linear(4, 3, { rng }));
  }

  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let h = this.embed.forward(ids);
      for (const layer of this.layers) h = layer.forward(h);
      return this.head.forward(this.norm.forward(h));
    });
  }
}

const tinyKeys = [
  'embed.weight',
  'layers.0.attn.weight',
  'layers.0.attn.bias',
  'layers.0.mlp.weight',
  'layers.1.attn.weight',
  'layers.1.attn.bias',
  'layers.1.mlp.weight',
  'norm.weight',
  'norm.bias',
  'head.weight',
  'head.bias',
];

// Parameters registered on a module before and after its children; buffers persistent or not.
class WithBuffers extends Module {
  readonly scale: tf.Variable;
  readonly inner: Linear;
  readonly offset: tf.Variable;

  constructor() {
    super();
    this.scale = this.registerParameter('scale', tf.tensor1d([1, 2]));
    this.inner = this.registerModule('inner', new Linear(2, 2, { rng: new Rng(3) }));
    this.offset = this.registerParameter('offset', tf.zeros([2]), { trainable: false });
    this.registerBuffer('runningMean', tf.tensor1d([0.5, -0.5]));
    this.registerBuffer('steps', tf.scalar(3, 'int32'));
    this.registerBuffer('cache', tf.zeros([3]), { persistent: false });
  }

  buffer(name: string): tf.Tensor {
    return this.namedBuffers().get(name)!;
  }

  replaceBuffer(name: string, value: tf.Tensor): void {
    this.setBuffer(name, value);
  }

  /** Registers a fresh value; when registration throws, the caller (this helper) still owns it. */
  register(kind: 'parameter' | 'buffer' | 'module', name: string): void {
    const value = tf.zeros([1]);
    try {
      if (kind === 'parameter') this.registerParameter(name, value);
      else if (kind === 'buffer') this.registerBuffer(name, value);
      else this.registerModule(name, new Module());
    } finally {
      if (kind === 'module' || !value.isDisposed) value.dispose();
    }
  }
}

function values(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** A copy of a module's state dict that the caller owns (so tests can drop, add or reshape keys). */
function ownedStateDict(m: Module): Record<string, tf.Tensor> {
  return Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [k, v.clone()]));
}

// Every test disposes what it made; a leak in the code under test fails here.
expectNoTensorLeaks();

describe('Module paths', () => {
  it('names parameters by dotted path in registration order, ModuleList entries as 0, 1, …', () => {
    const m = new Tiny();
    expect([...m.namedParameters().keys()]).toEqual(tinyKeys);
    expect([...m.namedModules().keys()]).toEqual([
      '',
      'embed',
      'layers',
      'layers.0',
      'layers.0.attn',
      'layers.0.mlp',
      'layers.0.drop',
      'layers.1',
      'layers.1.attn',
      'layers.1.mlp',
      'layers.1.drop',
      'norm',
      'head',
    ]);
    expect(m.namedParameters().get('layers.1.attn.weight')).toBe(m.layers.at(1).attn.weight);
    expect(m.getModule('layers.0.mlp')).toBe(m.layers.at(0).mlp);
    expect(m.getModule('')).toBe(m);
    expect([...m.namedChildren().keys()]).toEqual(['embed', 'layers', 'norm', 'head']);
    m.dispose();
  });

  it("lists a module's own parameters before its children's, like torch", () => {
    const m = new WithBuffers();
    expect([...m.namedParameters().keys()]).toEqual(['scale', 'offset', 'inner.weight', 'inner.bias']);
    m.dispose();
  });

  it('rejects a duplicate name across parameters, buffers and modules', () => {
    const m = new WithBuffers();
    for (const [kind, name] of [
      ['parameter', 'scale'],
      ['module', 'scale'],
      ['buffer', 'inner'],
      ['parameter', 'runningMean'],
      ['module', 'cache'],
    ] as const) {
      const error = thrown(() => m.register(kind, name));
      expect(isPosttrainError(error)).toBe(true);
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toBe(`"${name}" is already registered on WithBuffers`);
    }
    m.dispose();
  });

  it('rejects a dotted or empty name', () => {
    const m = new WithBuffers();
    for (const kind of ['parameter', 'buffer', 'module'] as const) {
      expect(thrown(() => m.register(kind, 'a.b')).message).toBe('expected a non-empty name without dots; got "a.b"');
      expect(thrown(() => m.register(kind, '')).message).toBe('expected a non-empty name without dots; got ""');
    }
    m.dispose();
  });

  it('getModule names a missing path', () => {
    const m = new Tiny();
    const error = thrown(() => m.getModule('layers.7'));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('no module at path "layers.7"');
    m.dispose();
  });
});

describe('ModuleList', () => {
  it('has a length, indexes, iterates in order and rejects an index out of range', () => {
    const rng = new Rng(1);
    const items = [new Linear(2, 2, { rng }), new Linear(2, 3, { rng }), new Linear(3, 1, { rng })];
    const list = new ModuleList(items);
    expect(list.length).toBe(3);
    expect([...list]).toEqual(items);
    expect(list.at(2)).toBe(items[2]);
    expect([...list.namedParameters().keys()]).toEqual(['0.weight', '0.bias', '1.weight', '1.bias', '2.weight', '2.bias']);
    const error = thrown(() => list.at(3));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toBe('index 3 out of range for a ModuleList of length 3');
    expect(new ModuleList().length).toBe(0);
    list.dispose();
  });
});

describe('stateDict and loadStateDict', () => {
  it('round-trips: a module loaded from another computes the same outputs', () => {
    const a = new Tiny(1);
    const b = new Tiny(2);
    a.eval();
    b.eval();
    const ids = tf.tensor2d([[1, 2, 3, 2]], [1, 4], 'int32');
    const ya = a.forward(ids);
    const yb0 = b.forward(ids);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(ya, yb0))).dataSync()[0])).toBeGreaterThan(1e-3); // differently initialised
    const sd = a.stateDict();
    expect(Object.keys(sd)).toEqual(tinyKeys);
    expect(sd['layers.0.attn.weight']).toBe(a.layers.at(0).attn.weight);
    expect(b.loadStateDict(sd)).toEqual({ missingKeys: [], unexpectedKeys: [] });
    // The caller keeps ownership of the source: disposing it leaves b intact.
    a.dispose();
    const yb = b.forward(ids);
    expect(values(yb)).toEqual(values(ya));
    tf.dispose([ids, ya, yb0, yb]);
    b.dispose();
  });

  it('keeps the loaded values after the caller disposes its tensors', () => {
    const m = new Tiny(1);
    const donor = new Tiny(5);
    const sd = ownedStateDict(donor);
    donor.dispose();
    const expected = values(sd['head.weight']);
    m.loadStateDict(sd);
    tf.dispose(Object.values(sd));
    expect(values(m.head.weight)).toEqual(expected);
    m.dispose();
  });

  it('loading a module into itself is a no-op (it used to destroy the parameters)', () => {
    const m = new WithBuffers();
    const before = Object.fromEntries(Object.entries(m.stateDict()).map(([k, v]) => [k, values(v)]));
    const count = tf.memory().numTensors;
    m.loadStateDict(m.stateDict());
    expect(tf.memory().numTensors).toBe(count);
    for (const [k, v] of Object.entries(m.stateDict())) expect(values(v)).toEqual(before[k]);
    const y = tf.tidy(() => m.inner.forward(tf.ones([1, 2])));
    expect(y.shape).toEqual([1, 2]);
    y.dispose();
    m.dispose();
  });

  it('strict: one error lists the missing, unexpected and mis-shaped keys, and assigns nothing', () => {
    const m = new Tiny(1);
    const donor = new Tiny(2);
    const sd = ownedStateDict(donor);
    donor.dispose();
    const original = values(m.head.weight);
    tf.dispose([sd['norm.bias'], sd['layers.1.mlp.weight'], sd['embed.weight']]);
    delete sd['norm.bias'];
    delete sd['layers.1.mlp.weight'];
    sd['embed.weight'] = tf.zeros([11, 4]);
    sd['norm.gamma'] = tf.ones([4]);
    const error = thrown(() => m.loadStateDict(sd));
    expect(isPosttrainError(error)).toBe(true);
    expect(error.code).toBe('STATE_DICT_MISMATCH');
    expect(error.message).toContain('missing keys (2): layers.1.mlp.weight, norm.bias');
    expect(error.message).toContain('unexpected keys (1): norm.gamma');
    expect(error.message).toContain('mis-shaped keys (1): embed.weight: expected [10, 4], got [11, 4]');
    expect(error.message).toContain('help: check that the checkpoint was made for this configuration');
    expect(values(m.head.weight)).toEqual(original);
    tf.dispose(Object.values(sd));
    m.dispose();
  });

  it('strict: missing and unexpected keys alone suggest loadStateDict(tensors, { strict: false })', () => {
    const m = new WithBuffers();
    const scale = tf.ones([2]);
    const error = thrown(() => m.loadStateDict({ scale, extra: scale }));
    expect(error.message).toBe(
      [
        'state dict does not match the module:',
        '  missing keys (5): offset, runningMean, steps, inner.weight, inner.bias',
        '  unexpected keys (1): extra',
        'help: loadStateDict(tensors, { strict: false }) loads a partial state dict and returns the missing and unexpected keys',
      ].join('\n'),
    );
    expect(values(m.scale)).toEqual([1, 2]);
    scale.dispose();
    m.dispose();
  });

  it('non-strict: loads what matches and returns the missing and unexpected keys', () => {
    const m = new Tiny(1);
    const donor = new Tiny(2);
    const sd: Record<string, tf.Tensor> = {
      'head.weight': donor.head.weight,
      'layers.0.attn.bias': donor.layers.at(0).attn.bias!,
      'lm_head.weight': tf.zeros([3, 4]),
    };
    const result = m.loadStateDict(sd, { strict: false });
    expect(result.unexpectedKeys).toEqual(['lm_head.weight']);
    expect(result.missingKeys).toEqual(tinyKeys.filter((k) => k !== 'head.weight' && k !== 'layers.0.attn.bias'));
    expect(values(m.head.weight)).toEqual(values(donor.head.weight));
    expect(values(m.layers.at(0).attn.bias!)).toEqual(values(donor.layers.at(0).attn.bias!));
    sd['lm_head.weight'].dispose();
    donor.dispose();
    m.dispose();
  });

  it('non-strict: a mis-shaped key still throws and nothing is assigned', () => {
    const m = new Tiny(1);
    const before = values(m.head.weight);
    const sd = { 'head.weight': tf.ones([3, 4]), 'norm.weight': tf.ones([5]) };
    const error = thrown(() => m.loadStateDict(sd, { strict: false }));
    expect(error.code).toBe('STATE_DICT_MISMATCH');
    expect(error.message).toContain('mis-shaped keys (1): norm.weight: expected [4], got [5]');
    expect(values(m.head.weight)).toEqual(before);
    tf.dispose(Object.values(sd));
    m.dispose();
  });

  it('casts to the dtype of the parameter or buffer', () => {
    const m = new WithBuffers();
    const sd = ownedStateDict(m);
    sd.scale.dispose();
    sd.steps.dispose();
    sd.scale = tf.tensor1d([7, -2], 'int32');
    sd.steps = tf.scalar(41.9, 'float32');
    m.loadStateDict(sd);
    expect(m.scale.dtype).toBe('float32');
    expect(values(m.scale)).toEqual([7, -2]);
    expect(m.buffer('steps').dtype).toBe('int32');
    expect(values(m.buffer('steps'))).toEqual([41]);
    tf.dispose(Object.values(sd));
    m.dispose();
  });

  it('includes persistent buffers in the state dict and loads them, but not non-persistent ones', () => {
    const m = new WithBuffers();
    expect(Object.keys(m.stateDict())).toEqual(['scale', 'offset', 'runningMean', 'steps', 'inner.weight', 'inner.bias']);
    expect([...m.namedBuffers().keys()]).toEqual(['runningMean', 'steps', 'cache']);
    const sd = ownedStateDict(m);
    sd.runningMean.dispose();
    sd.runningMean = tf.tensor1d([3, 4]);
    m.loadStateDict(sd);
    expect(values(m.buffer('runningMean'))).toEqual([3, 4]);
    // The module holds its own copy: the caller may dispose its tensor.
    sd.runningMean.dispose();
    expect(values(m.buffer('runningMean'))).toEqual([3, 4]);
    sd.runningMean = tf.tensor1d([0, 0]);
    // A non-persistent buffer is not a key of the state dict.
    sd.cache = tf.ones([3]);
    expect(m.loadStateDict(sd, { strict: false }).unexpectedKeys).toEqual(['cache']);
    expect(values(m.buffer('cache'))).toEqual([0, 0, 0]);
    tf.tidy(() => m.replaceBuffer('cache', tf.mul(tf.ones([3]), 2))); // the module keeps the new tensor
    expect(values(m.buffer('cache'))).toEqual([2, 2, 2]);
    tf.dispose(Object.values(sd));
    m.dispose();
  });
});

describe('modes and trainability', () => {
  it('train(false)/eval()/train() propagate to every descendant', () => {
    const m = new Tiny();
    const all = [...m.namedModules().values()];
    expect(all.every((x) => x.training)).toBe(true);
    expect(m.eval()).toBe(m);
    expect(all.every((x) => !x.training)).toBe(true);
    m.layers.at(1).train();
    expect(m.layers.at(1).drop.training).toBe(true);
    expect(m.layers.at(0).drop.training).toBe(false);
    expect(m.training).toBe(false);
    m.train(true);
    expect(all.every((x) => x.training)).toBe(true);
    m.train(false);
    // Eval mode: dropout is the identity, so two forwards agree.
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const [y1, y2] = [m.forward(ids), m.forward(ids)];
    expect(values(y1)).toEqual(values(y2));
    tf.dispose([ids, y1, y2]);
    m.dispose();
  });

  it('freeze/unfreeze a subtree: trainableParameters, numParameters and gradients follow', () => {
    const m = new Tiny();
    const total = 10 * 4 + 2 * (4 * 4 + 4 + 4 * 4) + 4 + 4 + 3 * 4 + 3;
    expect(m.numParameters()).toBe(total);
    expect(m.numParameters({ trainableOnly: true })).toBe(total);
    expect(m.layers.freeze()).toBe(m.layers);
    expect([...m.trainableParameters().keys()]).toEqual(tinyKeys.filter((k) => !k.startsWith('layers.')));
    expect(m.numParameters({ trainableOnly: true })).toBe(total - 2 * (4 * 4 + 4 + 4 * 4));
    expect(m.numParameters()).toBe(total);

    m.eval();
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const { value, grads } = tf.variableGrads(() => tf.sum(m.forward(ids)) as tf.Scalar, [...m.namedParameters().values()]);
    const byName = new Map([...m.namedParameters()].map(([path, p]) => [p.name, path]));
    const withGrad = Object.entries(grads)
      .filter(([, g]) => g !== null)
      .map(([name]) => byName.get(name));
    expect(withGrad.sort()).toEqual(tinyKeys.filter((k) => !k.startsWith('layers.')).sort());
    tf.dispose([ids, value, ...Object.values(grads).filter((g): g is tf.Tensor => g !== null)]);

    m.unfreeze();
    expect([...m.trainableParameters().keys()]).toEqual(tinyKeys);
    m.freeze();
    expect(m.trainableParameters().size).toBe(0);
    expect(m.numParameters({ trainableOnly: true })).toBe(0);
    m.dispose();
  });

  it('keeps a parameter registered with trainable: false out of trainableParameters', () => {
    const m = new WithBuffers();
    expect([...m.trainableParameters().keys()]).toEqual(['scale', 'inner.weight', 'inner.bias']);
    expect(m.numParameters()).toBe(2 + 2 + 4 + 2);
    expect(m.numParameters({ trainableOnly: true })).toBe(2 + 4 + 2);
    m.dispose();
  });
});

describe('replaceModule', () => {
  it('puts the new module at the path, re-points the parent fields and returns the old one', () => {
    const m = new Tiny();
    const block = m.layers.at(1);
    const old = block.attn;
    const replacement = new Linear(4, 4, { bias: false, rng: new Rng(9) });
    expect(m.replaceModule('layers.1.attn', replacement)).toBe(old);
    expect(block.attn).toBe(replacement);
    expect(block.alias).toBe(replacement);
    expect(m.getModule('layers.1.attn')).toBe(replacement);
    expect(m.namedParameters().get('layers.1.attn.weight')).toBe(replacement.weight);
    expect(m.namedParameters().has('layers.1.attn.bias')).toBe(false);
    expect(m.layers.at(0).attn).not.toBe(replacement);
    // Order of the children is kept.
    expect([...block.namedChildren().keys()]).toEqual(['attn', 'mlp', 'drop']);
    // forward uses the replacement: zero it and the block's attn output is zero.
    const zeros = tf.zerosLike(replacement.weight);
    replacement.weight.assign(zeros);
    zeros.dispose();
    const x = tf.ones([1, 4]);
    const y = replacement.forward(x);
    expect(values(y)).toEqual([0, 0, 0, 0]);
    tf.dispose([x, y]);
    old.dispose();
    m.dispose();
  });

  it('replaces a ModuleList entry so at() and iteration see it', () => {
    const m = new Tiny();
    const fresh = new Block(new Rng(4));
    const old = m.replaceModule('layers.0', fresh);
    expect(m.layers.at(0)).toBe(fresh);
    expect([...m.layers][0]).toBe(fresh);
    expect(m.layers.length).toBe(2);
    expect(m.namedParameters().get('layers.0.mlp.weight')).toBe(fresh.mlp.weight);
    old.dispose();
    m.dispose();
  });

  it('replaces a top-level child and re-points the field of the root', () => {
    const m = new Tiny();
    const head = new Linear(4, 3, { rng: new Rng(2) });
    const old = m.replaceModule('head', head);
    expect(m.head).toBe(head);
    expect(m.stateDict()['head.weight']).toBe(head.weight);
    old.dispose();
    m.dispose();
  });

  it('throws naming a path that is not a module, and changes nothing', () => {
    const m = new Tiny();
    const spare = new Linear(4, 4);
    for (const path of ['layers.5', 'layers.0.nope', 'nope.attn', 'layers.0.attn.weight', '']) {
      const error = thrown(() => m.replaceModule(path, spare));
      expect(isPosttrainError(error)).toBe(true);
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toMatch(/no module at path/);
    }
    expect([...m.namedParameters().keys()]).toEqual(tinyKeys);
    spare.dispose();
    m.dispose();
  });
});

describe('dispose', () => {
  it('frees every parameter and buffer of the tree', () => {
    const before = tf.memory().numTensors;
    const m = new Tiny();
    const w = new WithBuffers();
    expect(tf.memory().numTensors).toBe(before + tinyKeys.length + 4 + 3);
    m.dispose();
    w.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(m.namedParameters().size).toBe(0);
    // Disposing twice is harmless.
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('leaves no tensors behind after loads, training-mode forwards and gradients', () => {
    const before = tf.memory().numTensors;
    const m = new Tiny(1);
    const donor = new Tiny(2);
    m.loadStateDict(donor.stateDict());
    donor.dispose();
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    for (let i = 0; i < 3; i++) {
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(m.forward(ids))) as tf.Scalar);
      tf.dispose([value, ...Object.values(grads)]);
    }
    ids.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
