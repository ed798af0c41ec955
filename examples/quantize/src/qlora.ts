// QLoRA beside LoRA on the SFT demo's task: the tiny base of examples/sft (a Llama that sorts strings)
// taught string reversal by LoRA SFT, once over its float weights and once over the same weights
// quantised to NF4 (QLoRA, Dettmers et al. 2023: the base stays packed, only the adapters train), with
// the same data, steps and seed. Each is measured by held-out exact match (sft's `exactMatch`), the
// median time of a training step and the peak bytes of a profiled 2-step run (tf.profile's peakBytes,
// as bench/preference.ts measures it).
import { PosttrainError, checkNumber, describeValue, resolveOptions, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, generateSplit, reversalTask } from '@posttrain/data';
import { loadModel, type PretrainedModel } from '@posttrain/models';
import { quantizeModel } from '@posttrain/quantize';
import { sftTrain, type SftTrainOptions } from '@posttrain/sft';
import { exactMatch } from '@posttrain/eval';
import { STRING_OPTIONS, TINY_BASE_DIR } from '../../sft/src/tiny-base.js';

/** The two runs: LoRA over the float base, and QLoRA (LoRA over the NF4 base). */
export const QLORA_MODES = Object.freeze(['lora', 'qlora'] as const);

/** One of {@link QLORA_MODES}. */
export type QloraMode = (typeof QLORA_MODES)[number];

/** Options of {@link runQloraComparison}. */
export interface QloraComparisonOptions {
  /** Optimizer steps of each run (the SFT demo's 600). */
  steps: number;
  /** LoRA rank; α is 2r (the demo's 16). */
  r: number;
  /** Peak learning rate of AdamW, cosine after 20 warm-up steps (the demo's 5e-3). */
  lr: number;
  /** Seed of the data split, LoRA's initialisation and the shuffling. */
  seed: number;
  /** Held-out reversal prompts (never trained on). */
  heldOut: number;
  /** Where the result lines go. */
  log: (line: string) => void;
}

/**
 * Defaults of {@link QloraComparisonOptions}: the SFT demo's settings (600 steps of 32 examples,
 * r 16, α 32, every linear layer, lr 5e-3), 200 held-out prompts, seed 0.
 *
 * @example
 * ```ts
 * await runQloraComparison({ ...defaultQloraComparisonOptions, steps: 200 });
 * ```
 */
export const defaultQloraComparisonOptions: Readonly<QloraComparisonOptions> = Object.freeze({ steps: 600, r: 16, lr: 5e-3, seed: 0, heldOut: 200, log: console.log });

/** What one run measured. */
export interface QloraRunFigures {
  mode: QloraMode;
  /** Held-out exact match after training, in [0, 1]. */
  exactMatch: number;
  correct: number;
  total: number;
  /** Median milliseconds of a training step (batch 32). */
  stepMs: number;
  /** Peak tf.memory().numBytes during a profiled 2-step run (weights included). */
  peakBytes: number;
  /** tf.memory().numBytes before that run: the base model's weights (packed, for QLoRA). */
  bytesBefore: number;
  /** Bytes of the base's linear layers: float32, or their packed NF4 form (`QuantizeSummary.quantizedBytes`). */
  baseLinearBytes: number;
  /** Adapter parameters trained. */
  trainableParameters: number;
  /** The last step's training loss. */
  loss: number;
  /** Seconds of training. */
  trainSeconds: number;
}

/** What {@link runQloraComparison} measured. */
export interface QloraComparisonResult {
  lora: QloraRunFigures;
  qlora: QloraRunFigures;
  /** qlora.exactMatch / lora.exactMatch. */
  ratio: number;
  seconds: number;
}

/** The tiny base, quantised to NF4 for QLoRA; returns its linear layers' bytes. */
async function base(mode: QloraMode): Promise<{ model: PretrainedModel; linearBytes: number }> {
  const model = await loadModel(TINY_BASE_DIR);
  if (mode === 'lora') {
    let linearBytes = 0;
    for (const [path, p] of model.namedParameters()) if (/_proj\.weight$/.test(path)) linearBytes += 4 * p.size;
    return { model, linearBytes };
  }
  const summary = await quantizeModel(model, { scheme: 'nf4' });
  return { model, linearBytes: summary.quantizedBytes };
}

/**
 * Trains LoRA adapters on the SFT demo's reversal task over the float tiny base and over its NF4
 * quantisation, with the same records, steps and seed, and measures each (held-out exact match, step
 * time, peak bytes of a profiled 2-step run). Logs one line per run and one comparing them.
 *
 * @example
 * ```ts
 * const { lora, qlora, ratio } = await runQloraComparison({ steps: 600 });
 * console.log(`${qlora.exactMatch} vs ${lora.exactMatch} (${(100 * ratio).toFixed(0)}%)`);
 * ```
 */
export async function runQloraComparison(options: Partial<QloraComparisonOptions> = {}): Promise<QloraComparisonResult> {
  const owner = 'runQloraComparison';
  const o = resolveOptions(owner, options, defaultQloraComparisonOptions as QloraComparisonOptions);
  checkNumber(owner, 'steps', o.steps, 'an integer ≥ 2', (v) => Number.isInteger(v) && v >= 2);
  checkNumber(owner, 'r', o.r, 'a positive integer', (v) => Number.isInteger(v) && v >= 1);
  checkNumber(owner, 'lr', o.lr, 'a positive number', (v) => v > 0);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  checkNumber(owner, 'heldOut', o.heldOut, 'an integer in [1, 1000]', (v) => Number.isInteger(v) && v >= 1 && v <= 1000);
  if (typeof o.log !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected log to be a function; got ${describeValue(o.log)}`);
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const { train, test } = generateSplit(reversalTask, o.seed, { train: 20_000, test: o.heldOut, taskOptions: STRING_OPTIONS, uniqueTrain: false });
  const records = train.map((e) => reversalTask.toPromptCompletion(e));
  const settings = (model: PretrainedModel, maxSteps: number): SftTrainOptions => ({
    model,
    tokenizer,
    train: records,
    lora: { r: o.r, alpha: 2 * o.r, targetModules: 'all-linear' },
    lr: o.lr,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: 32,
    maxSteps,
    seed: o.seed,
    progress: 'none',
  });
  const figures = {} as Record<QloraMode, QloraRunFigures>;
  for (const mode of QLORA_MODES) {
    // Peak memory: a fresh model, 2 steps under tf.profile (bench/preference.ts' method).
    const probe = await base(mode);
    const bytesBefore = tf.memory().numBytes;
    const profile = await tf.profile(async () => {
      await sftTrain(settings(probe.model, 2));
    });
    probe.model.dispose();

    const { model, linearBytes } = await base(mode);
    try {
      const result = await sftTrain(settings(model, o.steps));
      const stepSeconds = result.history.slice(2).map((r) => Number(r.tokens ?? 0) / Math.max(Number(r.tokens_per_second ?? 1), 1e-9));
      const sorted = [...stepSeconds].sort((a, b) => a - b);
      const measured = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
      figures[mode] = {
        mode,
        exactMatch: measured.accuracy,
        correct: measured.correct,
        total: measured.total,
        stepMs: 1000 * (sorted[sorted.length >> 1] ?? Number.NaN),
        peakBytes: profile.peakBytes,
        bytesBefore,
        baseLinearBytes: linearBytes,
        trainableParameters: result.lora?.trainableParameters ?? 0,
        loss: result.loss,
        trainSeconds: result.elapsed,
      };
      const f = figures[mode];
      o.log(
        `${mode === 'lora' ? 'LoRA  (float base)' : 'QLoRA (NF4 base)  '}: held-out exact match ${(100 * f.exactMatch).toFixed(1)}% (${f.correct}/${f.total}), ${o.steps} steps in ${f.trainSeconds.toFixed(1)} s (${f.stepMs.toFixed(1)} ms/step), peak ${(f.peakBytes / 2 ** 20).toFixed(2)} MiB, base linear layers ${(f.baseLinearBytes / 1024).toFixed(1)} KiB`,
      );
    } finally {
      model.dispose();
    }
  }
  const ratio = figures.lora.exactMatch > 0 ? figures.qlora.exactMatch / figures.lora.exactMatch : Number.NaN;
  o.log(`QLoRA/LoRA: exact match ${(100 * ratio).toFixed(1)}%, peak memory ${((100 * figures.qlora.peakBytes) / figures.lora.peakBytes).toFixed(1)}%`);
  return { lora: figures.lora, qlora: figures.qlora, ratio, seconds: (performance.now() - t0) / 1000 };
}
