import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { applyLora } from '@posttrain/lora';
import { dpoTrain } from './dpo-train.js';
import { resolveReference } from './reference.js';
import { reversalPairs, tinyModel, tokenizer } from './testing/fixtures.js';

const pairs = reversalPairs(0, 16);
const parameterBytes = (model: ReturnType<typeof tinyModel>) => [...model.namedParameters().values()].reduce((n, v) => n + v.size * 4, 0);

describe('reference memory', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it("'adapters-disabled' allocates nothing: the reference is the policy's own weights", () => {
    const model = tinyModel();
    applyLora(model, { r: 4, alpha: 8, targetModules: 'all-linear' });
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    tf.tidy(() => void model.forward(ids)); // fills the model's own caches (RoPE tables) first
    const before = tf.memory();
    const reference = resolveReference('test', model, 'adapters-disabled', true, 'dpoSigmoidLoss', true)!;
    expect(tf.memory().numBytes).toBe(before.numBytes);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    // Running it leaves nothing behind either, and switches the adapters back on.
    const out = reference.run((m) => tf.tidy(() => m.forward(ids).logits));
    out.dispose();
    expect(tf.memory().numBytes).toBe(before.numBytes);
    ids.dispose();
    expect(model.training).toBe(true);
    model.dispose();
  });

  it("counts the model's weights once during a step with 'adapters-disabled', twice with a frozen copy (peak tf.memory().numBytes)", async () => {
    const peak = async (withCopy: boolean) => {
      const model = tinyModel(2);
      const copy = withCopy ? tinyModel(2) : undefined;
      const before = tf.memory().numBytes;
      const profile = await tf.profile(async () => {
        await dpoTrain({ model, tokenizer, train: pairs, lora: { r: 4, alpha: 8 }, reference: copy ? { model: copy } : 'adapters-disabled', lr: 1e-3, batchSize: 8, maxSteps: 2, progress: 'none' });
      });
      const weights = parameterBytes(model);
      model.dispose();
      copy?.dispose();
      return { peak: profile.peakBytes, before, weights };
    };
    const disabled = await peak(false);
    const copy = await peak(true);
    const copyBytes = parameterBytes(tinyModel(2)); // the base weights (the LoRA adapters are not part of the copy)
    // The frozen copy's peak is higher by its weights, and by nothing else: the same activations, gradients and optimizer state.
    expect((copy.peak - disabled.peak) / copyBytes).toBeGreaterThan(0.95);
    expect((copy.peak - disabled.peak) / copyBytes).toBeLessThan(1.05);
    expect(disabled.weights).toBeGreaterThan(copyBytes); // the policy's own bytes include its adapters
  });
});
