import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, Linear, Rng, SGD, initBackend, isPosttrainError, manualSeed, tf, type Optimizer } from '@posttrain/tensor-core';
import { train, type StepContext, type StepOutput, type TrainOptions } from './index.js';

// A linear regression y = x·w + b with noise; a micro-batch of n rows holds n loss "tokens".
interface Batch {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
}

const made: tf.Tensor[] = [];
function makeBatches(sizes: number[], seed = 1): Batch[] {
  const rng = new Rng(seed);
  const w = tf.tensor2d([[1.5], [-2], [0.5], [3]]);
  const batches = sizes.map((n) => {
    const x = rng.normalTensor([n, 4]) as tf.Tensor2D;
    const y = tf.tidy(() => tf.add(tf.matMul(x, w), 0.7)) as tf.Tensor2D;
    made.push(x, y);
    return { x, y };
  });
  w.dispose();
  return batches;
}

function setup(seed = 3, lr = 0.05, kind: 'adamw' | 'sgd' = 'adamw') {
  manualSeed(seed);
  const model = new Linear(4, 1);
  const parameters = model.trainableParameters();
  const optimizer: Optimizer = kind === 'adamw' ? new AdamW(parameters, { lr, weightDecay: 0 }) : new SGD(parameters, { lr });
  const step = ({ x, y }: Batch): StepOutput => ({
    lossSum: tf.sum(tf.square(tf.sub(model.forward(x), y))) as tf.Scalar,
    tokens: x.shape[0],
    metrics: { mae: tf.mean(tf.abs(tf.sub(model.forward(x), y))) as tf.Scalar },
  });
  return { model, parameters, optimizer, step };
}

const read = (params: Map<string, tf.Variable>) => [...params.values()].flatMap((p) => [...p.dataSync()]);
const quiet = { progress: 'none' } as const;
let dir: string;

beforeAll(async () => {
  await initBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'trainer-'));
});
afterAll(() => {
  tf.dispose(made);
  rmSync(dir, { recursive: true, force: true });
});

describe('train', () => {
  it('learns: the loss falls by at least 90% in 40 steps', async () => {
    const { parameters, optimizer, step } = setup();
    const batches = makeBatches(Array(8).fill(16));
    const result = await train({ parameters, optimizer, step, batches, epochs: 10, maxSteps: 40, ...quiet });
    expect(result.steps).toBe(40);
    expect(result.stoppedBy).toBe('maxSteps');
    expect(result.history.at(-1)!.loss!).toBeLessThan(0.1 * result.history[0].loss!);
    optimizer.dispose();
  });

  it('normalises accumulated gradients by loss tokens: 4 uneven micro-batches equal one big batch', async () => {
    const parts = makeBatches([1, 2, 3, 6], 7);
    const whole = { x: tf.concat(parts.map((b) => b.x)) as tf.Tensor2D, y: tf.concat(parts.map((b) => b.y)) as tf.Tensor2D };
    made.push(whole.x, whole.y);
    const a = setup(5, 0.1, 'sgd');
    const ra = await train({ ...a, batches: parts, gradientAccumulationSteps: 4, maxGradNorm: null, ...quiet });
    const b = setup(5, 0.1, 'sgd');
    const rb = await train({ ...b, batches: [whole], maxGradNorm: null, ...quiet });
    expect(ra.steps).toBe(1);
    expect(ra.history[0].tokens).toBe(12);
    expect(ra.history[0].loss!).toBeCloseTo(rb.history[0].loss!, 5);
    const pa = read(a.parameters);
    const pb = read(b.parameters);
    pa.forEach((v, i) => expect(Math.abs(v - pb[i])).toBeLessThan(1e-6));
  });

  it('clips the global gradient norm and logs the norm before clipping', async () => {
    const { parameters, optimizer, step } = setup(3, 1, 'sgd');
    const before = read(parameters);
    const result = await train({ parameters, optimizer, step, batches: makeBatches([8]), maxGradNorm: 1e-3, ...quiet });
    const delta = Math.hypot(...read(parameters).map((v, i) => v - before[i]));
    expect(result.history[0].grad_norm!).toBeGreaterThan(0.1);
    expect(delta).toBeCloseTo(1e-3, 5); // SGD lr 1: the step is the clipped gradient
  });

  it('sets the learning rate from the schedule before each step', async () => {
    const { parameters, optimizer, step } = setup();
    const result = await train({ parameters, optimizer, step, batches: makeBatches([4, 4, 4]), schedule: (s) => 0.01 * (s + 1), ...quiet });
    expect(result.history.map((r) => r.learning_rate)).toEqual([0.01, 0.02, 0.03]);
    expect(optimizer.lr).toBe(0.03);
  });

  it('evaluates every evalEvery steps, logs eval and train records as JSON lines, and calls the callbacks', async () => {
    const { parameters, optimizer, step } = setup();
    const logFile = join(dir, 'logs', 'metrics.jsonl');
    const calls: string[] = [];
    const result = await train({
      parameters,
      optimizer,
      step,
      batches: makeBatches(Array(5).fill(4)),
      evalEvery: 2,
      evaluate: async (s) => ({ heldOutLoss: 1 / s }),
      logFile,
      callbacks: { onStep: (r) => void calls.push(`step ${r.step}`), onEval: (r) => void calls.push(`eval ${r.step}`), onEnd: (r) => void calls.push(`end ${r.steps}`) },
      ...quiet,
    });
    expect(calls).toEqual(['step 1', 'step 2', 'eval 2', 'step 3', 'step 4', 'eval 4', 'step 5', 'end 5']);
    expect(result.evals.map((r) => r.eval_heldOutLoss)).toEqual([0.5, 0.25]);
    const lines = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const trainLines = lines.filter((l) => l.kind === 'train');
    expect(trainLines).toHaveLength(5);
    for (const l of trainLines) {
      for (const key of ['step', 'epoch', 'loss', 'learning_rate', 'grad_norm', 'tokens', 'tokens_per_second', 'elapsed', 'mae']) expect(typeof l[key]).toBe('number');
    }
    expect(lines.filter((l) => l.kind === 'eval').map((l) => [l.step, l.eval_heldOutLoss])).toEqual([
      [2, 0.5],
      [4, 0.25],
    ]);
    expect(lines.at(-1)).toMatchObject({ kind: 'end', step: 5, stoppedBy: 'data' });
  });

  it("names the step's loss unit in the record (pairs, pairs_per_second), sums inputTokens into TRL's num_tokens, and logs a fractional epoch", async () => {
    const { parameters, optimizer, step } = setup();
    const asPairs = (batch: Batch): StepOutput => {
      const { lossSum, metrics } = step(batch);
      return { lossSum, pairs: batch.x.shape[0], inputTokens: 10 * batch.x.shape[0], metrics };
    };
    const logFile = join(dir, 'units', 'metrics.jsonl');
    let text = '';
    const result = await train({
      parameters,
      optimizer,
      step: asPairs,
      batches: makeBatches([4, 4, 2, 2]),
      gradientAccumulationSteps: 2,
      logFile,
      progress: 'lines',
      progressStream: { write: (t: string) => (text += t) },
    });
    expect(result.history.map((r) => r.pairs)).toEqual([8, 4]);
    expect(result.history.map((r) => r.num_tokens)).toEqual([80, 120]); // a running total, as TRL's
    expect(result.history.map((r) => r.epoch)).toEqual([0.5, 1]);
    for (const r of result.history) {
      expect(r.pairs_per_second).toBeGreaterThan(0);
      expect(r.tokens).toBeUndefined();
      expect(r.tokens_per_second).toBeUndefined();
    }
    const lines = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(Object.keys(lines[0]).sort()).toEqual(['elapsed', 'epoch', 'grad_norm', 'kind', 'learning_rate', 'loss', 'mae', 'num_tokens', 'pairs', 'pairs_per_second', 'step']);
    expect(text).toMatch(/grad_norm \d+\.\d{3} pairs\/s \d+ elapsed/);
  });

  it('keeps eval_ names as they are, and refuses a step output with no unit, two units, or a unit that changes', async () => {
    const a = setup();
    const kept = await train({ ...a, batches: makeBatches([4, 4]), evalEvery: 1, evaluate: () => ({ eval_loss: 1, accuracy: 0.5 }), ...quiet });
    expect(
      Object.keys(kept.evals[0])
        .filter((k) => k.startsWith('eval_'))
        .sort(),
    ).toEqual(['eval_accuracy', 'eval_loss']);
    const rejection = async (make: (loss: (b: Batch) => tf.Scalar) => (b: Batch, c: StepContext) => StepOutput) => {
      const b = setup();
      const before = tf.memory().numTensors;
      const error = await train({
        parameters: b.parameters,
        optimizer: b.optimizer,
        step: make((batch) => b.step(batch).lossSum),
        batches: makeBatches([4, 4]),
        gradientAccumulationSteps: 2,
        ...quiet,
      }).catch((e: unknown) => e as Error & { code?: string });
      expect(tf.memory().numTensors - before).toBe(4); // the x and y of the 2 batches made above; nothing of the failed step is left
      expect(isPosttrainError(error)).toBe(true);
      return error as Error & { code?: string };
    };
    const none = await rejection((loss) => (batch) => ({ lossSum: loss(batch) }) as unknown as StepOutput);
    expect(none.message).toMatch(/^train: expected step to return exactly one of tokens, sequences or pairs \(how many units its lossSum sums over\); got none at optimizer step 1, micro-batch 0/);
    const two = await rejection((loss) => (batch) => ({ lossSum: loss(batch), tokens: 4, pairs: 2 }) as unknown as StepOutput);
    expect(two.message).toMatch(/got tokens and pairs at optimizer step 1/);
    const changing = await rejection(
      (loss) =>
        (batch, { microBatch }) =>
          microBatch === 0 ? { lossSum: loss(batch), tokens: 4 } : { lossSum: loss(batch), pairs: 4 },
    );
    expect(changing.code).toBe('INVALID_ARGUMENT');
    expect(changing.message).toMatch(/expected every micro-batch of a step to count the same loss unit; got tokens and then pairs at optimizer step 1, micro-batch 1/);
  });

  it("writes plain progress lines with progress 'lines', and a bar redrawn in place with 'bar'", async () => {
    let text = '';
    const stream = { write: (s: string) => (text += s), isTTY: false };
    const a = setup();
    await train({ ...a, batches: makeBatches([4, 4, 4]), maxSteps: 3, progress: 'lines', progressStream: stream });
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const [i, line] of lines.entries()) {
      expect(line).toMatch(new RegExp(`^step ${i + 1}/3 loss \\d+\\.\\d{4} lr \\d\\.\\d{2}e-\\d grad_norm \\d+\\.\\d{3} tok/s \\d+ elapsed \\d+\\.\\ds$`));
    }
    text = '';
    const c = setup();
    await train({ ...c, batches: makeBatches(Array(7).fill(4)), progress: 'lines', progressStream: stream, logEvery: 3 });
    expect(
      text
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[1]),
    ).toEqual(['1/7', '3/7', '6/7', '7/7']);
    text = '';
    // A batch function (no array to count) with batchesPerEpoch: the total is known all the same.
    const e = setup();
    const six = makeBatches(Array(6).fill(4));
    await train({ ...e, batches: () => six, batchesPerEpoch: 6, epochs: 2, gradientAccumulationSteps: 2, progress: 'lines', progressStream: stream, logEvery: 6 });
    expect(
      text
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[1]),
    ).toEqual(['1/6', '6/6']);
    text = '';
    const d = setup();
    await train({ ...d, batches: makeBatches(Array(40).fill(4)), progress: 'lines', progressStream: stream });
    expect(text.trim().split('\n')).toHaveLength(21); // step 1, then every 2 of 40
    text = '';
    const b = setup();
    await train({ ...b, batches: makeBatches([4, 4]), progress: 'auto', progressStream: { write: (s: string) => (text += s), isTTY: true } });
    expect(text).toMatch(/^\r\[#{10}\.{10}\] 1\/2 loss .*\r\[#{20}\] 2\/2 loss .* tok\/s \d\d:\d\d<00:00\x1b\[K\n$/s);
  });

  it('stops on a NaN loss with a NON_FINITE error naming the optimizer step and the micro-batch', async () => {
    const { parameters, optimizer, step } = setup();
    const bad = (batch: Batch, context: StepContext): StepOutput => {
      const out = step(batch);
      if (context.step === 2 && context.microBatch === 1) return { ...out, lossSum: tf.mul(out.lossSum, NaN) as tf.Scalar };
      return out;
    };
    const error = await train({ parameters, optimizer, step: bad, batches: makeBatches(Array(8).fill(2)), gradientAccumulationSteps: 2, ...quiet }).catch((e) => e);
    expect(isPosttrainError(error)).toBe(true);
    expect(error.code).toBe('NON_FINITE');
    expect(error.message).toMatch(/optimizer step 3 is NaN at micro-batch 1 of 2/);
    expect([error.step, error.microBatch]).toEqual([3, 1]);
  });

  it('leaks no tensors: the count after 6 steps equals the count after 1', async () => {
    const { parameters, optimizer, step } = setup();
    const counts: number[] = [];
    await train({
      parameters,
      optimizer,
      step,
      batches: makeBatches(Array(12).fill(3)),
      gradientAccumulationSteps: 2,
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
      ...quiet,
    });
    expect(counts).toHaveLength(6);
    expect(new Set(counts).size).toBe(1);
  });

  it('stops after the current step when the signal aborts, and takes parameters from model', async () => {
    const { model, optimizer, step } = setup();
    const controller = new AbortController();
    const result = await train({
      model,
      optimizer,
      step,
      batches: makeBatches(Array(6).fill(4)),
      signal: controller.signal,
      callbacks: { onStep: (r) => (r.step === 2 ? controller.abort() : undefined) },
      ...quiet,
    });
    expect([result.steps, result.stoppedBy]).toEqual([2, 'aborted']);
  });

  it('rejects an unknown option by name, listing the known ones', async () => {
    const { parameters, optimizer, step } = setup();
    const options = { parameters, optimizer, step, batches: [], learningRate: 1 } as unknown as TrainOptions<Batch>;
    await expect(train(options)).rejects.toThrow(/unknown option "learningRate"; known options are model, parameters, optimizer, batches, step, gradientAccumulationSteps/);
  });
});

describe('checkpoints', () => {
  // A step that draws from the context's generator (like dropout), so resuming must restore it too.
  const noisy =
    (step: (b: Batch, c: StepContext) => StepOutput) =>
    (batch: Batch, context: StepContext): StepOutput => {
      const out = step(batch, context);
      return { ...out, lossSum: tf.mul(out.lossSum, 1 + 0.1 * context.rng.uniform()) as tf.Scalar };
    };

  it('writes complete checkpoints atomically, and resume refuses one without trainer_state.json', async () => {
    const root = join(dir, 'ckpt-files');
    const { parameters, optimizer, step } = setup();
    await train({ parameters, optimizer, step, batches: makeBatches(Array(5).fill(4)), checkpointDir: root, checkpointEvery: 2, ...quiet });
    expect(readdirSync(root).sort()).toEqual(['step-2', 'step-4', 'step-5']);
    for (const d of readdirSync(root)) expect(readdirSync(join(root, d)).sort()).toEqual(['model.safetensors', 'optimizer.safetensors', 'trainer_state.json']);
    expect(JSON.parse(readFileSync(join(root, 'step-4', 'trainer_state.json'), 'utf8'))).toMatchObject({ step: 4, epoch: 0, batchInEpoch: 4 });

    // A crash while writing step-6 leaves no trainer_state.json: refused by name, skipped from the root.
    mkdirSync(join(root, 'step-6'));
    writeFileSync(join(root, 'step-6', 'model.safetensors'), readFileSync(join(root, 'step-5', 'model.safetensors')));
    const again = setup();
    const error = await train({ ...again, batches: makeBatches([4]), resumeFrom: join(root, 'step-6'), ...quiet }).catch((e) => e);
    expect(error.code).toBe('FILE_NOT_FOUND');
    expect(error.message).toMatch(/trainer_state\.json/);
    // step-5 consumed the one epoch (epoch 1, batch 0): a second epoch continues from its start.
    expect(JSON.parse(readFileSync(join(root, 'step-5', 'trainer_state.json'), 'utf8'))).toMatchObject({ step: 5, epoch: 1, batchInEpoch: 0 });
    const resumed = await train({ ...again, batches: makeBatches(Array(5).fill(4)), resumeFrom: root, epochs: 2, ...quiet });
    expect(resumed.history.map((r) => r.step)).toEqual([6, 7, 8, 9, 10]);
    expect(existsSync(join(root, 'step-6', 'trainer_state.json'))).toBe(false); // no checkpointDir: nothing written
  });

  it('calls a batches function with the epoch index, also when resuming mid-epoch', async () => {
    const data = makeBatches([4, 4, 4], 5); // 3 batches an epoch
    const root = join(dir, 'ckpt-epochs');
    const seen: number[] = [];
    const batches = (epoch: number) => (seen.push(epoch), data);
    await train({ ...setup(), batches, epochs: 3, maxSteps: 4, checkpointDir: root, ...quiet });
    expect(seen).toEqual([0, 1]);
    seen.length = 0;
    const resumed = await train({ ...setup(), batches, epochs: 3, resumeFrom: root, ...quiet });
    expect(seen).toEqual([1, 2]);
    expect(resumed.history.map((r) => r.step)).toEqual([5, 6, 7, 8, 9]);
  });

  it('resumes to the same losses as an uninterrupted run', async () => {
    const data = makeBatches([3, 5, 2, 4, 6, 1, 3, 5, 2, 4, 6, 1, 2, 2], 11);
    const options = { gradientAccumulationSteps: 2, epochs: 2, seed: 9, maxSteps: 10, ...quiet };
    const full = setup(4);
    const uninterrupted = await train({ ...full, step: noisy(full.step), batches: data, ...options });
    expect(uninterrupted.steps).toBe(10);

    const root = join(dir, 'ckpt-resume');
    const first = setup(4);
    await train({ ...first, step: noisy(first.step), batches: data, ...options, maxSteps: 6, checkpointDir: root }); // crosses no epoch
    const second = setup(99); // other initial weights and a fresh optimizer: all restored from the checkpoint
    const resumed = await train({ ...second, step: noisy(second.step), batches: () => data, ...options, resumeFrom: root });
    expect(resumed.history.map((r) => r.step)).toEqual([7, 8, 9, 10]);
    resumed.history.forEach((r, i) => expect(Math.abs(r.loss! - uninterrupted.history[6 + i].loss!)).toBeLessThan(1e-6));
    const pa = read(full.parameters);
    read(second.parameters).forEach((v, i) => expect(Math.abs(v - pa[i])).toBeLessThan(1e-6));
  });
});
