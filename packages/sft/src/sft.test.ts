import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initBackend, type CausalLM } from '@posttrain/tensor-core';
import { ByteTokenizer, generateSplit, reversalTask, sortingTask } from '@posttrain/data';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, saveAdapter } from '@posttrain/lora';
import { exactMatch, sftTrain } from './index.js';

// The learning proof: a tiny Llama-shaped model, pretrained on the fly on sorting text, learns
// string reversal with LoRA from < 10% to ≥ 90% held-out exact match. Fixed seeds throughout.
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const settings = {
  pretrainSteps: env('SFT_PRE_STEPS', 300),
  loraSteps: env('SFT_LORA_STEPS', 600),
  loraLr: env('SFT_LORA_LR', 5e-3),
  r: env('SFT_R', 16),
  maxLength: env('SFT_MAXLEN', 4),
  trainSize: env('SFT_TRAIN', 2000),
  alphaOverR: env('SFT_ALPHA_OVER_R', 2),
};

describe('sftTrain learning proof', () => {
  it('LoRA SFT raises held-out reversal exact match from < 10% to ≥ 90% and saves a PEFT adapter', async () => {
    const t0 = performance.now();
    await initBackend('wasm');
    const { createModel } = await import(new URL('../../models/src/index.ts', import.meta.url).href);
    const tokenizer = new ByteTokenizer();
    const model: CausalLM = createModel(
      { modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 64, tieWordEmbeddings: true },
      { seed: 1 },
    );
    const { train, test } = generateSplit(reversalTask, 0, { train: settings.trainSize, test: 200, taskOptions: { minLength: 2, maxLength: settings.maxLength } });
    // The base learns the skill under another separator ('<'); SFT teaches the task's format ('>').
    const pretrainText = process.env.SFT_SHIFT
      ? train.map((e) => ({ text: reversalTask.toLanguageModelText(e).replace('>', '<') }))
      : sortingTask.generate(3, 2000).map((e) => ({ text: sortingTask.toLanguageModelText(e) }));
    const pre = await sftTrain({ model, tokenizer, train: pretrainText, lora: false, lr: 3e-3, schedule: 'constant', batchSize: 32, maxSteps: settings.pretrainSteps, progress: 'none', seed: 0 });
    const before = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
    const t1 = performance.now();
    const result = await sftTrain({
      model,
      tokenizer,
      train: train.map((e) => reversalTask.toPromptCompletion(e)),
      lora: process.env.SFT_FULL ? false : { r: settings.r, alpha: settings.alphaOverR * settings.r },
      lr: settings.loraLr,
      schedule: 'constant',
      warmupSteps: 10,
      batchSize: 32,
      maxSteps: settings.loraSteps,
      progress: 'none',
      seed: 0,
    });
    const loraSeconds = (performance.now() - t1) / 1000;
    const after = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
    const seconds = (performance.now() - t0) / 1000;
    console.log(JSON.stringify({ settings, preLoss: pre.loss, before: before.accuracy, after: after.accuracy, loss: result.loss, loraSeconds, tokensPerSec: result.tokensPerSec, trainable: result.lora?.trainableParameters, seconds, samples: after.samples.slice(0, 3) }));
    expect(before.accuracy).toBeLessThan(0.1);
    expect(after.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(result.history.at(-1)?.meanTokenAccuracy).toBeGreaterThan(0.9);

    const dir = await mkdtemp(join(tmpdir(), 'sft-adapter-'));
    try {
      await saveAdapter(model, dir);
      const config = JSON.parse(await readFile(join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
      expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: settings.r, lora_alpha: settings.alphaOverR * settings.r });
      expect((await stat(join(dir, ADAPTER_WEIGHTS_FILE))).size).toBeGreaterThan(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
