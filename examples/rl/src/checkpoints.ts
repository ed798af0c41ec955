// The starting points of the RL examples, committed beside this package: where they are, how to load
// them, and what they measured when they were made (npm run make-checkpoints -w examples/rl).
import { fileURLToPath } from 'node:url';
import { configFromHf } from '@posttrain/tensor-core';
import { loadTokenizer, type Tokenizer } from '@posttrain/data';
import { createModel, loadModel, type PretrainedModel } from '@posttrain/models';
import { loadRewardModel, type RewardModel } from '@posttrain/reward';

/** The directory both checkpoints live in (examples/rl). */
export const CHECKPOINTS_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The weak SFT policy: the tiny base after 150 LoRA SFT steps on string reversal, merged (Hugging Face layout). */
export const WEAK_SFT_DIR = fileURLToPath(new URL('../weak-sft/', import.meta.url));

/** The reward model on the weak SFT backbone (a `LlamaForSequenceClassification` checkpoint). */
export const REWARD_MODEL_DIR = fileURLToPath(new URL('../reward-model/', import.meta.url));

/**
 * What the weak SFT model measured on the 200 held-out prompts of `reversalSplit(0)` when it was
 * made (wasm); weak-sft/README.md has the same figures.
 *
 * @example
 * ```ts
 * WEAK_SFT_FIGURES.greedyExactMatch; // 0.25
 * ```
 */
export const WEAK_SFT_FIGURES = Object.freeze({
  /** LoRA SFT steps. */
  sftSteps: 150,
  /** Greedy exact match, maxNewTokens 8. */
  greedyExactMatch: 0.25, // 50 of 200
  /** Fraction of 8 samples per prompt at temperature 1 (seed 0) that are exactly right. */
  sampledExactMatch: 0.186875, // 299 of 1,600
  /** Fraction of prompts with at least one right sample of 8. */
  anyOfEight: 0.69,
  /** Fraction of prompts whose 8 samples are neither all right nor all wrong. */
  mixedGroups: 0.685,
});

/**
 * What the reward model measured on held-out prompts when it was made (wasm);
 * reward-model/README.md has the same figures.
 *
 * @example
 * ```ts
 * REWARD_MODEL_FIGURES.pairwiseAccuracy; // 1
 * ```
 */
export const REWARD_MODEL_FIGURES = Object.freeze({
  /** Pairwise accuracy on `heldOutPairs(reversalSplit(0).test)`. */
  pairwiseAccuracy: 1,
  /** Mean score of the held-out right answers. */
  correctScore: 3.05,
  /** Mean score of the weak SFT's greedy answers on the held-out prompts. */
  greedyScore: -1.5,
  /** Fraction of the weak SFT's wrong greedy answers scored below the right answer. */
  wrongGreedyRankedBelow: 0.987, // 148 of 150
});

/**
 * Loads the weak SFT policy and its tokenizer (the byte tokenizer, read back from the directory's
 * tokenizer.json) from {@link WEAK_SFT_DIR}, or from `dir`.
 *
 * @example
 * ```ts
 * const { model, tokenizer } = await loadWeakSft();
 * const { accuracy } = await exactMatch(model, tokenizer, reversalTask, reversalSplit(0).test, { maxNewTokens: 8 }); // 0.25
 * ```
 */
export async function loadWeakSft(dir: string = WEAK_SFT_DIR): Promise<{ model: PretrainedModel; tokenizer: Tokenizer }> {
  const tokenizer = await loadTokenizer(dir);
  return { model: await loadModel(dir), tokenizer };
}

/**
 * Loads the reward model from {@link REWARD_MODEL_DIR}, or from `dir`: every weight, backbone and
 * head, comes from the checkpoint.
 *
 * @example
 * ```ts
 * const rm = await loadRewardModelCheckpoint();
 * const { accuracy } = await evaluateRewardModel(rm, new ByteTokenizer(), heldOutPairs(reversalSplit(0).test)); // 1
 * ```
 */
export async function loadRewardModelCheckpoint(dir: string = REWARD_MODEL_DIR): Promise<RewardModel> {
  return loadRewardModel(dir, { backbone: (config) => createModel(configFromHf(config)) });
}
