import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { tokenizePreference } from '@posttrain/data';
import { collatePairs, padTokenIdOf } from './index.js';
import { expectPosttrainError, failure } from './testing/helpers.js';
import { tokenizer } from './testing/tiny.js';

const records = [
  { prompt: 'abc>', chosen: 'cba', rejected: 'abc' },
  { prompt: 'hgfe>', chosen: 'efgh', rejected: 'efhg' },
  { prompt: 'ab>', chosen: 'ba', rejected: 'ab' },
];
const tokenized = records.map((r) => tokenizePreference(tokenizer, r));
const PAD = padTokenIdOf(tokenizer);

describe('collatePairs', () => {
  let before: number;
  beforeAll(async () => {
    await initBackend('cpu');
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors).toBe(before);
  });

  it('puts the B chosen sequences in rows 0 … B − 1 and the rejected ones in rows B … 2B − 1, right-padded to one length', () => {
    const batch = collatePairs(tokenized, { padTokenId: PAD });
    expect(batch.pairs).toBe(3);
    const longest = Math.max(...tokenized.flatMap((p) => [p.chosen.inputIds.length, p.rejected.inputIds.length]));
    expect(batch.inputIds.shape).toEqual([6, longest]);
    const ids = batch.inputIds.arraySync();
    const mask = batch.attentionMask.arraySync();
    const labels = batch.labels.arraySync();
    tokenized.forEach((p, i) => {
      expect(ids[i].slice(0, p.chosen.inputIds.length)).toEqual(p.chosen.inputIds);
      expect(ids[3 + i].slice(0, p.rejected.inputIds.length)).toEqual(p.rejected.inputIds);
      expect(ids[3 + i].slice(p.rejected.inputIds.length)).toEqual(new Array(longest - p.rejected.inputIds.length).fill(PAD));
      expect(mask[i].reduce((a, b) => a + b, 0)).toBe(p.chosen.inputIds.length);
      expect(labels[i].slice(0, p.chosen.labels.length)).toEqual(p.chosen.labels);
      expect(labels[3 + i].slice(p.rejected.labels.length)).toEqual(new Array(longest - p.rejected.labels.length).fill(-100));
    });
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
  });

  it('rejects an empty list by name', async () => {
    expectPosttrainError(await failure(() => collatePairs([], { padTokenId: PAD })), 'INVALID_ARGUMENT', 'collatePairs', 'empty array');
  });
});

describe('padTokenIdOf', () => {
  it('is the pad token, else the (first) EOS token, else 0', () => {
    expect(padTokenIdOf({ padTokenId: 7, eosTokenId: 2 })).toBe(7);
    expect(padTokenIdOf({ padTokenId: null, eosTokenId: 2 })).toBe(2);
    expect(padTokenIdOf({ eosTokenId: [5, 6] as never })).toBe(5);
    expect(padTokenIdOf({ eosTokenId: null })).toBe(0);
    expect(padTokenIdOf(tokenizer)).toBe(tokenizer.padTokenId);
  });
});
