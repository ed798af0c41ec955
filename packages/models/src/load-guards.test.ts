import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { initBackend, tf, writeSafetensors } from '@posttrain/tensor-core';
import { createModel, defaultLoadModelOptions, loadModel, saveModel, type PretrainedModel } from './index.js';
import { expectPosttrainError, rejection } from './testing/assert.js';

// loadModel fails loudly: NaN/inf weights are named (allowNonFinite opts out), and its
// STATE_DICT_MISMATCH help offers the strict: false it accepts.

const tiny = { modelType: 'llama', vocabSize: 16, hiddenSize: 8, intermediateSize: 16, numLayers: 1, numHeads: 2 } as const;

/** A saved tiny model as an in-memory map, its weights changed by `edit` (by parameter path) first. */
async function saved(edit: (tensors: Record<string, tf.Tensor>) => Record<string, tf.Tensor> = (t) => t): Promise<Map<string, Uint8Array>> {
  const model = createModel(tiny, { seed: 1 });
  const files = new Map<string, Uint8Array>();
  await saveModel(model, files);
  const edited = edit({ ...model.stateDict() });
  files.set('model.safetensors', writeSafetensors(edited, { format: 'pt' }));
  for (const t of Object.values(edited)) if (!Object.values(model.stateDict()).includes(t)) t.dispose();
  model.dispose();
  return files;
}

/** A copy of `t` with `values[index] = value` for each [index, value]. */
const withValues = (t: tf.Tensor, ...edits: Array<[number, number]>) => {
  const values = Float32Array.from(t.dataSync());
  for (const [index, value] of edits) values[index] = value;
  return tf.tensor(values, t.shape, 'float32');
};

let before: number;
beforeAll(async () => {
  await initBackend('cpu');
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

describe('loadModel: non-finite weights', () => {
  it('a NaN or infinite weight is NON_FINITE naming the first bad tensor, its counts and first index (not NaN log-probs later)', async () => {
    const files = await saved((t) => ({
      ...t,
      'model.layers.0.mlp.up_proj.weight': withValues(t['model.layers.0.mlp.up_proj.weight'], [5, Number.NaN], [9, Number.POSITIVE_INFINITY]),
      'model.norm.weight': withValues(t['model.norm.weight'], [0, Number.NEGATIVE_INFINITY]),
    }));
    const error = await rejection(loadModel(files));
    expectPosttrainError(error, 'NON_FINITE', 'model.layers.0.mlp.up_proj.weight [16, 8] holds 1 NaN and 1 infinite of its 128 values (the first at flat index 5), and 1 more tensor after it');
    expect(error.message).toMatch(/help: .*allowNonFinite: true/);
  });

  it('allowNonFinite: true loads it as it is', async () => {
    const files = await saved((t) => ({ ...t, 'lm_head.weight': withValues(t['lm_head.weight'], [3, Number.NaN]) }));
    const model = await loadModel(files, { allowNonFinite: true });
    expect(Number.isNaN(model.stateDict()['lm_head.weight'].dataSync()[3])).toBe(true);
    model.dispose();
  });

  it('defaults are frozen, and option values are checked', async () => {
    expect(defaultLoadModelOptions).toEqual({ strict: true, allowNonFinite: false });
    expect(Object.isFrozen(defaultLoadModelOptions)).toBe(true);
    const files = await saved();
    expectPosttrainError(await rejection(loadModel(files, { strict: 'no' as never })), 'INVALID_OPTION', 'expected strict to be true or false; got "no"');
    expectPosttrainError(await rejection(loadModel(files, { strct: false } as never)), 'INVALID_OPTION', 'unknown option "strct"');
  });
});

describe('loadModel: strict', () => {
  const mismatched = () =>
    saved((t) => {
      const { 'model.norm.weight': _dropped, ...rest } = t;
      return { ...rest, 'v_head.weight': tf.ones([1, 8]) };
    });

  it("a mismatch is STATE_DICT_MISMATCH naming the keys, whose help offers loadModel's own strict: false", async () => {
    const error = await rejection(loadModel(await mismatched()));
    expectPosttrainError(error, 'STATE_DICT_MISMATCH', 'do not match its config.json', 'missing keys (1): model.norm.weight', 'unexpected keys (1): v_head.weight');
    expect(error.message).toMatch(/help: .*loadModel\(source, \{ strict: false \}\)/);
  });

  it('strict: false loads, keeping the random initialisation of a missing weight and skipping an unexpected one, with warnings', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    let model: PretrainedModel | undefined;
    try {
      model = await loadModel(await mismatched(), { strict: false });
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([
        expect.stringMatching(/1 weight\(s\) of the llama architecture are not in .* and keep their random initialisation: model\.norm\.weight/),
        expect.stringMatching(/1 tensor\(s\) in .* are not weights of the llama architecture and were skipped: v_head\.weight/),
      ]);
      expect(Array.from(model.stateDict()['model.norm.weight'].dataSync())).toEqual(Array(8).fill(1)); // RMSNorm's initial weight
      const reference = createModel(tiny, { seed: 1 });
      expect(Array.from(model.stateDict()['lm_head.weight'].dataSync())).toEqual(Array.from(reference.stateDict()['lm_head.weight'].dataSync()));
      reference.dispose();
    } finally {
      warn.mockRestore();
      model?.dispose();
    }
  });

  it('a mis-shaped weight stays an error with strict: false', async () => {
    const files = await saved((t) => ({ ...t, 'lm_head.weight': tf.zeros([15, 8]) }));
    expectPosttrainError(await rejection(loadModel(files, { strict: false })), 'STATE_DICT_MISMATCH', 'mis-shaped keys (1): lm_head.weight');
  });
});
