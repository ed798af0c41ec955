// The example: online RL from the weak SFT checkpoint on string reversal, by one of four methods,
// measured on held-out prompts (greedy exact match; for PPO also the reward model's score).
import { tf, type Module } from '@posttrain/tensor-core';
import { reversalTask } from '@posttrain/data';
import { onlineDpoTrain, type OnlineDpoTrainOptions } from '@posttrain/dpo';
import { taskReward } from '@posttrain/policy';
import type { RewardModel } from '@posttrain/reward';
import { grpoTrain, ppoTrain, rlooTrain, type GrpoTrainOptions, type PpoTrainOptions, type RlooTrainOptions } from '@posttrain/rl-ppo';
import { exactMatch } from '@posttrain/eval';
import type { TrainRecord, TrainResult } from '@posttrain/trainer';
import { loadRewardModelCheckpoint, loadWeakSft } from './checkpoints.js';
import { reversalSplit, scoreAnswers } from './measure.js';

/** The methods of the example, as `--method` names them. */
export const RL_METHODS = Object.freeze(['grpo', 'rloo', 'ppo', 'online-dpo'] as const);

/** One of {@link RL_METHODS}. */
export type RlMethod = (typeof RL_METHODS)[number];

type Common = 'model' | 'tokenizer' | 'train' | 'rewardFunctions' | 'seed' | 'progress' | 'callbacks';

/**
 * The settings each method runs with (everything but the model, the prompts, the reward and the
 * seed): the recipes of the learning proofs in example.test.ts, whose figures docs/rl.md reports.
 * GRPO and RLOO score completions with `taskReward(reversalTask)` (exact match, 0 or 1); PPO with the
 * reward model of reward-model/ (its value model a second copy of it, as TRL initialises one); online
 * DPO ranks its two samples with `taskReward(reversalTask, { mode: 'partial' })`.
 *
 * GRPO and RLOO sample 8 completions per prompt (the weak SFT gets a 4-letter prompt right in one of
 * 8 samples for 53% of them, one of 4 for ~35%), 16 prompts per rollout and one optimizer step per
 * rollout (on-policy), with a cosine schedule from lr 2e-3 (constant 2e-3 was unstable). The 3-letter
 * prompts climb fastest (43% → ~75%); the 4-letter ones stay mostly wrong at their third letter, the
 * policy's entropy collapsing (0.42 → ~0.15) so that most groups end with no reward spread. Two
 * optimizer steps per rollout of 256 (300 steps: 44%), 16 samples per prompt (41%), a full fine-tune
 * (40.5%), temperature 1.25, a partial-score reward, β 0.04 with ε_high 0.28 and whitened RLOO
 * advantages measured no better. PPO needs large rollouts for its passes: 128 completions in 2
 * mini-batches × 2 epochs (4 optimizer steps per rollout); 32 completions × 4 epochs fitted noise
 * (KL drifting, 26.5%).
 *
 * @example
 * ```ts
 * RL_SETTINGS.grpo.maxSteps; // optimizer steps of the GRPO run
 * ```
 */
export const RL_SETTINGS = Object.freeze({
  grpo: Object.freeze({
    numGenerations: 8,
    batchSize: 128,
    maxCompletionLength: 8,
    temperature: 1,
    lora: { r: 16, alpha: 32 },
    lr: 2e-3,
    schedule: 'cosine',
    warmupSteps: 10,
    maxSteps: 400,
  } satisfies Omit<GrpoTrainOptions, Common>),
  rloo: Object.freeze({
    numGenerations: 8,
    batchSize: 128,
    maxCompletionLength: 8,
    temperature: 1,
    beta: 0,
    lora: { r: 16, alpha: 32 },
    lr: 2e-3,
    schedule: 'cosine',
    warmupSteps: 10,
    maxSteps: 400,
  } satisfies Omit<RlooTrainOptions, Common>),
  ppo: Object.freeze({
    numGenerations: 1,
    batchSize: 64,
    numMiniBatches: 2,
    numPpoEpochs: 2,
    maxCompletionLength: 8,
    temperature: 1,
    klCoef: 0.05,
    missingEosPenalty: 1,
    lora: { r: 16, alpha: 32 },
    lr: 1e-3,
    schedule: 'constant',
    maxSteps: 320,
  } satisfies Omit<PpoTrainOptions, Common | 'valueModel'>),
  'online-dpo': Object.freeze({
    beta: 0.5,
    maxNewTokens: 8,
    temperature: 1,
    batchSize: 32,
    lora: { r: 16, alpha: 32 },
    lr: 1e-3,
    schedule: 'constant',
    maxSteps: 100,
  } satisfies Omit<OnlineDpoTrainOptions, Common>),
});

/** Options of {@link runRlExample}; every field but `method` has a default. */
export interface RlExampleOptions {
  method: RlMethod;
  /** Seed of the run: prompt order, sampling streams, LoRA initialisation (default 0). The held-out prompts are always those of `reversalSplit(0)`, the split the checkpoints were made on. */
  seed?: number;
  /** Optimizer steps; default: the method's {@link RL_SETTINGS}. */
  steps?: number;
  /** Where progress lines go (default console.log). */
  log?: (line: string) => void;
  /** A progress line every this many steps (default 25). */
  logEvery?: number;
  /** The trainer's progress bar (default 'none': the lines above report progress). */
  progress?: 'auto' | 'bar' | 'lines' | 'none';
}

/** Held-out measurements of the policy. */
export interface HeldOutMeasure {
  /** Greedy exact match on the 200 held-out prompts (maxNewTokens 8). */
  accuracy: number;
  /** Greedy exact match of the 3- and 4-letter prompts. */
  byLength: { 3: number; 4: number };
  /** PPO only: mean reward-model score of the greedy completions. */
  rmScore?: number;
}

/** What {@link runRlExample} measured. */
export interface RlExampleResult {
  method: RlMethod;
  before: HeldOutMeasure;
  after: HeldOutMeasure;
  /** The trainer's result (history with TRL's metric keys). */
  train: TrainResult;
  /** Optimizer steps run. */
  steps: number;
  /** Seconds of training alone. */
  trainSeconds: number;
  /** Seconds in all: loading, measuring, training. */
  seconds: number;
  /** PPO only: mean of `objective/kl` (the summed per-completion KL to the reference) over the run, and of its last 10 steps. */
  kl?: { mean: number; last: number };
  /** Tensors left by training beyond the parameters it added (LoRA adapters): 0 when nothing leaks. */
  leakedTensors: number;
}

/**
 * Loads the weak SFT policy, measures held-out greedy exact match (and, for PPO, the reward model's
 * score of the greedy answers), runs the method with its {@link RL_SETTINGS} on the training
 * prompts of `reversalSplit(0)`, and measures again. Progress lines go to `log`.
 *
 * @example
 * ```ts
 * const { before, after, seconds } = await runRlExample({ method: 'grpo', seed: 0 });
 * console.log(`done in ${seconds.toFixed(1)} s: held-out accuracy ${before.accuracy} → ${after.accuracy}`);
 * ```
 */
export async function runRlExample(options: RlExampleOptions): Promise<RlExampleResult> {
  const { method, seed = 0, log = console.log, logEvery = 25, progress = 'none' } = options;
  if (!RL_METHODS.includes(method)) throw new Error(`runRlExample: expected method to be one of ${RL_METHODS.join(', ')}; got ${String(method)}`);
  const t0 = performance.now();
  const { train, test } = reversalSplit(0);
  const records = train.map((e) => ({ prompt: e.prompt, answer: e.answer }));
  const { model, tokenizer } = await loadWeakSft();
  const toDispose: { dispose(): void }[] = [model];
  try {
    let rm: RewardModel | undefined;
    let valueModel: RewardModel | undefined;
    if (method === 'ppo') {
      rm = await loadRewardModelCheckpoint();
      // The value model starts as a second copy of the reward model, as TRL initialises it; it trains with the policy.
      valueModel = await loadRewardModelCheckpoint();
      toDispose.push(rm, valueModel);
    }
    const measure = async (): Promise<HeldOutMeasure> => {
      const greedy = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
      const share = (len: number) => {
        const rows = greedy.samples.filter((_, i) => test[i].answer.length === len);
        return rows.filter((s) => s.correct).length / Math.max(rows.length, 1);
      };
      const out: HeldOutMeasure = { accuracy: greedy.accuracy, byLength: { 3: share(3), 4: share(4) } };
      if (rm) {
        const scores = await scoreAnswers(
          rm,
          tokenizer,
          test,
          greedy.samples.map((s) => s.completion),
        );
        out.rmScore = scores.given;
      }
      return out;
    };
    const describe = (m: HeldOutMeasure) =>
      `${percent(m.accuracy)} (3 letters ${percent(m.byLength[3])}, 4 letters ${percent(m.byLength[4])})${m.rmScore === undefined ? '' : `, RM score ${m.rmScore.toFixed(2)}`}`;
    const before = await measure();
    log(`weak SFT, ${test.length} held-out prompts: greedy exact match ${describe(before)}`);

    const settings = RL_SETTINGS[method];
    const maxSteps = options.steps ?? settings.maxSteps;
    const tStart = performance.now();
    const onStep = (r: TrainRecord) => {
      if (r.step % logEvery === 0 || r.step === maxSteps) log(`${method} step ${r.step}/${maxSteps}: ${progressLine(method, r)} (${((performance.now() - tStart) / 1000).toFixed(1)} s)`);
    };
    const common = { model, tokenizer, train: records, seed, progress, maxSteps, callbacks: { onStep } };
    const paramsBefore = countParameters(model);
    const tensorsBefore = tf.memory().numTensors;
    let result: TrainResult;
    if (method === 'grpo') {
      result = await grpoTrain({ ...RL_SETTINGS.grpo, ...common, rewardFunctions: [taskReward(reversalTask)] });
    } else if (method === 'rloo') {
      result = await rlooTrain({ ...RL_SETTINGS.rloo, ...common, rewardFunctions: [taskReward(reversalTask)] });
    } else if (method === 'ppo') {
      result = await ppoTrain({ ...RL_SETTINGS.ppo, ...common, rewardFunctions: rm as RewardModel, valueModel: valueModel as RewardModel });
    } else {
      result = await onlineDpoTrain({ ...RL_SETTINGS['online-dpo'], ...common, rewardFunctions: taskReward(reversalTask, { mode: 'partial' }) });
    }
    const leakedTensors = tf.memory().numTensors - tensorsBefore - (countParameters(model) - paramsBefore);
    const trainSeconds = (performance.now() - tStart) / 1000;
    log(`${method}: ${result.steps} steps in ${trainSeconds.toFixed(1)} s`);
    const after = await measure();
    log(`after ${method}: greedy exact match ${describe(after)}`);
    let kl: RlExampleResult['kl'];
    if (method === 'ppo') {
      const kls = result.history.map((h) => Number(h['objective/kl']));
      kl = { mean: mean(kls), last: mean(kls.slice(-10)) };
    }
    return { method, before, after, train: result, steps: result.steps, trainSeconds, seconds: (performance.now() - t0) / 1000, kl, leakedTensors };
  } finally {
    for (const d of toDispose) d.dispose();
  }
}

/** The one-line summary main.ts ends with. @internal */
export function summaryLine(r: RlExampleResult): string {
  const rm = r.before.rmScore !== undefined && r.after.rmScore !== undefined ? `, RM score ${r.before.rmScore.toFixed(2)} → ${r.after.rmScore.toFixed(2)}` : '';
  return `done in ${r.seconds.toFixed(1)} s: held-out accuracy ${percent(r.before.accuracy)} → ${percent(r.after.accuracy)}${rm}`;
}

function progressLine(method: RlMethod, r: TrainRecord): string {
  const f = (key: string, digits = 3) => (typeof r[key] === 'number' ? Number(r[key]).toFixed(digits) : '–');
  if (method === 'ppo') return `RM score ${f('objective/scores', 2)}, KL ${f('objective/kl')}, value loss ${f('loss/value_avg', 4)}`;
  if (method === 'online-dpo') return `reward ${f('objective/scores')}, loss ${f('loss')}`;
  return `reward ${f('reward')}, loss ${f('loss', 4)}`;
}

function countParameters(module: Pick<Module, 'namedParameters'>): number {
  return module.namedParameters().size;
}

const percent = (x: number) => `${(x * 100).toFixed(1)}%`;
const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(xs.length, 1);
