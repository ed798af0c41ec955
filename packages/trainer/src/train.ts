import { PosttrainError, Rng, clipGradNormAsync, tf, valueAndGrads, withDropoutRng } from '@posttrain/tensor-core';
import { BatchReader } from './batches.js';
import { loadTrainerCheckpoint, saveTrainerCheckpoint } from './checkpoint.js';
import { lockCheckpointDir, rotateCheckpoints } from './checkpoint-dir.js';
import { LOSS_UNITS, resolveTrainOptions, type LossUnit, type StepContext, type StepOutput, type TrainOptions, type TrainRecord, type TrainResult } from './options.js';
import { createProgress } from './progress.js';

/** The seed of the generator of (seed, step, micro-batch): fixed, so a resumed run draws the same numbers. */
function contextSeed(seed: number, step: number, microBatch: number): number {
  return (seed ^ Math.imul(step + 1, 0x9e3779b1) ^ Math.imul(microBatch + 1, 0x85ebca6b)) | 0;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

interface StepTotals {
  loss: number;
  /** The loss units of the step, and which unit. */
  count: number;
  unit: LossUnit;
  /** Input tokens of the step, when its micro-batches reported them. */
  inputTokens: number | undefined;
  gradNorm: number;
  learningRate: number;
  metrics: Record<string, number>;
}

/**
 * The one training loop of posttrain. For each optimizer step it pulls
 * `gradientAccumulationSteps` micro-batches, runs `step` on each inside the gradient tape, adds up
 * the gradients of each micro-batch's `lossSum`, divides them by the total number of loss units
 * (label tokens, sequences or pairs: the key of {@link StepOutput} names the unit; so accumulation
 * equals one big batch, however the units are split), clips the global norm (logging the norm
 * before clipping), sets the learning rate from `schedule`, and steps the optimizer. The logged loss
 * is the total `lossSum` / total units. Records use TRL's keys (`loss`, `learning_rate`,
 * `grad_norm`, `epoch`, `num_tokens`; `eval_` + each name `evaluate` returns).
 *
 * A NaN or infinite loss (or gradient norm) stops the run with a `NON_FINITE` error naming the
 * optimizer step and micro-batch. Records go to the progress display, the JSONL `logFile` and the
 * callbacks; `evaluate` runs every `evalEvery` steps; checkpoints (`checkpointDir`,
 * `checkpointEvery`) hold the parameters, the optimizer state and the position in the data, and
 * `resumeFrom` continues with the same losses as an uninterrupted run. Before any step, `checkpointDir`
 * is created and locked (one live run per directory; see `saveTotalLimit` to keep only the last N),
 * and a resume that would run no step or change the batching is refused.
 *
 * Batches are pulled lazily, one before each use: an async generator can roll out with the current
 * parameters (RL's rollout-then-update) and dispose the tensors it yielded after its `yield`.
 *
 * @example
 * ```ts
 * const model = new Linear(4, 1);
 * const parameters = model.trainableParameters();
 * const result = await train({
 *   parameters,
 *   optimizer: new AdamW(parameters, { lr: 1e-2 }),
 *   batches: data, // [{ x: tf.Tensor2D, y: tf.Tensor2D }, …]
 *   step: ({ x, y }) => ({ lossSum: tf.sum(tf.square(tf.sub(model.forward(x), y))) as tf.Scalar, tokens: x.shape[0] }),
 *   maxSteps: 100,
 *   gradientAccumulationSteps: 2,
 *   logFile: 'runs/a/metrics.jsonl',
 * });
 * console.log(result.loss);
 * ```
 */
export async function train<B>(options: TrainOptions<B>): Promise<TrainResult> {
  const o = resolveTrainOptions(options);
  const lock = o.checkpointDir === undefined ? undefined : await lockCheckpointDir(o.checkpointDir);
  try {
    return await trainLocked(o);
  } finally {
    await lock?.release();
  }
}

/** {@link train} once its options are resolved and its checkpoint directory locked. */
async function trainLocked<B>(o: ReturnType<typeof resolveTrainOptions<B>>): Promise<TrainResult> {
  const { parameters, optimizer, gradientAccumulationSteps: accumulation } = o;
  let step = 0;
  let elapsedBefore = 0;
  let start = { epoch: 0, batchInEpoch: 0 };
  let resumedTokens = 0;
  if (o.resumeFrom !== undefined) {
    const state = await loadTrainerCheckpoint(o.resumeFrom, parameters, optimizer, { maxSteps: o.maxSteps, gradientAccumulationSteps: accumulation, batchSize: o.batchSize });
    step = state.step;
    elapsedBefore = state.elapsed;
    start = { epoch: state.epoch, batchInEpoch: state.batchInEpoch };
    resumedTokens = state.numTokens ?? 0;
  }
  const epochLength = o.batchesPerEpoch ?? (Array.isArray(o.batches) ? o.batches.length : undefined);
  const total = o.maxSteps ?? (epochLength === undefined ? undefined : Math.ceil((epochLength * o.epochs) / accumulation));
  const reader = new BatchReader<B>(o.batches, o.epochs, start);
  const progress = createProgress(o.progress, o.progressStream, total, o.logEvery ?? (total === undefined ? 10 : Math.max(1, Math.ceil(total / 20))));
  const append = o.logFile === undefined ? undefined : await openLog(o.logFile);
  const t0 = now();
  const elapsed = () => elapsedBefore + (now() - t0) / 1000;
  const history: TrainRecord[] = [];
  const evals: TrainRecord[] = [];
  let stoppedBy: TrainResult['stoppedBy'] = 'data';
  let savedStep = o.resumeFrom !== undefined ? step : -1;
  let numTokens = resumedTokens;
  let runUnit: LossUnit | undefined;
  /** TRL's `epoch`: passes done, fractional when the epoch length is known. */
  const epochsDone = () => (epochLength ? reader.epoch + reader.batchInEpoch / epochLength : reader.epoch);

  const emit = async (record: TrainRecord) => {
    progress.update(record);
    if (append) await append(`${JSON.stringify(record)}\n`);
  };
  const checkpoint = async () => {
    const path = await saveTrainerCheckpoint(
      o.checkpointDir as string,
      { step, epoch: reader.epoch, batchInEpoch: reader.batchInEpoch, elapsed: elapsed(), seed: o.seed, gradientAccumulationSteps: accumulation, batchSize: o.batchSize, numTokens },
      parameters,
      optimizer,
    );
    if (o.saveTotalLimit !== undefined) await rotateCheckpoints(o.checkpointDir as string, o.saveTotalLimit, path);
    savedStep = step;
    const record: TrainRecord = { kind: 'checkpoint', step, elapsed: elapsed(), path };
    await emit(record);
    await o.callbacks.onCheckpoint?.(record);
  };

  try {
    for (;;) {
      if (o.maxSteps !== undefined && step >= o.maxSteps) {
        stoppedBy = 'maxSteps';
        break;
      }
      if (o.signal?.aborted) {
        stoppedBy = 'aborted';
        break;
      }
      o.model?.train?.(true);
      const stepStart = now();
      const totals = await runStep(o, reader, step, accumulation);
      if (!totals) break;
      step += 1;
      const seconds = (now() - stepStart) / 1000;
      if (runUnit !== undefined && totals.unit !== runUnit) {
        throw new PosttrainError('INVALID_ARGUMENT', `train: expected every step to count the same loss unit; got ${runUnit} before and ${totals.unit} at optimizer step ${step}`, {
          help: 'return the same one of tokens, sequences or pairs from every call of step',
        });
      }
      runUnit = totals.unit;
      if (totals.inputTokens !== undefined) numTokens += totals.inputTokens;
      const record: TrainRecord = {
        kind: 'train',
        step,
        epoch: epochsDone(),
        loss: totals.loss,
        grad_norm: totals.gradNorm,
        learning_rate: totals.learningRate,
        ...(totals.inputTokens !== undefined ? { num_tokens: numTokens } : {}),
        [totals.unit]: totals.count,
        [`${totals.unit}_per_second`]: seconds > 0 ? totals.count / seconds : 0,
        elapsed: elapsed(),
        ...totals.metrics,
      };
      history.push(record);
      await emit(record);
      await o.callbacks.onStep?.(record);
      if (o.evaluate && o.evalEvery !== undefined && step % o.evalEvery === 0) {
        const results = await o.evaluate(step);
        const evalRecord: TrainRecord = { kind: 'eval', step, epoch: epochsDone(), elapsed: elapsed(), ...evalKeys(results) };
        evals.push(evalRecord);
        await emit(evalRecord);
        await o.callbacks.onEval?.(evalRecord);
      }
      if (o.checkpointDir !== undefined && o.checkpointEvery !== undefined && step % o.checkpointEvery === 0) await checkpoint();
    }
    if (o.checkpointDir !== undefined && step > 0 && savedStep !== step) await checkpoint();
  } finally {
    progress.end();
    await reader.close();
  }
  if (o.resumeFrom !== undefined && history.length === 0 && stoppedBy === 'data') {
    // Resumed past the end of the data: the run would report no step and a NaN loss.
    throw new PosttrainError(
      'INVALID_OPTION',
      `train: expected data left after the checkpoint to resume from (${o.resumeFrom}, step ${step}); got none: its ${o.epochs} epoch(s) were already consumed`,
      {
        help: `the run ended before its checkpoint: pass more epochs, or maxSteps > ${step}, to train further`,
      },
    );
  }
  const result: TrainResult = { steps: step, loss: history.at(-1)?.loss ?? Number.NaN, history, evals, stoppedBy, elapsed: elapsed() };
  if (append) await append(`${JSON.stringify({ kind: 'end', step, elapsed: result.elapsed, loss: result.loss, stoppedBy })}\n`);
  await o.callbacks.onEnd?.(result);
  return result;
}

/** One optimizer step over up to `accumulation` micro-batches; undefined when the data is exhausted. */
async function runStep<B>(o: ReturnType<typeof resolveTrainOptions<B>>, reader: BatchReader<B>, step: number, accumulation: number): Promise<StepTotals | undefined> {
  const sums = new Map<string, tf.Tensor>();
  let lossSum = 0;
  let count = 0;
  let unit: LossUnit | undefined;
  let inputTokens: number | undefined;
  const metricSums: Record<string, number> = {};
  let micro = 0;
  try {
    for (; micro < accumulation; micro++) {
      const next = await reader.next();
      if (!next) break;
      const context: StepContext = { step, microBatch: micro, epoch: reader.epoch, rng: new Rng(contextSeed(o.seed, step, micro)) };
      let out: StepOutput | undefined;
      const kept: tf.Tensor[] = [];
      const keep = <T>(v: T): T => {
        if (v instanceof tf.Tensor) kept.push(tf.keep(v));
        return v;
      };
      let value: tf.Scalar;
      try {
        const vg = valueAndGrads(() => {
          // Dropout masks from their own stream per (seed, step, micro-batch): a resumed run draws the same ones.
          out = withDropoutRng(new Rng(contextSeed(o.seed ^ 0x2545f491, step, micro)), () => o.step(next.value, context));
          if (!out || typeof out !== 'object') return out as unknown as tf.Scalar; // valueAndGrads names the bad value
          for (const u of LOSS_UNITS) keep(out[u]);
          keep(out.inputTokens);
          for (const m of Object.values(out.metrics ?? {})) keep(m);
          return out.lossSum;
        }, o.parameters);
        value = vg.value;
        for (const [path, g] of vg.grads) {
          const previous = sums.get(path);
          if (previous) {
            sums.set(path, tf.add(previous, g));
            previous.dispose();
            g.dispose();
          } else sums.set(path, g);
        }
      } catch (error) {
        tf.dispose(kept);
        throw error;
      }
      const output = out as StepOutput;
      let microUnit: LossUnit;
      try {
        microUnit = unitOf(output, step, micro);
        if (unit !== undefined && microUnit !== unit) {
          throw new PosttrainError(
            'INVALID_ARGUMENT',
            `train: expected every micro-batch of a step to count the same loss unit; got ${unit} and then ${microUnit} at optimizer step ${step + 1}, micro-batch ${micro}`,
            {
              help: 'return the same one of tokens, sequences or pairs from every call of step',
            },
          );
        }
      } catch (error) {
        tf.dispose([value, ...kept]);
        throw error;
      }
      unit = microUnit;
      const metricNames = Object.keys(output.metrics ?? {});
      let read: number[];
      try {
        const values = [value, output[microUnit] as number | tf.Scalar, output.inputTokens ?? Number.NaN, ...metricNames.map((k) => output.metrics![k])];
        read = await Promise.all(values.map(async (v) => (v instanceof tf.Tensor ? (await v.data())[0] : Number(v))));
      } finally {
        value.dispose();
        tf.dispose(kept);
      }
      const [loss, microCount, microInputTokens] = read;
      if (!Number.isFinite(loss)) {
        throw nonFinite(
          `train: the loss of optimizer step ${step + 1} is ${loss} at micro-batch ${micro} of ${accumulation} (0-based; epoch ${reader.epoch}, batch ${reader.batchInEpoch - 1})`,
          step + 1,
          micro,
        );
      }
      if (!Number.isFinite(microCount) || microCount < 0) {
        throw new PosttrainError(
          'INVALID_ARGUMENT',
          `train: expected step to return ${microUnit} ≥ 0 (the loss ${microUnit} of the micro-batch); got ${microCount} at optimizer step ${step + 1}, micro-batch ${micro}`,
        );
      }
      if (output.inputTokens !== undefined) {
        if (!Number.isFinite(microInputTokens) || microInputTokens < 0) {
          throw new PosttrainError(
            'INVALID_ARGUMENT',
            `train: expected step to return inputTokens ≥ 0 (the non-padding input tokens of the micro-batch) or none; got ${microInputTokens} at optimizer step ${step + 1}, micro-batch ${micro}`,
          );
        }
        inputTokens = (inputTokens ?? 0) + microInputTokens;
      }
      lossSum += loss;
      count += microCount;
      metricNames.forEach((k, i) => (metricSums[k] = (metricSums[k] ?? 0) + read[i + 3] * microCount));
    }
    if (micro === 0 || unit === undefined) return undefined;
    if (!(count > 0)) {
      throw new PosttrainError('INVALID_ARGUMENT', `train: expected the micro-batches of optimizer step ${step + 1} to hold loss ${unit}; got ${count}`, {
        help: `return ${unit}: the number of ${unit} whose losses are summed into lossSum`,
      });
    }
    for (const [path, g] of sums) {
      sums.set(
        path,
        tf.tidy(() => tf.div(g, count)),
      );
      g.dispose();
    }
    const gradNorm = await clipGradNormAsync(sums, o.maxGradNorm ?? Number.MAX_VALUE);
    if (!Number.isFinite(gradNorm)) {
      throw nonFinite(`train: the gradient norm of optimizer step ${step + 1} is ${gradNorm} (the loss ${lossSum / count} was finite)`, step + 1, micro - 1);
    }
    if (o.schedule) o.optimizer.lr = o.schedule(step);
    o.optimizer.step(sums);
    const metrics = Object.fromEntries(Object.entries(metricSums).map(([k, v]) => [k, v / count]));
    return { loss: lossSum / count, count, unit, inputTokens, gradNorm, learningRate: o.optimizer.lr, metrics };
  } finally {
    tf.dispose([...sums.values()]);
  }
}

/** The unit a step output counts: the one of `tokens`, `sequences`, `pairs` it holds. */
function unitOf(out: StepOutput, step: number, micro: number): LossUnit {
  const given = LOSS_UNITS.filter((u) => (out as Partial<Record<LossUnit, unknown>>)[u] !== undefined);
  if (given.length !== 1) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `train: expected step to return exactly one of tokens, sequences or pairs (how many units its lossSum sums over); got ${given.length === 0 ? 'none' : given.join(' and ')} at optimizer step ${step + 1}, micro-batch ${micro}`,
      {
        help: 'for example { lossSum, tokens: labelTokens } for a language-modelling loss, { lossSum, pairs: B } for a pairwise one',
      },
    );
  }
  return given[0];
}

/** Evaluation results under TRL's keys: `eval_` + each name (a name that already has the prefix keeps it). */
function evalKeys(results: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(results).map(([k, v]) => [k.startsWith('eval_') ? k : `eval_${k}`, v]));
}

function nonFinite(message: string, step: number, microBatch: number): PosttrainError {
  const error = new PosttrainError('NON_FINITE', message, {
    help: 'lower the learning rate, check the batch for empty masks or extreme values, or enable clipping (maxGradNorm)',
  });
  return Object.assign(error, { step, microBatch });
}

async function openLog(file: string): Promise<(line: string) => Promise<void>> {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  await fs.mkdir(path.dirname(file), { recursive: true });
  return (line) => fs.appendFile(file, line);
}
