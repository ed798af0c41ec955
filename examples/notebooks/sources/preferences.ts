// %% [markdown]
// # Preferences: a reward model and DPO
//
// A short LoRA SFT teaches the tiny base to reverse strings, partly. Preference pairs then say
// which answer is better — the right reversal (chosen) against the string unreversed or with two
// letters swapped (rejected) — and two things learn from them: a reward model (Bradley–Terry) and
// the policy itself (DPO, with the SFT model as its reference).

// %%
import { initBackend } from '@posttrain/tensor-core';
import { generateSplit, loadTokenizer, reversalTask } from '@posttrain/data';
import { loadModel, saveModel } from '@posttrain/models';
import { mergeAndUnload } from '@posttrain/lora';
import { dpoSigmoidLoss } from '@posttrain/losses';
import { sftTrain } from '@posttrain/sft';
import { RewardModel, evaluateRewardModel, rewardTrain } from '@posttrain/reward';
import { dpoObjective, dpoTrain } from '@posttrain/dpo';
import { exactMatch } from '@posttrain/eval';
import { bars, curves, result, show } from './plots.ts';

await initBackend('wasm');
const model = await loadModel('../sft/tiny-base');
const tokenizer = await loadTokenizer('../sft/tiny-base');
const strings = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };
const { train, test } = generateSplit(reversalTask, 0, { train: 20_000, test: 100, taskOptions: strings, uniqueTrain: false });
const pairs = train.map((e, i) => reversalTask.preferencePair(e, i));
const heldOutPairs = test.map((e, i) => reversalTask.preferencePair(e, 1_000_000 + i));
console.log(pairs[0]);

// %%
await sftTrain({
  model,
  tokenizer,
  train: train.map((e) => reversalTask.toPromptCompletion(e)),
  lora: { r: 16, alpha: 32 },
  lr: 5e-3,
  schedule: 'cosine',
  warmupSteps: 20,
  batchSize: 32,
  maxSteps: 150,
  progress: 'none',
});
mergeAndUnload(model);
const sft = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
console.log(`SFT model: held-out exact match ${(sft.accuracy * 100).toFixed(1)}%`);

// %% [markdown]
// ## A reward model
// A scalar head on a copy of the SFT model, every weight trained on the pairs.

// %%
const files = new Map<string, Uint8Array>();
await saveModel(model, files);
const rm = new RewardModel(await loadModel(files), { seed: 0 });
const rmBefore = await evaluateRewardModel(rm, tokenizer, heldOutPairs);
const rmRun = await rewardTrain({ model: rm, tokenizer, train: pairs, lr: 2e-3, schedule: 'cosine', warmupSteps: 10, batchSize: 64, maxSteps: 100, centerCoefficient: 0.01, progress: 'none' });
const rmAfter = await evaluateRewardModel(rm, tokenizer, heldOutPairs);
console.log(`held-out pairwise accuracy ${(rmBefore.accuracy * 100).toFixed(1)}% → ${(rmAfter.accuracy * 100).toFixed(1)}%`);
await show(curves(rmRun.history, 'Reward model', ['loss', 'accuracy']));

// %% [markdown]
// ## DPO
// A fresh adapter on the SFT model; the reference is the same weights with the adapter disabled. The
// loss is DPO's plus the chosen answer's likelihood (RPO), which keeps the right answers likely.

// %%
const dpoRun = await dpoTrain({
  model,
  tokenizer,
  train: pairs,
  eval: heldOutPairs,
  evalEvery: 50,
  loss: dpoObjective(dpoSigmoidLoss, { beta: 0.1, rpoAlpha: 1 }),
  reference: 'adapters-disabled',
  lora: { r: 16, alpha: 32, adapterName: 'dpo' },
  lr: 3e-3,
  schedule: 'constant',
  batchSize: 16,
  maxSteps: 150,
  progress: 'none',
});
await show(curves(dpoRun.history, 'DPO implicit rewards', ['rewards/chosen', 'rewards/rejected', 'rewards/margins']));

// %%
const dpo = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
const rewardAccuracy = Number(dpoRun.evals.at(-1)?.['eval_rewards/accuracies']);
await show(bars('Held-out figures', { 'exact match, SFT': sft.accuracy, 'exact match, DPO': dpo.accuracy, 'reward model accuracy': rmAfter.accuracy, 'DPO rewards/accuracies': rewardAccuracy }));
await result({ sft: sft.accuracy, dpo: dpo.accuracy, rmBefore: rmBefore.accuracy, rmAfter: rmAfter.accuracy, rewardAccuracy });
