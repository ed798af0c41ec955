import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf, valueAndGrads } from '@posttrain/tensor-core';
import { ByteTokenizer, collateForTraining, reversalTask, sortingTask, tokenizePromptCompletion } from '@posttrain/data';
import { causalLmLoss, ewcPenalty } from '@posttrain/losses';
import { createModel, type PretrainedModel } from '@posttrain/models';
import { estimateFisher, sftTrain, type SftRecord, type SftTrainOptions } from './index.js';

// EWC in sftTrain: the Fisher of estimateFisher, the penalty that fineTune adds to each step
// (its value and where its gradient pulls), memory, and the errors for bad input.

const tokenizer = new ByteTokenizer();
const tinyModel = (seed = 1): PretrainedModel =>
  createModel(
    { modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true },
    { seed },
  );
const sorting: SftRecord[] = sortingTask.generate(0, 6, { minLength: 3, maxLength: 4 }).map((e) => sortingTask.toPromptCompletion(e));
const reversal: SftRecord[] = reversalTask.generate(0, 16, { minLength: 3, maxLength: 4 }).map((e) => reversalTask.toPromptCompletion(e));
const quiet = { progress: 'none' } as const;

async function rejected(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('estimateFisher', () => {
  it('is the mean over records of the squared gradient of the per-token causal-LM loss (batchSize 1), keyed by the trainable parameters', async () => {
    const model = tinyModel();
    const start = tf.memory().numTensors;
    const fisher = await estimateFisher({ model, tokenizer, records: sorting });
    expect([...fisher.keys()]).toEqual([...model.trainableParameters().keys()]);
    // By hand: one record at a time, the mean cross-entropy over its completion tokens, its gradient squared.
    const params = model.trainableParameters();
    const sums = new Map([...params].map(([k, p]) => [k, new Float64Array(p.size)]));
    for (const record of sorting) {
      const example = tokenizePromptCompletion(tokenizer, record as { prompt: string; completion: string }, { completionOnly: true });
      const batch = collateForTraining([example], { padTokenId: tokenizer.padTokenId! });
      const { value, grads } = valueAndGrads(() => causalLmLoss(model.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits, batch.labels).loss, params);
      for (const [k, g] of grads) g.dataSync().forEach((v, i) => (sums.get(k)![i] += v * v));
      tf.dispose([value, ...grads.values(), batch.inputIds, batch.attentionMask, batch.labels]);
    }
    let largest = 0;
    for (const [k, f] of fisher) {
      expect(f.shape).toEqual(params.get(k)!.shape);
      const expected = sums.get(k)!.map((v) => v / sorting.length);
      f.dataSync().forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(expected[i]))));
      largest = Math.max(largest, ...expected);
    }
    expect(largest).toBeGreaterThan(1e-4); // not a vacuous comparison of zeros
    // batchSize 2 averages the loss over two records' tokens before squaring: another (smaller) estimate.
    const paired = await estimateFisher({ model, tokenizer, records: sorting, batchSize: 2 });
    const total = (m: Map<string, tf.Tensor>) => tf.tidy(() => tf.addN([...m.values()].map((t) => tf.sum(t))).dataSync()[0]);
    expect(total(paired)).toBeLessThan(total(fisher));
    tf.dispose([...fisher.values(), ...paired.values()]);
    expect(tf.memory().numTensors).toBe(start);
    model.dispose();
  });

  it('rejects bad input by name', async () => {
    const model = tinyModel();
    const message = async (options: object) => (await rejected(estimateFisher({ model, tokenizer, records: sorting, ...options } as never))).message;
    expect(await message({ records: [] })).toMatch(/^estimateFisher: expected records to be a non-empty array of the old task's records; got an empty array/);
    expect(await message({ batchSize: 0 })).toBe('estimateFisher: expected batchSize to be an integer ≥ 1; got 0');
    expect(await message({ model: {} })).toBe('estimateFisher: expected model to be a CausalLM (an object with forward); got an object with keys []');
    expect(await message({ records: [{ question: 'x' }] })).toBe('estimateFisher: record 0: expected { prompt, completion } or { text }; got keys [question]');
    expect(await message({ batchsize: 2 })).toMatch(/^estimateFisher: unknown option "batchsize"/);
    model.dispose();
  });
});

describe('sftTrain with ewc', () => {
  it("adds (λ/2)·Σ F·(θ − θ*)² to the step's loss and logs it as ewc_penalty", async () => {
    const fisherModel = tinyModel(2);
    const fisher = await estimateFisher({ model: fisherModel, tokenizer, records: sorting });
    // Anchors away from the start, so the first step's penalty is not 0: θ* = 0.9·θ0.
    const model = tinyModel(1);
    const anchors = new Map([...model.trainableParameters()].map(([k, p]) => [k, tf.mul(p, 0.9)]));
    const expected = ewcPenalty(model.trainableParameters(), anchors, fisher, { lambda: 1000 }).loss;
    const plainModel = tinyModel(1);
    const options = { tokenizer, train: reversal, batchSize: 16, maxSteps: 1, lr: 1e-3, ...quiet } satisfies Partial<SftTrainOptions>;
    const plain = await sftTrain({ ...options, model: plainModel });
    const ewc = await sftTrain({ ...options, model, ewc: { lambda: 1000, fisher, anchors } });
    const penalty = expected.dataSync()[0];
    expect(penalty).toBeGreaterThan(1e-3);
    expect(ewc.history[0].ewc_penalty).toBeCloseTo(penalty, 5);
    expect(ewc.history[0].loss).toBeCloseTo(plain.history[0].loss! + penalty, 5);
    expect(plain.history[0].ewc_penalty).toBeUndefined();
    tf.dispose([expected, ...anchors.values(), ...fisher.values()]);
    for (const m of [fisherModel, model, plainModel]) m.dispose();
  });

  it('pulls the weights the Fisher marks toward where training started, with no tensor left behind', async () => {
    const run = async (lambda: number | undefined) => {
      const model = tinyModel(3);
      const fisher = await estimateFisher({ model, tokenizer, records: sorting });
      const start = new Map([...model.trainableParameters()].map(([k, p]) => [k, tf.clone(p)]));
      const before = tf.memory().numTensors;
      const counts: number[] = [];
      const result = await sftTrain({
        model,
        tokenizer,
        train: reversal,
        batchSize: 8,
        maxSteps: 30,
        lr: 1e-2,
        ...quiet,
        ...(lambda === undefined ? {} : { ewc: { lambda, fisher } }),
        callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
      });
      expect(new Set(counts).size).toBe(1); // the same tensors after every step
      expect(tf.memory().numTensors).toBe(before); // the cloned anchors are freed at the end
      const moved = ewcPenalty(model.trainableParameters(), start, fisher, { lambda: 2 }).loss; // Σ F·(θ − θ0)²
      const distance = moved.dataSync()[0];
      tf.dispose([moved, ...start.values(), ...fisher.values()]);
      model.dispose();
      return { distance, result };
    };
    const plain = await run(undefined);
    const held = await run(1e4);
    expect(held.result.history.at(-1)!.ewc_penalty).toBeGreaterThan(0);
    expect(held.distance).toBeLessThan(plain.distance / 4);
    expect(held.result.history.at(-1)!.loss).toBeGreaterThan(plain.result.history.at(-1)!.loss!); // the new task is learned less
  });

  it('rejects a bad ewc option by name, with the fix, before any step or change to the model', async () => {
    const model = tinyModel();
    const other = createModel(
      { modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 8, intermediateSize: 16, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true },
      { seed: 1 },
    );
    const fisher = await estimateFisher({ model, tokenizer, records: sorting.slice(0, 2) });
    const wrongShapes = await estimateFisher({ model: other, tokenizer, records: sorting.slice(0, 2) });
    const key = 'model.layers.0.mlp.down_proj.weight';
    const steps: number[] = [];
    const message = async (ewc: unknown, extra: Partial<SftTrainOptions> = {}) => {
      const error = await rejected(sftTrain({ model, tokenizer, train: reversal, maxSteps: 1, ...quiet, ewc: ewc as never, callbacks: { onStep: (r) => void steps.push(r.step) }, ...extra }));
      expect(error.code).toBe('INVALID_OPTION');
      return error.message;
    };
    expect(await message(1000)).toMatch(/^sftTrain: expected ewc to be \{ lambda, fisher, anchors\? \}; got 1000/);
    expect(await message({ lambda: -1, fisher })).toBe('sftTrain: expected ewc.lambda to be a number ≥ 0; got -1');
    expect(await message({ lambda: 1 })).toMatch(/^sftTrain: expected ewc.fisher to be a non-empty Map of parameter name → tensor; got undefined\nhelp: estimate it on the old task/);
    expect(await message({ lambda: 1, fisher: Object.fromEntries(fisher) })).toMatch(/expected ewc.fisher to be a non-empty Map .*; got an object with keys \[model\.embed_tokens\.weight/);
    expect(await message({ lambda: 1, fisher: new Map([['lm_head.bias', tf.zeros([3])]]) })).toMatch(
      /^sftTrain: expected every key of ewc.fisher to name a parameter of the model; got 1 that do not: "lm_head.bias"\nhelp: estimate the Fisher on this model's architecture/,
    );
    expect(await message({ lambda: 1, fisher: wrongShapes })).toBe('sftTrain: expected ewc.fisher "model.embed_tokens.weight" to be a tensor of the parameter\'s shape [260, 16]; got [260, 8]');
    expect(await message({ lambda: 1, fisher, anchors: new Map([[key, tf.zeros([2, 2])]]) })).toMatch(
      /^sftTrain: expected ewc.anchors to hold "model.embed_tokens.weight" with the parameter's shape \[260, 16\]; got none/,
    );
    expect(await message({ lambda: 1, fisher, Lambda: 2 })).toMatch(/^sftTrain: ewc: unknown option "Lambda"; known options are lambda, fisher, anchors/);
    expect(await message({ lambda: 1, fisher }, { lora: { r: 2 } })).toMatch(/^sftTrain: expected ewc with full fine-tuning \(lora: false\); got lora \{"r":2\}/);
    expect(steps).toEqual([]);
    expect(model.trainableParameters().size).toBe(model.namedParameters().size); // nothing wrapped or frozen
    tf.dispose([...fisher.values(), ...wrongShapes.values()]);
    model.dispose();
    other.dispose();
  });
});
