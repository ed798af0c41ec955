import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { createModel } from './index.js';

// tfjs-backend-wasm 4.22 corrupts its heap on a rank-4 batched matMul with batch dims [1, 1]: one row
// decoding through a model of one KV head crashed ("memory access out of bounds") until attention
// ran its matMuls on rank-3 tensors.
describe('attention on wasm with one KV head', () => {
  it('one row decodes with the KV cache, and the cached logits equal the uncached ones', async () => {
    await initBackend('wasm');
    const model = createModel({ modelType: 'llama', vocabSize: 40, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 16 }, { seed: 3 });
    const ids = tf.tensor2d([[5, 9, 2, 7]], [1, 4], 'int32');
    const full = model.forward(ids).logits; // [1, 4, V]
    const first = model.forward(tf.slice(ids, [0, 0], [1, 3]), { useCache: true });
    const next = model.forward(tf.slice(ids, [0, 3], [1, 1]), { cache: first.cache });
    const want = await tf.slice(full, [0, 3, 0], [1, 1, 40]).data();
    const got = await next.logits.data();
    for (let i = 0; i < 40; i++) expect(got[i]).toBeCloseTo(want[i], 4);
    for (let step = 0; step < 20; step++) tf.tidy(() => model.forward(tf.tensor2d([[step % 40]], [1, 1], 'int32')).logits);
  });
});
