// The demo shortened (`posttrain demo --quick`: a tenth of each stage's steps, 50 held-out prompts):
// every stage runs and prints its table, every stage's model is written, the report draws the curves.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './main.js';

describe('posttrain demo --quick', () => {
  it('runs SFT → reward model → DPO → GRPO → distillation → quantisation → pruning → evaluation', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'posttrain-demo-'));
    let out = '';
    let err = '';
    const code = await runCli(['demo', '--quick', '--output-dir', join(dir, 'demo'), '--report', join(dir, 'report.html')], {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: (t: string) => (err += t), isTTY: false },
    });
    expect(err).not.toMatch(/^error/m);
    expect(code).toBe(0);
    const titles = [...out.matchAll(/^(\d\. .+) \(\d+\.\d s\)$/gm)].map((m) => m[1]);
    expect(titles).toEqual([
      '1. SFT (LoRA r 16)',
      '2. reward model',
      '3. DPO (LoRA, RPO α 1)',
      '4. GRPO (exact-match reward)',
      '5. distillation (offline KD, JSD)',
      '6. quantisation',
      '7. pruning (SparseGPT)',
      '8. evaluation',
    ]);
    expect(readdirSync(join(dir, 'demo')).sort()).toEqual(['distill', 'dpo', 'grpo', 'int4', 'pruned-2of4', 'reward', 'sft', 'summary.json']);
    // Learning, even at a tenth of the steps: SFT's answers become far more likely than the base's,
    // and the reward model ranks more held-out pairs right than before training.
    const [, basePpl, sftPpl] = /answer perplexity, base → SFT\s+([\d.]+) → ([\d.]+)/.exec(out)!;
    expect(Number(sftPpl)).toBeLessThan(Number(basePpl) / 5);
    const [, rmBefore, rmAfter] = /held-out pairwise accuracy, before\s+([\d.]+)%[\s\S]*held-out pairwise accuracy, after\s+([\d.]+)%/.exec(out)!;
    expect(Number(rmAfter)).toBeGreaterThan(Number(rmBefore) + 5); // 56% → 66% at 20 steps
    expect(out).toMatch(/int4 g32: bytes, exact match, perplexity\s+\d+ → \d+, /);
    expect(out).toMatch(/2:4: sparsity, exact match, perplexity\s+50\.0%, /);
    expect(out).toMatch(/reward-model win rate, final vs SFT\s+[\d.]+% \(\d+ wins, \d+ ties, \d+ losses\)/);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html.match(/<svg class="chart"/g)?.length).toBeGreaterThanOrEqual(5);
    for (const title of titles) expect(html).toContain(title);
    const summary = JSON.parse(readFileSync(join(dir, 'demo', 'summary.json'), 'utf8'));
    expect(summary.stages).toHaveLength(8);
  });
});
