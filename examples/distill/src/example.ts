// The example: a 1-layer student of hidden size 32, trained on 64 sorting records at one step budget
// by SFT on the records' answers, by KD from the teacher (offline), or by on-policy GKD, and measured
// on the 200 held-out prompts (greedy exact match, and the cross-entropy of the right answers).
import { tf } from '@posttrain/tensor-core';
import { ByteTokenizer, sortingTask } from '@posttrain/data';
import { distillTrain, type DistillTrainOptions } from '@posttrain/distill';
import { createModel, type ModelConfigInput } from '@posttrain/models';
import { sftTrain, type SftTrainOptions } from '@posttrain/sft';
import type { TrainRecord, TrainResult } from '@posttrain/trainer';
import { measureSorting, type SortingMeasure } from './measure.js';
import { loadTeacher, sortingSplit } from './teacher.js';

/** The methods of the example, in the order the summary line names them. */
export const DISTILL_METHODS = Object.freeze(['sft', 'kd', 'gkd'] as const);

/** One of {@link DISTILL_METHODS}. */
export type DistillMethod = (typeof DISTILL_METHODS)[number];

const NAMES: Record<DistillMethod, string> = { sft: 'SFT', kd: 'KD', gkd: 'GKD' };

/**
 * The student: a Llama of 1 layer and hidden size 32 (2 heads of 16, SwiGLU 64, tied embeddings)
 * for the byte tokenizer, 18,656 parameters to the teacher's 90,688 (2 layers, hidden 64); created
 * from the run's seed.
 *
 * @example
 * ```ts
 * const student = createModel(STUDENT_CONFIG, { seed: 0 });
 * ```
 */
export const STUDENT_CONFIG: Readonly<ModelConfigInput> = Object.freeze({
  modelType: 'llama',
  vocabSize: 260,
  hiddenSize: 32,
  intermediateSize: 64,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 2,
  maxPositions: 64,
  tieWordEmbeddings: true,
  eosTokenId: 258,
  padTokenId: 259,
});

/**
 * The settings of the three runs: the same 64 records, batches, optimizer and step budget (1,000
 * steps of 32, ~500 epochs); only the targets differ, each scored on the completion's tokens.
 * SFT's target is the record's answer; KD's the teacher's next-token distribution on the record
 * (Hinton's loss at temperature 8 with α 0.5, offline: `lmbda` 0); GKD's the teacher's distribution on
 * completions the student samples itself from the records' prompts (temperature 1.2) in three
 * batches of four (`lmbda` 0.75), on the records in the fourth.
 *
 * Why KD runs hot: on a record's own tokens this teacher is all but certain (≥ 0.96 on the right
 * letter), so at temperature 1 its targets are the labels and KD's gradient is SFT's (47% vs 49%,
 * seed 0). At T 8 the rest of its distribution shows — how it ranks the letters it did not pick —
 * which the 64 answers alone never spell out. Hinton's
 * mix (α 0.5, the soft term scaled by T²) keeps the labels' cross-entropy beside it. The gain is
 * small and not on every seed (+7 and +12 points on seeds 0 and 2, −3 on seed 1).
 *
 * Why GKD gains more: 64 records are too few to learn the comparisons sorting needs (~45% held-out).
 * The student's samples put the records' prompts in new states — a letter skipped, repeated or out
 * of order — and the teacher's next token there is still a comparison with the prompt's letters
 * (after `gcff|d` it gives `f`, the smallest letter above `d`), so each on-policy batch is new
 * labelled data drawn from the same 64 prompts. Sampling
 * hotter than TRL's 0.9 keeps those states varied once the student fits its records; a quarter of
 * record batches keeps the start, when the student's samples are noise, anchored (λ 1 collapsed on
 * one seed of three).
 *
 * @example
 * ```ts
 * DISTILL_SETTINGS.common.maxSteps; // the step budget of every method
 * ```
 */
export const DISTILL_SETTINGS = Object.freeze({
  /** Training records, from `sortingSplit(64).train`. */
  trainExamples: 64,
  common: Object.freeze({
    batchSize: 32,
    lr: 2e-3,
    schedule: 'cosine',
    warmupSteps: 20,
    maxSteps: 1000,
  } satisfies Partial<SftTrainOptions>),
  kd: Object.freeze({ loss: 'hinton', temperature: 8, alpha: 0.5, lmbda: 0 } satisfies Partial<DistillTrainOptions>),
  gkd: Object.freeze({ loss: 'forward-kl', temperature: 1, lmbda: 0.75, maxNewTokens: 8, generationTemperature: 1.2 } satisfies Partial<DistillTrainOptions>),
});

/** Options of {@link runDistillExample}; every field but `method` has a default. */
export interface DistillExampleOptions {
  method: DistillMethod;
  /** Seed of the student's initialisation, the shuffling and the sampling (default 0). The records and held-out prompts are always those of `sortingSplit`. */
  seed?: number;
  /** Optimizer steps; default {@link DISTILL_SETTINGS}' 1,000. */
  steps?: number;
  /** Where progress lines go (default console.log). */
  log?: (line: string) => void;
  /** A progress line every this many steps (default 250). */
  logEvery?: number;
}

/** What {@link runDistillExample} measured. */
export interface DistillExampleResult {
  method: DistillMethod;
  seed: number;
  /** The student on the held-out prompts after training. */
  heldOut: SortingMeasure;
  /** The trainer's result (history with TRL's metric keys). */
  train: TrainResult;
  steps: number;
  /** Seconds of training alone. */
  trainSeconds: number;
  /** Seconds in all: loading the teacher, training, measuring. */
  seconds: number;
  /** Tensors left by training (the student's and teacher's weights aside): 0 when nothing leaks. */
  leakedTensors: number;
}

/**
 * Creates the student from `seed`, trains it by `method` with {@link DISTILL_SETTINGS} on the
 * records of `sortingSplit(64)` (KD and GKD from the teacher of teacher/), and measures it on the
 * held-out prompts. Progress lines go to `log`.
 *
 * @example
 * ```ts
 * const { heldOut, trainSeconds } = await runDistillExample({ method: 'kd', seed: 0 });
 * console.log(`${(heldOut.accuracy * 100).toFixed(1)}% in ${trainSeconds.toFixed(1)} s`);
 * ```
 */
export async function runDistillExample(options: DistillExampleOptions): Promise<DistillExampleResult> {
  const { method, seed = 0, log = console.log, logEvery = 250 } = options;
  if (!DISTILL_METHODS.includes(method)) throw new Error(`runDistillExample: expected method to be one of ${DISTILL_METHODS.join(', ')}; got ${String(method)}`);
  const maxSteps = options.steps ?? DISTILL_SETTINGS.common.maxSteps;
  if (!(Number.isInteger(maxSteps) && maxSteps >= 1)) throw new Error(`runDistillExample: expected steps to be an integer ≥ 1; got ${String(options.steps)}`);
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const { train, test } = sortingSplit(DISTILL_SETTINGS.trainExamples);
  const records = train.map((e) => sortingTask.toPromptCompletion(e));
  const teacher = method === 'sft' ? undefined : (await loadTeacher()).model;
  const student = createModel(STUDENT_CONFIG, { seed });
  try {
    const tStart = performance.now();
    const onStep = (r: TrainRecord) => {
      if (r.step % logEvery === 0 || r.step === maxSteps) {
        log(`${NAMES[method]} seed ${seed} step ${r.step}/${maxSteps}: loss ${Number(r.loss).toFixed(4)} (${((performance.now() - tStart) / 1000).toFixed(1)} s)`);
      }
    };
    const common = { tokenizer, train: records, seed, progress: 'none' as const, callbacks: { onStep }, ...DISTILL_SETTINGS.common, maxSteps };
    const tensorsBefore = tf.memory().numTensors;
    const result: TrainResult = teacher ? await distillTrain({ student, teacher, ...common, ...DISTILL_SETTINGS[method as 'kd' | 'gkd'] }) : await sftTrain({ model: student, ...common });
    const leakedTensors = tf.memory().numTensors - tensorsBefore;
    const trainSeconds = (performance.now() - tStart) / 1000;
    const heldOut = await measureSorting(student, tokenizer, test);
    log(
      `${NAMES[method]} seed ${seed}: held-out exact match ${percent(heldOut.accuracy)} (${heldOut.correct}/${heldOut.total}), cross-entropy ${heldOut.crossEntropy.toFixed(4)} nats/token, ${trainSeconds.toFixed(1)} s of training`,
    );
    return { method, seed, heldOut, train: result, steps: result.steps, trainSeconds, seconds: (performance.now() - t0) / 1000, leakedTensors };
  } finally {
    student.dispose();
    teacher?.dispose();
  }
}

const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * The example's last line: `done in X s: student accuracy SFT A% vs KD B% vs GKD C%`.
 *
 * @example
 * ```ts
 * summaryLine({ sft, kd, gkd }, 95.2); // 'done in 95.2 s: student accuracy SFT 74.5% vs KD 81.0% vs GKD 52.0%'
 * ```
 */
export function summaryLine(results: Record<DistillMethod, Pick<DistillExampleResult, 'heldOut'>>, seconds: number): string {
  return `done in ${seconds.toFixed(1)} s: student accuracy ${DISTILL_METHODS.map((m) => `${NAMES[m]} ${percent(results[m].heldOut.accuracy)}`).join(' vs ')}`;
}
