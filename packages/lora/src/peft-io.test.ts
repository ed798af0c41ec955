import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf, Rng, readSafetensors, isPosttrainError, type Module, type CausalLM } from '@posttrain/tensor-core';
import { applyLora, loadAdapter, loraAdapters, loraLayers, saveAdapter } from './index.js';

type Models = { createModel: (config: object, options?: object) => Module & CausalLM };
const models = async () => (await import(new URL('../../models/src/index.ts', import.meta.url).href)) as Models;
const llama = async (hiddenSize = 16) => (await models()).createModel({ modelType: 'llama', vocabSize: 32, hiddenSize, intermediateSize: 24, numLayers: 2, numHeads: 4, numKvHeads: 2 }, { seed: 7 });
const dir = mkdtempSync(join(tmpdir(), 'posttrain-lora-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('PEFT adapter files', () => {
  it('writes PEFT keys and config fields, and loads back bit-identical into a fresh model', async () => {
    const model = await llama();
    applyLora(model, { r: 4, alpha: 16, dropout: 0.05, rsLora: true, targetModules: ['q_proj', 'v_proj'] });
    const rng = new Rng(9);
    for (const layer of loraLayers(model).values()) layer.loraB.get('default')!.weight.assign(rng.normalTensor(layer.loraB.get('default')!.weight.shape));
    const out = join(dir, 'a');
    const files = await saveAdapter(model, out, { baseModelNameOrPath: 'tiny-llama' });
    expect(files).toEqual(['adapter_model.safetensors', 'adapter_config.json']);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'v_proj'],
      bias: 'none',
      use_rslora: true,
      use_dora: false,
      init_lora_weights: true,
      base_model_name_or_path: 'tiny-llama',
      fan_in_fan_out: false,
      inference_mode: true,
    });
    const saved = readSafetensors(readFileSync(join(out, 'adapter_model.safetensors')));
    expect(Object.keys(saved).sort()).toEqual(
      [0, 1].flatMap((l) => ['q_proj', 'v_proj'].flatMap((m) => ['lora_A', 'lora_B'].map((w) => `base_model.model.model.layers.${l}.self_attn.${m}.${w}.weight`))).sort(),
    );
    expect(saved['base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight'].shape).toEqual([8, 4]);
    tf.dispose(Object.values(saved));

    const fresh = await llama();
    const loaded = await loadAdapter(fresh, out);
    expect(loaded.r).toBe(4);
    const a = model.namedParameters();
    const b = fresh.namedParameters();
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [k, v] of a) expect(Array.from(b.get(k)!.dataSync()), k).toEqual(Array.from(v.dataSync()));
    const x = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    model.eval();
    fresh.eval();
    expect(Array.from(fresh.forward(x).logits.dataSync())).toEqual(Array.from(model.forward(x).logits.dataSync()));
    expect(fresh.numParameters({ trainableOnly: true })).toBe(model.numParameters({ trainableOnly: true }));

    // into a model that already has the adapter applied
    const prepared = await llama();
    applyLora(prepared, { r: 4, alpha: 16, rsLora: true, targetModules: ['q_proj', 'v_proj'] });
    await loadAdapter(prepared, out);
    for (const [k, v] of a) expect(Array.from(prepared.namedParameters().get(k)!.dataSync()), k).toEqual(Array.from(v.dataSync()));
    model.dispose();
    fresh.dispose();
    prepared.dispose();
  });

  it('marks GPT-2 adapters fan_in_fan_out and saves init kinds as PEFT does', async () => {
    const gpt2 = (await models()).createModel({ modelType: 'gpt2', vocabSize: 32, hiddenSize: 16, numLayers: 1, numHeads: 2 });
    applyLora(gpt2, { r: 2, targetModules: ['c_attn'], init: 'gaussian' });
    await saveAdapter(gpt2, join(dir, 'g'));
    const config = JSON.parse(readFileSync(join(dir, 'g', 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ fan_in_fan_out: true, init_lora_weights: 'gaussian', target_modules: ['c_attn'], base_model_name_or_path: null });
    gpt2.dispose();
  });

  it('fails naming the key and both shapes when the model differs', async () => {
    const model = await llama(16);
    applyLora(model, { r: 4, targetModules: ['q_proj'] });
    await saveAdapter(model, join(dir, 'b'));
    const other = await llama(32);
    applyLora(other, { r: 4, targetModules: ['q_proj'] });
    const n = tf.memory().numTensors;
    await expect(loadAdapter(other, join(dir, 'b'))).rejects.toThrow(/base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight: the model expects \[4, 32\], the file has \[4, 16\]/);
    expect(tf.memory().numTensors).toBe(n); // tensors read from the file are freed
    model.dispose();
    other.dispose();
  });

  describe('all or nothing', () => {
    const state = (m: Module) => [...m.namedParameters()].map(([k, v]) => [k, v.trainable, Array.from(v.dataSync())] as const);
    const rejection = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (error) {
        return isPosttrainError(error) ? `${error.code}: ${error.message}` : `not a PosttrainError: ${String(error)}`;
      }
      return 'no error';
    };

    it('a shape mismatch, a missing or a corrupt weights file leaves the model as it was, and the right adapter then loads', async () => {
      // the adapter the model should get (hidden 16), and one trained on a wider model (hidden 32)
      const trained = await llama(16);
      applyLora(trained, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
      const rng = new Rng(3);
      for (const layer of loraLayers(trained).values()) layer.loraB.get('default')!.weight.assign(rng.normalTensor(layer.loraB.get('default')!.weight.shape));
      const right = join(dir, 'right');
      await saveAdapter(trained, right);
      const wide = await llama(32);
      applyLora(wide, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
      const wrong = join(dir, 'wrong');
      await saveAdapter(wide, wrong);
      const missing = join(dir, 'missing');
      cpSync(right, missing, { recursive: true });
      rmSync(join(missing, 'adapter_model.safetensors'));
      const corrupt = join(dir, 'corrupt');
      cpSync(right, corrupt, { recursive: true });
      writeFileSync(join(corrupt, 'adapter_model.safetensors'), readFileSync(join(right, 'adapter_model.safetensors')).subarray(0, 100));

      const model = await llama(16);
      const before = state(model);
      const tensors = tf.memory().numTensors;
      expect(await rejection(loadAdapter(model, wrong))).toMatch(
        /^STATE_DICT_MISMATCH: loadAdapter: adapter_model\.safetensors in .*wrong does not fit the model \(the model is unchanged\):\n {2}base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight: the model expects \[4, 16\], the file has \[4, 32\]/,
      );
      expect(await rejection(loadAdapter(model, missing))).toMatch(/^FILE_NOT_FOUND: .*adapter_model\.safetensors/);
      expect(await rejection(loadAdapter(model, corrupt))).toMatch(/^SAFETENSORS_FORMAT: /);
      expect(tf.memory().numTensors).toBe(tensors); // nothing read is kept
      expect(state(model)).toEqual(before); // same keys, values and trainable flags
      expect(loraLayers(model).size).toBe(0);
      expect(loraAdapters(model).size).toBe(0);

      await loadAdapter(model, right);
      const want = trained.namedParameters();
      expect([...model.namedParameters().keys()]).toEqual([...want.keys()]);
      for (const [k, v] of want) expect(Array.from(model.namedParameters().get(k)!.dataSync()), k).toEqual(Array.from(v.dataSync()));
      expect([...loraAdapters(model).keys()]).toEqual(['default']);
      trained.dispose();
      wide.dispose();
      model.dispose();
    });

    it('a PiSSA adapter that does not fit leaves the base weights untouched', async () => {
      const trained = await llama(32);
      applyLora(trained, { r: 2, targetModules: ['o_proj'], init: 'pissa' });
      const out = join(dir, 'pissa-wide');
      await saveAdapter(trained, out);
      const model = await llama(16);
      const before = state(model);
      expect(await rejection(loadAdapter(model, out))).toMatch(/^STATE_DICT_MISMATCH: /);
      expect(state(model)).toEqual(before); // PiSSA's residual was not written into o_proj
      expect(loraLayers(model).size).toBe(0);
      trained.dispose();
      model.dispose();
    });
  });
});
