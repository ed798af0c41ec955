import { runMain } from '@posttrain/tensor-core';
import { quickstart } from './quickstart.js';

await runMain(async () => {
  const result = await quickstart({ log: console.log });
  console.log(`${result.backend}: loss ${result.firstLoss.toFixed(3)} → ${result.lastLoss.toFixed(3)}, next-token accuracy ${(result.accuracy * 100).toFixed(0)}%`);
});
