// Remakes ../weak-sft and ../reward-model, the starting points of the RL learning proofs:
// `npm run make-checkpoints -w examples/rl [-- --out DIR]` (wasm, fixed seeds: the same bytes every run).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ByteTokenizer, reversalTask } from '@posttrain/data';
import { fileTarget, initBackend, runMain } from '@posttrain/tensor-core';
import { loadModel, saveModel } from '@posttrain/models';
import { evaluateRewardModel, saveRewardModel } from '@posttrain/reward';
import { exactMatch } from '@posttrain/eval';
import { CHECKPOINTS_ROOT } from './checkpoints.js';
import { makeRewardModel, makeWeakSft, onPolicyPairs } from './make.js';
import { heldOutPairs, reversalSplit, sampledAccuracy, scoreAnswers } from './measure.js';

const SFT_STEPS = 150;
const RM_STEPS = 600;
const ON_POLICY_PROMPTS = 2000;

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const num = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(2)}`;

/** The byte tokenizer as Hugging Face files beside the weights, so `loadTokenizer(dir)` reads the directory like any model's. */
async function writeTokenizer(dir: string): Promise<void> {
  const target = fileTarget(dir);
  for (const [name, text] of Object.entries(new ByteTokenizer().toHuggingFaceFiles())) await target.write(name, `${text}\n`);
}

await runMain(async () => {
  const { values } = parseArgs({ options: { out: { type: 'string', default: CHECKPOINTS_ROOT } } });
  const out = values.out as string;
  const [sftDir, rmDir] = [join(out, 'weak-sft'), join(out, 'reward-model')];
  await initBackend('wasm');
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const { train, test } = reversalSplit(0);

  // 1. The weak SFT model.
  const { model, sft } = await makeWeakSft(train, { steps: SFT_STEPS });
  const greedy = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
  const sampled = await sampledAccuracy(model, tokenizer, test, { samples: 8, temperature: 1, seed: 0 });
  console.log(
    `weak SFT: ${sft.steps} LoRA steps (last loss ${sft.loss.toFixed(3)}), merged; held-out greedy exact match ${pct(greedy.accuracy)}; ` +
      `8 samples at temperature 1: ${pct(sampled.accuracy)} right, ≥ 1 right on ${pct(sampled.anyCorrect)} of prompts, mixed groups on ${pct(sampled.mixed)}`,
  );
  await saveModel(model, sftDir);
  await writeTokenizer(sftDir);
  await fileTarget(sftDir).write(
    'README.md',
    `# weak-sft: the starting policy of the RL examples

The tiny base of examples/sft (a 90,688-parameter Llama that sorts strings) after a *short* LoRA SFT on
string reversal (\`abc>\` → \`cba\`, 3–4 of the letters a–h), deliberately left weak so that online RL has
room to gain. Made by \`npm run make-checkpoints -w examples/rl\` (src/make-checkpoints.ts → src/make.ts):
${sft.steps} steps of \`sftTrain\` with LoRA r 16, α 32 on all linear layers, AdamW lr 5e-3, cosine after 20
warm-up steps, batch 32, seed 0, on the training prompts of \`generateSplit(reversalTask, 0, { train: 20000,
test: 200, uniqueTrain: false })\` in \`reversalTask.toPromptCompletion\` form; then \`mergeAndUnload\`. These
are examples/dpo's SFT settings, seed and split, so this is the checkpoint its DPO stage starts from.

On the 200 held-out prompts (never trained on):

| measure | value |
| --- | --- |
| greedy exact match (\`exactMatch\`, maxNewTokens 8) | ${pct(greedy.accuracy)} (${greedy.correct}/${greedy.total}) |
| samples exactly right, 8 per prompt at temperature 1 (seed 0) | ${pct(sampled.accuracy)} |
| prompts with at least one right sample of 8 | ${pct(sampled.anyCorrect)} |
| prompts whose 8 samples are neither all right nor all wrong | ${pct(sampled.mixed)} |

The last row is the share of GRPO groups (8 generations) whose exact-match reward has a non-zero spread,
so a non-zero advantage. Files, in Hugging Face layout: \`config.json\`, \`model.safetensors\` (F32), and the
byte tokenizer's \`tokenizer.json\` + \`tokenizer_config.json\`; \`loadWeakSft()\` in src/checkpoints.ts loads
them. Remaking gives the same bytes on wasm.
`,
  );

  // 2. The reward model, on the weak SFT backbone.
  const onPolicy = await onPolicyPairs(model, tokenizer, train.slice(0, ON_POLICY_PROMPTS), { samples: 4, seed: 1 });
  model.dispose();
  const pairs = [...train.map((e, i) => reversalTask.preferencePair(e, i)), ...onPolicy];
  const { rm, result } = await makeRewardModel(await loadModel(sftDir), pairs, { steps: RM_STEPS });
  const heldOut = await evaluateRewardModel(rm, tokenizer, heldOutPairs(test));
  const onGreedy = await scoreAnswers(
    rm,
    tokenizer,
    test,
    greedy.samples.map((s) => s.completion),
  );
  const onSampled = await scoreAnswers(
    rm,
    tokenizer,
    test.flatMap((e) => Array(8).fill(e)),
    sampled.completions.flat(),
  );
  console.log(
    `reward model: ${result.steps} steps on ${pairs.length} pairs (last loss ${result.loss.toFixed(4)}); held-out pairwise accuracy ${pct(heldOut.accuracy)} (margin ${num(heldOut.margin)}); ` +
      `mean score of the right answers ${num(onGreedy.correct)} vs the weak SFT's greedy answers ${num(onGreedy.given)} (right ${num(onGreedy.givenRight)}, wrong ${num(onGreedy.givenWrong)}); ` +
      `wrong greedy answers below the right one ${pct(onGreedy.wrongRankedBelow)}, wrong samples ${pct(onSampled.wrongRankedBelow)}`,
  );
  await saveRewardModel(rm, rmDir);
  await writeTokenizer(rmDir);
  await fileTarget(rmDir).write(
    'README.md',
    `# reward-model: the reward model of the PPO example

A \`LlamaForSequenceClassification\` checkpoint (one score per sequence, read at the last token) on the
backbone of ../weak-sft, trained by \`rewardTrain\` from @posttrain/reward. Made by \`npm run make-checkpoints
-w examples/rl\` (src/make-checkpoints.ts → src/make.ts): every weight trained (examples/reward's full
fine-tuning), ${result.steps} steps of batch 32, AdamW lr 2e-3, cosine after 20 warm-up steps, Bradley–Terry loss with
centring 0.01, seed 0, on ${pairs.length.toLocaleString('en')} pairs of the training prompts only:

- ${train.length.toLocaleString('en')} \`reversalTask.preferencePair\` pairs (rejected: the unreversed string, or the answer
  with two letters swapped);
- ${onPolicy.length.toLocaleString('en')} pairs on the weak SFT's own mistakes, as InstructGPT's labellers compared model
  samples: 4 samples at temperature 1 (seed 1) on each of the first ${ON_POLICY_PROMPTS.toLocaleString('en')} training prompts, each wrong
  one rejected against the right answer (labelled by \`reversalTask.verify\`).

Why the weak SFT backbone: a reward model initialised from the SFT policy is InstructGPT's and TRL's
recipe, and here it is the one that learns: the same pairs and steps on the tiny base (which has never seen
the \`>\` format) gave 85% held-out pairwise accuracy and ranked only 39% of the weak SFT's wrong greedy
answers below the right one (measured while choosing). Why the on-policy pairs: trained on
\`preferencePair\` pairs alone (600 steps, this backbone), the reward model reached 94.5% on held-out pairs
but ranked only 75% of the weak SFT's wrong greedy answers below the right one — the policy's mistakes (a
letter doubled or dropped) are not the unreversed or swapped strings it was shown — a gap PPO would climb.

On the 200 held-out prompts (never trained on):

| measure | value |
| --- | --- |
| pairwise accuracy on held-out \`preferencePair\` pairs (\`evaluateRewardModel\`) | ${pct(heldOut.accuracy)} (margin ${num(heldOut.margin)}) |
| mean score of the right answers | ${num(onGreedy.correct)} |
| mean score of the weak SFT's greedy answers | ${num(onGreedy.given)} (right ones ${num(onGreedy.givenRight)}, wrong ones ${num(onGreedy.givenWrong)}) |
| wrong greedy answers scored below the right answer | ${pct(onGreedy.wrongRankedBelow)} |
| mean score of 8 samples per prompt at temperature 1 | ${num(onSampled.given)} (right ones ${num(onSampled.givenRight)}, wrong ones ${num(onSampled.givenWrong)}) |
| wrong samples scored below the right answer | ${pct(onSampled.wrongRankedBelow)} |

Files: \`config.json\`, \`model.safetensors\` (F32, backbone and \`score.weight\`), and the byte tokenizer's
\`tokenizer.json\` + \`tokenizer_config.json\`; \`loadRewardModelCheckpoint()\` in src/checkpoints.ts loads
them. Remaking gives the same bytes on wasm.
`,
  );
  rm.dispose();
  console.log(`wrote ${sftDir} and ${rmDir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
