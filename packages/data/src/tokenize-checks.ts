// The checks of the tokenize functions: option values, and what a finished example must satisfy for
// a trainer (ids within the model's vocabulary, a length within its context, something to train on).
import { PosttrainError, checkNumber, type ModelConfig } from '@posttrain/tensor-core';
import { checkBoolean, checkOneOf } from './check-options.js';
import { IGNORE_INDEX, type TokenizeOptions, type TokenizedExample, type TokenizerLike } from './tokenize.js';

/** Throws unless every option value is of its type (enums against their lists). */
export function checkTokenizeOptions(owner: string, o: TokenizeOptions): void {
  for (const key of ['completionOnly', 'assistantOnly', 'appendEos', 'addSpecialTokens'] as const) checkBoolean(owner, key, o[key]);
  for (const key of ['maxLength', 'maxPromptLength', 'maxCompletionLength'] as const) {
    const v = o[key];
    if (v !== null) checkNumber(owner, key, v, 'a positive integer or null', (x) => Number.isInteger(x) && x > 0);
  }
  checkOneOf(owner, 'truncation', o.truncation, ['right', 'left', 'error']);
  if (o.chat !== null && typeof o.chat !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected chat to be a function (a chat encoder) or null; got ${typeof o.chat}`);
  if (o.name !== null && typeof o.name !== 'string') throw new PosttrainError('INVALID_OPTION', `${owner}: expected name to be a string or null; got ${typeof o.name}`);
  for (const key of ['vocabSize', 'maxPositions'] as const) {
    const v = o[key];
    if (v !== null) checkNumber(owner, key, v, 'a positive integer or null', (x) => Number.isInteger(x) && x > 0);
  }
  checkBoolean(owner, 'requireLabels', o.requireLabels);
}

/**
 * The checks of a finished example that need the model or the trainer: ids within the model's
 * `vocabSize` (naming the tokenizer's too, when it has one), a length within its `maxPositions`,
 * and with `requireLabels` a label after the first token.
 */
export function checkTokenized(tokenizer: TokenizerLike, example: TokenizedExample, o: TokenizeOptions, owner: string, name: string): TokenizedExample {
  const { inputIds, labels } = example;
  if (o.vocabSize !== null) {
    const at = inputIds.findIndex((id) => id >= (o.vocabSize as number));
    if (at >= 0) {
      const tokenizerSize = (tokenizer as { vocabSize?: unknown }).vocabSize;
      const sizes = typeof tokenizerSize === 'number' ? `the tokenizer's vocabulary has ${tokenizerSize} ids, the model's ${o.vocabSize}` : `the model's vocabulary has ${o.vocabSize} ids`;
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${name}: expected token ids below the model's vocabSize ${o.vocabSize}; got id ${inputIds[at]} at token ${at} (${sizes})`, {
        help: 'the tokenizer does not belong to the model: load the tokenizer saved with the model (its tokenizer.json), or a model whose vocab_size covers this tokenizer',
      });
    }
  }
  if (o.maxPositions !== null && inputIds.length > o.maxPositions) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${name}: expected at most the model's context of ${o.maxPositions} tokens (maxPositions); got ${inputIds.length}`, {
      help: `pass maxLength: ${o.maxPositions} (or less) to cut long records, or drop this one`,
    });
  }
  if (o.requireLabels && !labels.some((label, t) => t > 0 && label !== IGNORE_INDEX)) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${owner}: ${name}: expected a label to train on after the first token (token t is the target of position t − 1); got ${inputIds.length} token${inputIds.length === 1 ? '' : 's'} [${inputIds.slice(0, 8).join(', ')}${inputIds.length > 8 ? ', …' : ''}] with none`,
      {
        help: 'the record is empty, or its completion is masked or cut away: fix or drop it',
      },
    );
  }
  return example;
}

/**
 * The tokenize options a trainer takes from its model: `vocabSize` and `maxPositions`, so that an id
 * the model has no embedding for, or a sequence longer than its context, is named by record before
 * any step (null where the config leaves one out).
 *
 * @example
 * ```ts
 * tokenizePromptCompletion(tokenizer, record, { ...modelLimits(model.config), name: `record ${i}` });
 * ```
 */
export function modelLimits(config: Partial<Pick<ModelConfig, 'vocabSize' | 'maxPositions'>>): Pick<TokenizeOptions, 'vocabSize' | 'maxPositions'> {
  return { vocabSize: config.vocabSize ?? null, maxPositions: config.maxPositions ?? null };
}
