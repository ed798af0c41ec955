import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { collateForGeneration, collateForTraining } from './collate.js';
import { IGNORE_INDEX, tokenizePromptCompletion } from './tokenize.js';
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

/** The tensors' values as nested arrays, disposing them; checks they are int32. */
function values<K extends string>(batch: Record<K, tf.Tensor>): Record<K, number[][]> {
  const out = {} as Record<K, number[][]>;
  for (const [key, tensor] of Object.entries(batch) as [K, tf.Tensor][]) {
    expect(tensor.dtype, key).toBe('int32');
    out[key] = tensor.arraySync() as number[][];
    tensor.dispose();
  }
  return out;
}

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e), String(e)).toBe(true);
    return e as Error & { code: string };
  }
  throw new Error('expected the call to throw');
}

describe('collateForTraining', () => {
  const a = { inputIds: [1, 10, 11, 12, 2], labels: [X, X, 11, 12, 2] };
  const b = { inputIds: [1, 20, 2], labels: [X, 20, 2] };

  it('right-pads ids with padTokenId, the mask with 0 and labels with −100', () => {
    expect(values(collateForTraining([a, b], { padTokenId: 0 }))).toEqual({
      inputIds: [
        [1, 10, 11, 12, 2],
        [1, 20, 2, 0, 0],
      ],
      attentionMask: [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
      ],
      labels: [
        [X, X, 11, 12, 2],
        [X, 20, 2, X, X],
      ],
    });
  });

  it('pads to a multiple of padToMultipleOf', () => {
    const batch = values(collateForTraining([a, b], { padTokenId: 0, padToMultipleOf: 4 }));
    expect(batch.inputIds).toEqual([
      [1, 10, 11, 12, 2, 0, 0, 0],
      [1, 20, 2, 0, 0, 0, 0, 0],
    ]);
    expect(batch.labels[0].slice(5)).toEqual([X, X, X]);
  });

  it("trap: with pad = EOS the completion's EOS keeps its label and mask; only padding is −100", () => {
    const tokenizer = new PieceTokenizer({ padIsEos: true });
    const examples = [
      tokenizePromptCompletion(tokenizer, { prompt: 'The sky is', completion: ' blue.' }),
      tokenizePromptCompletion(tokenizer, { prompt: 'The', completion: ' sky is green. The sky' }),
    ];
    const batch = values(collateForTraining(examples, { padTokenId: tokenizer.padTokenId }));
    const eos = tokenizer.eosTokenId;
    const n = examples[0].inputIds.length; // 7, three shorter than the second
    expect(batch.inputIds[0].slice(n - 1)).toEqual([eos, eos, eos, eos]); // its EOS, then padding that is EOS too
    expect(batch.labels[0].slice(n - 1)).toEqual([eos, X, X, X]);
    expect(batch.attentionMask[0].slice(n - 1)).toEqual([1, 0, 0, 0]);
    expect(batch.labels[1].at(-1)).toBe(eos);
  });

  it('rejects what would silently train wrong: uneven labels, padded examples, no padTokenId', () => {
    expect(thrown(() => collateForTraining([{ inputIds: [1, 2, 3], labels: [1, 2] }], { padTokenId: 0 })).message).toContain('example 0: expected labels, 3 integers like its inputIds; got 2');
    expect(thrown(() => collateForTraining([{ ...b, attentionMask: [1, 1, 0] }], { padTokenId: 0 })).message).toContain('expected an unpadded example');
    expect(thrown(() => collateForTraining([], { padTokenId: 0 })).message).toContain('expected a non-empty list of examples; got an empty list');
    expect(thrown(() => collateForTraining([b], {} as never)).message).toContain('expected padTokenId, a token id; got none');
    expect(thrown(() => collateForTraining([b], { padTokenId: -1 })).message).toContain('expected padTokenId to be a non-negative integer; got -1');
    expect(thrown(() => collateForTraining([b], { padTokenId: 0, padToMultiple: 8 } as never)).message).toContain('unknown option "padToMultiple"');
  });
});

describe('collateForGeneration', () => {
  it('left-pads prompts so that every row ends at the last column', () => {
    expect(values(collateForGeneration([[1, 5, 9], [1, 7], [1]], { padTokenId: 0 }))).toEqual({
      inputIds: [
        [1, 5, 9],
        [0, 1, 7],
        [0, 0, 1],
      ],
      attentionMask: [
        [1, 1, 1],
        [0, 1, 1],
        [0, 0, 1],
      ],
    });
    expect(values(collateForGeneration([[1, 5, 9]], { padTokenId: 3, padToMultipleOf: 4 })).inputIds).toEqual([[3, 1, 5, 9]]);
  });

  it('batches more examples than Math.max(...lengths) can take as arguments', () => {
    const prompts = Array.from({ length: 300_000 }, (_, i) => (i === 7 ? [1, 2] : [1]));
    const batch = collateForGeneration(prompts, { padTokenId: 0 });
    expect(batch.inputIds.shape).toEqual([300_000, 2]);
    tf.dispose([batch.inputIds, batch.attentionMask]);
    const training = collateForTraining(
      prompts.map((ids) => ({ inputIds: ids, labels: ids })),
      { padTokenId: 0 },
    );
    expect(training.labels.shape).toEqual([300_000, 2]);
    tf.dispose([training.inputIds, training.attentionMask, training.labels]);
  });

  it('rejects an empty prompt by its index', () => {
    expect(thrown(() => collateForGeneration([[1], []], { padTokenId: 0 })).message).toContain('prompt 1: expected a non-empty list of non-negative integer token ids; got an empty list');
  });
});

describe('vocabSize: token ids range-checked on the host', () => {
  it("an id at or above the model's vocabSize is INVALID_ARGUMENT naming the example, the position and the size; no tensor is made", () => {
    const examples = [
      { inputIds: [1, 2, 3], labels: [1, 2, 3] },
      { inputIds: [4, 504, 5], labels: [4, 504, 5] },
    ];
    const error = thrown(() => collateForTraining(examples, { padTokenId: 0, vocabSize: 260 }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain("collateForTraining: example 1: expected token ids below the model's vocabSize 260; got id 504 at position 1");
    expect(error.message).toMatch(/help: .*tokenizer\.vocabSize.*model\.config\.vocabSize/);
    expect(thrown(() => collateForGeneration([[1], [2, 260]], { padTokenId: 0, vocabSize: 260 })).message).toContain(
      "prompt 1: expected token ids below the model's vocabSize 260; got id 260 at position 1",
    );
  });

  it('ids below vocabSize pass; a pad id outside it and a bad vocabSize are INVALID_OPTION; null (the default) checks nothing', () => {
    expect(values(collateForTraining([{ inputIds: [259, 1], labels: [259, 1] }], { padTokenId: 0, vocabSize: 260 })).inputIds).toEqual([[259, 1]]);
    expect(thrown(() => collateForTraining([{ inputIds: [1], labels: [1] }], { padTokenId: 260, vocabSize: 260 })).message).toContain('expected padTokenId below vocabSize 260; got 260');
    expect(thrown(() => collateForTraining([{ inputIds: [1], labels: [1] }], { padTokenId: 0, vocabSize: 0 })).message).toContain('expected vocabSize to be a positive integer or null; got 0');
    expect(values(collateForGeneration([[100_000]], { padTokenId: 0 })).inputIds).toEqual([[100_000]]);
  });
});
