// The demo's base model: a tiny Llama, pretrained here on string sorting, shipped in ../tiny-base.
import { fileURLToPath } from 'node:url';
import { ByteTokenizer, generateSplit, sortingTask, type StringTaskOptions } from '@posttrain/data';
import { createModel, type ModelConfigInput, type PretrainedModel } from '@posttrain/models';
import { sftTrain } from '@posttrain/sft';
import { exactMatch } from '@posttrain/eval';

/** Where the shipped base lives: config.json + model.safetensors (about 0.4 MB). */
export const TINY_BASE_DIR = fileURLToPath(new URL('../tiny-base/', import.meta.url));

/** The strings of both the base's skill (sorting) and the demo's new one (reversal): 3 or 4 of 8 letters (4,608 prompts). */
export const STRING_OPTIONS: StringTaskOptions = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };

/** A Llama with grouped-query attention and tied embeddings, sized for the byte tokenizer (~90k parameters). */
export function tinyBaseConfig(tokenizer = new ByteTokenizer()): ModelConfigInput {
  return {
    modelType: 'llama',
    vocabSize: tokenizer.vocabSize,
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    maxPositions: 64,
    tieWordEmbeddings: true,
    eosTokenId: tokenizer.eosTokenId,
    padTokenId: tokenizer.padTokenId,
  };
}

/** What {@link makeTinyBase} returns. */
export interface TinyBase {
  model: PretrainedModel;
  /** Held-out sorting exact match of the finished base, in [0, 1]. */
  sortingAccuracy: number;
  /** The last step's training loss. */
  loss: number;
  seconds: number;
}

/**
 * Pretrains the tiny base from a fixed seed: full training on sorting text (`'dbca|abcd'`, the
 * data package's language-modeling form), 20,000 strings drawn from the task's distribution,
 * AdamW at 3e-3 with a cosine schedule. It never sees reversal, and never sees `'>'`.
 *
 * @example
 * ```ts
 * const { model, sortingAccuracy } = await makeTinyBase({ steps: 1000 });
 * ```
 */
export async function makeTinyBase(options: { steps?: number; seed?: number; log?: (line: string) => void } = {}): Promise<TinyBase> {
  const { steps = 1000, seed = 0, log = () => {} } = options;
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const model = createModel(tinyBaseConfig(tokenizer), { seed });
  const { train, test } = generateSplit(sortingTask, seed, { train: 20_000, test: 200, taskOptions: STRING_OPTIONS, uniqueTrain: false });
  const result = await sftTrain({
    model,
    tokenizer,
    train: train.map((e) => ({ text: sortingTask.toLanguageModelText(e) })),
    lr: 3e-3,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: 32,
    maxSteps: steps,
    seed,
    progress: 'auto',
  });
  const { accuracy } = await exactMatch(model, tokenizer, sortingTask, test, { maxNewTokens: 8 });
  log(`sorting exact match ${(accuracy * 100).toFixed(1)}% on ${test.length} held-out strings`);
  return { model, sortingAccuracy: accuracy, loss: result.loss, seconds: (performance.now() - t0) / 1000 };
}
