// npm start -w @posttrain/example-sft [-- --steps 600 --out out/sft-lora --seed 0 --dpo-steps 150 --stack]
// --out is read from the directory npm was run in (also under `npm start -w examples/sft`).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { runDemo } from './demo.js';

await runMain(async () => {
  const { values } = parseArgs({
    options: { steps: { type: 'string', default: '600' }, out: { type: 'string', default: 'out/sft-lora' }, seed: { type: 'string', default: '0' }, 'dpo-steps': { type: 'string', default: '150' } },
  });
  const steps = Number(values.steps);
  const seed = Number(values.seed);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps: expected an integer ≥ 1; got ${values.steps}`);
  if (!Number.isInteger(seed)) throw new Error(`--seed: expected an integer; got ${values.seed}`);
  const dpoSteps = Number(values['dpo-steps']);
  if (!Number.isInteger(dpoSteps) || dpoSteps < 0) throw new Error(`--dpo-steps: expected an integer ≥ 0; got ${values['dpo-steps']}`);
  const out = resolve(process.env.INIT_CWD ?? process.cwd(), values.out);

  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const result = await runDemo({ steps, out, seed, dpoSteps });
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const dpo = result.dpo
    ? `; DPO: exact match ${pct(result.dpo.before.exactMatch.accuracy)} → ${pct(result.dpo.after.exactMatch.accuracy)}, implicit-reward accuracy (rewards/accuracies) 0 → ${result.dpo.rewardAccuracy.toFixed(3)}`
    : '';
  console.log(`done in ${result.seconds.toFixed(1)} s: SFT exact match ${pct(result.before.accuracy)} → ${pct(result.after.accuracy)}${dpo}; adapter in ${out}`);
});
