import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf, type CausalLM } from '@posttrain/tensor-core';
import { pack, type PackedBatch } from './pack.js';
import { IGNORE_INDEX, tokenizeLanguageModeling, tokenizePromptCompletion, type TokenizedExample } from './tokenize.js';
import { PieceTokenizer } from './testing/piece-tokenizer.js';

const X = IGNORE_INDEX;
let before: number;
beforeAll(async () => {
  await initBackend('cpu');
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

type Arrays = Omit<Record<keyof PackedBatch, number[][]>, 'rows'> & { rows: number[][] };

/** The packed tensors as nested arrays, disposing them; checks they are int32 `[R, L]`. */
function arrays(packed: PackedBatch): Arrays {
  const out = { rows: packed.rows } as Arrays;
  for (const key of ['inputIds', 'labels', 'attentionMask', 'positionIds', 'segmentIds'] as const) {
    expect(packed[key].dtype, key).toBe('int32');
    out[key] = packed[key].arraySync() as number[][];
    packed[key].dispose();
  }
  return out;
}

const example = (...ids: number[]) => ({ inputIds: ids, labels: ids });

describe('pack: layout', () => {
  it('puts whole examples one after another, with segment ids, restarted positions, −100 on first tokens and padding', () => {
    expect(arrays(pack([example(1, 5, 2), example(1, 7)], { rowLength: 6, padTokenId: 0 }))).toEqual({
      inputIds: [[1, 5, 2, 1, 7, 0]],
      labels: [[X, 5, 2, X, 7, X]],
      attentionMask: [[1, 1, 1, 1, 1, 0]],
      positionIds: [[0, 1, 2, 0, 1, 0]],
      segmentIds: [[1, 1, 1, 2, 2, 0]],
      rows: [[0, 1]],
    });
  });

  it("keeps the examples' own −100 labels (prompts stay masked)", () => {
    const packed = arrays(
      pack(
        [
          { inputIds: [1, 3, 4, 2], labels: [X, X, 4, 2] },
          { inputIds: [1, 6, 2], labels: [X, X, 2] },
        ],
        { rowLength: 8, padTokenId: 0 },
      ),
    );
    expect(packed.labels).toEqual([[X, X, 4, 2, X, X, 2, X]]);
  });

  it("'best-fit' fills rows longest first, each into the fullest row it fits; 'in-order' keeps the order", () => {
    const sizes = [3, 6, 2, 5, 4, 1];
    const examples = sizes.map((n, i) => ({ inputIds: Array(n).fill(i + 1), labels: Array(n).fill(i + 1) }));
    const best = arrays(pack(examples, { rowLength: 7, padTokenId: 0 }));
    expect(best.rows).toEqual([
      [1, 5],
      [3, 2],
      [4, 0],
    ]); // 6+1, 5+2, 4+3: three full rows
    expect(best.attentionMask.every((row) => row.every((m) => m === 1))).toBe(true);
    const ordered = arrays(pack(examples, { rowLength: 7, padTokenId: 0, strategy: 'in-order' }));
    expect(ordered.rows).toEqual([[0], [1], [2, 3], [4, 5]]);
    expect(ordered.inputIds[3]).toEqual([5, 5, 5, 5, 6, 0, 0]);
  });

  it("checks strategy and overflow against their values; 'bfd' (TRL's name) is 'best-fit'", () => {
    const examples = [3, 6, 2, 5, 4, 1].map((n, i) => ({ inputIds: Array(n).fill(i + 1), labels: Array(n).fill(i + 1) }));
    expect(arrays(pack(examples, { rowLength: 7, padTokenId: 0, strategy: 'bfd' })).rows).toEqual([
      [1, 5],
      [3, 2],
      [4, 0],
    ]);
    expect(() => pack(examples, { rowLength: 7, padTokenId: 0, strategy: 'first-fit' as never })).toThrow("pack: expected strategy to be one of 'best-fit', 'bfd', 'in-order'; got \"first-fit\"");
    expect(() => pack(examples, { rowLength: 7, padTokenId: 0, overflow: 'cut' as never })).toThrow("pack: expected overflow to be one of 'error', 'truncate'; got \"cut\"");
  });

  it("an example longer than the row is an error, or with overflow: 'truncate' keeps its first rowLength tokens", () => {
    const long = example(1, 2, 3, 4, 5);
    const e = (() => {
      try {
        pack([long], { rowLength: 4, padTokenId: 0 });
      } catch (error) {
        return error as Error;
      }
      throw new Error('expected pack to throw');
    })();
    expect(isPosttrainError(e)).toBe(true);
    expect(e.message).toContain('pack: example 0: expected at most rowLength 4 tokens; got 5');
    expect(arrays(pack([long], { rowLength: 4, padTokenId: 0, overflow: 'truncate' })).inputIds).toEqual([[1, 2, 3, 4]]);
  });

  it('requires rowLength and padTokenId', () => {
    expect(() => pack([example(1)], { padTokenId: 0 } as never)).toThrow('pack: expected rowLength to be a positive integer; got null');
    expect(() => pack([example(1)], { rowLength: 4 } as never)).toThrow('pack: expected padTokenId to be a non-negative integer; got null');
  });
});

// End to end with @posttrain/models, imported by relative path in this test only (data may not
// depend on models): a packed forward gives every example the logits it gets alone, and the
// shifted cross-entropy over the packed labels equals the sum over the examples alone.
// Tolerance as the models' own padding tests: 1e-4 · max(1, max|alone|).
const TOL = 1e-4;
type CreateModel = (config: Record<string, unknown>, options?: { seed?: number }) => CausalLM;
const modelsEntry = new URL('../../models/src/index.ts', import.meta.url).href;

describe.each([
  { modelType: 'llama', vocabSize: 128, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, initializerRange: 0.2 },
  { modelType: 'gpt2', vocabSize: 128, hiddenSize: 32, numLayers: 2, numHeads: 4, maxPositions: 64, initializerRange: 0.2 },
])('pack → $modelType forward: packed equals unpacked', (config) => {
  const tokenizer = new PieceTokenizer();
  const examples: TokenizedExample[] = [
    tokenizePromptCompletion(tokenizer, { prompt: 'The sky is', completion: ' blue.' }),
    tokenizeLanguageModeling(tokenizer, { text: 'The color of the grass is green.' }),
    tokenizePromptCompletion(tokenizer, { prompt: 'The color of the sky', completion: ' is blue' }),
    tokenizePromptCompletion(tokenizer, { prompt: '1+2=', completion: '3' }),
    tokenizeLanguageModeling(tokenizer, { text: 'The sky is red.' }),
  ];
  let model: CausalLM;

  beforeAll(async () => {
    const { createModel } = (await import(/* @vite-ignore */ modelsEntry)) as { createModel: CreateModel };
    expect(tokenizer.vocabSize).toBeLessThanOrEqual(config.vocabSize);
    model = createModel(config, { seed: 5 });
  });
  afterAll(() => model?.dispose());

  const logitsOf = (ids: tf.Tensor, options: Parameters<CausalLM['forward']>[1] = {}) => {
    const out = model.forward(ids, options);
    const logits = out.logits.arraySync() as number[][][];
    tf.dispose([out.logits, out.hidden]);
    return logits;
  };

  /** Σ −log p(labels[t] | tokens < t) over counted labels, and how many were counted. */
  function shiftedLoss(logits: number[][], labels: number[]): { sum: number; count: number } {
    let sum = 0;
    let count = 0;
    for (let t = 1; t < labels.length; t++) {
      if (labels[t] === X) continue;
      const row = logits[t - 1];
      const max = Math.max(...row);
      const logZ = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      sum += logZ - row[labels[t]];
      count++;
    }
    return { sum, count };
  }

  function alone(e: TokenizedExample): number[][] {
    const ids = tf.tensor2d([e.inputIds], [1, e.inputIds.length], 'int32');
    const logits = logitsOf(ids)[0];
    ids.dispose();
    return logits;
  }

  function expectClose(actual: number[][], expected: number[][], what: string): void {
    const scale = Math.max(1, ...expected.flat().map(Math.abs));
    let error = 0;
    actual.flat().forEach((v, i) => (error = Math.max(error, Math.abs(v - expected.flat()[i]))));
    expect(error, `${what}: max|packed − alone| = ${error.toExponential(2)}`).toBeLessThanOrEqual(TOL * scale);
  }

  /** Packs, runs the packed forward (`segments` overrides the segment ids), and returns logits and arrays. */
  function packedForward(override?: (segments: number[][]) => number[][]): { logits: number[][][]; packed: Arrays } {
    const packed = arrays(pack(examples, { rowLength: 24, padTokenId: tokenizer.padTokenId }));
    const t = (rows: number[][]) => tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');
    const tensors = {
      inputIds: t(packed.inputIds),
      attentionMask: t(packed.attentionMask),
      positionIds: t(packed.positionIds),
      segmentIds: t(override ? override(packed.segmentIds) : packed.segmentIds),
    };
    const logits = logitsOf(tensors.inputIds, { attentionMask: tensors.attentionMask, positionIds: tensors.positionIds, segmentIds: tensors.segmentIds });
    tf.dispose(Object.values(tensors));
    return { logits, packed };
  }

  /** Where each example sits in the packed rows. */
  function placements(packed: Arrays): { row: number; start: number; index: number }[] {
    return packed.rows.flatMap((members, row) => {
      let start = 0;
      return members.map((index) => {
        const at = { row, start, index };
        start += examples[index].inputIds.length;
        return at;
      });
    });
  }

  it('trap: every packed example gets the logits it gets alone (examples do not attend to each other)', () => {
    const { logits, packed } = packedForward();
    expect(packed.rows.length).toBeLessThan(examples.length); // rows really hold several examples
    for (const { row, start, index } of placements(packed)) {
      const n = examples[index].inputIds.length;
      expectClose(logits[row].slice(start, start + n), alone(examples[index]), `example ${index} in row ${row} at ${start}`);
    }
  });

  it("trap: the packed loss is the sum of the examples' own losses, over the same number of tokens", () => {
    const { logits, packed } = packedForward();
    // An example whose first token has a label sits after another: its first label must not count.
    expect(placements(packed).some(({ start, index }) => start > 0 && examples[index].labels[0] !== X)).toBe(true);
    let packedSum = 0;
    let packedCount = 0;
    packed.labels.forEach((labels, row) => {
      const { sum, count } = shiftedLoss(logits[row], labels);
      packedSum += sum;
      packedCount += count;
    });
    const separate = examples.map((e) => shiftedLoss(alone(e), e.labels));
    expect(packedCount).toBe(separate.reduce((s, l) => s + l.count, 0));
    expect(Math.abs(packedSum - separate.reduce((s, l) => s + l.sum, 0))).toBeLessThanOrEqual(TOL * Math.abs(packedSum));
  });

  it('control: with one segment per row (examples attending to each other) the comparison fails', () => {
    const { logits, packed } = packedForward((segments) => segments.map((row) => row.map((s) => (s === 0 ? 0 : 1))));
    const later = placements(packed).filter((p) => p.start > 0);
    expect(later.length).toBeGreaterThan(0);
    const differences = later.map(({ row, start, index }) => {
      const mine = alone(examples[index]);
      const seen = logits[row].slice(start, start + mine.length);
      return Math.max(...seen.flat().map((v, i) => Math.abs(v - mine.flat()[i])));
    });
    expect(Math.max(...differences)).toBeGreaterThan(100 * TOL);
  });
});
