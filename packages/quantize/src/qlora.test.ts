import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLora, loraLayers, saveAdapter } from '@posttrain/lora';
import { createModel } from '@posttrain/models';
import { AdamW, initBackend, readSafetensors, tf, valueAndGrads } from '@posttrain/tensor-core';
import { afterAll, describe, expect, it } from 'vitest';
import { QuantizedLinear } from './quantized-linear.js';
import { quantizeModel } from './quantize-model.js';

// QLoRA (Dettmers et al. 2023): LoRA adapters over an NF4 base through lora's open dispatch
// (dispatchLinearLike wraps any LinearLike). The task: continue t → (t + 3) mod 64 sequences;
// train on 16 sequences (every token appears), measure on 8 other sequences.
const V = 64;
const T = 12;
function batch(starts: number[]): tf.Tensor2D {
  return tf.tensor2d(
    starts.map((s) => Array.from({ length: T }, (_, i) => (s + 3 * i) % V)),
    [starts.length, T],
    'int32',
  );
}

function lmLoss(model: ReturnType<typeof createModel>, ids: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const { logits } = model.forward(ids);
    const logp = tf.logSoftmax(logits.slice([0, 0, 0], [-1, T - 1, -1]));
    const targets = tf.oneHot(ids.slice([0, 1], [-1, T - 1]), V);
    return tf.neg(tf.mean(tf.sum(tf.mul(logp, targets), -1))) as tf.Scalar;
  });
}

const dir = mkdtempSync(join(tmpdir(), 'posttrain-qlora-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each(['cpu', 'wasm'] as const)('QLoRA on %s', (backend) => {
  it('trains only the adapters over a packed NF4 base, lowers held-out loss by 20%, saves PEFT files', async () => {
    await initBackend(backend);
    const model = createModel({ modelType: 'llama', vocabSize: V, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, tieWordEmbeddings: false }, { seed: 5 });
    const summary = await quantizeModel(model, { scheme: 'nf4' });
    expect(summary.layers.length).toBe(14);
    applyLora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1 });
    const wrapped = loraLayers(model);
    expect(wrapped.size).toBe(14);
    for (const layer of wrapped.values()) expect(layer.baseLayer).toBeInstanceOf(QuantizedLinear);
    const trainable = model.trainableParameters();
    expect([...trainable.keys()].every((k) => /\.lora_[AB]\.default\.weight$/.test(k))).toBe(true);
    expect(trainable.size).toBe(28);
    const packedKeys = Object.keys(model.stateDict()).filter((k) => k.includes('base_layer.weight'));
    expect(packedKeys.length).toBe(14 * 4); // weight, weight_absmax, weight_nested_absmax, weight_nested_offset
    const snapshot = async () => new Map(await Promise.all(packedKeys.map(async (k) => [k, Array.from(await (model.stateDict()[k] as tf.Tensor).data())] as const)));
    const before = await snapshot();

    const train = batch(Array.from({ length: 16 }, (_, k) => 4 * k)); // every token appears as an input
    const heldOut = batch([2, 9, 19, 27, 35, 46, 53, 58]); // sequences not trained on
    const evalLoss = () => {
      const l = lmLoss(model, heldOut);
      const v = l.dataSync()[0] as number;
      l.dispose();
      return v;
    };
    const initial = evalLoss();
    const optimizer = new AdamW(trainable, { lr: 0.02, weightDecay: 0 });
    let tensors = 0;
    for (let step = 0; step < 40; step++) {
      const { value, grads } = valueAndGrads(() => lmLoss(model, train), trainable);
      optimizer.step(grads);
      tf.dispose([value, ...grads.values()]);
      if (step === 1) tensors = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(tensors);
    const final = evalLoss();
    // measured on cpu and wasm: 4.20 → 3.11 (-26%) in 40 steps; asserted: at least -20%
    expect(final).toBeLessThan(0.8 * initial);
    const after = await snapshot();
    for (const k of packedKeys) expect(after.get(k), k).toEqual(before.get(k));

    const out = join(dir, backend);
    await saveAdapter(model, out);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16 });
    const tensorsOnDisk = readSafetensors(new Uint8Array(readFileSync(join(out, 'adapter_model.safetensors'))));
    const keys = Object.keys(tensorsOnDisk).sort();
    expect(keys.length).toBe(28);
    expect(keys).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect(keys.some((k) => k.includes('base_layer') || k.includes('absmax'))).toBe(false);
    tf.dispose(Object.values(tensorsOnDisk));
    tf.dispose([train, heldOut]);
    optimizer.dispose();
    model.dispose();
  }, 120_000);
});
