import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { ByteTokenizer } from '@posttrain/data';
import { createModel } from '@posttrain/models';
import { sftTrain } from './index.js';

// sftTrain refuses, by record index and before any step, what would otherwise fail late or train
// on nothing: ids outside the model's vocabulary, records with no target; it passes saveTotalLimit
// through to the trainer.

const tokenizer = new ByteTokenizer(); // 260 ids
const tinyModel = (vocabSize: number) =>
  createModel({ modelType: 'llama', vocabSize, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true }, { seed: 1 });
const quiet = { progress: 'none' } as const;

let dir: string;
beforeAll(async () => {
  await initBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'sft-guards-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejected(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('sftTrain guards', () => {
  it('a record with nothing to train on ({ text: "" }) is an error naming its index, before any step', async () => {
    const model = tinyModel(tokenizer.vocabSize);
    const steps: number[] = [];
    const error = await rejected(sftTrain({ model, tokenizer, train: [{ text: 'ab' }, { text: 'cd' }, { text: '' }], maxSteps: 1, callbacks: { onStep: (r) => void steps.push(r.step) }, ...quiet }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/record 2: expected a label to train on after the first token/);
    expect(error.message).not.toMatch(/expected the micro-batches of optimizer step/);
    expect(steps).toEqual([]);
    model.dispose();
  });

  it('a tokenizer larger than the model is an error naming the record and both vocabulary sizes (not a raw GatherV2)', async () => {
    const model = tinyModel(258); // every byte, but not the tokenizer's EOS (258) that ends each record
    const error = await rejected(sftTrain({ model, tokenizer, train: [{ prompt: 'a', completion: 'b' }], maxSteps: 1, ...quiet }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain("record 0: expected token ids below the model's vocabSize 258; got id 258 at token 2 (the tokenizer's vocabulary has 260 ids, the model's 258)");
    expect(error.message).not.toMatch(/GatherV2/);
    model.dispose();
  });

  it("a record longer than the model's context is an error naming it (eval records as such) before any step; maxLength cuts it to fit", async () => {
    const model = tinyModel(tokenizer.vocabSize); // maxPositions 32
    const long = { text: 'x'.repeat(40) };
    const error = await rejected(sftTrain({ model, tokenizer, train: [{ text: 'ab' }], eval: [{ text: 'cd' }, long], maxSteps: 1, ...quiet }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain("eval record 1: expected at most the model's context of 32 tokens (maxPositions); got 41");
    expect((await sftTrain({ model, tokenizer, train: [{ text: 'ab' }, long], maxLength: 32, maxSteps: 1, ...quiet })).steps).toBe(1);
    model.dispose();
  });

  it('passes saveTotalLimit through: only the last checkpoints stay', async () => {
    const model = tinyModel(tokenizer.vocabSize);
    const before = tf.memory().numTensors;
    const checkpointDir = join(dir, 'limit');
    await sftTrain({ model, tokenizer, train: [{ text: 'ab' }, { text: 'cd' }], batchSize: 1, maxSteps: 4, epochs: 2, checkpointDir, checkpointEvery: 1, saveTotalLimit: 2, ...quiet });
    expect((await readdir(checkpointDir)).sort()).toEqual(['step-3', 'step-4']);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});
