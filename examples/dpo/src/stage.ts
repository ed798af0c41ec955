// A DPO stage after SFT: the SFT model becomes the checkpoint and the reference, a fresh LoRA adapter
// learns from reversal preference pairs, and held-out pairs and prompts measure it before and after.
import type { CausalLM } from '@posttrain/tensor-core';
import { generateSplit, reversalTask, type StringTaskOptions, type TokenizerLike } from '@posttrain/data';
import { dpoObjective, dpoTrain, preferenceLogps, type DpoTrainResult } from '@posttrain/dpo';
import { dpoSigmoidLoss } from '@posttrain/losses';
import { exactMatch, type ExactMatchResult } from '@posttrain/eval';
import { mergeAndUnload } from '@posttrain/lora';
import { STRING_OPTIONS } from './tiny-base.js';

/** Options of {@link runDpoStage}; only `model` and `tokenizer` are required. */
export interface DpoStageOptions {
  /** The SFT model (with its LoRA adapter, merged here, or already a plain checkpoint). Trained in place. */
  model: CausalLM;
  tokenizer: TokenizerLike;
  /** DPO optimizer steps (default 150). */
  steps?: number;
  /** Peak learning rate of AdamW, constant (default 3e-3). */
  lr?: number;
  /** β of the DPO loss (default 0.1). */
  beta?: number;
  /** Weight of the chosen NLL added to the DPO loss (RPO, TRL's rpo_alpha; default 1). 0 is plain DPO, which lowers exact match here (see docs/dpo.md). */
  rpoAlpha?: number;
  /** LoRA rank of the DPO adapter; α is 2r (default 16). */
  r?: number;
  /** Pairs per micro-batch (default 16). */
  batchSize?: number;
  /** Seed of the data split (the SFT demo's split for the same seed, so held-out prompts stay unseen), LoRA and shuffling (default 0). */
  seed?: number;
  /** The reversal strings (default: the SFT demo's, 3–4 of a–h). */
  taskOptions?: StringTaskOptions;
  /** Held-out evaluations of the pairs during training (default 3). */
  evals?: number;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  log?: (line: string) => void;
}

/** Held-out measurements of one model state. */
export interface DpoStageMeasure {
  /** Greedy exact match on the held-out reversal prompts. */
  exactMatch: ExactMatchResult;
  /** Share of held-out pairs whose chosen answer has the higher log-prob under the model (no reference needed). */
  preferenceAccuracy: number;
}

/** What {@link runDpoStage} measured. */
export interface DpoStageResult {
  before: DpoStageMeasure;
  after: DpoStageMeasure;
  /** Held-out `rewards/accuracies` after DPO (0 before: the policy starts equal to its reference, so every implicit reward is 0). */
  rewardAccuracy: number;
  /** Held-out `rewards/margins` after DPO. */
  rewardMargin: number;
  train: DpoTrainResult;
  seconds: number;
}

const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * Runs DPO after SFT on string reversal: merges the model's LoRA adapter into its weights (the
 * merged model is the SFT checkpoint and DPO's reference), adds a fresh adapter named 'dpo', and
 * trains it with `dpoTrain` and `reference: 'adapters-disabled'` (no second copy of the weights) on
 * `reversalTask.preferencePair` pairs; held-out pairs on 200 prompts never trained on give
 * `eval_rewards/accuracies`, and the same prompts give greedy exact match before and after. The
 * loss is DPO's sigmoid loss plus the chosen answer's NLL (RPO, `rpoAlpha` 1): plain DPO separates
 * the pairs too but lowers the likelihood of the right answers on this task (see docs/dpo.md).
 *
 * @example
 * ```ts
 * const sft = await runDemo({ steps: 150 });   // or any SFT model of the tiny base
 * const { before, after, rewardAccuracy } = await runDpoStage({ model, tokenizer, steps: 150, log: console.log });
 * ```
 */
export async function runDpoStage(options: DpoStageOptions): Promise<DpoStageResult> {
  const {
    model,
    tokenizer,
    steps = 150,
    lr = 3e-3,
    beta = 0.1,
    rpoAlpha = 1,
    r = 16,
    batchSize = 16,
    seed = 0,
    taskOptions = STRING_OPTIONS,
    evals = 3,
    progress = 'none',
    log = console.log,
  } = options;
  const t0 = performance.now();
  mergeAndUnload(model);
  const { train, test } = generateSplit(reversalTask, seed, { train: 20_000, test: 200, taskOptions, uniqueTrain: false });
  const pairs = train.map((e, i) => reversalTask.preferencePair(e, seed + i));
  const heldOut = test.map((e, i) => reversalTask.preferencePair(e, seed + 1_000_000 + i));
  log(`DPO: ${pairs.length} reversal preference pairs (rejected: the string unreversed or two letters swapped), ${heldOut.length} held-out pairs on prompts never trained on`);

  const measure = async (): Promise<DpoStageMeasure> => ({
    exactMatch: await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 }),
    preferenceAccuracy: (await preferenceLogps(model, tokenizer, heldOut)).accuracy,
  });
  const before = await measure();
  // Two different held-out measures: the likelihood preference (log π(chosen) > log π(rejected)),
  // and DPO's implicit-reward accuracy (rewards/accuracies: β·log π/π_ref higher for the chosen
  // answer), which is 0 before training because the policy is the reference and every reward is 0.
  log(`before DPO: held-out exact match ${percent(before.exactMatch.accuracy)}; the chosen answer more likely than the rejected one on ${percent(before.preferenceAccuracy)} of held-out pairs`);

  const result = await dpoTrain({
    model,
    tokenizer,
    train: pairs,
    eval: heldOut,
    evalEvery: Math.max(1, Math.ceil(steps / evals)),
    loss: dpoObjective(dpoSigmoidLoss, { beta, rpoAlpha }),
    reference: 'adapters-disabled',
    lora: { r, alpha: 2 * r, adapterName: 'dpo' },
    lr,
    schedule: 'constant',
    batchSize,
    maxSteps: steps,
    seed,
    progress,
  });
  const last: Record<string, unknown> = result.evals.at(-1) ?? {};
  const rewardAccuracy = Number(last['eval_rewards/accuracies']);
  const rewardMargin = Number(last['eval_rewards/margins']);
  for (const e of result.evals) {
    log(
      `  step ${e.step}: held-out rewards/accuracies ${Number(e['eval_rewards/accuracies']).toFixed(3)}, rewards/margins ${Number(e['eval_rewards/margins']).toFixed(3)}, logps/chosen ${Number(e['eval_logps/chosen']).toFixed(2)}, logps/rejected ${Number(e['eval_logps/rejected']).toFixed(2)}`,
    );
  }
  const after = await measure();
  log(
    `after DPO (${result.steps} steps, ${result.elapsed.toFixed(1)} s), on held-out pairs: exact match ${percent(before.exactMatch.accuracy)} → ${percent(after.exactMatch.accuracy)}; ` +
      `chosen more likely than rejected ${percent(before.preferenceAccuracy)} → ${percent(after.preferenceAccuracy)}; ` +
      `implicit reward (β·log π/π_ref) higher for the chosen answer, rewards/accuracies, 0 → ${rewardAccuracy.toFixed(3)} (0 before DPO: the policy starts as its reference)`,
  );
  return { before, after, rewardAccuracy, rewardMargin, train: result, seconds: (performance.now() - t0) / 1000 };
}
