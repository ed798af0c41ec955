// A reward model on the shipped tiny base: rank held-out reversal answers, save, reload, score a few pairs.
import { fileURLToPath } from 'node:url';
import { ByteTokenizer, generateSplit, reversalTask, type StringTaskOptions } from '@posttrain/data';
import { configFromHf } from '@posttrain/tensor-core';
import { createModel, loadModel } from '@posttrain/models';
import { RewardModel, evaluateRewardModel, loadRewardModel, rewardTrain, saveRewardModel, type RewardEvaluation, type RewardTrainResult } from '@posttrain/reward';

/** The base: examples/sft's tiny Llama, which sorts strings and has never seen reversal. */
export const TINY_BASE_DIR = fileURLToPath(new URL('../../sft/tiny-base/', import.meta.url));

/** The strings the tiny base knows: 3 or 4 of 8 letters (examples/sft's STRING_OPTIONS). */
export const STRING_OPTIONS: StringTaskOptions = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };

/** Options of {@link runRewardDemo}; every field has a default. */
export interface RewardDemoOptions {
  /** Optimizer steps (default 600). */
  steps: number;
  /** Pairs per step (default 64). */
  batchSize: number;
  /** Peak learning rate of AdamW, cosine after 20 warm-up steps (default 2e-3). */
  lr: number;
  /** LoRA rank with α = 2r and a trainable head; 0 (the default) trains the whole model. */
  lora: number;
  /** Training pairs drawn from the task without the held-out prompts (default 20,000). */
  train: number;
  /** Held-out pairs (default 200). */
  test: number;
  /** The base model's directory (default {@link TINY_BASE_DIR}). */
  base: string;
  /** Where the reward model is written (default 'out/reward'). */
  out: string;
  /** Seed of the split, the head and the shuffling (default 0). */
  seed: number;
  /** Held-out pairs to print with their scores (default 6). */
  samples: number;
  progress: 'auto' | 'bar' | 'lines' | 'none';
  log: (line: string) => void;
}

export const defaultRewardDemoOptions: RewardDemoOptions = {
  steps: 600,
  batchSize: 64,
  lr: 2e-3,
  lora: 0,
  train: 20_000,
  test: 200,
  base: TINY_BASE_DIR,
  out: 'out/reward',
  seed: 0,
  samples: 6,
  progress: 'auto',
  log: console.log,
};

/** What {@link runRewardDemo} measured. */
export interface RewardDemoResult {
  before: RewardEvaluation;
  after: RewardEvaluation;
  /** The saved model loaded back onto a freshly built backbone (equals `after`). */
  reloaded: RewardEvaluation;
  train: RewardTrainResult;
  files: string[];
  seconds: number;
}

const percent = (r: RewardEvaluation) => `${(r.accuracy * 100).toFixed(1)}% (margin ${r.margin >= 0 ? '+' : ''}${r.margin.toFixed(2)})`;

/**
 * Wraps the tiny base in a {@link RewardModel}, measures how often it ranks the correct reversal
 * above a wrong one (the unreversed string, or two letters swapped) on held-out prompts, trains it
 * with the Bradley–Terry loss (centring 0.01), measures again, saves a Hugging Face
 * `LlamaForSequenceClassification` checkpoint (or a PEFT adapter + head with `lora`), reloads it
 * and prints a few scored pairs.
 *
 * @example
 * ```ts
 * const { before, after } = await runRewardDemo({ steps: 600, out: 'out/reward' });
 * ```
 */
export async function runRewardDemo(options: Partial<RewardDemoOptions> = {}): Promise<RewardDemoResult> {
  const o: RewardDemoOptions = { ...defaultRewardDemoOptions };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) Object.assign(o, { [key]: value });
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const model = new RewardModel(await loadModel(o.base), { seed: o.seed });
  const { train, test } = generateSplit(reversalTask, o.seed, { train: o.train, test: o.test, taskOptions: STRING_OPTIONS, uniqueTrain: false });
  const trainPairs = train.map((e, i) => reversalTask.preferencePair(e, i));
  const testPairs = test.map((e, i) => reversalTask.preferencePair(e, 100_000 + i));
  o.log(
    `task: rank the reversal of a string ('abc>' → 'cba') above a wrong answer ('abc', 'bca'); ${trainPairs.length} training pairs, ${testPairs.length} held-out pairs on prompts never trained on`,
  );

  const before = await evaluateRewardModel(model, tokenizer, testPairs);
  o.log(`before: held-out pairwise accuracy ${percent(before)}`);

  const result = await rewardTrain({
    model,
    tokenizer,
    train: trainPairs,
    lora: o.lora > 0 ? { r: o.lora, alpha: 2 * o.lora } : false,
    lr: o.lr,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: o.batchSize,
    maxSteps: o.steps,
    centerCoefficient: 0.01,
    seed: o.seed,
    progress: o.progress,
  });
  const trained = result.lora
    ? `LoRA r ${o.lora} + head: ${result.lora.trainableParameters.toLocaleString('en')} trainable parameters`
    : `full fine-tuning: ${model.numParameters({ trainableOnly: true }).toLocaleString('en')} parameters`;
  o.log(`${trained}, ${result.steps} steps, ${result.elapsed.toFixed(1)} s, ${Math.round(result.pairsPerSec)} pairs/s, last loss ${result.loss.toFixed(4)}`);

  const after = await evaluateRewardModel(model, tokenizer, testPairs);
  o.log(`after:  held-out pairwise accuracy ${percent(after)}`);

  const files = await saveRewardModel(model, o.out);
  const reloadedModel = result.lora
    ? await loadRewardModel(o.out, { backbone: await loadModel(o.base) }) // adapter + head onto the base
    : await loadRewardModel(o.out, { backbone: (config) => createModel(configFromHf(config)) }); // every weight from the file
  const reloaded = await evaluateRewardModel(reloadedModel, tokenizer, testPairs);
  o.log(`saved: ${files.join(', ')} in ${o.out}; reloaded: ${percent(reloaded)}`);

  o.log('held-out pairs, reward of the chosen vs the rejected answer:');
  for (let i = 0; i < Math.min(o.samples, testPairs.length); i++) {
    const p = testPairs[i];
    const [c, r] = [after.chosenScores[i], after.rejectedScores[i]];
    o.log(`  ${p.prompt.padEnd(6)} ${p.chosen.padEnd(5)} ${c.toFixed(2).padStart(6)}  vs ${p.rejected.padEnd(5)} ${r.toFixed(2).padStart(6)}  ${c > r ? 'right' : 'wrong'}`);
  }
  model.dispose();
  reloadedModel.dispose();
  return { before, after, reloaded, train: result, files, seconds: (performance.now() - t0) / 1000 };
}
