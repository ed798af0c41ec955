import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { loadModel, type PretrainedModel } from './index.js';
import { expectClose, logitsOf, maxDifference } from './testing/assert.js';
import { fixtureDir, referenceModels } from './testing/reference.js';

// Padding and packing change only what a row looks like, never what its real tokens compute: the
// logits of every real token of a padded or packed batch equal those of the row run alone.
// Tolerance: max|padded − alone| ≤ 1e-4 · max(1, max|alone|), as for the PyTorch parity.
const TOL = 1e-4;
const PAD = 0;
const a = [5, 17, 42, 8, 63, 21]; // 6 tokens
const b = [11, 30, 7]; // 3 tokens

const ones = (n: number) => new Array<number>(n).fill(1);
const zeros = (n: number) => new Array<number>(n).fill(0);
const pads = (n: number) => new Array<number>(n).fill(PAD);
const flat = (rows: number[][]) => rows.flat();

describe.each(referenceModels)('%s: padded and packed batches give each row its unpadded logits', (name) => {
  let model: PretrainedModel;
  let aloneA: number[][];
  let aloneB: number[][];
  let before: number;

  beforeAll(async () => {
    await initBackend('cpu');
    model = await loadModel(fixtureDir(name));
    aloneA = logitsOf(model, [a])[0];
    aloneB = logitsOf(model, [b])[0];
  });
  afterAll(() => model?.dispose());

  // Every forward of every test frees what it made.
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
  });

  it('left padding with an attentionMask: real tokens match each row alone within 1e-4', () => {
    const gap = a.length - b.length;
    const [rowA, rowB] = logitsOf(model, [a, [...pads(gap), ...b]], { attentionMask: [ones(a.length), [...zeros(gap), ...ones(b.length)]] });
    expectClose(flat(rowA), flat(aloneA), TOL, 'unpadded row');
    expectClose(flat(rowB.slice(gap)), flat(aloneB), TOL, 'left-padded row');
  });

  it('right padding with an attentionMask: real tokens match each row alone within 1e-4', () => {
    const gap = a.length - b.length;
    const [rowA, rowB] = logitsOf(model, [a, [...b, ...pads(gap)]], { attentionMask: [ones(a.length), [...ones(b.length), ...zeros(gap)]] });
    expectClose(flat(rowA), flat(aloneA), TOL, 'unpadded row');
    expectClose(flat(rowB.slice(0, b.length)), flat(aloneB), TOL, 'right-padded row');
  });

  it('left padding without the attentionMask changes the padded row (the comparison can fail)', () => {
    const gap = a.length - b.length;
    const [, rowB] = logitsOf(model, [a, [...pads(gap), ...b]]);
    expect(maxDifference(flat(rowB.slice(gap)), flat(aloneB))).toBeGreaterThan(100 * TOL);
  });

  it('padding tokens can be any id: the real tokens do not depend on what the mask hides', () => {
    const gap = a.length - b.length;
    const mask = [ones(a.length), [...zeros(gap), ...ones(b.length)]];
    const [, withZeros] = logitsOf(model, [a, [...pads(gap), ...b]], { attentionMask: mask });
    const [, withOthers] = logitsOf(model, [a, [50, 60, 70, ...b]], { attentionMask: mask });
    expectClose(flat(withOthers.slice(gap)), flat(withZeros.slice(gap)), TOL, 'real tokens after different padding ids');
  });

  it('packed rows (segmentIds): each example matches itself run alone within 1e-4', () => {
    const segmentIds = [
      [...zeros(a.length), ...ones(b.length)],
      [...zeros(b.length), ...ones(a.length)],
    ];
    const [ab, ba] = logitsOf(
      model,
      [
        [...a, ...b],
        [...b, ...a],
      ],
      { segmentIds },
    );
    expectClose(flat(ab.slice(0, a.length)), flat(aloneA), TOL, 'first example of row 0');
    expectClose(flat(ab.slice(a.length)), flat(aloneB), TOL, 'second example of row 0');
    expectClose(flat(ba.slice(0, b.length)), flat(aloneB), TOL, 'first example of row 1');
    expectClose(flat(ba.slice(b.length)), flat(aloneA), TOL, 'second example of row 1');
  });

  it('packed rows without segmentIds: the second example differs from itself alone (the comparison can fail)', () => {
    const [ab] = logitsOf(model, [[...a, ...b]]);
    expect(maxDifference(flat(ab.slice(a.length)), flat(aloneB))).toBeGreaterThan(100 * TOL);
  });

  it('packed rows restart positions at 0: explicit restarted positionIds give the same logits', () => {
    const segmentIds = [[...zeros(a.length), ...ones(b.length)]];
    const [implicit] = logitsOf(model, [[...a, ...b]], { segmentIds });
    const [explicit] = logitsOf(model, [[...a, ...b]], { segmentIds, positionIds: [[0, 1, 2, 3, 4, 5, 0, 1, 2]] });
    expectClose(flat(explicit), flat(implicit), TOL, 'explicit restarted positions');
    const [continued] = logitsOf(model, [[...a, ...b]], { segmentIds, positionIds: [[0, 1, 2, 3, 4, 5, 6, 7, 8]] });
    if (name === 'gpt2') {
      // Learned absolute positions: the second example at positions 6.. is a different input, so
      // the packed match above needs the restart, not only the segment mask.
      expect(maxDifference(flat(continued.slice(a.length)), flat(aloneB))).toBeGreaterThan(100 * TOL);
    } else {
      // RoPE sees only relative positions: inside an isolated segment a shift changes nothing.
      expectClose(flat(continued.slice(a.length)), flat(aloneB), TOL, 'RoPE segment at shifted positions');
    }
  });
});
