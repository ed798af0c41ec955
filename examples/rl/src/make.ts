// How the RL starting points are made: a short LoRA SFT of the tiny base on string reversal (merged),
// and a reward model trained on reversal preference pairs.
import type { CausalLM } from '@posttrain/tensor-core';
import { ByteTokenizer, reversalTask, type TokenizerLike } from '@posttrain/data';
import { loadModel, type PretrainedModel } from '@posttrain/models';
import { mergeAndUnload } from '@posttrain/lora';
import { RewardModel, rewardTrain, type RewardRecord, type RewardTrainResult } from '@posttrain/reward';
import { sftTrain, type SftTrainResult } from '@posttrain/sft';
import { sampledAccuracy, type ReversalExample } from './measure.js';
import { TINY_BASE_DIR } from './tiny-base.js';

/** Options of {@link makeWeakSft}; every field has a default. */
export interface MakeWeakSftOptions {
  /** LoRA SFT steps (default 150: a weak start, held-out exact match 25% where 600 steps reach ~100%). */
  steps: number;
  /** Seed of the LoRA initialisation and the shuffling (default 0). */
  seed: number;
  /** The base model's directory (default: examples/sft's tiny base). */
  base: string;
}

/**
 * The tiny base after a short LoRA SFT on string reversal, with the settings of examples/sft and
 * examples/dpo (r 16, α 32, all linear layers, lr 5e-3 cosine with 20 warm-up steps, batch 32) but
 * fewer steps, and the adapter merged into the weights (`mergeAndUnload`): a plain checkpoint that
 * reverses some held-out strings and gets others partly right. With 150 steps, seed 0 and
 * `reversalSplit(0)` it is examples/dpo's SFT stage exactly (held-out greedy exact match 25%).
 *
 * @example
 * ```ts
 * const { model, sft } = await makeWeakSft(reversalSplit(0).train, { steps: 150 });
 * ```
 */
export async function makeWeakSft(train: readonly ReversalExample[], options: Partial<MakeWeakSftOptions> = {}): Promise<{ model: PretrainedModel; sft: SftTrainResult }> {
  const { steps = 150, seed = 0, base = TINY_BASE_DIR } = options;
  const model = await loadModel(base);
  const sft = await sftTrain({
    model,
    tokenizer: new ByteTokenizer(),
    train: train.map((e) => reversalTask.toPromptCompletion(e)),
    lora: { r: 16, alpha: 32, targetModules: 'all-linear' },
    lr: 5e-3,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: 32,
    maxSteps: steps,
    seed,
    progress: 'none',
  });
  mergeAndUnload(model);
  return { model, sft };
}

/**
 * Preference pairs on the policy's own mistakes, as InstructGPT's labellers compared model samples:
 * `samples` completions per training prompt at temperature 1 (seeded), and for each wrong one the
 * pair (right answer chosen, that completion rejected), labelled by `reversalTask.verify`. A reward
 * model trained only on `reversalTask.preferencePair` (rejected: the unreversed string or two
 * letters swapped) ranks many of the weak policy's wrong answers — a letter doubled, one dropped —
 * above the right one, which PPO would exploit.
 *
 * @example
 * ```ts
 * const pairs = await onPolicyPairs(model, tokenizer, train.slice(0, 2000), { samples: 4, seed: 1 });
 * pairs[0]; // e.g. { prompt: 'abcd>', chosen: 'dcba', rejected: 'dcbb' }: a sample the policy got wrong
 * ```
 */
export async function onPolicyPairs(
  model: CausalLM,
  tokenizer: TokenizerLike,
  examples: readonly ReversalExample[],
  options: { samples?: number; seed?: number } = {},
): Promise<{ prompt: string; chosen: string; rejected: string }[]> {
  const { completions } = await sampledAccuracy(model, tokenizer, examples, { samples: options.samples ?? 4, seed: options.seed ?? 1 });
  return examples.flatMap((e, i) => completions[i].filter((c) => !reversalTask.verify(e, c).correct).map((rejected) => ({ prompt: e.prompt, chosen: e.answer, rejected })));
}

/** Options of {@link makeRewardModel}; every field has a default. */
export interface MakeRewardModelOptions {
  /** Optimizer steps (default 600). */
  steps: number;
  /** Pairs per step (default 32). */
  batchSize: number;
  /** Peak learning rate of AdamW, cosine after 20 warm-up steps (default 2e-3, examples/reward's). */
  lr: number;
  /** Seed of the head and the shuffling (default 0). */
  seed: number;
}

/**
 * A reward model on `backbone` (trained in place, every weight: examples/reward's full fine-tuning)
 * with the Bradley–Terry loss and centring 0.01 on `pairs`, AdamW at `lr` with a cosine schedule.
 *
 * @example
 * ```ts
 * const pairs = reversalSplit(0).train.map((e, i) => reversalTask.preferencePair(e, i));
 * const { rm } = await makeRewardModel(await loadModel(WEAK_SFT_DIR), pairs, { steps: 600 });
 * ```
 */
export async function makeRewardModel(backbone: CausalLM, pairs: readonly RewardRecord[], options: Partial<MakeRewardModelOptions> = {}): Promise<{ rm: RewardModel; result: RewardTrainResult }> {
  const { steps = 600, batchSize = 32, lr = 2e-3, seed = 0 } = options;
  const rm = new RewardModel(backbone, { seed });
  const result = await rewardTrain({
    model: rm,
    tokenizer: new ByteTokenizer(),
    train: pairs,
    lora: false,
    lr,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize,
    maxSteps: steps,
    centerCoefficient: 0.01,
    seed,
    progress: 'none',
  });
  return { rm, result };
}
