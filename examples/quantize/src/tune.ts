// More pretraining of the Shakespeare LM (./lm.ts): next-byte cross-entropy on windows of the training
// split, AdamW at a constant learning rate. What QAT (./qat.ts) and pruning's recovery fine-tune
// (examples/prune) both run, so that their arms see the same batches for the same seed.
import { causalLmLoss } from '@posttrain/losses';
import type { PretrainedModel } from '@posttrain/models';
import { AdamW, Rng, checkNumber, constantSchedule, resolveOptions, tf } from '@posttrain/tensor-core';
import { train } from '@posttrain/trainer';
import { CONTEXT, corpusSplit } from './lm.js';

/** Options of {@link continuePretraining}. */
export interface ContinuePretrainingOptions {
  /** Optimizer steps. */
  steps: number;
  /** Constant learning rate of AdamW (no warm-up). */
  lr: number;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  /** Windows of {@link CONTEXT} training bytes per step. */
  batchSize: number;
  /** Seed of the windows' offsets (and the trainer's). */
  seed: number;
}

/**
 * Defaults of {@link continuePretraining}: 100 steps of 16 windows, lr 1e-4, no weight decay, seed 0.
 *
 * @example
 * ```ts
 * await continuePretraining(model, { ...defaultContinuePretrainingOptions, steps: 20 });
 * ```
 */
export const defaultContinuePretrainingOptions: Readonly<ContinuePretrainingOptions> = Object.freeze({
  steps: 100,
  lr: 1e-4,
  weightDecay: 0,
  batchSize: 16,
  seed: 0,
});

/**
 * Trains every parameter of `model` for `steps` steps on windows of {@link CONTEXT} bytes drawn
 * uniformly (by `seed`) from the training split, gradient norm clipped to 1; then freezes it and puts
 * it back in eval mode. Returns the last step's loss (nats per byte). Whatever wraps the layers
 * (fake quantisation, masks) trains through as it is.
 *
 * @example
 * ```ts
 * const { model } = await loadLm();
 * const loss = await continuePretraining(model, { steps: 100, lr: 3e-4 });
 * ```
 */
export async function continuePretraining(model: PretrainedModel, options: Partial<ContinuePretrainingOptions> = {}): Promise<number> {
  const owner = 'continuePretraining';
  const o = resolveOptions(owner, options, defaultContinuePretrainingOptions);
  checkNumber(owner, 'steps', o.steps, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber(owner, 'lr', o.lr, 'a positive number', (v) => Number.isFinite(v) && v > 0);
  checkNumber(owner, 'weightDecay', o.weightDecay, 'a number ≥ 0', (v) => Number.isFinite(v) && v >= 0);
  checkNumber(owner, 'batchSize', o.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  model.unfreeze();
  model.train();
  const split = corpusSplit();
  const rng = new Rng(o.seed);
  let last: tf.Tensor2D | undefined; // the trainer stops pulling after maxSteps: the last batch is disposed below
  const windows = function* (): Generator<tf.Tensor2D> {
    for (let s = 0; s < o.steps; s++) {
      const batch = new Int32Array(o.batchSize * CONTEXT);
      for (let b = 0; b < o.batchSize; b++) {
        const start = rng.int(split.train.length - CONTEXT + 1);
        batch.set(split.train.subarray(start, start + CONTEXT), b * CONTEXT);
      }
      last?.dispose();
      last = tf.tensor2d(batch, [o.batchSize, CONTEXT], 'int32');
      yield last;
    }
  };
  const parameters = model.trainableParameters();
  const optimizer = new AdamW(parameters, { lr: o.lr, weightDecay: o.weightDecay });
  try {
    const result = await train({
      model,
      parameters,
      optimizer,
      schedule: constantSchedule({ lr: o.lr }),
      batches: windows(),
      maxSteps: o.steps,
      maxGradNorm: 1,
      seed: o.seed,
      progress: 'none',
      step: (inputIds) => {
        const { logits } = model.forward(inputIds);
        const { lossSum, tokens } = causalLmLoss(logits, inputIds, { reduction: 'sum' });
        return { lossSum, tokens };
      },
    });
    return result.loss;
  } finally {
    optimizer.dispose();
    last?.dispose();
    model.freeze();
    model.eval();
  }
}
