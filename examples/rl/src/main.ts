// npm start -w examples/rl -- --method grpo|rloo|ppo|online-dpo [--seed 0] [--steps N]
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { RL_METHODS, runRlExample, summaryLine, type RlMethod } from './example.js';

await runMain(async () => {
  const { values } = parseArgs({
    options: {
      method: { type: 'string', default: 'grpo' },
      seed: { type: 'string', default: '0' },
      steps: { type: 'string' },
    },
  });
  const method = values.method as RlMethod;
  if (!RL_METHODS.includes(method)) throw new Error(`--method: expected one of ${RL_METHODS.join(', ')}; got ${values.method}`);
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed: expected an integer; got ${values.seed}`);
  const steps = values.steps === undefined ? undefined : Number(values.steps);
  if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1)) throw new Error(`--steps: expected an integer ≥ 1; got ${values.steps}`);

  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const result = await runRlExample({ method, seed, steps });
  console.log(summaryLine(result));
});
