import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, Linear, initBackend, manualSeed, tf } from '@posttrain/tensor-core';
import { TRAINER_STATE_FILE, train, type StepOutput } from './index.js';

interface Batch {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
}

const made: tf.Tensor[] = [];
let dir: string;

beforeAll(async () => {
  await initBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'trainer-ckpt-'));
});
afterAll(() => {
  tf.dispose(made);
  rmSync(dir, { recursive: true, force: true });
});

function setup(seed = 3) {
  manualSeed(seed);
  const model = new Linear(2, 1);
  const parameters = model.trainableParameters();
  const optimizer = new AdamW(parameters, { lr: 0.05, weightDecay: 0 });
  const batches = Array.from({ length: 8 }, (_, i) => {
    const x = tf.tensor2d([
      [i, 1],
      [1, -i],
    ]);
    const y = tf.tensor2d([[1], [2]]);
    made.push(x, y);
    return { x, y };
  });
  let steps = 0;
  const step = ({ x, y }: Batch): StepOutput => {
    steps += 1;
    return { lossSum: tf.sum(tf.square(tf.sub(model.forward(x), y))) as tf.Scalar, tokens: 2 };
  };
  const weights = () => [...parameters.values()].flatMap((p) => [...p.dataSync()]);
  const steps_ = () => steps;
  return Object.defineProperties(
    { parameters, optimizer, batches, step, progress: 'none' as const },
    { steps: { value: steps_, enumerable: false }, weights: { value: weights, enumerable: false } },
  ) as { parameters: typeof parameters; optimizer: AdamW; batches: Batch[]; step: typeof step; progress: 'none'; steps: () => number; weights: () => number[] };
}

/** A run of 4 steps with accumulation 2 and batch size 2, checkpointed under a fresh root. */
async function checkpointed(name: string): Promise<string> {
  const root = join(dir, name);
  await train({ ...setup(), checkpointDir: root, maxSteps: 4, gradientAccumulationSteps: 2, batchSize: 2 });
  return root;
}

describe('resume', () => {
  it('records gradientAccumulationSteps and batchSize in trainer_state.json', async () => {
    const root = await checkpointed('recorded');
    expect(JSON.parse(readFileSync(join(root, 'step-4', TRAINER_STATE_FILE), 'utf8'))).toMatchObject({ step: 4, gradientAccumulationSteps: 2, batchSize: 2 });
  });

  it('refuses maxSteps at or below the checkpoint step (not 0 steps and a NaN loss), leaving the parameters as they were', async () => {
    const root = await checkpointed('max-steps');
    for (const maxSteps of [4, 2]) {
      const run = setup(7);
      const before = run.weights();
      const error = await train({ ...run, resumeFrom: root, maxSteps, gradientAccumulationSteps: 2 }).catch((e) => e);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toContain(`expected maxSteps above the step of the checkpoint to resume from (${join(root, 'step-4')}, step 4); got maxSteps ${maxSteps}`);
      expect(run.steps()).toBe(0);
      expect(run.weights()).toEqual(before);
    }
    expect((await train({ ...setup(), resumeFrom: root, maxSteps: 5, epochs: 2, gradientAccumulationSteps: 2, batchSize: 2 })).steps).toBe(5);
  });

  it('refuses to resume a run whose data is used up (no maxSteps: not 0 steps and a NaN loss), and trains on with more epochs', async () => {
    const root = join(dir, 'finished');
    // 8 batches, accumulation 2: one epoch is 4 steps, checkpointed at its end.
    expect((await train({ ...setup(), checkpointDir: root, gradientAccumulationSteps: 2, batchSize: 2 })).steps).toBe(4);
    const run = setup(7);
    const error = await train({ ...run, resumeFrom: root, gradientAccumulationSteps: 2, batchSize: 2 }).catch((e) => e);
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toContain(`expected data left after the checkpoint to resume from (${root}, step 4); got none`);
    expect(run.steps()).toBe(0);
    expect((await train({ ...setup(), resumeFrom: root, epochs: 2, gradientAccumulationSteps: 2, batchSize: 2 })).steps).toBe(8);
  });

  it('refuses another gradientAccumulationSteps or batchSize than the checkpoint, naming both values', async () => {
    const root = await checkpointed('batching');
    const accumulation = await train({ ...setup(), resumeFrom: root, maxSteps: 6, gradientAccumulationSteps: 4 }).catch((e) => e);
    expect(accumulation.code).toBe('INVALID_OPTION');
    expect(accumulation.message).toMatch(/expected gradientAccumulationSteps 2, as in the checkpoint to resume from .*; got 4/);
    const batchSize = await train({ ...setup(), resumeFrom: root, maxSteps: 6, gradientAccumulationSteps: 2, batchSize: 8 }).catch((e) => e);
    expect(batchSize.code).toBe('INVALID_OPTION');
    expect(batchSize.message).toMatch(/expected batchSize 2, as in the checkpoint to resume from .*; got 8/);
    expect(batchSize.message).toMatch(/help: .*resume with batchSize: 2/);
  });

  it('opens a seekable source at the first unconsumed batch: nothing before it is made, and the weights equal an uninterrupted run', async () => {
    const opened: Array<[number, number]> = [];
    const made: number[] = [];
    const seekable = (batches: Batch[]) => ({
      open: function* (epoch: number, start: number) {
        opened.push([epoch, start]);
        for (let i = start; i < batches.length; i++) {
          made.push(i);
          yield batches[i];
        }
      },
    });
    const whole = setup();
    await train({ ...whole, batches: seekable(whole.batches), maxSteps: 6, gradientAccumulationSteps: 1, batchSize: 2 });
    const root = join(dir, 'seekable');
    const first = setup();
    await train({ ...first, batches: seekable(first.batches), checkpointDir: root, maxSteps: 3, gradientAccumulationSteps: 1, batchSize: 2 });
    opened.length = 0;
    made.length = 0;
    const resumed = setup();
    await train({ ...resumed, batches: seekable(resumed.batches), resumeFrom: root, maxSteps: 6, gradientAccumulationSteps: 1, batchSize: 2 });
    expect(opened).toEqual([[0, 3]]);
    expect(made).toEqual([3, 4, 5]);
    expect(resumed.weights()).toEqual(whole.weights());
  });

  it('resumes checkpoints written before these fields existed without checking them', async () => {
    const root = await checkpointed('old-format');
    const file = join(root, 'step-4', TRAINER_STATE_FILE);
    const { gradientAccumulationSteps: _a, batchSize: _b, ...old } = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify(old));
    expect((await train({ ...setup(), resumeFrom: root, maxSteps: 5, epochs: 2, gradientAccumulationSteps: 3, batchSize: 8 })).steps).toBe(5);
  });

  it('names a corrupt or non-state trainer_state.json (not a bare SyntaxError) before reading weights', async () => {
    const root = await checkpointed('corrupt');
    const file = join(root, 'step-4', TRAINER_STATE_FILE);
    writeFileSync(file, '{"format": "posttrain-trainer", "step": 4,');
    const run = setup();
    const error = await train({ ...run, resumeFrom: root, maxSteps: 6, gradientAccumulationSteps: 2 }).catch((e) => e);
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(`expected ${join(root, 'step-4', TRAINER_STATE_FILE)} to be JSON; it does not parse`);
    expect(error.message).toMatch(/help: the checkpoint .* is damaged/);
    expect(run.steps()).toBe(0);

    writeFileSync(file, '{"step": "four"}');
    const shape = await train({ ...setup(), resumeFrom: root, maxSteps: 6 }).catch((e) => e);
    expect(shape.code).toBe('INVALID_ARGUMENT');
    expect(shape.message).toMatch(/trainer_state\.json to be a posttrain trainer state .*; got \{"step":"four"\}/);
  });
});
