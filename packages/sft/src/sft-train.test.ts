import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, reversalTask, sortingTask } from '@posttrain/data';
import { createModel, type PretrainedModel } from '@posttrain/models';
import { defaultSftOptions, sftTrain, type SftTrainOptions, type SftRecord } from './index.js';

const tokenizer = new ByteTokenizer();
const tinyModel = (seed = 1): PretrainedModel =>
  createModel(
    { modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true },
    { seed },
  );
const reversal: SftRecord[] = reversalTask.generate(0, 64, { minLength: 3, maxLength: 4 }).map((e) => reversalTask.toPromptCompletion(e));

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}
async function rejected(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('sftTrain', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('puts the loss on completion tokens only by default, and on every predicted token without completionOnlyLoss', async () => {
    const model = tinyModel();
    const records = [
      { prompt: 'ab>', completion: 'ba' },
      { prompt: 'abc>', completion: 'cba' },
    ];
    // 'ab>' + 'ba' + EOS: labels on b, a, EOS = 3; 'abc>' + 'cba' + EOS: 4. Without completion-only:
    // every token but the first is predicted, 5 + 7 = 12.
    const only = await sftTrain({ model, tokenizer, train: records, batchSize: 2, maxSteps: 1, progress: 'none' });
    expect(only.history[0].tokens).toBe(7);
    const all = await sftTrain({ model, tokenizer, train: records, batchSize: 2, maxSteps: 1, progress: 'none', completionOnlyLoss: false });
    expect(all.history[0].tokens).toBe(12);
    const text = await sftTrain({ model, tokenizer, train: [{ text: 'abc' }], maxSteps: 1, progress: 'none' });
    expect(text.history[0].tokens).toBe(3); // b, c, EOS
    model.dispose();
  });

  it('full fine-tuning learns: loss falls 5× and token accuracy passes 0.9, with no tensor leak between steps', async () => {
    const model = tinyModel();
    const counts: number[] = [];
    const result = await sftTrain({
      model,
      tokenizer,
      train: sortingTask.generate(1, 8, { minLength: 3, maxLength: 3 }).map((e) => sortingTask.toPromptCompletion(e)),
      lr: 1e-2,
      schedule: 'constant',
      batchSize: 8,
      maxSteps: 60,
      progress: 'none',
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
    });
    const first = result.history[0];
    const last = result.history.at(-1)!;
    expect(last.loss!).toBeLessThan(first.loss! / 5);
    expect(first.mean_token_accuracy).toBeLessThan(0.5);
    expect(last.mean_token_accuracy).toBeGreaterThan(0.9);
    expect(new Set(counts.slice(1)).size).toBe(1);
    model.dispose();
  });

  it('with lora, trains only the adapters: base weights unchanged, B moves from zero, the report counts them', async () => {
    const model = tinyModel();
    const before = model.namedParameters().get('model.layers.0.self_attn.q_proj.weight')!.arraySync();
    const result = await sftTrain({ model, tokenizer, train: reversal, lora: { r: 4, alpha: 8 }, lr: 1e-2, batchSize: 8, maxSteps: 5, progress: 'none' });
    const params = model.namedParameters();
    expect(params.get('model.layers.0.self_attn.q_proj.base_layer.weight')!.arraySync()).toEqual(before);
    expect(tf.max(tf.abs(params.get('model.layers.0.self_attn.q_proj.lora_B.default.weight')!)).arraySync()).toBeGreaterThan(0);
    // q 32→32, k and v 32→16, o 32→32, gate and up 32→64, down 64→32: r·(in + out) each.
    const expected = 4 * (32 + 32 + 2 * (32 + 16) + (32 + 32) + 2 * (32 + 64) + (64 + 32));
    expect(result.lora).toMatchObject({ trainableParameters: expected });
    expect([...model.trainableParameters().values()].reduce((n, v) => n + v.size, 0)).toBe(expected);
    model.dispose();
  });

  it('normalises gradient accumulation by label tokens: 2 × 4 examples give the step of 1 × 8', async () => {
    const run = async (batchSize: number, gradientAccumulationSteps: number) => {
      const model = tinyModel(3);
      const { history } = await sftTrain({ model, tokenizer, train: reversal.slice(0, 8), batchSize, gradientAccumulationSteps, maxSteps: 2, lr: 1e-2, progress: 'none' });
      const weight = model.namedParameters().get('model.layers.0.mlp.down_proj.weight')!.arraySync() as number[][];
      model.dispose();
      return { history, weight };
    };
    const whole = await run(8, 1);
    const split = await run(4, 2);
    for (const i of [0, 1]) {
      expect(split.history[i].tokens).toBe(whole.history[i].tokens);
      expect(split.history[i].loss).toBeCloseTo(whole.history[i].loss!, 5);
      expect(split.history[i].grad_norm).toBeCloseTo(whole.history[i].grad_norm!, 5);
    }
    const diff = Math.max(...whole.weight.flat().map((w, i) => Math.abs(w - split.weight.flat()[i])));
    expect(diff).toBeLessThan(1e-6);
  });

  it("logs TRL's metrics every step, evaluates held-out records, and appends JSON lines to logFile", async () => {
    const model = tinyModel();
    const dir = await mkdtemp(join(tmpdir(), 'sft-log-'));
    try {
      const logFile = join(dir, 'metrics.jsonl');
      const result = await sftTrain({ model, tokenizer, train: reversal, eval: reversal.slice(0, 10), evalEvery: 2, batchSize: 16, maxSteps: 4, lr: 1e-2, warmupSteps: 2, logFile, progress: 'none' });
      for (const record of result.history) {
        expect(record).toMatchObject({
          kind: 'train',
          loss: expect.any(Number),
          learning_rate: expect.any(Number),
          grad_norm: expect.any(Number),
          tokens: expect.any(Number),
          tokens_per_second: expect.any(Number),
        });
        expect(record.mean_token_accuracy).toBeGreaterThanOrEqual(0);
        expect(record.mean_token_accuracy).toBeLessThanOrEqual(1);
        expect(record.entropy).toBeGreaterThan(0);
        expect(record.entropy).toBeLessThanOrEqual(Math.log(tokenizer.vocabSize) + 1e-4);
      }
      expect(result.history.map((r) => r.learning_rate)).toEqual([0, 5e-3, 1e-2, 5e-3]); // warm-up, then linear to 0 at step 4
      expect(result.evals.map((r) => r.step)).toEqual([2, 4]);
      for (const r of result.evals) expect(r).toMatchObject({ eval_loss: expect.any(Number), eval_mean_token_accuracy: expect.any(Number) });
      const lines = (await readFile(logFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lines.filter((l) => l.kind === 'train')).toHaveLength(4);
      expect(lines.filter((l) => l.kind === 'eval')).toHaveLength(2);
      // The JSONL records use TRL's keys, and only they (docs/metrics.md), with eval_ on evaluation.
      const trainKeys = ['kind', 'step', 'epoch', 'elapsed', 'loss', 'grad_norm', 'learning_rate', 'num_tokens', 'tokens', 'tokens_per_second', 'mean_token_accuracy', 'entropy'];
      for (const line of lines.filter((l) => l.kind === 'train')) expect(Object.keys(line).sort()).toEqual([...trainKeys].sort());
      for (const line of lines.filter((l) => l.kind === 'eval'))
        expect(Object.keys(line).sort()).toEqual(['elapsed', 'epoch', 'eval_entropy', 'eval_loss', 'eval_mean_token_accuracy', 'kind', 'step']);
      // num_tokens: TRL's running total of non-padding input tokens; 16 records of 3–4 letters, '>', reversed, EOS.
      const counts = lines.filter((l) => l.kind === 'train').map((l) => l.num_tokens);
      expect(counts[0]).toBeGreaterThan(result.history[0].tokens!);
      counts.slice(1).forEach((n, i) => expect(n).toBeGreaterThan(counts[i]));
      expect(lines.filter((l) => l.kind === 'train').map((l) => l.epoch)).toEqual([0.25, 0.5, 0.75, 1]); // 64 records, batches of 16
      expect(result.tokensPerSec).toBeGreaterThan(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
      model.dispose();
    }
  });

  it('resumes a LoRA run from a checkpoint to the same losses as an uninterrupted run, across an epoch boundary', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sft-resume-'));
    try {
      // 16 records in batches of 4: 4 steps an epoch, so steps 4–7 run in the second, reshuffled epoch.
      const options = { tokenizer, train: reversal.slice(0, 16), lora: { r: 4, alpha: 8, dropout: 0.1 }, lr: 1e-2, batchSize: 4, maxSteps: 7, progress: 'none' as const, seed: 5 };
      const whole = tinyModel(7);
      const uninterrupted = await sftTrain({ ...options, model: whole });
      const first = tinyModel(7);
      const stop = new AbortController();
      const cut = await sftTrain({ ...options, model: first, checkpointDir: dir, signal: stop.signal, callbacks: { onStep: (r) => void (r.step === 3 && stop.abort()) } });
      expect(cut.steps).toBe(3);
      const second = tinyModel(7);
      const resumed = await sftTrain({ ...options, model: second, resumeFrom: dir });
      expect(resumed.history.map((r) => r.step)).toEqual([4, 5, 6, 7]);
      resumed.history.forEach((r, i) => expect(Math.abs(r.loss! - uninterrupted.history[3 + i].loss!)).toBeLessThan(1e-6));
      expect(resumed.history.map((r) => [r.num_tokens, r.epoch])).toEqual(uninterrupted.history.slice(3).map((r) => [r.num_tokens, r.epoch])); // TRL's running count and epoch carry over
      for (const model of [whole, first, second]) model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad options and records by name, before training', async () => {
    const model = tinyModel();
    const base: SftTrainOptions = { model, tokenizer, train: reversal };
    const message = async (options: Partial<SftTrainOptions>) => (await rejected(sftTrain({ ...base, ...options } as SftTrainOptions))).message;
    expect(await message({ lr: -1 })).toBe('sftTrain: expected lr to be a number ≥ 0; got -1');
    expect(await message({ eval: 'held-out.jsonl' as never })).toBe('sftTrain: expected eval to be an array of { prompt, completion } or { text } records; got string');
    expect(await message({ batchSize: 0 })).toBe('sftTrain: expected batchSize to be an integer ≥ 1; got 0');
    expect(await message({ schedule: 'step' as never })).toBe(`sftTrain: expected schedule to be 'constant', 'linear' or 'cosine'; got "step"`);
    expect(await message({ learningRate: 1e-3 } as never)).toMatch(/^sftTrain: unknown option "learningRate"; known options are model, tokenizer, train, .*\blr\b/);
    expect(await message({ train: [] })).toMatch(/^sftTrain: expected train to be a non-empty array of records; got an empty array/);
    expect(await message({ train: [reversal[0], { question: 'x' } as never] })).toBe('sftTrain: record 1: expected { prompt, completion } or { text }; got keys [question]');
    expect(await message({ lora: 'yes' as never })).toMatch(/^sftTrain: expected lora to be LoRA options or false; got "yes"/);
    expect(await message({ model: {} as never })).toBe('sftTrain: expected model to be a CausalLM (an object with forward); got object');
    const error = await rejected(sftTrain({ ...base, logEvery: 0 }));
    expect(isPosttrainError(error) && error.code).toBe('INVALID_OPTION');
    expect(model.trainableParameters().size).toBe(model.namedParameters().size); // nothing was wrapped or frozen
    expect(defaultSftOptions).toMatchObject({ lr: 2e-4, schedule: 'linear', completionOnlyLoss: true, maxGradNorm: 1, lora: false });
    expect(thrown(() => Object.assign(defaultSftOptions, { lr: 1 })).message).toMatch(/read only|read-only|Cannot assign/);
    model.dispose();
  });
});
