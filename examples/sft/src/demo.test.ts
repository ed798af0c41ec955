import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, generateSplit, sortingTask } from '@posttrain/data';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '@posttrain/lora';
import { loadModel } from '@posttrain/models';
import { exactMatch } from '@posttrain/eval';
import { runDemo } from './demo.js';
import { STRING_OPTIONS, TINY_BASE_DIR, tinyBaseConfig } from './tiny-base.js';

describe('the SFT demo (the README main job)', () => {
  it('ships a base that sorts held-out strings and was made by tinyBaseConfig', async () => {
    await initBackend('wasm');
    const model = await loadModel(TINY_BASE_DIR);
    expect(model.config).toMatchObject(tinyBaseConfig());
    const { test } = generateSplit(sortingTask, 1, { train: 0, test: 200, taskOptions: STRING_OPTIONS });
    const { accuracy } = await exactMatch(model, new ByteTokenizer(), sortingTask, test, { maxNewTokens: 8 });
    expect(accuracy).toBeGreaterThanOrEqual(0.95); // 100% when it was made
    model.dispose();
  });

  // The learning proof of issue 5: LoRA SFT on a skill the base has never seen, held-out prompts.
  it('LoRA SFT takes held-out reversal exact match from < 10% to ≥ 90%, and writes a PEFT adapter that reloads to the same accuracy', async () => {
    await initBackend('wasm');
    const tensorsBefore = tf.memory().numTensors;
    const out = await mkdtemp(join(tmpdir(), 'sft-demo-'));
    const lines: string[] = [];
    try {
      const result = await runDemo({ out, progress: 'none', log: (line) => lines.push(line) });
      console.log(
        `sft demo: ${result.before.accuracy} → ${result.after.accuracy} in ${result.train.steps} steps, ${result.train.elapsed.toFixed(1)} s training, ${Math.round(result.train.tokensPerSec)} label tokens/s, ${result.seconds.toFixed(1)} s in all`,
      );
      expect(result.before.accuracy).toBeLessThan(0.1);
      expect(result.after.accuracy).toBeGreaterThanOrEqual(0.9);
      expect(result.reloaded.accuracy).toBe(result.after.accuracy);
      const history = result.train.history;
      expect(history).toHaveLength(600);
      const mean = (key: 'loss' | 'mean_token_accuracy', records: typeof history) => records.reduce((s, r) => s + Number(r[key]), 0) / records.length;
      expect(mean('loss', history.slice(-50))).toBeLessThan(mean('loss', history.slice(0, 10)) / 20);
      expect(mean('mean_token_accuracy', history.slice(-50))).toBeGreaterThan(0.95);
      expect(result.train.lora?.trainablePercent).toBeGreaterThan(0);

      expect(result.adapterFiles.sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE].sort());
      const config = JSON.parse(await readFile(join(out, ADAPTER_CONFIG_FILE), 'utf8'));
      expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 16, lora_alpha: 32, use_rslora: false, use_dora: false, bias: 'none' });
      expect([...config.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);

      expect(lines.some((l) => l.startsWith('before: held-out exact match'))).toBe(true);
      expect(lines.some((l) => l.startsWith('after:  held-out exact match'))).toBe(true);
      expect(lines.filter((l) => / (right|wrong)$/.test(l))).toHaveLength(6);
      // The DPO stage after SFT (issue 7's demo): the implicit reward separates held-out pairs, and
      // the task stays solved (its own learning proof, from a weaker SFT start, is examples/dpo's).
      expect(result.dpo!.rewardAccuracy).toBeGreaterThanOrEqual(0.8);
      expect(result.dpo!.after.exactMatch.accuracy).toBeGreaterThanOrEqual(0.9);
      expect(lines.some((l) => l.startsWith('after DPO'))).toBe(true);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
