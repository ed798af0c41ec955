import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { applyLora, loraLayers } from '@posttrain/lora';
import { createReference } from './index.js';
import { expectPosttrainError, failure, int2d } from './testing/helpers.js';
import { tinyModel } from './testing/tiny.js';

const logits = (fn: () => tf.Tensor): number[] => tf.tidy(() => Array.from(fn().dataSync()));

describe('createReference', () => {
  const ids = [[5, 66, 67, 68, 62, 99]];
  let input: tf.Tensor2D;
  beforeAll(async () => {
    await initBackend('cpu');
    input = int2d(ids);
  });
  afterAll(() => input?.dispose());

  it("'adapters-disabled' runs the base model (the logits before LoRA trained), in eval mode, allocating nothing, and restores the mode", () => {
    const model = tinyModel(3);
    const base = logits(() => model.forward(input).logits);
    applyLora(model, { r: 4, alpha: 8, targetModules: 'all-linear', seed: 1 });
    // As if trained: B ≠ 0, so the adapters change the output.
    for (const [name, p] of model.namedParameters()) if (name.includes('lora_B')) tf.tidy(() => p.assign(tf.randomNormal(p.shape, 0, 0.5, 'float32', 7)));
    const adapted = logits(() => model.forward(input).logits);
    expect(Math.max(...adapted.map((v, i) => Math.abs(v - base[i])))).toBeGreaterThan(1e-4);
    model.train(true);
    const before = tf.memory().numTensors;
    const reference = createReference(model, 'adapters-disabled');
    expect(tf.memory().numTensors).toBe(before);
    expect(reference).toMatchObject({ source: 'adapters disabled', precomputed: false });
    let mode: boolean | undefined;
    const viaReference = logits(() =>
      reference.run((m) => {
        mode = m.training;
        return m.forward(input).logits;
      }),
    );
    expect(mode, 'eval mode inside').toBe(false);
    expect(model.training, 'mode restored').toBe(true);
    expect(Math.max(...viaReference.map((v, i) => Math.abs(v - base[i])))).toBeLessThan(1e-6);
    expect(
      logits(() => model.forward(input).logits),
      'adapters back on',
    ).toEqual(adapted);
    model.dispose();
  });

  it('defaults to adapters disabled with LoRA and to the policy before training without; a frozen copy runs the copy', async () => {
    const plain = tinyModel(1);
    expect(createReference(plain, undefined)).toMatchObject({ source: 'policy before training', precomputed: true });
    expect(createReference(plain, undefined, { hasLora: true })).toMatchObject({ source: 'adapters disabled', precomputed: false });
    const copy = tinyModel(2);
    const reference = createReference(plain, { model: copy, precompute: true });
    expect(reference).toMatchObject({ source: 'frozen copy', precomputed: true });
    expect(reference.run((m) => m)).toBe(copy);
    // Async functions get the mode restored when their promise settles.
    copy.train(true);
    await reference.run(async (m) => expect(m.training).toBe(false));
    expect(copy.training).toBe(true);
    plain.dispose();
    copy.dispose();
  });

  it('rejects every misuse with INVALID_OPTION naming the fix', async () => {
    const model = tinyModel(1);
    expect(loraLayers(model).size).toBe(0);
    expectPosttrainError(await failure(() => createReference(model, 'adapters-disabled', { owner: 'dpoTrain' })), 'INVALID_OPTION', 'dpoTrain', 'LoRA');
    expectPosttrainError(await failure(() => createReference(model, { model })), 'INVALID_OPTION', 'separate frozen copy');
    const other = tinyModel(1, 300);
    expectPosttrainError(await failure(() => createReference(model, { model: other })), 'INVALID_OPTION', 'vocabulary', '300');
    expectPosttrainError(await failure(() => createReference(model, { model: other, frozen: true } as never)), 'INVALID_OPTION', 'unknown key "frozen"');
    expectPosttrainError(await failure(() => createReference(model, { model: tinyModel(2), precompute: 'yes' } as never)), 'INVALID_OPTION', 'precompute');
    expectPosttrainError(await failure(() => createReference(model, 'frozen' as never)), 'INVALID_OPTION', '"frozen"');
    expectPosttrainError(await failure(() => createReference(model, { model: {} } as never)), 'INVALID_OPTION', 'reference.model');
    model.dispose();
    other.dispose();
  });
});
