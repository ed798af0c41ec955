import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { sortingTask } from '@posttrain/data';
import { DISTILL_SETTINGS, runDistillExample, summaryLine, type DistillExampleResult, type DistillMethod } from './example.js';
import { measureSorting } from './measure.js';
import { HELD_OUT, TEACHER_FIGURES, loadTeacher, sortingSplit } from './teacher.js';

// The learning proof of issue 13: a 1-layer student of hidden size 32, created from seed 0, trained
// at one step budget on the same 64 sorting records by SFT, by offline KD (Hinton, T 8) and by on-policy GKD from
// the committed teacher, measured on the 200 held-out prompts no model here trains on. Figures
// in the comments are wasm runs of these settings. The time limit is wider than the runs need on two
// idle cores (see the figures) so that a shared, busy machine does not fail them.
const LIMIT = 300_000;

async function run(method: DistillMethod): Promise<DistillExampleResult> {
  await initBackend('wasm');
  const tensorsBefore = tf.memory().numTensors;
  const lines: string[] = [];
  const result = await runDistillExample({ method, seed: 0, log: (line) => lines.push(line) });
  console.log(`${lines.at(-1)} [${result.seconds.toFixed(1)} s in all]`);
  expect(result.steps).toBe(DISTILL_SETTINGS.common.maxSteps);
  expect(result.leakedTensors).toBe(0);
  expect(tf.memory().numTensors).toBe(tensorsBefore); // student and teacher disposed, nothing else left
  expect(lines.some((l) => l.includes(`step ${DISTILL_SETTINGS.common.maxSteps}/${DISTILL_SETTINGS.common.maxSteps}`))).toBe(true);
  return result;
}

describe('the distillation example', () => {
  it('the teacher gets every held-out prompt right, and the students train on none of them', async () => {
    await initBackend('wasm');
    const { model, tokenizer } = await loadTeacher();
    try {
      expect(model.training).toBe(false);
      expect(model.trainableParameters().size).toBe(0);
      const { train, test } = sortingSplit(DISTILL_SETTINGS.trainExamples);
      expect(test).toHaveLength(HELD_OUT);
      expect(sortingSplit(TEACHER_FIGURES.trainExamples).test).toEqual(test); // the teacher held out the same prompts
      const held = new Set(test.map((e) => e.prompt));
      expect(train.filter((e) => held.has(e.prompt))).toEqual([]);
      const measured = await measureSorting(model, tokenizer, test);
      expect(measured.accuracy).toBe(TEACHER_FIGURES.exactMatch);
      expect(measured.crossEntropy).toBeCloseTo(TEACHER_FIGURES.crossEntropy, 4);
      expect(measured.samples.every((s) => sortingTask.verify(test.find((e) => e.prompt === s.prompt)!, s.completion).correct)).toBe(true);
    } finally {
      model.dispose();
    }
  });

  const results = {} as Record<DistillMethod, DistillExampleResult>;

  it(
    'SFT on the 64 records learns some of the task',
    async () => {
      // Measured 49% held-out exact match (seed 0), ~14 s of training on two cores.
      results.sft = await run('sft');
      expect(results.sft.heldOut.accuracy).toBeGreaterThan(0.2);
    },
    LIMIT,
  );

  it(
    "offline KD (the teacher's distributions on the same records, Hinton's loss at T 8) beats SFT by ≥ 5 points of held-out exact match at the same step budget",
    async () => {
      // Measured (seed 0) 56% vs SFT's 49%, cross-entropy 0.60 vs 0.80; seed 2 55% vs 43%; seed 1
      // 38% vs 41% (the gain does not hold on every seed: docs/distill.md). ~27 s of training.
      results.kd = await run('kd');
      expect(results.kd.train.history.every((r) => r.on_policy === 0)).toBe(true);
      expect(results.kd.heldOut.accuracy).toBeGreaterThanOrEqual(results.sft.heldOut.accuracy + 0.05);
      expect(results.kd.heldOut.crossEntropy).toBeLessThan(results.sft.heldOut.crossEntropy);
    },
    LIMIT,
  );

  it(
    "on-policy GKD (the teacher's distributions on the student's own samples of the same prompts) beats SFT by ≥ 5 points of held-out exact match at the same step budget",
    async () => {
      // Measured (main.ts --seed N): seed 0 GKD 65.5% vs SFT 49% vs KD 56%; seed 1 59% vs 41% vs 38%;
      // seed 2 54.5% vs 43% vs 55%; ~33 s of GKD training (SFT ~14 s, KD ~27 s) on two cores. The
      // cross-entropy of the right answers falls with it: 0.30 vs SFT's 0.80 nats/token (seed 0).
      results.gkd = await run('gkd');
      const { history } = results.gkd.train;
      const onPolicy = history.filter((r) => r.on_policy === 1).length / history.length;
      expect(onPolicy).toBeGreaterThan(0.65); // λ 0.75 of the batches sampled by the student
      expect(onPolicy).toBeLessThan(0.85);
      expect(results.gkd.heldOut.accuracy).toBeGreaterThanOrEqual(results.sft.heldOut.accuracy + 0.05);
      expect(results.gkd.heldOut.crossEntropy).toBeLessThan(results.sft.heldOut.crossEntropy);
      const line = summaryLine(
        results,
        Object.values(results).reduce((s, r) => s + r.seconds, 0),
      );
      console.log(line);
      expect(line).toMatch(/^done in \d+\.\d s: student accuracy SFT \d+\.\d% vs KD \d+\.\d% vs GKD \d+\.\d%$/);
    },
    LIMIT,
  );
});
