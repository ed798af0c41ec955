import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining } from '@posttrain/data';
import type { PretrainedModel } from '@posttrain/models';
import { defaultInProcessGeneratorOptions, inProcessGenerator, padTokenIdOf, sequenceLogps, type Completion, type GenerationRequest } from './index.js';
import { expectClose, expectPosttrainError, failure } from './testing/helpers.js';
import { tinyModel, tokenizer } from './testing/tiny.js';

// What the in-process generator promises: n completions per prompt in prompt order, ids and
// log-probs of one length, the stop token kept with finishReason 'stop', seeded determinism,
// log-probs that are sequenceLogps' of the same tokens at temperature 1, the model's mode restored,
// no tensor left behind, and named option errors.
const TOL = 1e-4;

let model: PretrainedModel;
let before: number;
beforeAll(async () => {
  await initBackend('cpu');
  model = tinyModel(5);
});
afterAll(() => model?.dispose());
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by the generator or the test').toBe(before);
});

// Two prompts of 3 tokens and one of 5: two chunks of one length each.
const prompts = ['ab>', 'abcd>', 'cd>'];
const request = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({ prompts, promptIds: prompts.map((p) => tokenizer.encode(p)), n: 3, maxTokens: 6, seed: 7, ...over });

/** Per-token log-probs of each prompt's completions under `model` (temperature 1, eval mode), read from sequenceLogps. */
function scoredLogps(promptIds: readonly (readonly number[])[], groups: Completion[][]): number[][] {
  const examples = groups.flatMap((group, p) => group.map((c) => ({ inputIds: [...promptIds[p], ...c.ids], labels: [...promptIds[p].map(() => -100), ...c.ids] })));
  const batch = collateForTraining(examples, { padTokenId: padTokenIdOf(tokenizer) });
  const training = model.training;
  model.eval();
  const { logps, tokenLogps, tokens } = sequenceLogps(model, batch);
  model.train(training);
  const rows = tokenLogps.arraySync() as number[][];
  tf.dispose([logps, tokenLogps, tokens, batch.inputIds, batch.attentionMask, batch.labels]);
  return examples.map((e, r) => rows[r].slice(e.inputIds.length - e.labels.filter((l) => l !== -100).length, e.inputIds.length));
}

describe('inProcessGenerator', () => {
  it('returns n completions per prompt, in prompt order, each with one log-prob per id', async () => {
    const generator = inProcessGenerator(model, tokenizer, { stopTokenIds: [] });
    expect(generator.name).toBe('in-process');
    const groups = await generator.generate(request());
    expect(groups).toHaveLength(3);
    for (const group of groups) {
      expect(group).toHaveLength(3);
      for (const c of group) {
        expect(c.ids).toHaveLength(6); // no stop token: every completion runs to maxTokens
        expect(c.logprobs).toHaveLength(c.ids.length);
        expect(c.finishReason).toBe('length');
        for (const id of c.ids) expect(Number.isInteger(id) && id >= 0 && id < tokenizer.vocabSize).toBe(true);
        for (const lp of c.logprobs) expect(lp).toBeLessThanOrEqual(0);
      }
    }
    // Each completion belongs to its own prompt: its log-probs are those of that prompt + its ids
    // (a completion filed under another prompt would score differently).
    const expected = scoredLogps(request().promptIds, groups);
    groups.flat().forEach((c, i) => expectClose(c.logprobs, expected[i], TOL, `completion ${i} log-probs`));
  });

  it('log-probs equal sequenceLogps of the same tokens at temperature 1 (within 1e-4), whatever the sampling temperature and filters', async () => {
    for (const sampling of [{ temperature: 1 }, { temperature: 0.7, topK: 20, topP: 0.9 }]) {
      const groups = await inProcessGenerator(model, tokenizer, { ...sampling, stopTokenIds: [] }).generate(request({ seed: 3 }));
      const expected = scoredLogps(request().promptIds, groups);
      groups.flat().forEach((c, i) => expectClose(c.logprobs, expected[i], TOL, `${JSON.stringify(sampling)} completion ${i}`));
    }
  });

  it('the same request and seed give the same completions; another seed gives others; the chunking does not change the shape', async () => {
    const generator = inProcessGenerator(model, tokenizer, { stopTokenIds: [] });
    const first = await generator.generate(request());
    const again = await generator.generate(request());
    expect(again).toEqual(first);
    const other = await generator.generate(request({ seed: 8 }));
    expect(other.map((g) => g.map((c) => c.ids))).not.toEqual(first.map((g) => g.map((c) => c.ids)));
    // The n completions of one prompt are distinct samples.
    expect(new Set(first[0].map((c) => c.ids.join(','))).size).toBeGreaterThan(1);
    // One prompt per chunk: still n per prompt, in order, with their own prompt's log-probs.
    const single = await inProcessGenerator(model, tokenizer, { stopTokenIds: [], batchSize: 1 }).generate(request());
    expect(single.map((g) => g.length)).toEqual([3, 3, 3]);
    const expected = scoredLogps(request().promptIds, single);
    single.flat().forEach((c, i) => expectClose(c.logprobs, expected[i], TOL, `batchSize 1 completion ${i}`));
  });

  it('a stop token ends a completion with finishReason "stop" and stays in its ids', async () => {
    const free = await inProcessGenerator(model, tokenizer, { stopTokenIds: [] }).generate(request());
    // A token that completion 0 samples at step ≥ 1 and not before.
    const ids0 = free[0][0].ids;
    const at = ids0.findIndex((t, k) => k >= 1 && !ids0.slice(0, k).includes(t));
    expect(at, `no usable stop token in ${ids0}`).toBeGreaterThanOrEqual(1);
    const stop = ids0[at];
    const stopped = await inProcessGenerator(model, tokenizer, { stopTokenIds: [stop] }).generate(request());
    expect(stopped[0][0].ids).toEqual(ids0.slice(0, at + 1));
    expect(stopped[0][0].finishReason).toBe('stop');
    expect(stopped[0][0].logprobs).toEqual(free[0][0].logprobs.slice(0, at + 1));
    for (const c of stopped.flat()) {
      expect(c.logprobs).toHaveLength(c.ids.length);
      const first = c.ids.indexOf(stop);
      if (c.finishReason === 'stop') expect(first, 'stops at its first stop token, which it keeps').toBe(c.ids.length - 1);
      else expect({ first, length: c.ids.length }).toEqual({ first: -1, length: 6 });
    }
    expect(
      stopped.flat().some((c) => c.finishReason === 'length'),
      'some completion never sampled the stop token',
    ).toBe(true);
  });

  it("stops at the tokenizer's EOS by default", async () => {
    // A tokenizer whose EOS is a token the model samples first: every completion that samples it stops there.
    const free = await inProcessGenerator(model, tokenizer, { stopTokenIds: [] }).generate(request());
    const eos = free[1][2].ids[0];
    const groups = await inProcessGenerator(model, { eosTokenId: eos, padTokenId: 0 }).generate(request());
    expect(groups[1][2]).toEqual({ ids: [eos], logprobs: free[1][2].logprobs.slice(0, 1), finishReason: 'stop' });
  });

  it('runs the model in eval mode and restores its mode, also when generation throws', async () => {
    const seen: boolean[] = [];
    const spy = {
      config: model.config,
      get training() {
        return model.training;
      },
      train: (on?: boolean) => model.train(on),
      eval: () => model.eval(),
      forward: (ids: tf.Tensor, options?: object) => {
        seen.push(model.training);
        return model.forward(ids, options);
      },
    } as unknown as CausalLM;
    for (const training of [true, false]) {
      model.train(training);
      await inProcessGenerator(spy, tokenizer, { stopTokenIds: [] }).generate(request({ n: 2, maxTokens: 3 }));
      expect(model.training, `mode ${training} restored`).toBe(training);
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen), 'every forward in eval mode').toEqual(new Set([false]));
    model.train(true);
    const outside = {
      ...request(),
      promptIds: [
        [1, 2, tokenizer.vocabSize],
        [1, 2, 3],
        [4, 5, 6],
      ],
    };
    expectPosttrainError(await failure(() => inProcessGenerator(model, tokenizer).generate(outside)), 'INVALID_ARGUMENT', String(tokenizer.vocabSize));
    expect(model.training, 'mode restored after a throw').toBe(true);
    model.eval();
  });

  it('rejects bad sampling options by name, temperature 0 with the reason', async () => {
    expectPosttrainError(
      await failure(() => inProcessGenerator(model, tokenizer, { temperature: 0 })),
      'INVALID_OPTION',
      'inProcessGenerator',
      'temperature',
      'greedy decoding gives every completion of a prompt the same tokens',
      'got 0',
    );
    for (const topP of [0, 1.5, Number.NaN]) expectPosttrainError(await failure(() => inProcessGenerator(model, tokenizer, { topP })), 'INVALID_OPTION', 'topP', 'a number in (0, 1]');
    expectPosttrainError(await failure(() => inProcessGenerator(model, tokenizer, { topK: 2.5 })), 'INVALID_OPTION', 'topK');
    expectPosttrainError(await failure(() => inProcessGenerator(model, tokenizer, { minP: -0.1 })), 'INVALID_OPTION', 'minP');
    expectPosttrainError(await failure(() => inProcessGenerator(model, tokenizer, { batchSize: 0 })), 'INVALID_OPTION', 'batchSize');
    expectPosttrainError(await failure(() => inProcessGenerator(model, tokenizer, { maxTokens: 4 } as never)), 'INVALID_OPTION', 'unknown option "maxTokens"', 'temperature');
    expect(Object.isFrozen(defaultInProcessGeneratorOptions)).toBe(true);
  });

  it('rejects a malformed request by field', async () => {
    const generator = inProcessGenerator(model, tokenizer);
    expectPosttrainError(await failure(() => generator.generate({ ...request(), prompts: ['ab>'] })), 'INVALID_ARGUMENT', 'prompts and promptIds of one length', '1 prompts and 3 promptIds');
    expectPosttrainError(await failure(() => generator.generate(request({ n: 0 }))), 'INVALID_OPTION', 'n to be a positive integer');
    expectPosttrainError(await failure(() => generator.generate(request({ maxTokens: 1.5 }))), 'INVALID_OPTION', 'maxTokens');
    expectPosttrainError(await failure(() => generator.generate(request({ seed: 0.5 }))), 'INVALID_OPTION', 'seed');
  });
});
