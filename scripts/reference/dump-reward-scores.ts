// Reward models on the tiny base, saved both ways, with the rewards posttrain computes, for
// reward_hf_check.py to compare with Hugging Face's. Run from the repository root:
//
//   npx tsx --conditions=@posttrain/source scripts/reference/dump-reward-scores.ts [--full DIR] [--adapter DIR] [--out FILE] [--backend cpu|wasm] [--base DIR]
//
// Writes (defaults) /tmp/rm-full (saveRewardModel, no adapters: config.json + model.safetensors),
// /tmp/rm-adapter (saveRewardModel of a RewardModel with LoRA: adapter_config.json +
// adapter_model.safetensors with the head as base_model.model.score.weight) and /tmp/rm-scores.json:
// { backend, base, full, adapter, texts, inputIds [B][T], attentionMask [B][T], padTokenId,
//   rewards: { full [B], adapter [B], fullReloaded [B], adapterReloaded [B] } }.
// Both heads are random (seeded, std 0.5 so rewards are O(1)); the adapter's B is random too
// (seeded), so the adapter changes the rewards. Inputs: byte ids + EOS, right-padded with the pad
// id, mask 1 on real tokens. Pad ids appear only where the mask is 0, so Hugging Face's rule
// (last token that is not pad_token_id) and ours (last position whose mask is 1) pick the same token.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ByteTokenizer } from '@posttrain/data';
import { applyLora } from '@posttrain/lora';
import { loadModel } from '@posttrain/models';
import { RewardModel, loadRewardModel, saveRewardModel } from '@posttrain/reward';
import { Rng, initBackend, tf } from '@posttrain/tensor-core';

/** Prompt + completion texts, as rewardTrain tokenizes them (EOS appended). */
const TEXTS = ['abc>cba', 'hgfe>efgh', 'dc>cd', 'aab>baa'];

const { values } = parseArgs({
  options: {
    full: { type: 'string', default: '/tmp/rm-full' },
    adapter: { type: 'string', default: '/tmp/rm-adapter' },
    out: { type: 'string', default: '/tmp/rm-scores.json' },
    backend: { type: 'string', default: 'cpu' },
    base: { type: 'string', default: 'examples/sft/tiny-base' },
  },
});
const backend = values.backend;
if (backend !== 'cpu' && backend !== 'wasm') throw new Error(`--backend: expected cpu or wasm; got ${backend}`);
await initBackend(backend);

const tokenizer = new ByteTokenizer();
const { eosTokenId: eos, padTokenId: pad } = tokenizer;
if (eos === null || pad === null) throw new Error(`expected the byte tokenizer to have EOS and pad ids; got ${eos} and ${pad}`);
const rows = TEXTS.map((text) => [...tokenizer.encode(text), eos]);
const t = Math.max(...rows.map((r) => r.length));
const inputIds = rows.map((r) => [...r, ...new Array<number>(t - r.length).fill(pad)]);
const attentionMask = rows.map((r) => [...r.map(() => 1), ...new Array<number>(t - r.length).fill(0)]);
if (rows.some((r) => r.includes(pad))) throw new Error('a real token equals the pad id: the two last-token rules would disagree');

/** Sets `variable` to normal(0, std) values from `rng`. */
function randomise(variable: tf.Variable, rng: Rng, std: number): void {
  const value = rng.normalTensor(variable.shape, std);
  variable.assign(value);
  value.dispose();
}

function rewardsOf(model: RewardModel): number[] {
  const ids = tf.tensor2d(inputIds.flat(), [inputIds.length, t], 'int32');
  const mask = tf.tensor2d(attentionMask.flat(), [inputIds.length, t], 'int32');
  const { rewards, hidden } = model.forward(ids, { attentionMask: mask });
  const out = Array.from(rewards.dataSync());
  tf.dispose([ids, mask, rewards, hidden]);
  return out;
}

// Full save: the tiny base under a random head, no adapters.
const full = new RewardModel(await loadModel(values.base), { seed: 1 });
randomise(full.score.weight, new Rng(11), 0.5);
full.eval();
const fullFiles = await saveRewardModel(full, values.full);

// Adapter save: LoRA on attention and MLP projections, B randomised, and another random head.
const lora = new RewardModel(await loadModel(values.base), { seed: 2 });
const { targets } = applyLora(lora, { r: 4, alpha: 8, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'], seed: 3 });
randomise(lora.score.weight, new Rng(12), 0.5);
const rng = new Rng(13);
let randomisedB = 0;
for (const [path, p] of lora.namedParameters()) {
  if (!/\.lora_B\./.test(path)) continue;
  randomise(p, rng, 0.1);
  randomisedB++;
}
lora.eval();
const adapterFiles = await saveRewardModel(lora, values.adapter);

const rewards = { full: rewardsOf(full), adapter: rewardsOf(lora), fullReloaded: [] as number[], adapterReloaded: [] as number[] };
// Our own round trip, for reference.
const fullBack = await loadRewardModel(values.full, { backbone: await loadModel(values.base) });
fullBack.eval();
rewards.fullReloaded = rewardsOf(fullBack);
const adapterBack = await loadRewardModel(values.adapter, { backbone: await loadModel(values.base) });
adapterBack.eval();
rewards.adapterReloaded = rewardsOf(adapterBack);

writeFileSync(
  values.out,
  `${JSON.stringify({ backend, base: values.base, full: values.full, adapter: values.adapter, fullFiles, adapterFiles, loraTargets: targets, randomisedB, texts: TEXTS, inputIds, attentionMask, padTokenId: pad, eosTokenId: eos, rewards }, null, 1)}\n`,
);
for (const m of [full, lora, fullBack, adapterBack]) m.dispose();
console.log(
  `wrote ${values.out} (backend ${backend}); ${values.full}: ${fullFiles.join(', ')}; ${values.adapter}: ${adapterFiles.join(', ')}; ${targets.length} LoRA layers, ${randomisedB} B matrices randomised`,
);
console.log(JSON.stringify(rewards));
