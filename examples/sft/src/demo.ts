// The README's main job: teach the shipped tiny base a new skill with LoRA, measure it, save the adapter.
import { ByteTokenizer, generateSplit, reversalTask } from '@posttrain/data';
import { loadAdapter, saveAdapter } from '@posttrain/lora';
import { loadModel } from '@posttrain/models';
import { sftTrain, type SftTrainResult } from '@posttrain/sft';
import { exactMatch, type ExactMatchResult } from '@posttrain/eval';
import { STRING_OPTIONS, TINY_BASE_DIR } from './tiny-base.js';
import { runDpoStage, type DpoStageResult } from '../../dpo/src/stage.js';

/** Options of {@link runDemo}; every field has a default. */
export interface DemoOptions {
  /** Optimizer steps of LoRA SFT (default 600). */
  steps: number;
  /** Peak learning rate of AdamW (default 5e-3; cosine decay after 20 warm-up steps). */
  lr: number;
  /** LoRA rank; α is 2r (default 16). */
  r: number;
  /** The base model's directory (default: the shipped tiny base, {@link TINY_BASE_DIR}). */
  base: string;
  /** DPO steps after SFT (`examples/dpo`'s stage, adapters-disabled reference); 0 skips DPO (default 150). */
  dpoSteps: number;
  /** Where the PEFT adapter is written (default 'out/sft-lora'). */
  out: string;
  /** Seed of the data split, LoRA's initialisation and the shuffling (default 0). */
  seed: number;
  /** Held-out answers to print (default 6). */
  samples: number;
  /** 'auto': a bar on a terminal, lines otherwise. */
  progress: 'auto' | 'bar' | 'lines' | 'none';
  log: (line: string) => void;
}

export const defaultDemoOptions: DemoOptions = { steps: 600, lr: 5e-3, r: 16, dpoSteps: 150, base: TINY_BASE_DIR, out: 'out/sft-lora', seed: 0, samples: 6, progress: 'auto', log: console.log };

/** What {@link runDemo} measured. */
export interface DemoResult {
  before: ExactMatchResult;
  after: ExactMatchResult;
  /** Exact match of a fresh copy of the base with the saved adapter loaded (equals `after`). */
  reloaded: ExactMatchResult;
  train: SftTrainResult;
  /** The DPO stage after SFT; undefined when `dpoSteps` is 0. */
  dpo: DpoStageResult | undefined;
  adapterFiles: string[];
  seconds: number;
}

const percent = (r: ExactMatchResult) => `${(r.accuracy * 100).toFixed(1)}% (${r.correct}/${r.total})`;

/**
 * Loads the tiny base (which can sort strings and has never seen reversal or `'>'`), measures its
 * exact match on 200 held-out reversal prompts, trains LoRA adapters (r 16, α 32, every linear
 * layer) on 20,000 reversal examples drawn without those prompts, measures again, writes the
 * adapter in PEFT's format, loads it onto a fresh copy of the base to check the file, prints
 * a few answers before and after, then runs a DPO stage on reversal preference pairs (examples/dpo:
 * the SFT model merged is the reference, a fresh adapter learns) and prints the held-out preference
 * accuracy and exact match before and after it.
 *
 * @example
 * ```ts
 * const { before, after } = await runDemo({ steps: 600, lr: 5e-3, r: 16, dpoSteps: 150, base: TINY_BASE_DIR, out: 'out/sft-lora' });
 * ```
 */
export async function runDemo(options: Partial<DemoOptions> = {}): Promise<DemoResult> {
  const o: DemoOptions = { ...defaultDemoOptions };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) Object.assign(o, { [key]: value });
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const model = await loadModel(o.base);
  const { train, test } = generateSplit(reversalTask, o.seed, { train: 20_000, test: 200, taskOptions: STRING_OPTIONS, uniqueTrain: false });
  o.log(`task: string reversal ('abc>' → 'cba'), ${train.length} training examples, ${test.length} held-out prompts never trained on`);

  const before = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
  o.log(`before: held-out exact match ${percent(before)}`);

  const result = await sftTrain({
    model,
    tokenizer,
    train: train.map((e) => reversalTask.toPromptCompletion(e)),
    lora: { r: o.r, alpha: 2 * o.r, targetModules: 'all-linear' },
    lr: o.lr,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: 32,
    maxSteps: o.steps,
    seed: o.seed,
    progress: o.progress,
  });
  const report = result.lora!;
  o.log(
    `LoRA: ${report.trainableParameters.toLocaleString('en')} trainable of ${report.totalParameters.toLocaleString('en')} parameters (${report.trainablePercent.toFixed(1)}%), ${result.steps} steps, ${result.elapsed.toFixed(1)} s, ${Math.round(result.tokensPerSec)} label tokens/s, last loss ${result.loss.toFixed(4)}`,
  );

  const after = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
  o.log(`after:  held-out exact match ${percent(after)}`);

  const adapterFiles = await saveAdapter(model, o.out); // base_model_name_or_path null: the base is a local directory
  const fresh = await loadModel(o.base);
  await loadAdapter(fresh, o.out);
  const reloaded = await exactMatch(fresh, tokenizer, reversalTask, test, { maxNewTokens: 8 });
  o.log(`adapter: ${adapterFiles.join(', ')} in ${o.out} (PEFT format); reloaded onto a fresh base: ${percent(reloaded)}`);

  o.log('held-out answers, base → fine-tuned:');
  for (let i = 0; i < Math.min(o.samples, test.length); i++) {
    const b = before.samples[i];
    const a = after.samples[i];
    o.log(`  ${a.prompt.padEnd(6)} ${JSON.stringify(b.completion).padEnd(12)} → ${JSON.stringify(a.completion).padEnd(8)} ${a.correct ? 'right' : 'wrong'}`);
  }
  fresh.dispose();
  let dpo: DpoStageResult | undefined;
  if (o.dpoSteps > 0) {
    o.log('');
    dpo = await runDpoStage({ model, tokenizer, steps: o.dpoSteps, seed: o.seed, taskOptions: STRING_OPTIONS, progress: o.progress, log: o.log });
  }
  model.dispose();
  return { before, after, reloaded, train: result, dpo, adapterFiles, seconds: (performance.now() - t0) / 1000 };
}
