// Tokenized examples → padded int32 batches: right padding for training, left for generation.
import { PosttrainError, checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { IGNORE_INDEX } from './tokenize.js';

/**
 * An unpadded example as the collators and {@link pack} take it: ids and their labels (−100 where
 * the loss skips), of the same length. A `TokenizedExample` is one.
 *
 * @example
 * ```ts
 * const example: LabeledExample = { inputIds: [1, 5, 9, 2], labels: [-100, -100, 9, 2] };
 * ```
 */
export interface LabeledExample {
  inputIds: readonly number[];
  labels: readonly number[];
  /** If present, all 1: examples come unpadded. */
  attentionMask?: readonly number[];
}

/**
 * A right-padded training batch of int32 tensors, `[B, T]` each; the caller disposes them.
 *
 * @example
 * ```ts
 * const { inputIds, attentionMask, labels } = collateForTraining(examples, { padTokenId: 0 });
 * const { logits } = model.forward(inputIds, { attentionMask });
 * ```
 */
export interface TrainingBatch {
  /** `[B, T]` ids, `padTokenId` after each example. */
  inputIds: tf.Tensor2D;
  /** `[B, T]` 1 on real tokens, 0 on padding. */
  attentionMask: tf.Tensor2D;
  /** `[B, T]` the examples' labels, −100 on padding. */
  labels: tf.Tensor2D;
}

/**
 * A left-padded batch of prompts for generation, int32 `[B, T]` each: every prompt ends at the
 * last column, where generation continues. The caller disposes them.
 *
 * @example
 * ```ts
 * const { inputIds, attentionMask } = collateForGeneration([[1, 5, 9], [1, 7]], { padTokenId: 0 });
 * // inputIds [[1, 5, 9], [0, 1, 7]]; attentionMask [[1, 1, 1], [0, 1, 1]]
 * ```
 */
export interface GenerationBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
}

/**
 * Options of {@link collateForTraining} and {@link collateForGeneration}.
 *
 * @example
 * ```ts
 * const options: Partial<CollateOptions> = { padTokenId: 0, padToMultipleOf: 8 };
 * ```
 */
export interface CollateOptions {
  /** Id written on padding (required; usually `tokenizer.padTokenId ?? tokenizer.eosTokenId`). Labels never depend on it. */
  padTokenId: number | null;
  /** Pad the length up to a multiple of this (e.g. 8 for aligned kernels); `null`: the longest example. */
  padToMultipleOf: number | null;
  /**
   * The model's vocabulary size (`model.config.vocabSize`): an id at or above it is an error naming
   * the example, the position and the size, checked on the host before any tensor is made; `null`: not checked.
   */
  vocabSize: number | null;
}

/**
 * Defaults of the collators; `padTokenId` has none and must be given.
 *
 * @example
 * ```ts
 * collateForTraining(examples, { ...defaultCollateOptions, padTokenId: tokenizer.padTokenId });
 * ```
 */
export const defaultCollateOptions: Readonly<CollateOptions> = Object.freeze({ padTokenId: null, padToMultipleOf: null, vocabSize: null });

/**
 * Right-pads examples into a training batch: ids with `padTokenId`, attention mask 0 and labels
 * −100 on padding. Which positions are padding comes from each example's length, never from
 * comparing ids with `padTokenId`, so with pad = EOS the EOS a completion ends with keeps its label.
 *
 * @example
 * ```ts
 * const batch = collateForTraining([tokenizePromptCompletion(tokenizer, record)], { padTokenId: tokenizer.padTokenId, padToMultipleOf: 8 });
 * tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
 * ```
 */
export function collateForTraining(examples: readonly LabeledExample[], options: Partial<CollateOptions> & { padTokenId: number }): TrainingBatch {
  const o = resolveCollate('collateForTraining', options);
  checkExamples('collateForTraining', examples, 'example', o.vocabSize);
  const b = examples.length;
  const t = paddedLength(longest(examples.map((e) => e.inputIds.length)), o.padToMultipleOf);
  const ids = new Int32Array(b * t).fill(o.padTokenId);
  const mask = new Int32Array(b * t);
  const labels = new Int32Array(b * t).fill(IGNORE_INDEX);
  examples.forEach((example, row) => {
    ids.set(example.inputIds, row * t);
    mask.fill(1, row * t, row * t + example.inputIds.length);
    labels.set(example.labels, row * t);
  });
  return { inputIds: tf.tensor2d(ids, [b, t], 'int32'), attentionMask: tf.tensor2d(mask, [b, t], 'int32'), labels: tf.tensor2d(labels, [b, t], 'int32') };
}

/**
 * Left-pads prompts (token id lists) into a generation batch: padding and mask 0 before each
 * prompt, so every row's next token is generated at the same column. Models derive positions
 * from the mask, so a padded prompt sees the positions it would alone.
 *
 * @example
 * ```ts
 * const prompts = records.map((r) => tokenizer.encode(r.prompt, { addSpecialTokens: true }));
 * const { inputIds, attentionMask } = collateForGeneration(prompts, { padTokenId: tokenizer.padTokenId });
 * ```
 */
export function collateForGeneration(prompts: readonly (readonly number[])[], options: Partial<CollateOptions> & { padTokenId: number }): GenerationBatch {
  const o = resolveCollate('collateForGeneration', options);
  checkExamples('collateForGeneration', Array.isArray(prompts) ? prompts.map((inputIds) => ({ inputIds, labels: inputIds ?? [] })) : (prompts as unknown as LabeledExample[]), 'prompt', o.vocabSize);
  const b = prompts.length;
  const t = paddedLength(longest(prompts.map((p) => p.length)), o.padToMultipleOf);
  const ids = new Int32Array(b * t).fill(o.padTokenId);
  const mask = new Int32Array(b * t);
  prompts.forEach((prompt, row) => {
    const start = row * t + t - prompt.length;
    ids.set(prompt, start);
    mask.fill(1, start, (row + 1) * t);
  });
  return { inputIds: tf.tensor2d(ids, [b, t], 'int32'), attentionMask: tf.tensor2d(mask, [b, t], 'int32') };
}

function resolveCollate(owner: string, options: Partial<CollateOptions>): CollateOptions & { padTokenId: number } {
  const o = resolveOptions(owner, options, defaultCollateOptions);
  if (o.padTokenId === null) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected padTokenId, a token id; got none`, { help: 'pass padTokenId: tokenizer.padTokenId ?? tokenizer.eosTokenId' });
  }
  checkNumber(owner, 'padTokenId', o.padTokenId, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  if (o.padToMultipleOf !== null) checkNumber(owner, 'padToMultipleOf', o.padToMultipleOf, 'a positive integer or null', (v) => Number.isInteger(v) && v > 0);
  if (o.vocabSize !== null) {
    checkNumber(owner, 'vocabSize', o.vocabSize, 'a positive integer or null', (v) => Number.isInteger(v) && v > 0);
    if (o.padTokenId >= o.vocabSize)
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected padTokenId below vocabSize ${o.vocabSize}; got ${o.padTokenId}`, {
        help: "pad with an id of the model's vocabulary (its pad or EOS token)",
      });
  }
  return o as CollateOptions & { padTokenId: number };
}

function paddedLength(longest: number, multiple: number | null): number {
  return multiple === null ? longest : Math.ceil(longest / multiple) * multiple;
}

/**
 * Throws unless `examples` is a non-empty list of non-empty, unpadded examples of integer ids
 * (below `vocabSize` when given) with labels of the same length. Shared with {@link pack}.
 */
export function checkExamples(owner: string, examples: readonly LabeledExample[], what = 'example', vocabSize: number | null = null): void {
  if (!Array.isArray(examples) || examples.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a non-empty list of ${what}s; got ${Array.isArray(examples) ? 'an empty list' : typeof examples}`);
  }
  examples.forEach((example, i) => {
    const ids = example?.inputIds;
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every((id) => Number.isInteger(id) && id >= 0)) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `${owner}: ${what} ${i}: expected ${what === 'prompt' ? 'a' : 'inputIds,'} non-empty list of non-negative integer token ids; got ${Array.isArray(ids) ? (ids.length === 0 ? 'an empty list' : `[${ids.slice(0, 8).join(', ')}${ids.length > 8 ? ', …' : ''}]`) : typeof ids}`,
      );
    }
    if (!Array.isArray(example.labels) || example.labels.length !== ids.length || !example.labels.every((l: number) => Number.isInteger(l))) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `${owner}: ${what} ${i}: expected labels, ${ids.length} integers like its inputIds; got ${Array.isArray(example.labels) ? `${example.labels.length}` : typeof example.labels}`,
      );
    }
    const over = vocabSize === null ? -1 : ids.findIndex((id) => id >= vocabSize);
    if (over >= 0) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${what} ${i}: expected token ids below the model's vocabSize ${vocabSize}; got id ${ids[over]} at position ${over}`, {
        help: 'the tokenizer does not belong to the model (compare tokenizer.vocabSize with model.config.vocabSize): tokenize with the tokenizer saved with the model',
      });
    }
    if (example.attentionMask !== undefined && !example.attentionMask.every((m: number) => m === 1)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${what} ${i}: expected an unpadded example (attentionMask all 1); got zeros in its attentionMask`, {
        help: 'collate or pack the unpadded examples the tokenize functions return',
      });
    }
  });
}

/** The largest of `lengths`, by a loop: `Math.max(...lengths)` overflows the stack past ~10⁵ items. */
function longest(lengths: number[]): number {
  let max = 0;
  for (const length of lengths) if (length > max) max = length;
  return max;
}
