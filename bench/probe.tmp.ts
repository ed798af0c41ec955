import { initBackend, tf } from '@posttrain/tensor-core';
import { benchLoraStep, benchRealDecode, benchRealForward } from './real.js';
await initBackend('wasm');
const which = process.argv[2];
const t0 = performance.now();
const r =
  which === 'forward'
    ? await benchRealForward('wasm', 1)
    : which === 'decode1'
      ? await benchRealDecode('wasm', 1, 1)
      : which === 'decode8'
        ? await benchRealDecode('wasm', 1, 8)
        : await benchLoraStep('wasm', 1, Number(process.argv[3] ?? 4), Number(process.argv[4] ?? 256));
console.log(JSON.stringify(r), ((performance.now() - t0) / 1000).toFixed(1), 's', tf.memory().numBytes);
