import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '@posttrain/lora';
import { runRewardDemo } from './reward-demo.js';

// Tiny settings: the demo's plumbing (train, measure, save, reload, print). The learning proof,
// 600 full steps to ≥ 0.9 held-out accuracy, is packages/reward's reward-train.test.ts.
describe('the reward demo', () => {
  it('trains, measures before and after, saves a LlamaForSequenceClassification checkpoint that reloads to the same scores, and prints scored pairs', async () => {
    await initBackend('wasm');
    const tensorsBefore = tf.memory().numTensors;
    const out = await mkdtemp(join(tmpdir(), 'reward-demo-'));
    const lines: string[] = [];
    try {
      const result = await runRewardDemo({ steps: 15, batchSize: 16, train: 400, test: 40, out, progress: 'none', log: (line) => lines.push(line) });
      expect(result.train.steps).toBe(15);
      expect(result.before.accuracy).toBeGreaterThanOrEqual(0);
      expect(result.reloaded.chosenScores).toEqual(result.after.chosenScores);
      expect(result.reloaded.rejectedScores).toEqual(result.after.rejectedScores);
      expect(result.files).toEqual(['config.json', 'model.safetensors']);
      const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
      expect(config).toMatchObject({ architectures: ['LlamaForSequenceClassification'], num_labels: 1, model_type: 'llama', pad_token_id: 259 });
      expect(lines.some((l) => l.startsWith('before: held-out pairwise accuracy'))).toBe(true);
      expect(lines.some((l) => l.startsWith('after:  held-out pairwise accuracy'))).toBe(true);
      expect(lines.some((l) => l.startsWith('full fine-tuning: '))).toBe(true);
      expect(lines.filter((l) => / (right|wrong)$/.test(l))).toHaveLength(6);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('with --lora, writes a PEFT adapter and the head, and reloads them onto the base', async () => {
    await initBackend('wasm');
    const out = await mkdtemp(join(tmpdir(), 'reward-demo-lora-'));
    const lines: string[] = [];
    try {
      const result = await runRewardDemo({ steps: 5, batchSize: 8, train: 200, test: 20, lora: 4, lr: 3e-3, out, samples: 2, progress: 'none', log: (line) => lines.push(line) });
      expect(result.files.sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE].sort());
      expect(result.reloaded.chosenScores).toEqual(result.after.chosenScores);
      expect(lines.some((l) => l.startsWith('LoRA r 4 + head: '))).toBe(true);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
