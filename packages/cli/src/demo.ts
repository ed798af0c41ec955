// `posttrain demo`: the whole pipeline on the tiny base this package ships — SFT → reward model →
// DPO → GRPO → distillation → quantisation → pruning → evaluation — on string reversal, with one
// table of held-out figures per stage and an HTML report.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CausalLM } from '@posttrain/tensor-core';
import { generateSplit, reversalTask, type StringTaskOptions } from '@posttrain/data';
import { mergeAndUnload } from '@posttrain/lora';
import { inProcessGenerator, taskReward } from '@posttrain/policy';
import { dpoSigmoidLoss } from '@posttrain/losses';
import { sftTrain } from '@posttrain/sft';
import { RewardModel, evaluateRewardModel, rewardTrain, saveRewardModel } from '@posttrain/reward';
import { dpoObjective, dpoTrain, preferenceLogps } from '@posttrain/dpo';
import { grpoTrain } from '@posttrain/rl-ppo';
import { distillTrain } from '@posttrain/distill';
import { quantizeModel } from '@posttrain/quantize';
import { pruneModel, sparsityReport } from '@posttrain/prune';
import { calibration, exactMatch, recordsPerplexity, rewardWinRate, samplePassAtK, selfConsistency } from '@posttrain/eval';
import type { CommandContext } from './command.js';
import { copyModel, disposeModel, loadPolicy, readMetrics, saveModelDir } from './io.js';
import { chartsFromMetrics, type ReportSample } from './report.js';

/** The tiny base shipped with this package: a 90,688-parameter Llama that sorts strings and has never seen reversal. */
export const TINY_BASE_DIR = fileURLToPath(new URL('../assets/tiny-base/', import.meta.url));

/** The strings of the demo: 3 or 4 of the letters a–h (the tiny base's pretraining alphabet). */
const STRINGS: StringTaskOptions = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };

/** Options of {@link runPipeline}: optimizer steps per stage, held-out size, seed. */
export interface PipelineOptions {
  /** The base model directory (default: the tiny base shipped in assets/). */
  base: string;
  /** Where each stage's model, metrics.jsonl and the summary go. */
  outputDir: string;
  sftSteps: number;
  rewardSteps: number;
  dpoSteps: number;
  grpoSteps: number;
  distillSteps: number;
  /** Held-out reversal prompts every stage is measured on. */
  heldOut: number;
  seed: number;
}

/** Defaults of {@link runPipeline}: the full demo (a few minutes on 2 cores). */
export const defaultPipelineOptions: Readonly<PipelineOptions> = Object.freeze({
  base: TINY_BASE_DIR,
  outputDir: 'out/demo',
  sftSteps: 150,
  rewardSteps: 200,
  dpoSteps: 150,
  grpoSteps: 300,
  distillSteps: 600,
  heldOut: 200,
  seed: 0,
});

/** One stage's held-out figures (and its training history, for the report). */
export interface StageResult {
  stage: string;
  seconds: number;
  /** [measure, value] rows of the stage's table. */
  rows: [string, number | string][];
  metrics: Record<string, unknown>[];
  samples: ReportSample[];
}

/** What {@link runPipeline} returns: every stage's figures, in order. */
export interface PipelineResult {
  stages: StageResult[];
  seconds: number;
}

/**
 * Runs the whole pipeline on string reversal from the tiny base, printing one table per stage:
 * 1. SFT (LoRA, merged afterwards): exact match before and after;
 * 2. reward model (full fine-tuning of a copy of the SFT model with a scalar head): held-out pairwise accuracy;
 * 3. DPO (a fresh adapter, the SFT model as reference through disabled adapters, RPO's NLL term);
 * 4. GRPO (exact-match reward, 8 samples per prompt) from the DPO model;
 * 5. distillation of the final policy into a fresh copy of the base (offline KD, JSD);
 * 6. quantisation of the final policy (int8, int4 g32, NF4): bytes, exact match, perplexity;
 * 7. pruning (SparseGPT 50% and 2:4, calibrated on training strings): exact match, perplexity;
 * 8. evaluation of base, SFT and final policy: exact match, completion perplexity, ECE, pass@k,
 *    self-consistency and the reward model's win rate of the final policy against the SFT model.
 *
 * @example
 * ```ts
 * const { stages } = await runPipeline({ outputDir: 'out/demo' }, { print: console.log, progress: process.stderr, sections: [] });
 * ```
 */
export async function runPipeline(options: Partial<PipelineOptions>, context: CommandContext): Promise<PipelineResult> {
  const o = { ...defaultPipelineOptions, ...options };
  const out = o.outputDir;
  const started = performance.now();
  const { model: policy, tokenizer } = await loadPolicy(o.base, undefined, '--base');
  const { train, test } = generateSplit(reversalTask, o.seed, { train: 20_000, test: o.heldOut, taskOptions: STRINGS, uniqueTrain: false });
  const sftRecords = train.map((e) => reversalTask.toPromptCompletion(e));
  const pairs = train.map((e, i) => reversalTask.preferencePair(e, o.seed + i));
  const heldOutPairs = test.map((e, i) => reversalTask.preferencePair(e, o.seed + 1_000_000 + i));
  const heldOutRecords = test.map((e) => reversalTask.toPromptCompletion(e));
  const stages: StageResult[] = [];
  const quiet = { progress: 'auto' as const, progressStream: context.progress };

  const em = (m: CausalLM) => exactMatch(m, tokenizer, reversalTask, test, { maxNewTokens: 8 });
  const ppl = async (m: CausalLM) => (await recordsPerplexity(m, tokenizer, heldOutRecords)).perplexity;
  const samplesOf = (r: Awaited<ReturnType<typeof em>>) => r.samples.slice(0, 4).map((s) => ({ prompt: s.prompt, completion: s.completion, note: s.correct ? 'correct' : 'wrong' }));
  const stage = async (name: string, run: () => Promise<Omit<StageResult, 'stage' | 'seconds'>>) => {
    const t0 = performance.now();
    context.print(`\n== ${name}`);
    const result = { stage: name, seconds: 0, ...(await run()) };
    result.seconds = (performance.now() - t0) / 1000;
    printTable(context, name, result.rows, result.seconds);
    stages.push(result);
    return result;
  };
  const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

  const base = await em(policy);
  const basePpl = await ppl(policy);

  // 1. SFT with LoRA, then merged: the SFT checkpoint.
  await stage('1. SFT (LoRA r 16)', async () => {
    const dir = join(out, 'sft');
    const { history } = await sftTrain({
      ...quiet,
      model: policy,
      tokenizer,
      train: sftRecords,
      lora: { r: 16, alpha: 32, targetModules: 'all-linear' },
      lr: 5e-3,
      schedule: 'cosine',
      warmupSteps: Math.min(20, Math.floor(o.sftSteps / 5)),
      batchSize: 32,
      maxSteps: o.sftSteps,
      seed: o.seed,
      logFile: join(dir, 'metrics.jsonl'),
    });
    mergeAndUnload(policy as never);
    await saveModelDir(policy, dir, o.base);
    const after = await em(policy);
    return {
      rows: [
        ['exact match, base', percent(base.accuracy)],
        ['exact match, after SFT', percent(after.accuracy)],
        ['answer perplexity, base → SFT', `${basePpl.toFixed(3)} → ${(await ppl(policy)).toFixed(3)}`],
        ['final loss', Number(history.at(-1)?.loss ?? Number.NaN)],
      ],
      metrics: readMetrics(join(dir, 'metrics.jsonl')),
      samples: samplesOf(after),
    };
  });
  const sftModel = await copyModel(policy);
  const sftEm = await em(sftModel);

  // 2. A reward model on a copy of the SFT model.
  let rewardModel: RewardModel | undefined;
  await stage('2. reward model', async () => {
    const dir = join(out, 'reward');
    rewardModel = new RewardModel(await copyModel(policy), { seed: o.seed });
    const before = await evaluateRewardModel(rewardModel, tokenizer, heldOutPairs);
    await rewardTrain({
      ...quiet,
      model: rewardModel,
      tokenizer,
      train: pairs,
      lr: 2e-3,
      schedule: 'cosine',
      warmupSteps: 10,
      batchSize: 64,
      maxSteps: o.rewardSteps,
      centerCoefficient: 0.01,
      seed: o.seed,
      logFile: join(dir, 'metrics.jsonl'),
    });
    const after = await evaluateRewardModel(rewardModel, tokenizer, heldOutPairs);
    await saveRewardModel(rewardModel, dir);
    return {
      rows: [
        ['held-out pairwise accuracy, before', percent(before.accuracy)],
        ['held-out pairwise accuracy, after', percent(after.accuracy)],
        ['mean margin (chosen − rejected)', after.margin],
      ],
      metrics: readMetrics(join(dir, 'metrics.jsonl')),
      samples: [],
    };
  });

  // 3. DPO from the SFT checkpoint (its reference: the same weights with the new adapter disabled).
  await stage('3. DPO (LoRA, RPO α 1)', async () => {
    const dir = join(out, 'dpo');
    const before = await preferenceLogps(policy, tokenizer, heldOutPairs);
    const result = await dpoTrain({
      ...quiet,
      model: policy,
      tokenizer,
      train: pairs,
      eval: heldOutPairs,
      evalEvery: o.dpoSteps,
      loss: dpoObjective(dpoSigmoidLoss, { beta: 0.1, rpoAlpha: 1 }),
      reference: 'adapters-disabled',
      lora: { r: 16, alpha: 32, adapterName: 'dpo' },
      lr: 3e-3,
      schedule: 'constant',
      batchSize: 16,
      maxSteps: o.dpoSteps,
      seed: o.seed,
      logFile: join(dir, 'metrics.jsonl'),
    });
    const last = (result.evals.at(-1) ?? {}) as Record<string, unknown>;
    mergeAndUnload(policy as never);
    await saveModelDir(policy, dir, o.base);
    const after = await em(policy);
    return {
      rows: [
        ['exact match, SFT → DPO', `${percent(sftEm.accuracy)} → ${percent(after.accuracy)}`],
        ['chosen more likely than rejected', `${percent(before.accuracy)} → ${percent((await preferenceLogps(policy, tokenizer, heldOutPairs)).accuracy)}`],
        ['held-out rewards/accuracies', Number(last['eval_rewards/accuracies'])],
        ['held-out rewards/margins', Number(last['eval_rewards/margins'])],
      ],
      metrics: readMetrics(join(dir, 'metrics.jsonl')),
      samples: samplesOf(after),
    };
  });
  const dpoEm = await em(policy);

  // 4. GRPO with the exact-match reward.
  await stage('4. GRPO (exact-match reward)', async () => {
    const dir = join(out, 'grpo');
    await grpoTrain({
      ...quiet,
      model: policy,
      tokenizer,
      train: train.map((e) => ({ prompt: e.prompt, answer: e.answer })),
      rewardFunctions: [taskReward(reversalTask)],
      numGenerations: 8,
      batchSize: 128,
      maxCompletionLength: 8,
      temperature: 1,
      lora: { r: 16, alpha: 32 },
      lr: 2e-3,
      schedule: 'cosine',
      warmupSteps: Math.min(10, Math.floor(o.grpoSteps / 5)),
      maxSteps: o.grpoSteps,
      seed: o.seed,
      logFile: join(dir, 'metrics.jsonl'),
    });
    mergeAndUnload(policy as never);
    await saveModelDir(policy, dir, o.base);
    const after = await em(policy);
    const metrics = readMetrics(join(dir, 'metrics.jsonl'));
    const rewards = metrics.filter((r) => typeof r.reward === 'number').map((r) => r.reward as number);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
    const tenth = Math.max(1, Math.floor(rewards.length / 10));
    return {
      rows: [
        ['exact match, DPO → GRPO', `${percent(dpoEm.accuracy)} → ${percent(after.accuracy)}`],
        ['mean reward, first → last tenth of steps', `${mean(rewards.slice(0, tenth)).toFixed(3)} → ${mean(rewards.slice(-tenth)).toFixed(3)}`],
      ],
      metrics,
      samples: samplesOf(after),
    };
  });
  const finalEm = await em(policy);
  const finalPpl = await ppl(policy);

  // 5. Distillation of the final policy into a fresh copy of the base.
  await stage('5. distillation (offline KD, JSD)', async () => {
    const dir = join(out, 'distill');
    const { model: student } = await loadPolicy(o.base, undefined, '--base');
    const teacher = await copyModel(policy);
    (teacher as unknown as { freeze(): void }).freeze();
    teacher.eval();
    const before = await em(student);
    await distillTrain({
      ...quiet,
      student,
      teacher,
      tokenizer,
      train: sftRecords,
      loss: 'jsd',
      lmbda: 0,
      lr: 3e-3,
      schedule: 'cosine',
      warmupSteps: 10,
      batchSize: 32,
      maxSteps: o.distillSteps,
      seed: o.seed,
      logFile: join(dir, 'metrics.jsonl'),
    });
    await saveModelDir(student, dir, o.base);
    const after = await em(student);
    const studentPpl = await ppl(student);
    disposeModel(student);
    disposeModel(teacher);
    return {
      rows: [
        ['teacher exact match', percent(finalEm.accuracy)],
        ['student exact match, before → after', `${percent(before.accuracy)} → ${percent(after.accuracy)}`],
        ['student answer perplexity', studentPpl],
      ],
      metrics: readMetrics(join(dir, 'metrics.jsonl')),
      samples: samplesOf(after),
    };
  });

  // 6. Quantisation of the final policy.
  await stage('6. quantisation', async () => {
    const rows: [string, number | string][] = [['float: exact match, perplexity', `${percent(finalEm.accuracy)}, ${finalPpl.toFixed(3)}`]];
    for (const [scheme, groupSize] of [
      ['int8', undefined],
      ['int4', 32],
      ['nf4', undefined],
    ] as const) {
      const q = await copyModel(policy);
      const summary = await quantizeModel(q as never, scheme === 'int4' ? { scheme, groupSize } : { scheme });
      if (scheme === 'int4') await saveModelDir(q, join(out, 'int4'), o.base);
      rows.push([
        `${scheme}${scheme === 'int4' ? ' g32' : ''}: bytes, exact match, perplexity`,
        `${summary.floatBytes} → ${summary.quantizedBytes}, ${percent((await em(q)).accuracy)}, ${(await ppl(q)).toFixed(3)}`,
      ]);
      disposeModel(q);
    }
    return { rows, metrics: [], samples: [] };
  });

  // 7. Pruning of the final policy, calibrated on training strings.
  await stage('7. pruning (SparseGPT)', async () => {
    const rows: [string, number | string][] = [];
    const calibrationRows = sftRecords.slice(0, 128).map((r) => [...tokenizer.encode(`${r.prompt}${r.completion}`), tokenizer.eosTokenId as number]);
    const batches = [0, 32, 64, 96].map((i) => calibrationRows.slice(i, i + 32));
    for (const [label, options] of [
      ['50% unstructured', { method: 'sparsegpt', sparsity: 0.5 }],
      ['2:4', { method: 'sparsegpt', pattern: { n: 2, m: 4 } }],
    ] as const) {
      const p = await copyModel(policy);
      await pruneModel(p, batches, options as never);
      const report = sparsityReport(p as never);
      if (label === '2:4') await saveModelDir(p, join(out, 'pruned-2of4'), o.base);
      rows.push([`${label}: sparsity, exact match, perplexity`, `${percent(report.layerSparsity)}, ${percent((await em(p)).accuracy)}, ${(await ppl(p)).toFixed(3)}`]);
      disposeModel(p);
    }
    return { rows, metrics: [], samples: [] };
  });

  // 8. Evaluation of base, SFT and the final policy.
  await stage('8. evaluation', async () => {
    const subset = test.slice(0, Math.min(100, test.length));
    const rows: [string, number | string][] = [];
    const { model: baseModel } = await loadPolicy(o.base, undefined, '--base');
    for (const [name, m] of [
      ['base', baseModel],
      ['SFT', sftModel],
      ['final', policy],
    ] as const) {
      const c = await calibration(m, tokenizer, reversalTask, test, { maxNewTokens: 8 });
      const generator = inProcessGenerator(m, tokenizer, { temperature: 1 });
      const pass = await samplePassAtK(generator, tokenizer, reversalTask, subset, { n: 4, ks: [1, 4], maxTokens: 8, seed: o.seed });
      const vote = await selfConsistency(generator, tokenizer, reversalTask, subset, { n: 4, maxTokens: 8, seed: o.seed });
      rows.push([`${name}: exact match, perplexity, ECE`, `${percent(c.accuracy)}, ${(await ppl(m)).toFixed(3)}, ${c.ece.toFixed(3)}`]);
      rows.push([`${name}: pass@1, pass@4, self-consistency@4`, `${percent(pass.passAtK[1])}, ${percent(pass.passAtK[4])}, ${percent(vote.accuracy)}`]);
    }
    disposeModel(baseModel);
    if (rewardModel) {
      const prompts = test.map((e) => e.prompt);
      const mine = (await em(policy)).samples.map((s) => s.completion);
      const theirs = (await em(sftModel)).samples.map((s) => s.completion);
      const w = await rewardWinRate(rewardModel, tokenizer, prompts, mine, theirs);
      rows.push(['reward-model win rate, final vs SFT', `${percent(w.winRate)} (${w.wins} wins, ${w.ties} ties, ${w.losses} losses)`]);
    }
    return { rows, metrics: [], samples: samplesOf(await em(policy)) };
  });

  for (const s of stages) {
    context.sections.push({
      title: s.stage,
      summary: `${s.seconds.toFixed(1)} s`,
      charts: s.metrics.length > 0 ? chartsFromMetrics(s.metrics) : [],
      tables: [{ title: 'held-out figures', columns: ['measure', 'value'], rows: s.rows }],
      samples: s.samples,
    });
  }
  for (const m of [policy, sftModel, rewardModel]) disposeModel(m);
  return { stages, seconds: (performance.now() - started) / 1000 };
}

function printTable(context: CommandContext, title: string, rows: [string, number | string][], seconds: number): void {
  const width = Math.max(...rows.map(([k]) => k.length));
  context.print(`${title} (${seconds.toFixed(1)} s)`);
  for (const [k, v] of rows) context.print(`  ${k.padEnd(width)}  ${typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v}`);
}
