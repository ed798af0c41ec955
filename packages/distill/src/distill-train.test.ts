import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, collateForTraining, generateSplit, sortingTask, tokenizePromptCompletion } from '@posttrain/data';
import { createModel, loadModel, type PretrainedModel } from '@posttrain/models';
import { forwardKl, generalizedJsd, hintonKdLoss } from '@posttrain/losses';
import { distillTrain, type DistillTrainOptions, teacherLogits } from './index.js';

const TINY_BASE = new URL('../../../examples/sft/tiny-base/', import.meta.url).pathname;
const tokenizer = new ByteTokenizer();
const { train, test } = generateSplit(sortingTask, 0, { train: 256, test: 32, taskOptions: { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 }, uniqueTrain: false });
const records = train.map((e) => ({ prompt: e.prompt, completion: e.answer }));
const heldOut = test.map((e) => ({ prompt: e.prompt, completion: e.answer }));
const quiet = { progress: 'none' as const };
let dir: string;

beforeAll(async () => {
  await initBackend('wasm');
  dir = mkdtempSync(join(tmpdir(), 'distill-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The shipped tiny base (2 layers, width 64, sorts strings), frozen: the teacher. */
const frozenTeacher = async (): Promise<PretrainedModel> => (await loadModel(TINY_BASE)).freeze().eval();
/** A student of 1 layer and width 32 from `seed`. */
const student = (seed = 3, vocabSize = tokenizer.vocabSize): PretrainedModel =>
  createModel({ modelType: 'llama', vocabSize, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 64, tieWordEmbeddings: true }, { seed });

describe('distillTrain: learning', () => {
  it('offline KD (forward KL): a smaller student moves toward the teacher — held-out KL falls by more than half and token accuracy rises by ≥ 30 points; no tensor leaks', async () => {
    const teacher = await frozenTeacher();
    const s = student();
    const counts: number[] = [];
    const before = await distillTrain({ student: s, teacher, tokenizer, train: records.slice(0, 8), eval: heldOut, loss: 'forward-kl', lmbda: 0, lr: 0, maxSteps: 1, ...quiet });
    const result = await distillTrain({
      student: s,
      teacher,
      tokenizer,
      train: records,
      eval: heldOut,
      loss: 'forward-kl',
      lmbda: 0,
      lr: 1e-2,
      batchSize: 32,
      maxSteps: 200,
      ...quiet,
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
    });
    const first = before.evals[0];
    const last = result.evals[result.evals.length - 1];
    expect(last.eval_loss).toBeLessThan(0.5 * (first.eval_loss as number));
    expect((last.eval_mean_token_accuracy as number) - (first.eval_mean_token_accuracy as number)).toBeGreaterThanOrEqual(0.3);
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(result.teacherCache).toBe('none');
  });
});

describe('distillTrain: the loss of a step', () => {
  const oneStep = async (extra: Partial<DistillTrainOptions>) => {
    const r = await distillTrain({ student: student(), teacher: await frozenTeacher(), tokenizer, train: records.slice(0, 6), batchSize: 6, lr: 0, maxSteps: 1, lmbda: 0, ...quiet, ...extra });
    return r.history.find((h) => h.kind === 'train')!;
  };
  /** The batch's shifted student and teacher logits, labels and mask, as the trainer builds them (records in any order: the sums do not depend on it). */
  const batchOf = async () => {
    const examples = records.slice(0, 6).map((r) => tokenizePromptCompletion(tokenizer, r, { completionOnly: true }));
    const batch = collateForTraining(examples, { padTokenId: tokenizer.padTokenId as number });
    const teacher = await frozenTeacher();
    const t = teacherLogits(teacher, batch.inputIds, batch.attentionMask);
    const s = student().train(false);
    const [B, T] = batch.inputIds.shape;
    const full = s.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits;
    const logits = tf.slice(full, [0, 0, 0], [B, T - 1, -1]);
    const labels = tf.slice(batch.labels, [0, 1], [B, T - 1]);
    const mask = tf.cast(tf.notEqual(labels, -100), 'float32');
    return { logits, t, labels, mask };
  };

  it("'jsd' logs TRL's generalized JSD (β 0.5, T 1) over the completion tokens, 'forward-kl' forwardKl, 'hinton' hintonKdLoss (T 2, α 0.5) with kd_loss and ce_loss", async () => {
    const { logits, t, labels, mask } = await batchOf();
    const jsd = (await generalizedJsd(logits, t, mask, { beta: 0.5, temperature: 1 }).loss.data())[0];
    const fkl = (await forwardKl(logits, t, mask).loss.data())[0];
    const hinton = hintonKdLoss(logits, t, labels, mask, { temperature: 2, alpha: 0.5 });
    expect((await oneStep({ loss: 'jsd' })).loss).toBeCloseTo(jsd, 5);
    expect((await oneStep({ loss: 'forward-kl' })).loss).toBeCloseTo(fkl, 5);
    const h = await oneStep({ loss: 'hinton' });
    expect(h.loss).toBeCloseTo((await hinton.loss.data())[0], 5);
    expect(h.kd_loss).toBeCloseTo((await hinton.kd.data())[0], 5);
    expect(h.ce_loss).toBeCloseTo((await hinton.ce.data())[0], 5);
    expect((await oneStep({ loss: 'hinton', alpha: 1, temperature: 1 })).loss).toBeCloseTo(fkl, 5);
    // A wrong divergence would not match: reverse KL differs from forward KL here.
    expect(Math.abs((await oneStep({ loss: 'reverse-kl' })).loss! - fkl)).toBeGreaterThan(1e-3);
  });
});

describe('distillTrain: the top-k cache', () => {
  it('topK = V gives the live teacher’s run step for step (hinton); the second run reuses the cache and matches again', async () => {
    const teacher = await frozenTeacher();
    const cacheDir = join(dir, 'full');
    const run = async (teacherCache: DistillTrainOptions['teacherCache']) =>
      distillTrain({ student: student(), teacher, tokenizer, train: records.slice(0, 48), loss: 'hinton', lmbda: 0, lr: 1e-2, batchSize: 16, maxSteps: 5, teacherCache, ...quiet });
    const live = await run(false);
    const built = await run({ dir: cacheDir, topK: tokenizer.vocabSize, shardRecords: 20 });
    expect(built.teacherCache).toBe('built');
    expect(readdirSync(cacheDir).sort()).toEqual(['teacher-cache.json', 'topk-00000.safetensors', 'topk-00001.safetensors', 'topk-00002.safetensors']);
    const reused = await run({ dir: cacheDir, topK: tokenizer.vocabSize, shardRecords: 20 });
    expect(reused.teacherCache).toBe('reused');
    const losses = (r: typeof live) => r.history.filter((h) => h.kind === 'train').map((h) => h.loss as number);
    expect(losses(live)).toHaveLength(5);
    losses(built).forEach((l, i) => expect(l).toBeCloseTo(losses(live)[i], 4));
    expect(losses(reused)).toEqual(losses(built));
  });

  it('top-16 of 260 ids keeps the teacher’s mass: the first step’s forward KL is within 2% of the live one', async () => {
    const teacher = await frozenTeacher();
    const run = async (teacherCache: DistillTrainOptions['teacherCache']) =>
      (await distillTrain({ student: student(), teacher, tokenizer, train: records.slice(0, 32), loss: 'forward-kl', lmbda: 0, lr: 0, batchSize: 32, maxSteps: 1, teacherCache, ...quiet })).history[0]
        .loss as number;
    const live = await run(false);
    const top = await run({ dir: join(dir, 'top16'), topK: 16 });
    expect(Math.abs(top - live) / live).toBeLessThan(0.02);
  });

  it('refuses a cache of another teacher, of other data or another k; a damaged shard is named; a crash before the manifest leaves nothing that loads', async () => {
    const teacher = await frozenTeacher();
    const cacheDir = join(dir, 'guarded');
    const o = { student: student(), teacher, tokenizer, train: records.slice(0, 16), loss: 'forward-kl' as const, lmbda: 0, lr: 0, batchSize: 8, maxSteps: 1, ...quiet };
    await distillTrain({ ...o, teacherCache: { dir: cacheDir, topK: 8 } });
    const other = createModel({ modelType: 'llama', vocabSize: 260, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 64 }, { seed: 9 }).freeze().eval();
    const wrongTeacher = await distillTrain({ ...o, teacher: other, teacherCache: { dir: cacheDir, topK: 8 } }).catch((e) => e);
    expect(wrongTeacher.code).toBe('INVALID_OPTION');
    expect(wrongTeacher.message).toMatch(/teacherCache .*guarded was written for another teacher \(fingerprint sha256:[0-9a-f]{12}…\); this teacher is sha256:[0-9a-f]{12}…/);
    expect(wrongTeacher.message).toMatch(/help: pass another teacherCache.dir, or delete .* to rebuild it/);
    const wrongData = await distillTrain({ ...o, train: records.slice(1, 17), teacherCache: { dir: cacheDir, topK: 8 } }).catch((e) => e);
    expect(wrongData.message).toMatch(/was written for other training data \(16 records/);
    const wrongK = await distillTrain({ ...o, teacherCache: { dir: cacheDir, topK: 4 } }).catch((e) => e);
    expect(wrongK.message).toContain('holds top-8 log-probs; got topK 4');
    const shard = join(cacheDir, 'topk-00000.safetensors');
    const bytes = readFileSync(shard);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(shard, bytes);
    const damaged = await distillTrain({ ...o, teacherCache: { dir: cacheDir, topK: 8 } }).catch((e) => e);
    expect(damaged.message).toMatch(/topk-00000.safetensors is damaged: its SHA-256 is [0-9a-f]{12}…, the manifest says [0-9a-f]{12}…/);
    // A run that died after writing a shard but before the manifest: the next run rebuilds.
    rmSync(join(cacheDir, 'teacher-cache.json'));
    const rebuilt = await distillTrain({ ...o, teacherCache: { dir: cacheDir, topK: 8 } });
    expect(rebuilt.teacherCache).toBe('built');
    expect(existsSync(join(cacheDir, 'teacher-cache.json'))).toBe(true);
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('distillTrain: on-policy and sequence-level KD', () => {
  it('lmbda draws on-policy batches per micro-batch from the seed (0.5 → about half, 1 → all) and the run is reproducible', async () => {
    const teacher = await frozenTeacher();
    const run = async (lmbda: number, seed = 0) =>
      distillTrain({ student: student(), teacher, tokenizer, train: records.slice(0, 64), lmbda, seed, maxNewTokens: 6, lr: 1e-2, batchSize: 8, maxSteps: 16, ...quiet });
    const half = await run(0.5);
    const share = half.history.filter((h) => h.kind === 'train').map((h) => h.on_policy as number);
    const onPolicy = share.reduce((a, b) => a + b, 0);
    expect(onPolicy).toBeGreaterThanOrEqual(4);
    expect(onPolicy).toBeLessThanOrEqual(12);
    expect(share.every((v) => v === 0 || v === 1)).toBe(true);
    const again = await run(0.5);
    expect(again.history.filter((h) => h.kind === 'train').map((h) => h.loss)).toEqual(half.history.filter((h) => h.kind === 'train').map((h) => h.loss));
    const all = await run(1);
    expect(all.history.filter((h) => h.kind === 'train').every((h) => h.on_policy === 1)).toBe(true);
  });

  it('seqKd trains on the teacher’s completions: prompt-only records work, and the student comes to predict the teacher’s answers (sorting) on held-out prompts', async () => {
    const teacher = await frozenTeacher();
    const s = student(4);
    const prompts = records.map((r) => ({ prompt: r.prompt }));
    const result = await distillTrain({
      student: s,
      teacher,
      tokenizer,
      train: prompts,
      eval: heldOut,
      seqKd: true,
      lmbda: 0,
      loss: 'forward-kl',
      maxNewTokens: 6,
      lr: 1e-2,
      batchSize: 32,
      maxSteps: 200,
      ...quiet,
    });
    const train = result.history.filter((h) => h.kind === 'train');
    expect(train.every((h) => h.on_policy === 0)).toBe(true);
    const accuracy = (h: (typeof train)[number]) => h.mean_token_accuracy as number;
    expect(accuracy(train[train.length - 1]) - accuracy(train[0])).toBeGreaterThan(0.3);
    expect(result.evals[result.evals.length - 1].eval_mean_token_accuracy).toBeGreaterThan(0.5);
  });
});

describe('distillTrain: resume and LoRA', () => {
  it('a run resumed from its step-3 checkpoint ends with the uninterrupted run’s losses (with on-policy batches)', async () => {
    const teacher = await frozenTeacher();
    const o = { teacher, tokenizer, train: records.slice(0, 64), lmbda: 0.5, maxNewTokens: 6, lr: 1e-2, batchSize: 8, maxSteps: 6, ...quiet };
    const checkpointDir = join(dir, 'resume');
    const full = await distillTrain({ ...o, student: student(), checkpointDir, checkpointEvery: 3 });
    const resumed = await distillTrain({ ...o, student: student(), resumeFrom: join(checkpointDir, 'step-3') });
    const train = (r: typeof full) => r.history.filter((h) => h.kind === 'train');
    expect(train(resumed).map((h) => h.step)).toEqual([4, 5, 6]);
    for (const key of ['loss', 'on_policy', 'mean_token_accuracy'] as const)
      expect(train(resumed).map((h) => h[key])).toEqual(
        train(full)
          .slice(3)
          .map((h) => h[key]),
      );
    expect(train(full).some((h) => h.on_policy === 1)).toBe(true);
  });

  it('LoRA: only the adapters train, the report says so', async () => {
    const s = student();
    const before = s.namedParameters().get('model.embed_tokens.weight')!.dataSync().slice();
    const result = await distillTrain({ student: s, teacher: await frozenTeacher(), tokenizer, train: records.slice(0, 16), lmbda: 0, lora: { r: 4 }, lr: 1e-2, batchSize: 8, maxSteps: 2, ...quiet });
    expect(result.lora?.trainableParameters).toBeGreaterThan(0);
    expect(s.namedParameters().get('model.embed_tokens.weight')!.dataSync()).toEqual(before);
  });
});

describe('distillTrain: bad input', () => {
  const valid = async (): Promise<DistillTrainOptions> => ({ student: student(), teacher: await frozenTeacher(), tokenizer, train: records.slice(0, 8), ...quiet });
  const error = async (o: DistillTrainOptions) =>
    distillTrain(o).then(
      () => undefined,
      (e) => e,
    );

  it('a teacher of another vocabulary, the same object, in training mode or with trainable parameters: each names the value and the fix', async () => {
    const o = await valid();
    const vocab = await error({ ...o, teacher: student(5, 300).freeze().eval() });
    expect(vocab.message).toContain('distillTrain: expected teacher and student to share one vocabulary; got teacher vocabSize 300, student vocabSize 260');
    expect((await error({ ...o, teacher: o.student })).message).toContain('expected teacher and student to be two models; got the same object');
    const training = await error({ ...o, teacher: (await loadModel(TINY_BASE)).freeze() });
    expect(training.message).toMatch(/expected the teacher in eval mode; got teacher.training true.*help: call teacher.eval\(\)/s);
    const trainable = await error({ ...o, teacher: (await loadModel(TINY_BASE)).eval() });
    expect(trainable.message).toMatch(/expected a frozen teacher; got 90,688 trainable parameters in \d+ tensors.*help: call teacher.freeze\(\)/s);
  });

  it('a teacher tokenizer that encodes differently, top-k beyond the vocabulary, a cache with a loss that needs the full distribution, text records on-policy, unknown options', async () => {
    const o = await valid();
    const shifted = { encode: (text: string) => tokenizer.encode(text).map((id) => (id + 1) % 256), decode: tokenizer.decode.bind(tokenizer), eosTokenId: tokenizer.eosTokenId };
    expect((await error({ ...o, teacherTokenizer: shifted })).message).toMatch(/expected the teacher's tokenizer to encode like the student's; ".*" gives student ids \[/);
    expect((await error({ ...o, loss: 'forward-kl', teacherCache: { dir: join(dir, 'x'), topK: 261 } })).message).toContain(
      'expected teacherCache.topK to be an integer in [1, 260] (the vocabulary size); got 261',
    );
    expect((await error({ ...o, loss: 'jsd', teacherCache: { dir: join(dir, 'x'), topK: 8 } })).message).toContain("expected loss 'forward-kl' or 'hinton' with teacherCache; got 'jsd'");
    expect((await error({ ...o, train: [{ text: 'abc|abc' }], lmbda: 0.5 })).message).toContain('record 0: expected { prompt, … } records with seqKd or lmbda > 0');
    expect((await error({ ...o, train: [{ prompt: 'abc|' }], lmbda: 0 })).message).toContain('record 0: expected { prompt, completion } (a prompt alone needs seqKd or lmbda 1');
    expect((await error({ ...o, lmbda: 2 })).message).toContain('expected lmbda to be a number in [0, 1]; got 2');
    expect((await error({ ...o, loss: 'kl' as never })).message).toContain("expected loss to be one of 'jsd', 'forward-kl', 'reverse-kl', 'tv', 'hinton'; got \"kl\"");
    expect((await error({ ...o, seq_kd: true } as never)).message).toMatch(/unknown option "seq_kd"/);
  });
});
