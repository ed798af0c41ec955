import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf, type CausalLM } from '@posttrain/tensor-core';
import { ByteTokenizer, generateSplit, reversalTask } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { namedReward, taskReward, type RewardFunction } from '@posttrain/policy';
import { grpoTrain, type GrpoTrainOptions } from './index.js';
import { scripted as scriptedWith } from './testing/scripted.js';

const TINY_BASE = new URL('../../../examples/sft/tiny-base/', import.meta.url).pathname;
const tokenizer = new ByteTokenizer();
const EOS = tokenizer.eosTokenId as number;
const scripted = (texts: string[]) => scriptedWith(texts, EOS);
const { train, test } = generateSplit(reversalTask, 0, { train: 400, test: 16, taskOptions: { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 }, uniqueTrain: false });
const records = train.map((e) => ({ prompt: e.prompt, answer: e.answer }));
const quiet = { progress: 'none' as const };
let dir: string;

beforeAll(async () => {
  await initBackend('wasm');
  dir = mkdtempSync(join(tmpdir(), 'grpo-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = (): Promise<CausalLM> => loadModel(TINY_BASE);

/** A dense reward the tiny base can climb: the share of the letter 'a' in the completion. */
const manyAs = namedReward('as', ({ completions }) => completions.map((c) => (c.length ? [...c].filter((ch) => ch === 'a').length / c.length : 0)));

describe('grpoTrain: options', () => {
  const valid = async (): Promise<GrpoTrainOptions> => ({ model: await base(), tokenizer, train: records, rewardFunctions: [taskReward(reversalTask)], maxCompletionLength: 8, ...quiet });

  it('refuses numGenerations < 2, a generation batch the groups do not divide (saying what to change), and prompts with no room for the completion', async () => {
    const o = await valid();
    const gens = await grpoTrain({ ...o, numGenerations: 1 }).catch((e) => e);
    expect(gens.code).toBe('INVALID_OPTION');
    expect(gens.message).toContain('expected numGenerations to be an integer ≥ 2; got 1');
    const groups = await grpoTrain({ ...o, numGenerations: 3, batchSize: 8 }).catch((e) => e);
    expect(groups.code).toBe('INVALID_OPTION');
    expect(groups.message).toContain('expected the completions per rollout (batchSize · gradientAccumulationSteps = 8 · 1 = 8) to be a multiple of numGenerations = 3');
    expect(groups.message).toMatch(/help: .*set generationBatchSize to a multiple of 24/);
    const perStep = await grpoTrain({ ...o, numGenerations: 4, batchSize: 8, generationBatchSize: 12 }).catch((e) => e);
    expect(perStep.message).toContain('expected generationBatchSize = 12 to be a multiple of batchSize · gradientAccumulationSteps = 8');
    const long = await grpoTrain({ ...o, maxCompletionLength: 62 }).catch((e) => e);
    expect(long.code).toBe('INVALID_OPTION');
    expect(long.message).toMatch(/train record 0: expected prompt \+ maxCompletionLength to fit the model's context of 64 tokens; got a prompt of \d tokens \+ maxCompletionLength 62/);
    expect(long.message).toMatch(/help: lower maxCompletionLength to \d+, or set maxPromptLength to 2/);
  });

  it('names unknown and out-of-range options, and rewards that are not functions', async () => {
    const o = await valid();
    expect((await grpoTrain({ ...o, num_generations: 4 } as unknown as GrpoTrainOptions).catch((e) => e)).message).toMatch(/unknown option "num_generations"/);
    expect((await grpoTrain({ ...o, lossType: 'ppo' as never }).catch((e) => e)).message).toContain("expected lossType to be one of 'grpo', 'bnpo', 'dr_grpo', 'dapo'; got \"ppo\"");
    expect((await grpoTrain({ ...o, epsilon: 1.5 }).catch((e) => e)).message).toContain('expected epsilon to be a number in (0, 1); got 1.5');
    expect((await grpoTrain({ ...o, rewardFunctions: [] }).catch((e) => e)).message).toContain('expected rewardFunctions to be reward functions or reward models, at least one');
    expect((await grpoTrain({ ...o, rewardWeights: [1, 2] }).catch((e) => e)).message).toContain(
      'expected rewardWeights to be 1 finite numbers (one per reward function: reversal_exact_match) or null; got an array of length 2',
    );
    expect((await grpoTrain({ ...o, train: [{ prompt: ['x'] } as never] }).catch((e) => e)).message).toContain('train record 0: expected { prompt: string, … }');
    const full = await grpoTrain({ ...o, beta: 0.1 }).catch((e) => e);
    expect(full.message).toContain('beta = 0.1 needs a reference model; got none');
  });
});

describe('grpoTrain: one step by hand', () => {
  it('on-policy, the dapo loss is −Σ A·tokens / Σ tokens with group-normalised advantages, and the rollout metrics are TRL’s', async () => {
    // Each prompt gets completions 'cba', 'x', 'cbaa', 'y' (+ EOS); reward: 1 for the first, 0.5 for the third, else 0.
    const texts = ['cba', 'x', 'cbaa', 'y'];
    const values = [1, 0, 0.5, 0];
    const reward: RewardFunction = namedReward('scripted', ({ completions }) => completions.map((c) => values[texts.indexOf(c)]));
    const model = await base();
    const result = await grpoTrain({
      model,
      tokenizer,
      train: records,
      rewardFunctions: reward,
      generator: scripted(texts),
      numGenerations: 4,
      batchSize: 8,
      maxCompletionLength: 8,
      lora: { r: 4 },
      maxSteps: 1,
      lr: 1e-3,
      ...quiet,
    });
    const mean = values.reduce((a, b) => a + b, 0) / 4;
    const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / 3);
    const advantages = values.map((v) => (v - mean) / (std + 1e-4));
    const lengths = texts.map((t) => t.length + 1);
    const tokens = 2 * lengths.reduce((a, b) => a + b, 0);
    const expected = (-2 * advantages.reduce((a, A, i) => a + A * lengths[i], 0)) / tokens;
    const [record] = result.history;
    expect(record.loss).toBeCloseTo(expected, 5);
    expect(record.tokens).toBe(tokens);
    expect(record.reward).toBeCloseTo(mean, 6);
    expect(record.reward_std).toBeCloseTo(std, 6);
    expect(record['rewards/scripted/mean']).toBeCloseTo(mean, 6);
    expect(record.frac_reward_zero_std).toBe(0);
    expect(record['completions/mean_length']).toBeCloseTo(lengths.reduce((a, b) => a + b, 0) / 4, 6);
    expect(record['completions/clipped_ratio']).toBe(0);
    expect(record['clip_ratio/region_mean']).toBe(0); // on-policy: ratio 1
    expect(Number(record.entropy)).toBeGreaterThan(0);
    expect(result.generator).toBe('scripted');
    expect(result.reference).toBe('none');
  });
});

describe('grpoTrain: runs', () => {
  it('learns a reward (the share of the letter a) in 12 steps, logs the completion table, and leaks no tensor across steps', async () => {
    const model = await base();
    const before = tf.memory().numTensors;
    const logFile = join(dir, 'learn', 'metrics.jsonl');
    const result = await grpoTrain({
      model,
      tokenizer,
      train: records,
      eval: test.map((e) => ({ prompt: e.prompt, answer: e.answer })),
      rewardFunctions: [manyAs],
      numGenerations: 8,
      batchSize: 32,
      maxCompletionLength: 8,
      lora: { r: 8, alpha: 16 },
      lr: 5e-3,
      maxSteps: 12,
      logFile,
      ...quiet,
    });
    const rewards = result.history.map((h) => Number(h.reward));
    const first = (rewards[0] + rewards[1] + rewards[2]) / 3;
    const last = (rewards[9] + rewards[10] + rewards[11]) / 3;
    console.log(`grpo share-of-a reward: ${first.toFixed(3)} → ${last.toFixed(3)}; eval reward ${result.evals.at(-1)?.eval_reward}`);
    expect(last).toBeGreaterThan(first + 0.3);
    expect(result.evals.at(-1)?.['eval_rewards/as/mean']).toBeGreaterThan(first + 0.2);
    // The LoRA adapters (2 layers × 7 linears × A and B) are the only new tensors.
    expect(tf.memory().numTensors - before).toBe(28);
    const rows = readFileSync(join(dir, 'learn', 'completions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(12 * 32);
    expect(Object.keys(rows[0]).sort()).toEqual(['advantage', 'as', 'completion', 'prompt', 'reward', 'step']);
    expect(rows.at(-1).step).toBe(11);
  });

  it('resumes with the same sampling streams: the rewards and losses after the resume equal the uninterrupted run’s', async () => {
    const run = async (extra: Partial<GrpoTrainOptions>) =>
      grpoTrain({
        model: await base(),
        tokenizer,
        train: records,
        rewardFunctions: [taskReward(reversalTask, { mode: 'partial' })],
        numGenerations: 4,
        batchSize: 8,
        gradientAccumulationSteps: 2,
        numIterations: 2,
        beta: 0.04,
        maxCompletionLength: 6,
        lora: { r: 4 },
        lr: 5e-3,
        maxSteps: 4,
        ...quiet,
        ...extra,
      });
    const root = join(dir, 'resume');
    const whole = await run({ checkpointDir: root, checkpointEvery: 2 });
    expect(whole.reference).toBe('adapters disabled');
    const resumed = await run({ resumeFrom: join(root, 'step-2') });
    expect(resumed.history.map((h) => h.step)).toEqual([3, 4]);
    for (const key of ['reward', 'loss', 'kl', 'rewards/reversal_score/mean'] as const) {
      expect(resumed.history.map((h) => h[key])).toEqual(whole.history.slice(2).map((h) => h[key]));
    }
    // Two optimizer steps per rollout (numIterations 2): a checkpoint inside a rollout is refused up front.
    const inside = await run({ checkpointDir: join(dir, 'inside'), checkpointEvery: 1 }).catch((e) => e);
    expect(inside.message).toContain('expected checkpointEvery to be a multiple of the 2 optimizer steps of one rollout; got 1');
  });

  it('a reward function that throws stops the run naming it and the completion, after the last checkpoint; the run resumes from it', async () => {
    // From step 2 on it throws for prompts ending in 'a>' (the batch names the first such completion).
    const flaky: RewardFunction = namedReward('flaky', ({ prompts, step }) =>
      prompts.map((prompt) => {
        if (step >= 2 && prompt.endsWith('a>')) throw new Error('no score for this one');
        return 1;
      }),
    );
    const root = join(dir, 'flaky');
    const options = { tokenizer, train: records, numGenerations: 4, batchSize: 8, maxCompletionLength: 4, lora: { r: 4 }, maxSteps: 4, checkpointDir: root, checkpointEvery: 1, ...quiet };
    const error = await grpoTrain({ model: await base(), rewardFunctions: [flaky], ...options }).catch((e) => e);
    expect(error.code).toBe('CALLBACK_FAILED');
    const [, index, prompt] = /^reward function 'flaky' threw on completion (\d+) of the batch \(prompt "(.*?)", completion ".*"\): no score for this one/.exec(error.message) ?? [];
    expect(prompt).toMatch(/a>$/);
    expect(Number(index) % 4).toBe(0); // the first completion of that prompt's group
    expect(error.cause.message).toBe('no score for this one');
    expect(existsSync(join(root, 'step-2', 'trainer_state.json'))).toBe(true);
    expect(existsSync(join(root, 'step-3'))).toBe(false);
    const resumed = await grpoTrain({
      model: await base(),
      rewardFunctions: [namedReward('flaky', ({ completions }) => completions.map(() => 1))],
      ...options,
      checkpointDir: undefined,
      checkpointEvery: undefined,
      resumeFrom: join(root, 'step-2'),
    });
    expect(resumed.history.map((h) => h.step)).toEqual([3, 4]);

    const nan = await grpoTrain({
      model: await base(),
      rewardFunctions: [namedReward('bad', ({ completions }) => completions.map(() => Number.NaN))],
      ...options,
      checkpointDir: undefined,
      checkpointEvery: undefined,
    }).catch((e) => e);
    expect(nan.code).toBe('INVALID_ARGUMENT');
    expect(nan.message).toContain("reward function 'bad': expected a finite number or null for completion 0; got NaN");
    const short = await grpoTrain({ model: await base(), rewardFunctions: [namedReward('few', () => [1])], ...options, checkpointDir: undefined, checkpointEvery: undefined }).catch((e) => e);
    expect(short.message).toContain("reward function 'few': expected an array of 8 rewards (one per completion of the batch); got 1 values");
  });
});
