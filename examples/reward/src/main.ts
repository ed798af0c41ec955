// npm start -w examples/reward [-- --steps 600 --lora 0 --out out/reward --seed 0 --stack]
// --out is read from the directory npm was run in.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { runRewardDemo } from './reward-demo.js';

await runMain(async () => {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '600' },
      lora: { type: 'string', default: '0' },
      out: { type: 'string', default: 'out/reward' },
      seed: { type: 'string', default: '0' },
    },
  });
  const int = (name: string, text: string, min: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: expected an integer ≥ ${min}; got ${text}`);
    return n;
  };
  const steps = int('steps', values.steps, 1);
  const lora = int('lora', values.lora, 0);
  const seed = int('seed', values.seed, -(2 ** 31));

  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const result = await runRewardDemo({ steps, lora, out: resolve(process.env.INIT_CWD ?? process.cwd(), values.out), seed, ...(lora > 0 ? { lr: 3e-3 } : {}) });
  console.log(`done in ${result.seconds.toFixed(1)} s: held-out pairwise accuracy ${(result.before.accuracy * 100).toFixed(1)}% → ${(result.after.accuracy * 100).toFixed(1)}%`);
});
