// Test support (not exported from src/index.ts): a tiny random Llama, the byte tokenizer, reversal
// preference pairs and error helpers.
import { ByteTokenizer, reversalTask } from '@posttrain/data';
import { createModel, type PretrainedModel } from '@posttrain/models';
import type { DpoRecord } from '../dpo-train.js';
import type { KtoRecord } from '../kto-train.js';

export const tokenizer = new ByteTokenizer();

/** A 1-layer Llama of ~18k parameters for the byte tokenizer; the same seed gives the same weights. */
export const tinyModel = (seed = 1): PretrainedModel =>
  createModel(
    { modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true },
    { seed },
  );

/** Reversal preference pairs of 3–4 letters: rejected is the string unreversed or two letters swapped. */
export const reversalPairs = (seed: number, count: number): DpoRecord[] =>
  reversalTask.generate(seed, count, { minLength: 3, maxLength: 4 }).map((e, i) => reversalTask.preferencePair(e, seed * 1000 + i));

/** The same pairs as unpaired records: the chosen answer desirable, the rejected one not. */
export const reversalUnpaired = (seed: number, count: number): KtoRecord[] =>
  reversalPairs(seed, count).flatMap((p) => [
    { prompt: p.prompt as string, completion: p.chosen as string, label: true },
    { prompt: p.prompt as string, completion: p.rejected as string, label: false },
  ]);

export async function rejected(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

export function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}
