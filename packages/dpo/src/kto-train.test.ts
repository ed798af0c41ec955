import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { defaultKtoOptions, ktoTrain, type KtoTrainOptions } from './index.js';
import { klPartners } from './kto-train.js';
import { rejected, reversalUnpaired, tinyModel, tokenizer } from './testing/fixtures.js';

const KTO_METRICS = ['kl', 'logits/chosen', 'logits/rejected', 'logps/chosen', 'logps/rejected', 'rewards/chosen', 'rewards/margins', 'rewards/rejected'];
const records = reversalUnpaired(0, 8); // 16 records: each prompt once desirable, once not
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

describe('ktoTrain', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it("pairs every record with another prompt's completion for the KL estimate, the same pairs for the same seed", () => {
    const partners = klPartners(records, 0);
    expect(partners).toEqual(klPartners(records, 0));
    expect(partners).not.toEqual(klPartners(records, 1));
    partners.forEach((p, i) => expect(records[p].prompt).not.toBe(records[i].prompt));
  });

  it('logs its metrics, starts at 0.5 per example with kl 0, and learns the labels with no tensor leak between steps', async () => {
    const model = tinyModel();
    const counts: number[] = [];
    const result = await ktoTrain({
      model,
      tokenizer,
      train: records,
      eval: reversalUnpaired(1, 4),
      evalEvery: 20,
      lr: 1e-2,
      schedule: 'constant',
      batchSize: 8,
      maxSteps: 40,
      progress: 'none',
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
    });
    expect(result.reference).toBe('policy before training, precomputed');
    for (const r of result.history) {
      expect(
        Object.keys(r)
          .filter((k) => k.includes('/') || k === 'kl')
          .sort(),
      ).toEqual(KTO_METRICS);
      expect(r.sequences).toBe(8); // KTO's loss is a mean over examples
      expect(r.tokens).toBeUndefined();
    }
    for (const r of result.evals)
      expect(
        Object.keys(r)
          .filter((k) => k.startsWith('eval_'))
          .sort(),
      ).toEqual(['eval_loss', ...KTO_METRICS.map((k) => `eval_${k}`)].sort());
    const [first] = result.history;
    expect(first.loss).toBeCloseTo(0.5, 6); // λ·σ(0) for every example: the policy is its reference
    expect(first.kl).toBe(0);
    const last5 = result.history.slice(-5);
    expect(mean(last5.map((r) => r.loss!))).toBeLessThan(0.35); // from 0.5
    expect(mean(last5.map((r) => Number(r['rewards/margins'])))).toBeGreaterThan(1);
    expect(Math.max(...result.history.map((r) => Number(r.kl)))).toBeGreaterThanOrEqual(0);
    expect(new Set(counts.slice(1)).size).toBe(1);
    model.dispose();
  });

  it('averages eval_rewards/chosen, logps and logits over the desirable examples (and /rejected over the undesirable ones), however the eval records are batched', async () => {
    const heldOut = reversalUnpaired(1, 4); // 8 records, desirable and undesirable alternating
    const evalAt = async (batchSize: number) => {
      const model = tinyModel(1);
      const copy = tinyModel(2); // a reference unlike the policy, so the rewards are not 0
      const result = await ktoTrain({ model, tokenizer, train: records, eval: heldOut, reference: { model: copy }, lr: 0, batchSize, maxSteps: 1, progress: 'none' });
      model.dispose();
      copy.dispose();
      return result.evals[0];
    };
    const whole = await evalAt(8);
    const single = await evalAt(1); // every batch is all desirable or all undesirable
    for (const name of ['rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'logits/chosen', 'logits/rejected']) {
      expect(Math.abs(Number(whole[`eval_${name}`]))).toBeGreaterThan(1e-3);
      expect(Number(single[`eval_${name}`]), name).toBeCloseTo(Number(whole[`eval_${name}`]), 4);
    }
  });

  it('gives the same losses with a frozen copy, the adapters disabled and precomputed log-probs (within 1e-5)', async () => {
    const options = { tokenizer, train: records, lora: { r: 4, alpha: 8, seed: 3 }, lr: 3e-2, batchSize: 8, maxSteps: 3, progress: 'none' as const, seed: 2 };
    const run = async (reference: 'copy' | 'adapters-disabled' | 'precomputed') => {
      const model = tinyModel(5);
      const copy = reference === 'copy' ? tinyModel(5) : undefined;
      const result = await ktoTrain({ ...options, model, reference: copy ? { model: copy } : (reference as 'precomputed') });
      model.dispose();
      copy?.dispose();
      return result;
    };
    const copy = await run('copy');
    const others = [await run('adapters-disabled'), await run('precomputed')];
    expect(others.map((r) => r.reference)).toEqual(['adapters disabled', 'adapters disabled, precomputed']);
    expect(copy.history[2].loss).not.toBeCloseTo(0.5, 6);
    for (const other of others) {
      other.history.forEach((r, i) => {
        for (const key of ['loss', ...KTO_METRICS]) expect(Math.abs(Number(r[key]) - Number(copy.history[i][key])), `${key} at step ${i + 1}`).toBeLessThan(1e-5);
      });
    }
  });

  it('resumes from a checkpoint to the same losses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kto-resume-'));
    try {
      const options = { tokenizer, train: records, lr: 1e-2, batchSize: 4, maxSteps: 6, progress: 'none' as const, seed: 4 };
      const whole = tinyModel(7);
      const uninterrupted = await ktoTrain({ ...options, model: whole });
      const first = tinyModel(7);
      const stop = new AbortController();
      await ktoTrain({ ...options, model: first, checkpointDir: dir, signal: stop.signal, callbacks: { onStep: (r) => void (r.step === 2 && stop.abort()) } });
      const second = tinyModel(7);
      const resumed = await ktoTrain({ ...options, model: second, resumeFrom: dir });
      expect(resumed.history.map((r) => r.step)).toEqual([3, 4, 5, 6]);
      resumed.history.forEach((r, i) => expect(Math.abs(r.loss! - uninterrupted.history[2 + i].loss!)).toBeLessThan(1e-6));
      for (const model of [whole, first, second]) model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("writes TRL's keys to logFile (sequences: KTO's loss is a mean over examples), eval_-prefixed on evaluation", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kto-log-'));
    try {
      const logFile = join(dir, 'metrics.jsonl');
      const model = tinyModel();
      await ktoTrain({ model, tokenizer, train: records, eval: reversalUnpaired(1, 2), lr: 1e-2, batchSize: 8, maxSteps: 2, progress: 'none', logFile });
      const lines = (await readFile(logFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const trainLines = lines.filter((l) => l.kind === 'train');
      expect(trainLines).toHaveLength(2);
      for (const line of trainLines)
        expect(Object.keys(line).sort()).toEqual(['elapsed', 'epoch', 'grad_norm', 'kind', 'learning_rate', 'loss', 'num_tokens', 'sequences', 'sequences_per_second', 'step', ...KTO_METRICS].sort());
      expect(trainLines.map((l) => l.sequences)).toEqual([8, 8]);
      expect(trainLines[1].num_tokens).toBeGreaterThan(trainLines[0].num_tokens);
      const evals = lines.filter((l) => l.kind === 'eval');
      expect(evals).toHaveLength(1);
      expect(Object.keys(evals[0]).sort()).toEqual(['elapsed', 'epoch', 'eval_loss', 'kind', 'step', ...KTO_METRICS.map((k) => `eval_${k}`)].sort());
      model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad options and records by name', async () => {
    const model = tinyModel();
    const base: KtoTrainOptions = { model, tokenizer, train: records, progress: 'none' };
    const message = async (options: Partial<KtoTrainOptions>) => (await rejected(ktoTrain({ ...base, ...options } as KtoTrainOptions))).message;
    expect(await message({ undesirableWeight: -1 })).toBe('ktoTrain: expected undesirableWeight to be a number ≥ 0; got -1');
    expect(await message({ beta: 0 })).toBe('ktoTrain: expected beta to be a number > 0; got 0');
    expect(await message({ train: records.slice(0, 1) })).toBe("ktoTrain: expected at least 2 train records (each KL pair takes another record's completion); got 1");
    expect(await message({ eval: records.slice(0, 1) })).toBe("ktoTrain: expected eval to be an array of at least 2 records (each KL pair takes another record's completion); got 1 record");
    expect(await message({ train: [records[0], { prompt: 'ab>', completion: 'ba', label: 'good' } as never] })).toBe(
      'ktoTrain: train record 1: expected { prompt, completion, label: boolean }; got keys [prompt, completion, label] with label "good"',
    );
    expect(await message({ eval: 'held-out' as never })).toBe("ktoTrain: expected eval to be an array of at least 2 records (each KL pair takes another record's completion); got string");
    expect(await message({ maxPromptLength: -1 })).toBe('ktoTrain: expected maxPromptLength to be an integer ≥ 1; got -1');
    const chat = { prompt: [{ role: 'user', content: 'ab>' }], completion: [{ role: 'assistant', content: 'ba' }], label: true };
    expect(await message({ train: [records[0], chat] as never })).toMatch(
      /^ktoTrain: train record 1: expected prompt, completion to be strings; got message lists for prompt and completion \(a conversational record\)\nhelp: conversational records are not supported/,
    );
    expect(await message({ reference: 'adapters-disabled' })).toMatch(/^ktoTrain: expected a model with LoRA adapters for reference 'adapters-disabled'/);
    expect(await message({ loss: 'kto' } as never)).toMatch(/^ktoTrain: unknown option "loss"; known options are model, tokenizer, train, /);
    expect(model.trainableParameters().size).toBe(model.namedParameters().size);
    expect(defaultKtoOptions).toMatchObject({ beta: 0.1, desirableWeight: 1, undesirableWeight: 1, lr: 1e-6 });
    model.dispose();
  });
});
