// The example: brief LoRA SFT of the shipped tiny base on string reversal, then a DPO stage.
import { ByteTokenizer, generateSplit, reversalTask } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { sftTrain, type SftTrainResult } from '@posttrain/sft';
import { runDpoStage, type DpoStageOptions, type DpoStageResult } from './stage.js';
import { STRING_OPTIONS, TINY_BASE_DIR } from './tiny-base.js';

/** Options of {@link runExample}; every field has a default. */
export interface ExampleOptions extends Omit<DpoStageOptions, 'model' | 'tokenizer' | 'steps'> {
  /** LoRA SFT steps before DPO (default 150: partly trained, held-out exact match near 25%). */
  sftSteps?: number;
  /** DPO steps (default 150). */
  dpoSteps?: number;
  /** The base model's directory (default: examples/sft's tiny base). */
  base?: string;
}

/** What {@link runExample} measured. */
export interface ExampleResult {
  sft: SftTrainResult;
  dpo: DpoStageResult;
  seconds: number;
}

/**
 * Loads the tiny base, teaches it string reversal with `sftStep` steps of LoRA SFT (the settings of
 * examples/sft: r 16, α 32, lr 5e-3 cosine, 20 warm-up steps, batch 32), then runs
 * {@link runDpoStage}: held-out exact match and preference accuracy before and after DPO.
 *
 * @example
 * ```ts
 * const { dpo } = await runExample({ sftSteps: 150, dpoSteps: 150 });
 * console.log(dpo.before.exactMatch.accuracy, '→', dpo.after.exactMatch.accuracy);
 * ```
 */
export async function runExample(options: ExampleOptions = {}): Promise<ExampleResult> {
  const { sftSteps = 150, dpoSteps = 150, base = TINY_BASE_DIR, seed = 0, taskOptions = STRING_OPTIONS, log = console.log, progress = 'none', ...stage } = options;
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const model = await loadModel(base);
  const { train } = generateSplit(reversalTask, seed, { train: 20_000, test: 200, taskOptions, uniqueTrain: false });
  const sft = await sftTrain({
    model,
    tokenizer,
    train: train.map((e) => reversalTask.toPromptCompletion(e)),
    lora: { r: 16, alpha: 32, targetModules: 'all-linear' },
    lr: 5e-3,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: 32,
    maxSteps: sftSteps,
    seed,
    progress,
  });
  log(`SFT: ${sft.steps} LoRA steps on string reversal, ${sft.elapsed.toFixed(1)} s, last loss ${sft.loss.toFixed(3)}`);
  try {
    const dpo = await runDpoStage({ ...stage, model, tokenizer, steps: dpoSteps, seed, taskOptions, log, progress });
    return { sft, dpo, seconds: (performance.now() - t0) / 1000 };
  } finally {
    model.dispose();
  }
}
