// %% [markdown]
// # Online RL: GRPO with a reward function
//
// The starting point is a weak SFT checkpoint on string reversal (`examples/rl/weak-sft`: it gets
// about a quarter of held-out prompts right). GRPO samples 8 answers per prompt, scores each with
// a reward function — 1 when the answer is the exact reversal, else 0 — and moves the policy toward
// the answers that beat their group's mean.

// %%
import { initBackend } from '@posttrain/tensor-core';
import { generateSplit, loadTokenizer, reversalTask } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { taskReward } from '@posttrain/policy';
import { grpoTrain } from '@posttrain/rl-ppo';
import { exactMatch } from '@posttrain/eval';
import { bars, curves, result, show } from './plots.ts';

await initBackend('wasm');
const model = await loadModel('../rl/weak-sft');
const tokenizer = await loadTokenizer('../rl/weak-sft');
const strings = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };
const { train, test } = generateSplit(reversalTask, 0, { train: 20_000, test: 100, taskOptions: strings, uniqueTrain: false });
const before = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
const reward = taskReward(reversalTask);
console.log(`held-out exact match before: ${(before.accuracy * 100).toFixed(1)}%; the reward is named ${reward.rewardName}`);

// %%
const run = await grpoTrain({
  model,
  tokenizer,
  train: train.map((e) => ({ prompt: e.prompt, answer: e.answer })),
  rewardFunctions: [reward],
  numGenerations: 8,
  batchSize: 128,
  maxCompletionLength: 8,
  temperature: 1,
  lora: { r: 16, alpha: 32 },
  lr: 2e-3,
  schedule: 'cosine',
  warmupSteps: 10,
  maxSteps: 150,
  progress: 'none',
});
await show(curves(run.history, 'Mean reward of the sampled answers', ['reward']));

// %%
const after = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
const rewards = run.history.map((r) => Number(r.reward)).filter(Number.isFinite);
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
await show(bars('Held-out exact match (greedy)', { 'weak SFT': before.accuracy, 'after GRPO': after.accuracy }));
await result({ before: before.accuracy, after: after.accuracy, rewardFirst: mean(rewards.slice(0, 15)), rewardLast: mean(rewards.slice(-15)) });
