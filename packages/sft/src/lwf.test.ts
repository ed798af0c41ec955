import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, collateForTraining, reversalTask, tokenizePromptCompletion } from '@posttrain/data';
import { forwardKl } from '@posttrain/losses';
import { createModel, type PretrainedModel } from '@posttrain/models';
import { generate } from '@posttrain/policy';
import { sftTrain, type SftTrainOptions } from './index.js';

// LwF in sftTrain: the KL it adds (value, positions) for each choice of `on`, the three sources of
// the old model agreeing, its pull toward the old model, memory, and the errors for bad input.

const tokenizer = new ByteTokenizer();
const config = {
  modelType: 'llama',
  vocabSize: tokenizer.vocabSize,
  hiddenSize: 16,
  intermediateSize: 32,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  maxPositions: 32,
  tieWordEmbeddings: true,
} as const;
const tinyModel = (seed = 1): PretrainedModel => createModel(config, { seed });
const records = reversalTask.generate(0, 12, { minLength: 3, maxLength: 4 }).map((e) => reversalTask.toPromptCompletion(e));
const examples = records.map((r) => tokenizePromptCompletion(tokenizer, r, { completionOnly: true }));
const quiet = { progress: 'none' } as const;
const padTokenId = tokenizer.padTokenId as number;
const eos = tokenizer.eosTokenId as number;

async function rejected(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

/** `teacher`'s greedy completion of each record's prompt (EOS kept), as prompt + completion ids, by hand. */
async function oldSequences(teacher: PretrainedModel, maxNewTokens = 16): Promise<{ ids: number[]; promptLength: number }[]> {
  teacher.eval();
  const out: { ids: number[]; promptLength: number }[] = [];
  for (const e of examples) {
    const prompt = e.inputIds.slice(0, e.promptLength);
    const input = tf.tensor2d([prompt], undefined, 'int32');
    const { tokens } = await generate(teacher, input, { greedy: true, maxNewTokens, stopTokenIds: [eos], padTokenId: eos });
    input.dispose();
    out.push({ ids: [...prompt, ...tokens[0]], promptLength: prompt.length });
  }
  return out;
}

/** λ × the mean over counted positions of T²·KL(teacher_T ‖ student_T), by hand; `counts(row, t)` says whether position t counts. */
function expectedKl(student: PretrainedModel, teacher: PretrainedModel, rows: number[][], counts: (row: number, t: number) => boolean, lambda: number, temperature: number): number {
  return tf.tidy(() => {
    const batch = collateForTraining(
      rows.map((ids) => ({ inputIds: ids, labels: ids, attentionMask: [] })),
      { padTokenId },
    );
    const T = batch.inputIds.shape[1];
    const mask = tf.tensor2d(
      rows.map((ids, r) => Array.from({ length: T }, (_, t) => (t + 1 < ids.length && counts(r, t) ? 1 : 0))),
      [rows.length, T],
    );
    const s = student.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits;
    const t = teacher.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits;
    return forwardKl(s, t, mask, { temperature }).loss.dataSync()[0] * lambda;
  });
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('sftTrain with lwf', () => {
  it("adds λ·T²·KL(old ‖ new) averaged over the counted positions, logged as lwf_loss, for each choice of 'on'", async () => {
    const teacher = tinyModel(9);
    const embedding = teacher.namedParameters().get('model.embed_tokens.weight')!;
    embedding.assign(tf.tidy(() => tf.mul(embedding, 20))); // logits of size ~1, so the KL to the student is not ~0
    teacher.eval();
    const old = await oldSequences(teacher);
    const cases = [
      { on: 'all', rows: examples.map((e) => e.inputIds), counts: () => true },
      { on: 'completions', rows: examples.map((e) => e.inputIds), counts: (r: number, t: number) => examples[r].labels[t + 1] !== -100 },
      { on: 'old-completions', rows: old.map((o) => o.ids), counts: (r: number, t: number) => t + 1 >= old[r].promptLength },
    ] as const;
    const plain = await sftTrain({ model: tinyModel(1), tokenizer, train: records, batchSize: records.length, maxSteps: 1, ...quiet });
    for (const { on, rows, counts } of cases) {
      const model = tinyModel(1);
      model.eval(); // no dropout in this config; eval only for the hand computation
      const expected = expectedKl(model, teacher, rows as number[][], counts, 0.7, 3);
      const result = await sftTrain({ model, tokenizer, train: records, batchSize: records.length, maxSteps: 1, lwf: { lambda: 0.7, temperature: 3, teacher, on }, ...quiet });
      expect(expected, on).toBeGreaterThan(1e-3);
      expect(result.history[0].lwf_loss, on).toBeCloseTo(expected, 5);
      expect(result.history[0].loss, on).toBeCloseTo(plain.history[0].loss! + expected, 5);
      expect(result.history[0].tokens).toBe(plain.history[0].tokens); // the loss units are still the new completions' tokens
      model.dispose();
    }
    // The three choices count different positions, so they differ.
    teacher.dispose();
  });

  it('the old model from a teacher copy, precomputed from the policy, or with LoRA adapters disabled, gives the same run', async () => {
    const options = { tokenizer, train: records, batchSize: 4, maxSteps: 4, lr: 1e-2, seed: 3, ...quiet } satisfies Partial<SftTrainOptions>;
    const run = async (lwf: NonNullable<SftTrainOptions['lwf']>, lora: SftTrainOptions['lora'] = false) => {
      const model = tinyModel(4);
      const before = tf.memory().numTensors;
      const counts: number[] = [];
      const result = await sftTrain({ ...options, model, lora, lwf, callbacks: { onStep: () => void counts.push(tf.memory().numTensors) } });
      expect(new Set(counts).size).toBe(1); // no tensor left behind by a step
      const adapters = lora === false ? 0 : [...model.trainableParameters().values()].length;
      expect(tf.memory().numTensors).toBe(before + adapters); // the precomputed logits and the batches are freed
      model.dispose();
      return result.history.map((r) => r.lwf_loss as number);
    };
    const copy = tinyModel(4);
    const withCopy = await run({ lambda: 2, teacher: copy });
    const precomputed = await run({ lambda: 2 });
    expect(withCopy[0]).toBeCloseTo(0, 6); // the first step's student is the old model
    expect(withCopy.at(-1)).toBeGreaterThan(1e-4);
    withCopy.forEach((v, i) => expect(precomputed[i]).toBeCloseTo(v, 6));
    for (const on of ['all', 'completions'] as const) {
      const a = await run({ lambda: 2, teacher: copy, on });
      const b = await run({ lambda: 2, on });
      a.forEach((v, i) => expect(b[i]).toBeCloseTo(v, 6));
    }
    const loraDisabled = await run({ lambda: 2 }, { r: 2, alpha: 4 });
    const loraCopy = await run({ lambda: 2, teacher: copy }, { r: 2, alpha: 4 });
    expect(loraDisabled.at(-1)).toBeGreaterThan(1e-6);
    loraDisabled.forEach((v, i) => expect(loraCopy[i]).toBeCloseTo(v, 6));
    copy.dispose();
  });

  it('keeps the student near the old model on its old completions', async () => {
    const teacher = tinyModel(5);
    const old = await oldSequences(teacher);
    const trainFor = async (lambda: number | undefined) => {
      const model = tinyModel(5);
      await sftTrain({ model, tokenizer, train: records, batchSize: 6, maxSteps: 25, lr: 1e-2, ...quiet, ...(lambda === undefined ? {} : { lwf: { lambda, teacher } }) });
      const kl = expectedKl(
        model,
        teacher,
        old.map((o) => o.ids),
        (r, t) => t + 1 >= old[r].promptLength,
        1,
        1,
      );
      model.dispose();
      return kl;
    };
    const plain = await trainFor(undefined);
    const kept = await trainFor(5);
    expect(plain).toBeGreaterThan(0.05);
    expect(kept).toBeLessThan(plain / 3);
    teacher.dispose();
  });

  it('rejects a bad lwf option by name, with the fix, before any step', async () => {
    const model = tinyModel();
    const steps: number[] = [];
    const message = async (lwf: unknown, extra: Partial<SftTrainOptions> = {}) => {
      const error = await rejected(sftTrain({ model, tokenizer, train: records, maxSteps: 1, ...quiet, lwf: lwf as never, callbacks: { onStep: (r) => void steps.push(r.step) }, ...extra }));
      expect(error.code).toBe('INVALID_OPTION');
      return error.message;
    };
    const otherVocabulary = createModel({ ...config, vocabSize: 300 }, { seed: 1 });
    expect(await message(true)).toMatch(/^sftTrain: expected lwf to be \{ lambda, temperature\?, teacher\?, on\?, maxNewTokens\? \}; got true\nhelp: /);
    expect(await message({ lambda: -0.5 })).toBe('sftTrain: expected lwf.lambda to be a number ≥ 0; got -0.5');
    expect(await message({ lambda: 1, temperature: 0 })).toBe('sftTrain: expected lwf.temperature to be a number > 0; got 0');
    expect(await message({ lambda: 1, on: 'prompts' })).toBe(`sftTrain: expected lwf.on to be 'old-completions', 'completions' or 'all'; got "prompts"`);
    expect(await message({ lambda: 1, maxNewTokens: 0 })).toBe('sftTrain: expected lwf.maxNewTokens to be an integer ≥ 1; got 0');
    expect(await message({ lambda: 1, teacher: 'base' })).toMatch(
      /^sftTrain: expected lwf.teacher to be a CausalLM \(a frozen copy of the model before fine-tuning\); got "base"\nhelp: load a second copy/,
    );
    expect(await message({ lambda: 1, teacher: model })).toMatch(/^sftTrain: expected lwf.teacher to be a separate frozen copy; got the policy itself/);
    expect(await message({ lambda: 1, teacher: otherVocabulary })).toBe("sftTrain: expected lwf.teacher to share the policy's vocabulary of 260; got vocabSize 300");
    expect(await message({ lambda: 1, beta: 1 })).toMatch(/^sftTrain: lwf: unknown option "beta"; known options are lambda, temperature, teacher, on, maxNewTokens/);
    expect(await message({ lambda: 1 }, { train: [{ text: 'abc>cba' }], lora: { r: 2 } })).toMatch(
      /^sftTrain: expected prompt-completion records for lwf.on 'old-completions'; got record 0 without a prompt\nhelp: /,
    );
    expect(steps).toEqual([]);
    expect(model.trainableParameters().size).toBe(model.namedParameters().size); // no LoRA layer was added
    otherVocabulary.dispose();
    model.dispose();
  });
});
