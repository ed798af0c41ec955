// npm start -w examples/prune [-- --held-out-bytes N] [--calibration N] [--seed N] [--recovery-steps N]:
// the byte-level Llama of examples/quantize pruned by magnitude, Wanda and SparseGPT at 50% and at 2:4,
// then 25% of its MLP channels removed and recovered by a short fine-tune; the last line compares the
// perplexities at 50%.
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { doneLine, runPruneExample } from './example.js';

await runMain(async () => {
  const { values } = parseArgs({
    options: { 'held-out-bytes': { type: 'string' }, calibration: { type: 'string' }, seed: { type: 'string', default: '0' }, 'recovery-steps': { type: 'string' } },
  });
  const int = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n)) throw new Error(`--${flag}: expected an integer; got ${value}`);
    return n;
  };
  const t0 = performance.now();
  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const result = await runPruneExample({
    heldOutBytes: int('held-out-bytes', values['held-out-bytes']) ?? null,
    calibration: int('calibration', values.calibration),
    seed: int('seed', values.seed),
    recoverySteps: int('recovery-steps', values['recovery-steps']),
  });
  console.log(doneLine(result, (performance.now() - t0) / 1000));
});
