// Keeping the old skill: full fine-tuning of the shipped tiny base (which sorts) on reversal, plain,
// with elastic weight consolidation, and with learning without forgetting.
import { fileURLToPath } from 'node:url';
import { ByteTokenizer, generateSplit, reversalTask, sortingTask, type StringTaskOptions } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { estimateFisher, sftTrain, type LwfOption } from '@posttrain/sft';
import { exactMatch, type ExactMatchResult } from '@posttrain/eval';
import { tf } from '@posttrain/tensor-core';

/** The tiny Llama that examples/sft ships: it sorts strings ('bca|' → 'abc') and has never seen reversal or '>'. */
export const TINY_BASE_DIR = fileURLToPath(new URL('../../sft/tiny-base/', import.meta.url));

/** examples/sft's strings (its `STRING_OPTIONS`): 3 or 4 of the letters a–h. */
export const STRING_OPTIONS: StringTaskOptions = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };

/** How the old skill is kept: not at all, by EWC, or by LwF. */
export type ForgettingMethod = 'plain' | 'ewc' | 'lwf';

/** The settings of the forgetting runs; {@link FORGETTING_SETTINGS} holds the measured ones. */
export interface ForgettingSettings {
  /** Optimizer steps of full fine-tuning on reversal. */
  steps: number;
  /** Peak learning rate of AdamW (cosine decay after `warmupSteps`). */
  lr: number;
  warmupSteps: number;
  batchSize: number;
  /** Reversal training records (drawn without the held-out prompts). */
  trainRecords: number;
  /** Held-out prompts of each task. */
  testRecords: number;
  /** EWC: λ, and the sorting records the Fisher is estimated on (one record per gradient). */
  ewc: { lambda: number; fisherRecords: number };
  /** LwF: λ, T, where the KL is taken and the old completions' length. */
  lwf: Required<Omit<LwfOption, 'teacher'>>;
  /**
   * LwF's old model: a second copy of the base run on every batch (true), or the base's logits on its
   * old completions precomputed before the first step (false: ~20 MB here, no teacher forward pass).
   */
  lwfTeacher: boolean;
  /** Seed of the data split and the shuffling. */
  seed: number;
}

/**
 * The settings behind docs/forgetting.md's figures: 1,000 full fine-tuning steps of 32 reversal
 * examples (9,600 records, ~3.3 epochs) at lr 3e-3 with a cosine schedule, the same for all three
 * runs; EWC λ 1,500 over a Fisher of 256 sorting records, LwF λ 0.3 at T 2 on the base's own
 * completions of the reversal prompts, each λ from the sweeps that page records.
 */
export const FORGETTING_SETTINGS: Readonly<ForgettingSettings> = Object.freeze({
  steps: 1000,
  lr: 3e-3,
  warmupSteps: 10,
  batchSize: 32,
  trainRecords: 9600,
  testRecords: 200,
  ewc: Object.freeze({ lambda: 1500, fisherRecords: 256 }),
  lwf: Object.freeze({ lambda: 0.3, temperature: 2, on: 'old-completions' as const, maxNewTokens: 12 }),
  lwfTeacher: false,
  seed: 0,
});

/** What {@link runForgetting} measured. */
export interface ForgettingResult {
  method: ForgettingMethod;
  /** Held-out greedy exact match on sorting and on reversal, before and after fine-tuning. */
  before: { sorting: ExactMatchResult; reversal: ExactMatchResult };
  after: { sorting: ExactMatchResult; reversal: ExactMatchResult };
  /** Seconds of the Fisher estimate (EWC), of the fine-tuning, and of the whole run. */
  fisherSeconds: number;
  trainSeconds: number;
  seconds: number;
  /** CPU seconds of the whole run in this process: tfjs-wasm in Node runs on one thread, so about the wall time on an idle core. */
  cpuSeconds: number;
  /** The last step's logged loss and, where the method adds one, its term (`ewc_penalty`, `lwf_loss`). */
  lastLoss: number;
  lastTerm: number | undefined;
}

const percent = (r: ExactMatchResult) => `${(r.accuracy * 100).toFixed(1)}%`;

/**
 * Loads the tiny base, measures held-out sorting and reversal exact match, fine-tunes every weight
 * on reversal with `sftTrain` (plain, with `ewc` from a Fisher estimated on sorting records, or with
 * `lwf` against a second, frozen copy of the base), and measures both again. The held-out sorting
 * prompts are the base's own held-out set (`generateSplit(sortingTask, seed)`'s test prompts,
 * which it never trained on), the reversal ones are never trained on either.
 *
 * @example
 * ```ts
 * const { before, after } = await runForgetting('ewc');
 * console.log(before.sorting.accuracy, '→', after.sorting.accuracy);
 * ```
 */
export async function runForgetting(method: ForgettingMethod, options: { settings?: Partial<ForgettingSettings>; log?: (line: string) => void } = {}): Promise<ForgettingResult> {
  const s: ForgettingSettings = { ...FORGETTING_SETTINGS, ...options.settings };
  const log = options.log ?? (() => {});
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const tokenizer = new ByteTokenizer();
  const model = await loadModel(TINY_BASE_DIR);
  const sorting = generateSplit(sortingTask, s.seed, { train: s.ewc.fisherRecords, test: s.testRecords, taskOptions: STRING_OPTIONS, uniqueTrain: false });
  const reversal = generateSplit(reversalTask, s.seed, { train: s.trainRecords, test: s.testRecords, taskOptions: STRING_OPTIONS, uniqueTrain: false });
  const measure = async () => ({
    sorting: await exactMatch(model, tokenizer, sortingTask, sorting.test, { maxNewTokens: 8 }),
    reversal: await exactMatch(model, tokenizer, reversalTask, reversal.test, { maxNewTokens: 8 }),
  });
  const before = await measure();
  log(`${method}: before — sorting ${percent(before.sorting)}, reversal ${percent(before.reversal)}`);

  let fisher: Map<string, tf.Tensor> | undefined;
  let teacher: Awaited<ReturnType<typeof loadModel>> | undefined;
  let fisherSeconds = 0;
  try {
    if (method === 'ewc') {
      const t = performance.now();
      fisher = await estimateFisher({ model, tokenizer, records: sorting.train.map((e) => sortingTask.toPromptCompletion(e)), batchSize: 1 });
      fisherSeconds = (performance.now() - t) / 1000;
    }
    if (method === 'lwf' && s.lwfTeacher) teacher = await loadModel(TINY_BASE_DIR);
    const result = await sftTrain({
      model,
      tokenizer,
      train: reversal.train.map((e) => reversalTask.toPromptCompletion(e)),
      lr: s.lr,
      schedule: 'cosine',
      warmupSteps: s.warmupSteps,
      batchSize: s.batchSize,
      maxSteps: s.steps,
      seed: s.seed,
      progress: 'none',
      ...(fisher ? { ewc: { lambda: s.ewc.lambda, fisher } } : {}),
      ...(method === 'lwf' ? { lwf: { ...s.lwf, ...(teacher ? { teacher } : {}) } } : {}),
    });
    const after = await measure();
    const last = result.history.at(-1);
    const term = method === 'ewc' ? last?.ewc_penalty : method === 'lwf' ? last?.lwf_loss : undefined;
    log(
      `${method}: after ${result.steps} steps (${result.elapsed.toFixed(1)} s) — sorting ${percent(after.sorting)}, reversal ${percent(after.reversal)}; last loss ${last?.loss?.toFixed(4)}${term === undefined ? '' : `, ${method === 'ewc' ? 'ewc_penalty' : 'lwf_loss'} ${Number(term).toFixed(4)}`}`,
    );
    return {
      method,
      before,
      after,
      fisherSeconds,
      trainSeconds: result.elapsed,
      seconds: (performance.now() - t0) / 1000,
      cpuSeconds: (() => {
        const { user, system } = process.cpuUsage(cpu0);
        return (user + system) / 1e6;
      })(),
      lastLoss: last?.loss ?? Number.NaN,
      lastTerm: term === undefined ? undefined : Number(term),
    };
  } finally {
    if (fisher) tf.dispose([...fisher.values()]);
    teacher?.dispose();
    model.dispose();
  }
}
