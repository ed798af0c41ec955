import { afterAll, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { initBackend } from './backend.js';
import { AdamW } from './optim.js';
import { clipGradNorm } from './clip.js';
import { valueAndGrads } from './grads.js';
import { Rng } from './rng.js';
import { TinyGpt } from './testing/tiny-gpt.js';

// The same transformer training step (embedding, attention, GELU MLP, layer norms, tied output,
// cross-entropy, clipping, AdamW) on cpu, tfjs's reference backend, and on wasm with posttrain's
// kernels. Same initial weights, same data: the losses of every step must agree within 1e-5.

const config = { vocabSize: 64, hiddenSize: 32, numHeads: 2, numLayers: 2, maxPositions: 16 };
const steps = 6;

async function train(backend: 'cpu' | 'wasm'): Promise<{ losses: number[]; norms: number[]; leaked: number }> {
  await initBackend(backend);
  const model = new TinyGpt(config, 3);
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 0.01 });
  const rng = new Rng(11);
  // One batch, seen every step, so the loss must fall as the model memorises it.
  const batch = Array.from({ length: 4 * 16 }, () => rng.int(config.vocabSize));
  const batches = Array.from({ length: steps }, () => batch);
  const losses: number[] = [];
  const norms: number[] = [];
  let afterFirst = 0;
  for (const [i, batch] of batches.entries()) {
    const ids = tf.tensor(batch, [4, 16], 'int32');
    const { value, grads } = valueAndGrads(() => model.loss(ids), optimizer.params);
    norms.push(clipGradNorm(grads, 1.0));
    optimizer.step(grads);
    losses.push(value.dataSync()[0]);
    tf.dispose([value, ids, ...grads.values()]);
    if (i === 0) afterFirst = tf.memory().numTensors;
  }
  const leaked = tf.memory().numTensors - afterFirst;
  optimizer.dispose();
  model.dispose();
  return { losses, norms, leaked };
}

describe('a transformer training step on wasm matches cpu', () => {
  afterAll(async () => {
    await initBackend('cpu');
  });

  it(`gives the same losses and gradient norms over ${steps} AdamW steps, within 1e-5`, async () => {
    const cpu = await train('cpu');
    const wasm = await train('wasm');
    for (let i = 0; i < steps; i++) {
      expect(Math.abs(wasm.losses[i] - cpu.losses[i])).toBeLessThanOrEqual(1e-5 * Math.abs(cpu.losses[i]));
      expect(Math.abs(wasm.norms[i] - cpu.norms[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, cpu.norms[i]));
    }
    // The step learns: the last loss is well below the first (ln 64 ≈ 4.16 at the start).
    expect(cpu.losses[steps - 1]).toBeLessThan(cpu.losses[0] - 0.5);
    expect(cpu.leaked).toBe(0);
    expect(wasm.leaked).toBe(0);
  });
});
