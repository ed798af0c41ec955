import { afterAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { loadModel, type PretrainedModel } from './index.js';
import { fixtureDir, readReference, referenceModels, type ForwardCase } from './testing/reference.js';

// Logits and hidden states against PyTorch (scripts/reference/models_ref.py), on cpu and wasm.
// Tolerance: max |ours − torch| ≤ 1e-4 · max(1, max |torch|) over the real (compared) tokens.
const TOL = 1e-4;

function worstError(actual: Float32Array | Int32Array | Uint8Array, expected: number[][][], compare: number[][]): { error: number; bound: number } {
  let error = 0;
  let scale = 1;
  let k = 0;
  expected.forEach((row, b) =>
    row.forEach((position, t) =>
      position.forEach((value) => {
        if (compare[b][t]) {
          error = Math.max(error, Math.abs(actual[k] - value));
          scale = Math.max(scale, Math.abs(value));
        }
        k++;
      }),
    ),
  );
  return { error, bound: TOL * scale };
}

function run(model: PretrainedModel, c: ForwardCase) {
  const ids = tf.tensor2d(c.input_ids, undefined, 'int32');
  const attentionMask = tf.tensor2d(c.attention_mask, undefined, 'int32');
  const segmentIds = c.segment_ids ? tf.tensor2d(c.segment_ids, undefined, 'int32') : undefined;
  const out = model.forward(ids, segmentIds ? { segmentIds } : { attentionMask });
  const result = { logits: out.logits.dataSync(), hidden: out.hidden.dataSync(), shape: out.logits.shape };
  tf.dispose([ids, attentionMask, segmentIds, out.logits, out.hidden].filter((t): t is tf.Tensor => t !== undefined));
  return result;
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe.each(referenceModels)(`%s on ${backend} matches PyTorch`, (name) => {
    const reference = readReference(name);
    let model: PretrainedModel;

    afterAll(() => model?.dispose());

    it('loads the Hugging Face checkpoint', async () => {
      await initBackend(backend);
      model = await loadModel(fixtureDir(name));
      expect(model.config.modelType).toBe(reference.model_type);
      expect(model.numParameters()).toBe(reference.num_parameters);
    });

    for (const c of reference.cases) {
      it(`forward: ${c.name} (logits and hidden states within ${TOL})`, () => {
        const before = tf.memory().numTensors;
        const out = run(model, c);
        expect(out.shape).toEqual([c.input_ids.length, c.input_ids[0].length, model.config.vocabSize]);
        const logits = worstError(out.logits, c.logits, c.compare_mask);
        expect(logits.error).toBeLessThanOrEqual(logits.bound);
        const hidden = worstError(out.hidden, c.hidden, c.compare_mask);
        expect(hidden.error).toBeLessThanOrEqual(hidden.bound);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  });
}
