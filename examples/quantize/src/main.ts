// npm start -w examples/quantize [-- --held-out-bytes N] [--calibration N] [--seed N]: the byte-level
// Llama pretrained here, in float and quantised by each scheme, measured by exact weight bytes and
// held-out perplexity; then QLoRA beside LoRA on the SFT demo's task (--qlora-steps, 0 skips it); the
// last line compares the perplexities.
import { parseArgs } from 'node:util';
import { initBackend, runMain } from '@posttrain/tensor-core';
import { doneLine, runQuantizeExample } from './example.js';
import { runQloraComparison } from './qlora.js';

await runMain(async () => {
  const { values } = parseArgs({ options: { 'held-out-bytes': { type: 'string' }, calibration: { type: 'string' }, seed: { type: 'string', default: '0' }, 'qlora-steps': { type: 'string' } } });
  const int = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n)) throw new Error(`--${flag}: expected an integer; got ${value}`);
    return n;
  };
  const t0 = performance.now();
  const backend = await initBackend('auto');
  console.log(`backend: ${backend.name}${backend.adapter ? ` (${backend.adapter})` : ''}`);
  const { figures } = await runQuantizeExample({
    heldOutBytes: int('held-out-bytes', values['held-out-bytes']) ?? null,
    calibration: int('calibration', values.calibration),
    seed: int('seed', values.seed),
  });
  const qloraSteps = int('qlora-steps', values['qlora-steps']) ?? 600;
  if (qloraSteps > 0) {
    console.log('');
    console.log(`QLoRA vs LoRA: the SFT demo's reversal task on its tiny base, ${qloraSteps} steps each`);
    await runQloraComparison({ steps: qloraSteps, seed: int('seed', values.seed) });
  }
  console.log(doneLine(figures, (performance.now() - t0) / 1000));
});
