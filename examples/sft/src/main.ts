// npm run demo [-- --steps 600 --out out/sft-lora --seed 0]
import { parseArgs } from 'node:util';
import { initBackend } from '@posttrain/tensor-core';
import { runDemo } from './demo.js';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '600' }, out: { type: 'string', default: 'out/sft-lora' }, seed: { type: 'string', default: '0' } } });
const steps = Number(values.steps);
const seed = Number(values.seed);
if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps: expected an integer ≥ 1; got ${values.steps}`);
if (!Number.isInteger(seed)) throw new Error(`--seed: expected an integer; got ${values.seed}`);

const backend = await initBackend('auto');
console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
const result = await runDemo({ steps, out: values.out, seed });
console.log(`done in ${result.seconds.toFixed(1)} s: ${(result.before.accuracy * 100).toFixed(1)}% → ${(result.after.accuracy * 100).toFixed(1)}%`);
