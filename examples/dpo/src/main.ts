// npm start -w examples/dpo [-- --sft-steps 150 --dpo-steps 150 --rpo-alpha 1 --seed 0]
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { runExample } from './example.js';

await runMain(async () => {
  const { values } = parseArgs({
    options: {
      'sft-steps': { type: 'string', default: '150' },
      'dpo-steps': { type: 'string', default: '150' },
      'rpo-alpha': { type: 'string', default: '1' },
      seed: { type: 'string', default: '0' },
    },
  });
  const number = (name: keyof typeof values, ok: (v: number) => boolean, expected: string) => {
    const v = Number(values[name]);
    if (!ok(v)) throw new Error(`--${name}: expected ${expected}; got ${values[name]}`);
    return v;
  };
  const sftSteps = number('sft-steps', (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1');
  const dpoSteps = number('dpo-steps', (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1');
  const rpoAlpha = number('rpo-alpha', (v) => v >= 0, 'a number ≥ 0');
  const seed = number('seed', Number.isInteger, 'an integer');

  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const { dpo, seconds } = await runExample({ sftSteps, dpoSteps, rpoAlpha, seed, progress: 'auto' });
  console.log(
    `done in ${seconds.toFixed(1)} s: exact match ${(dpo.before.exactMatch.accuracy * 100).toFixed(1)}% → ${(dpo.after.exactMatch.accuracy * 100).toFixed(1)}%, held-out implicit-reward accuracy (rewards/accuracies) 0 → ${dpo.rewardAccuracy.toFixed(3)}`,
  );
});
