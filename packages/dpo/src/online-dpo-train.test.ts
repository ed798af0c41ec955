import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { collateForTraining, generateSplit, loadTokenizer, reversalTask } from '@posttrain/data';
import { ipoLoss, dpoSigmoidLoss } from '@posttrain/losses';
import { loraLayers } from '@posttrain/lora';
import { loadModel } from '@posttrain/models';
import { namedReward, sequenceLogps, taskReward, type Completion, type Generator } from '@posttrain/policy';
import { exactMatch } from '@posttrain/eval';
import { dpoObjective, onlineDpoTrain, simpoObjective, type OnlineDpoTrainOptions } from './index.js';
import { rejected, tinyModel, tokenizer } from './testing/fixtures.js';

const EOS = tokenizer.eosTokenId as number;
const quiet = { progress: 'none' as const };
const records = reversalTask.generate(0, 64, { minLength: 3, maxLength: 4 }).map((e) => ({ prompt: e.prompt, answer: e.answer }));
let dir: string;

beforeAll(async () => {
  await initBackend('wasm');
  dir = mkdtempSync(join(tmpdir(), 'online-dpo-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('onlineDpoTrain: options', () => {
  const valid = (): OnlineDpoTrainOptions => ({ model: tinyModel(), tokenizer, train: records, rewardFunctions: taskReward(reversalTask), maxNewTokens: 6, lora: { r: 4 }, ...quiet });

  it('names unknown and out-of-range options, a missing reward, and a batch larger than the prompts', async () => {
    expect((await rejected(onlineDpoTrain({ ...valid(), max_new_tokens: 8 } as unknown as OnlineDpoTrainOptions))).message).toMatch(/unknown option "max_new_tokens"/);
    const none = await rejected(onlineDpoTrain({ ...valid(), rewardFunctions: [] }));
    expect(none.code).toBe('INVALID_OPTION');
    expect(none.message).toContain('expected rewardFunctions to be reward functions or reward models, at least one');
    expect((await rejected(onlineDpoTrain({ ...valid(), rewardWeights: [1, 2] }))).message).toContain(
      'expected rewardWeights to be 1 finite numbers (one per reward function: reversal_exact_match) or null',
    );
    expect((await rejected(onlineDpoTrain({ ...valid(), temperature: 0 }))).message).toContain('expected temperature to be a number > 0');
    expect((await rejected(onlineDpoTrain({ ...valid(), missingEosPenalty: -1 }))).message).toContain('expected missingEosPenalty to be a number ≥ 0 or null; got -1');
    expect((await rejected(onlineDpoTrain({ ...valid(), maxNewTokens: 0 }))).message).toContain('expected maxNewTokens to be an integer ≥ 1; got 0');
    expect((await rejected(onlineDpoTrain({ ...valid(), maxLength: 6 }))).message).toContain('expected maxLength to exceed maxNewTokens = 6 (room for a prompt); got 6');
    const batch = await rejected(onlineDpoTrain({ ...valid(), train: records.slice(0, 4), batchSize: 8 }));
    expect(batch.message).toContain('expected at least batchSize = 8 train prompts (one micro-batch of pairs); got 4');
    expect(batch.message).toContain('help: pass more prompt records, or set batchSize to 4 or less');
    expect((await rejected(onlineDpoTrain({ ...valid(), train: [{ prompt: ['x'] } as never] }))).message).toContain('train record 0: expected { prompt: string, … }');
    const long = await rejected(onlineDpoTrain({ ...valid(), maxNewTokens: 30 }));
    expect(long.message).toMatch(/train record 0: expected prompt \+ maxNewTokens to fit the model's context of 32 tokens; got a prompt of \d tokens \+ maxNewTokens 30/);
    expect(long.message).toMatch(/help: lower maxNewTokens to \d+, or set maxLength to 32/);
  });

  it('refuses a precomputed reference, a full fine-tune without a frozen copy, a reference for SimPO, and β twice', async () => {
    const pre = await rejected(onlineDpoTrain({ ...valid(), reference: 'precomputed' as never }));
    expect(pre.code).toBe('INVALID_OPTION');
    expect(pre.message).toContain('expected reference \'adapters-disabled\' or { model }; got "precomputed": online completions are not known before training');
    const full = await rejected(onlineDpoTrain({ ...valid(), lora: false }));
    expect(full.message).toContain('dpoSigmoidLoss needs a reference model; got none (no LoRA, no reference option)');
    expect(full.message).toContain('help: pass reference: { model: await loadModel(sameCheckpoint) }');
    const simpo = await rejected(onlineDpoTrain({ ...valid(), loss: simpoObjective(), reference: 'adapters-disabled' }));
    expect(simpo.message).toContain('expected no reference for simpoLoss, which is reference-free');
    const twice = await rejected(onlineDpoTrain({ ...valid(), beta: 0.2, loss: dpoObjective(dpoSigmoidLoss, { beta: 0.1 }) }));
    expect(twice.message).toContain('expected beta once; got beta 0.2 and an objective (dpoSigmoidLoss) with β 0.1');
  });
});

/** Two scripted completions per prompt (texts keyed by prompt; a `!` suffix means "no EOS: cut at the length limit"), log-probs 0. */
function scripted(table: Record<string, [string, string]>): Generator {
  const completion = (text: string): Completion => {
    const cut = text.endsWith('!');
    const ids = [...tokenizer.encode(cut ? text.slice(0, -1) : text), ...(cut ? [] : [EOS])];
    return { ids, logprobs: ids.map(() => 0), finishReason: cut ? 'length' : 'stop' };
  };
  return { name: 'scripted', generate: async ({ prompts, n }) => prompts.map((p) => Array.from({ length: n }, (_, j) => completion(table[p][j]))) };
}

describe('onlineDpoTrain: one step by hand', () => {
  // Prompt → its two samples; reward per completion text. 'abc>': the second is better. 'bcd>': a tie,
  // so the first is chosen (TRL). 'cde>': the first is better but never stopped (maxNewTokens 4);
  // missingEosPenalty 1 makes the second the chosen one.
  const table: Record<string, [string, string]> = { 'abc>': ['xy', 'cba'], 'bcd>': ['dc', 'dcb'], 'cde>': ['edcc!', 'ed'] };
  const reward = namedReward('scripted', ({ completions }) => completions.map((c) => ({ xy: 0, cba: 1, dc: 0.5, dcb: 0.5, edcc: 1, ed: 0.5 })[c] ?? Number.NaN));
  const train = Object.keys(table).map((prompt) => ({ prompt }));

  /** log π(completion | prompt), summed, under `model` (its policy equals the reference at step 1). */
  const logp = (model: ReturnType<typeof tinyModel>, prompt: string, text: string) =>
    tf.tidy(() => {
      const p = tokenizer.encode(prompt);
      const c = [...tokenizer.encode(text.replace('!', '')), ...(text.endsWith('!') ? [] : [EOS])];
      const batch = collateForTraining([{ inputIds: [...p, ...c], labels: [...p.map(() => -100), ...c] }], { padTokenId: 0 });
      return sequenceLogps(model, batch).logps.dataSync()[0];
    });

  it.each([
    { penalty: 1, chosen: { 'abc>': 1, 'bcd>': 0, 'cde>': 1 } },
    { penalty: null, chosen: { 'abc>': 1, 'bcd>': 0, 'cde>': 0 } },
  ])('missingEosPenalty $penalty: the better completion is chosen (the first on a tie); loss, scores and log-probs as computed here', async ({ penalty, chosen }) => {
    const model = tinyModel(3);
    const expected = Object.fromEntries(Object.entries(table).map(([p, [a, b]]) => [p, [logp(model, p, a), logp(model, p, b)]]));
    const completionsFile = join(dir, `by-hand-${penalty}.jsonl`);
    const result = await onlineDpoTrain({
      model,
      tokenizer,
      train,
      rewardFunctions: reward,
      generator: scripted(table),
      missingEosPenalty: penalty,
      maxNewTokens: 4,
      batchSize: 3,
      lora: { r: 4 },
      lr: 1e-3,
      maxSteps: 1,
      completionsFile,
      ...quiet,
    });
    const rows = readFileSync(completionsFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(6);
    for (const [prompt, first] of Object.entries(chosen)) {
      const [a, b] = rows.filter((r) => r.prompt === prompt);
      expect([a.chosen, b.chosen], prompt).toEqual(first === 0 ? [1, 0] : [0, 1]);
    }
    const penalised = { ...Object.fromEntries(rows.map((r) => [r.completion, r.reward])), ...(penalty ? { edcc: 0 } : {}) };
    const score = (text: string) => penalised[text.replace('!', '')] as number;
    const picks = Object.entries(chosen).map(([p, c]) => ({ chosen: table[p][c], rejected: table[p][1 - c], logps: expected[p], c }));
    const [record] = result.history;
    // Step 1: the policy is its reference (LoRA's B starts at 0), so every implicit reward is 0 and the loss is log 2.
    expect(record.loss).toBeCloseTo(Math.log(2), 5);
    expect(record.pairs).toBe(3);
    expect(record['rewards/accuracies']).toBe(0);
    expect(Math.abs(Number(record['rewards/margins']))).toBeLessThan(1e-6);
    expect(Math.abs(Number(record['objective/kl']))).toBeLessThan(1e-4);
    expect(record['logps/chosen']).toBeCloseTo(picks.reduce((s, k) => s + k.logps[k.c], 0) / 3, 4);
    expect(record['logps/rejected']).toBeCloseTo(picks.reduce((s, k) => s + k.logps[1 - k.c], 0) / 3, 4);
    const all = Object.values(expected).flat();
    expect(record['objective/entropy']).toBeCloseTo(-all.reduce((s, x) => s + x, 0) / 6, 4);
    const scores = Object.values(table).flat().map(score);
    expect(record['objective/scores']).toBeCloseTo(scores.reduce((s, x) => s + x, 0) / 6, 6);
    expect(record['objective/scores_margin']).toBeCloseTo(picks.reduce((s, k) => s + score(k.chosen) - score(k.rejected), 0) / 3, 6);
    expect(record['objective/rlhf_reward']).toBeCloseTo(Number(record['objective/scores']), 4);
    expect(record['val/contain_eos_token']).toBeCloseTo(5 / 6, 6);
    expect(record.reward).toBeCloseTo((0 + 1 + 0.5 + 0.5 + 1 + 0.5) / 6, 6); // TRL's rollout metric: before the penalty
    expect(record['rewards/scripted/mean']).toBeCloseTo(3.5 / 6, 6);
    expect(record['completions/clipped_ratio']).toBeCloseTo(1 / 6, 6);
    expect(record.beta).toBeCloseTo(0.1, 9);
    expect(result).toMatchObject({ objective: 'dpoSigmoidLoss', reference: 'adapters disabled', generator: 'scripted' });
  });
});

describe('onlineDpoTrain: runs', () => {
  it('samples from the policy, logs the completion table and eval metrics, and leaks no tensor across steps (LoRA, and a full fine-tune with a frozen copy and IPO)', async () => {
    const partial = taskReward(reversalTask, { mode: 'partial' });
    const lora = tinyModel(5);
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const logFile = join(dir, 'leak', 'metrics.jsonl');
    const result = await onlineDpoTrain({
      model: lora,
      tokenizer,
      train: records,
      eval: records.slice(0, 4),
      rewardFunctions: partial,
      maxNewTokens: 6,
      temperature: 1,
      batchSize: 4,
      lora: { r: 4 },
      lr: 1e-3,
      maxSteps: 4,
      logFile,
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
      ...quiet,
    });
    expect(result.generator).toBe('in-process');
    expect(new Set(counts).size).toBe(1);
    expect(tf.memory().numTensors - before).toBe(2 * loraLayers(lora).size); // A and B of each adapted layer
    const rows = readFileSync(join(dir, 'leak', 'completions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(4 * 8);
    expect(Object.keys(rows[0]).sort()).toEqual(['chosen', 'completion', 'prompt', 'reversal_score', 'reward', 'score', 'step']);
    expect(rows.at(-1).step).toBe(3);
    expect(Object.keys(result.evals.at(-1) ?? {})).toEqual(expect.arrayContaining(['eval_reward', 'eval_rewards/reversal_score/mean', 'eval_completions/mean_length']));

    const full = tinyModel(5);
    const copy = tinyModel(5);
    const start = tf.memory().numTensors;
    const fullCounts: number[] = [];
    const fullRun = await onlineDpoTrain({
      model: full,
      tokenizer,
      train: records,
      rewardFunctions: partial,
      loss: ipoLoss,
      reference: { model: copy },
      maxNewTokens: 6,
      batchSize: 4,
      lr: 1e-3,
      maxSteps: 3,
      callbacks: { onStep: () => void fullCounts.push(tf.memory().numTensors) },
      ...quiet,
    });
    expect(fullRun).toMatchObject({ objective: 'ipoLoss', reference: 'frozen copy' });
    expect(new Set(fullCounts).size).toBe(1);
    expect(tf.memory().numTensors).toBe(start);
    for (const record of fullRun.history) for (const key of ['loss', 'objective/kl', 'objective/entropy', 'rewards/margins']) expect(Number.isFinite(Number(record[key])), key).toBe(true);
  });
});

describe('onlineDpoTrain: resume', () => {
  it('resumes with the same sampling streams: scores and losses after the resume equal the uninterrupted run’s', async () => {
    const run = (extra: Partial<OnlineDpoTrainOptions>) =>
      onlineDpoTrain({
        model: tinyModel(7),
        tokenizer,
        train: records,
        rewardFunctions: taskReward(reversalTask, { mode: 'partial' }),
        maxNewTokens: 5,
        temperature: 1,
        batchSize: 4,
        gradientAccumulationSteps: 2,
        lora: { r: 4 },
        lr: 5e-3,
        maxSteps: 4,
        ...quiet,
        ...extra,
      });
    const root = join(dir, 'resume');
    const whole = await run({ checkpointDir: root, checkpointEvery: 2 });
    const resumed = await run({ resumeFrom: join(root, 'step-2') });
    expect(resumed.history.map((h) => h.step)).toEqual([3, 4]);
    for (const key of ['objective/scores', 'loss', 'objective/kl', 'logps/chosen']) {
      expect(resumed.history.map((h) => h[key])).toEqual(whole.history.slice(2).map((h) => h[key]));
    }
  });
});

describe('onlineDpoTrain: reversal, from the weak SFT checkpoint', () => {
  it('raises held-out greedy exact match where offline DPO lowered it (docs/dpo.md)', async () => {
    // examples/rl's weak SFT: the tiny base after 150 LoRA SFT steps on reversal, merged (25% held-out greedy exact match).
    const weakSft = new URL('../../../examples/rl/weak-sft/', import.meta.url).pathname;
    const { train, test } = generateSplit(reversalTask, 0, { train: 20_000, test: 200, taskOptions: { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 }, uniqueTrain: false });
    const model = await loadModel(weakSft);
    const byteTokenizer = await loadTokenizer(weakSft);
    const before = await exactMatch(model, byteTokenizer, reversalTask, test, { maxNewTokens: 8 });
    const result = await onlineDpoTrain({
      model,
      tokenizer: byteTokenizer,
      train: train.map((e) => ({ prompt: e.prompt, answer: e.answer })),
      rewardFunctions: taskReward(reversalTask, { mode: 'partial' }),
      beta: 0.5,
      maxNewTokens: 8,
      temperature: 1,
      batchSize: 32,
      lora: { r: 16, alpha: 32 },
      lr: 1e-3,
      schedule: 'constant',
      maxSteps: 100,
      ...quiet,
    });
    const after = await exactMatch(model, byteTokenizer, reversalTask, test, { maxNewTokens: 8 });
    console.log(`online DPO on reversal: held-out greedy exact match ${before.accuracy} → ${after.accuracy} (${result.steps} steps, ${result.elapsed?.toFixed?.(1) ?? '?'} s)`);
    expect(before.accuracy).toBe(0.25);
    // Measured: 0.25 → 0.31 (seed 0; seeds 1 and 2 of the same settings give 0.265 and 0.295, docs/dpo.md). Offline plain DPO: 0.25 → 0.085.
    expect(after.accuracy).toBeGreaterThanOrEqual(before.accuracy + 0.04);
  });
});
