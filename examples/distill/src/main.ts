// npm start -w examples/distill [-- --seed 0] [--steps N]: the student trained by SFT, KD and GKD
// at one step budget, each measured on the held-out prompts; the last line compares them.
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { DISTILL_METHODS, runDistillExample, summaryLine, type DistillExampleResult, type DistillMethod } from './example.js';

await runMain(async () => {
  const { values } = parseArgs({ options: { seed: { type: 'string', default: '0' }, steps: { type: 'string' } } });
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed: expected an integer; got ${values.seed}`);
  const steps = values.steps === undefined ? undefined : Number(values.steps);
  if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1)) throw new Error(`--steps: expected an integer ≥ 1; got ${values.steps}`);

  const t0 = performance.now();
  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const results = {} as Record<DistillMethod, DistillExampleResult>;
  for (const method of DISTILL_METHODS) results[method] = await runDistillExample({ method, seed, steps });
  console.log(summaryLine(results, (performance.now() - t0) / 1000));
});
