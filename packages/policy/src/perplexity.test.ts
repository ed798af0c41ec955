import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { loadModel, type PretrainedModel } from '@posttrain/models';
import { perplexity } from './index.js';
import { expectPosttrainError, failure, fixtureDir } from './testing/helpers.js';

// Hugging Face's sliding-window perplexity, against scripts/reference/perplexity_ref.py (PyTorch, the
// guide's loop) on @posttrain/models' tiny Llama fixture: the same weights, a 300-token stream with a
// repeated motif (so context matters and each stride gives another number), and a 20-token stream
// shorter than any context.

interface Case {
  contextLength: number;
  stride: number;
  windows: number;
  tokens: number;
  nll: number;
  perplexity: number;
}
const reference = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/perplexity_ref.json', import.meta.url)), 'utf8')) as {
  token_ids: number[];
  cases: Case[];
  short_token_ids: number[];
  short_cases: Case[];
};

let model: PretrainedModel;
beforeAll(async () => {
  await initBackend('cpu');
  model = await loadModel(fixtureDir('llama'));
});

describe('perplexity', () => {
  it('matches the PyTorch sliding-window reference for every (contextLength, stride), stride = context included', async () => {
    const nlls = new Set<string>();
    for (const c of reference.cases) {
      const got = await perplexity(model, reference.token_ids, { contextLength: c.contextLength, stride: c.stride, batchSize: 4 });
      const what = `contextLength ${c.contextLength}, stride ${c.stride}`;
      expect(got.tokens, what).toBe(c.tokens);
      expect(Math.abs(got.nll - c.nll), what).toBeLessThan(1e-5);
      expect(Math.abs(got.perplexity - c.perplexity) / c.perplexity, what).toBeLessThan(1e-5);
      nlls.add(got.nll.toFixed(4));
    }
    // The cases differ by more than the tolerance, so a wrong window or mask could not pass by chance.
    expect(nlls.size).toBe(reference.cases.length);
  });

  it('scores length − 1 tokens of a text shorter than the context, whatever the stride', async () => {
    for (const c of reference.short_cases) {
      const got = await perplexity(model, Int32Array.from(reference.short_token_ids), { contextLength: c.contextLength, stride: c.stride });
      expect(got.tokens).toBe(reference.short_token_ids.length - 1);
      expect(Math.abs(got.nll - c.nll)).toBeLessThan(1e-5);
    }
  });

  it("defaults to the model's whole context and disjoint windows, and the batch size changes nothing", async () => {
    const [disjoint] = reference.cases.filter((c) => c.contextLength === 128 && c.stride === 128); // maxPositions is 128
    const byDefault = await perplexity(model, reference.token_ids);
    expect(byDefault.tokens).toBe(disjoint.tokens);
    expect(Math.abs(byDefault.nll - disjoint.nll)).toBeLessThan(1e-5);
    const one = await perplexity(model, reference.token_ids, { contextLength: 50, stride: 17, batchSize: 1 });
    const many = await perplexity(model, reference.token_ids, { contextLength: 50, stride: 17, batchSize: 16 });
    expect(many.tokens).toBe(one.tokens);
    expect(Math.abs(many.nll - one.nll)).toBeLessThan(1e-6);
  });

  it('runs in eval mode, restores the mode, and leaves no tensor behind', async () => {
    model.train();
    const modes: boolean[] = [];
    const forward = model.forward.bind(model);
    model.forward = (ids, options) => {
      modes.push(model.training);
      return forward(ids, options);
    };
    try {
      await perplexity(model, reference.token_ids, { contextLength: 64, stride: 32 }); // warm-up
      const before = tf.memory().numTensors;
      await perplexity(model, reference.token_ids, { contextLength: 64, stride: 32 });
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      model.forward = forward;
    }
    expect(modes.length).toBeGreaterThan(0);
    expect(modes.every((training) => !training)).toBe(true);
    expect(model.training).toBe(true);
    model.eval();
  });

  it('rejects bad options and token ids with an error naming the field, what it expected and what it got', async () => {
    const ids = reference.short_token_ids;
    expectPosttrainError(await failure(() => perplexity(model, ids, { contextLength: 1 })), 'INVALID_OPTION', 'contextLength', '[2, 128]', 'got 1');
    expectPosttrainError(await failure(() => perplexity(model, ids, { contextLength: 129 })), 'INVALID_OPTION', 'contextLength', 'maxPositions', 'got 129');
    expectPosttrainError(await failure(() => perplexity(model, ids, { contextLength: 16.5 })), 'INVALID_OPTION', 'contextLength', 'got 16.5');
    expectPosttrainError(await failure(() => perplexity(model, ids, { contextLength: 16, stride: 17 })), 'INVALID_OPTION', 'stride', '[1, contextLength = 16]', 'got 17');
    expectPosttrainError(await failure(() => perplexity(model, ids, { stride: 0 })), 'INVALID_OPTION', 'stride', 'got 0');
    expectPosttrainError(await failure(() => perplexity(model, ids, { batchSize: 0 })), 'INVALID_OPTION', 'batchSize', 'got 0');
    expectPosttrainError(await failure(() => perplexity(model, ids, { window: 8 } as never)), 'INVALID_OPTION', 'unknown option "window"');
    expectPosttrainError(await failure(() => perplexity(model, [5])), 'INVALID_ARGUMENT', 'tokenIds', 'at least 2', 'got 1');
    expectPosttrainError(await failure(() => perplexity(model, [5, 96, 7])), 'INVALID_ARGUMENT', 'tokenIds[1]', '[0, 96)', 'got 96');
    expectPosttrainError(await failure(() => perplexity(model, [5, 1.5])), 'INVALID_ARGUMENT', 'tokenIds[1]', 'got 1.5');
    expectPosttrainError(await failure(() => perplexity(model, 'hello' as never)), 'INVALID_ARGUMENT', 'tokenIds');
  });
});
