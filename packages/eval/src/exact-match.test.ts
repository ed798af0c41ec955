import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf, type CausalLM } from '@posttrain/tensor-core';
import { ByteTokenizer, reversalTask } from '@posttrain/data';
import { exactMatch } from './index.js';

const tokenizer = new ByteTokenizer();
const V = tokenizer.vocabSize;
const EOS = tokenizer.eosTokenId!;

/**
 * A stand-in CausalLM that answers `answer(prompt)` then EOS, by reading its own input: the prompt
 * is everything up to and including '>', the rest is what it has generated so far. Its KV cache
 * holds the rows seen so far, so `generate` can feed it one new token at a time.
 */
function scriptedModel(answer: (prompt: string) => number[], calls: number[][] = []): CausalLM {
  type RowsCache = { rows: number[][]; readonly length: number; dispose(): void };
  return {
    config: { modelType: 'scripted', vocabSize: V, maxPositions: 64 } as CausalLM['config'],
    forward(inputIds: tf.Tensor, options: { cache?: RowsCache; useCache?: boolean } = {}) {
      const fed = inputIds.arraySync() as number[][];
      calls.push(fed.map((r) => r.length));
      const rows = fed.map((r, i) => [...(options.cache?.rows[i] ?? []), ...r]);
      const next = rows.map((row) => {
        const end = row.indexOf(62) + 1; // '>'
        const script = [...answer(tokenizer.decode(row.slice(0, end))), EOS];
        return script[Math.min(row.length - end, script.length - 1)];
      });
      const T = fed[0].length;
      const logits = tf.tidy(() => tf.tile(tf.expandDims(tf.oneHot(tf.tensor1d(next, 'int32'), V), 1), [1, T, 1])) as tf.Tensor3D;
      const cache: RowsCache | undefined = options.useCache ? { rows, length: rows[0].length, dispose() {} } : undefined;
      return { logits, hidden: tf.zeros([rows.length, T, 1]) as tf.Tensor3D, cache };
    },
    eval() {},
    train() {},
  } as unknown as CausalLM;
}

describe('exactMatch', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });
  const examples = reversalTask.generate(0, 12, { minLength: 2, maxLength: 5 });

  it('scores a model that reverses as 1 and stops at EOS, batching prompts of equal length and feeding one token a step (KV cache)', async () => {
    const calls: number[][] = [];
    const reverse = (prompt: string) => [...prompt.slice(0, -1)].reverse().map((c) => c.charCodeAt(0));
    const before = tf.memory().numTensors;
    const result = await exactMatch(scriptedModel(reverse, calls), tokenizer, reversalTask, examples, { maxNewTokens: 8, batchSize: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(result).toMatchObject({ accuracy: 1, correct: 12, total: 12 });
    expect(result.samples.map((s) => s.completion)).toEqual(examples.map((e) => e.answer));
    for (const rows of calls) {
      expect(rows.length).toBeLessThanOrEqual(3);
      expect(new Set(rows).size).toBe(1); // one prompt length per batch, so no padding
    }
    expect(calls.filter((rows) => rows[0] === 1).length, 'after the prompt, one new token per forward').toBeGreaterThan(calls.length / 2);
  });

  it('counts wrong answers and cuts generation at maxNewTokens', async () => {
    const first = examples.map((e) => e.prompt)[0];
    const wrongFirst = (prompt: string) => (prompt === first ? [120, 120] : [...prompt.slice(0, -1)].reverse().map((c) => c.charCodeAt(0)));
    const result = await exactMatch(scriptedModel(wrongFirst), tokenizer, reversalTask, examples, { maxNewTokens: 8 });
    expect(result.correct).toBe(11);
    expect(result.accuracy).toBeCloseTo(11 / 12, 12);
    expect(result.samples[0]).toEqual({ prompt: first, completion: 'xx', correct: false });

    const babble = () => Array(20).fill(97);
    const cut = await exactMatch(scriptedModel(babble), tokenizer, reversalTask, examples.slice(0, 2), { maxNewTokens: 5 });
    expect(cut.samples.map((s) => s.completion)).toEqual(['aaaaa', 'aaaaa']);
    expect(cut.accuracy).toBe(0);
  });

  it('rejects bad options by name', async () => {
    const model = scriptedModel(() => []);
    await expect(exactMatch(model, tokenizer, reversalTask, examples, { maxNewTokens: 0 })).rejects.toThrow('exactMatch: expected maxNewTokens to be an integer ≥ 1; got 0');
    await expect(exactMatch(model, tokenizer, reversalTask, examples, { batchSize: 1.5 })).rejects.toThrow('exactMatch: expected batchSize to be an integer ≥ 1; got 1.5');
    await expect(exactMatch(model, tokenizer, reversalTask, examples, { beams: 2 } as never)).rejects.toThrow(/unknown option "beams"/);
    expect(await exactMatch(model, tokenizer, reversalTask, [])).toMatchObject({ accuracy: 0, total: 0 });
  });
});
