// The checks every architecture's forward runs on its inputs before they reach tfjs: positions
// within the model's context, and token ids within its vocabulary (a raw GatherV2 error otherwise).
import { PosttrainError, tf, type ForwardOptions } from '@posttrain/tensor-core';

/**
 * What {@link checkForwardInputs} checks against: the architecture's name and its config's
 * vocabulary and context sizes, with the config.json key users know the context size by.
 *
 * @example
 * ```ts
 * const limits: InputLimits = { architecture: 'GPT-2', vocabSize: 50257, maxPositions: 1024, positionsKey: 'n_positions' };
 * ```
 */
export interface InputLimits {
  architecture: string;
  vocabSize: number;
  maxPositions: number;
  /** The config.json key of `maxPositions` (`n_positions`, `max_position_embeddings`). */
  positionsKey: string;
}

/** Backends whose tensors live in host memory: reading their ids costs no device round trip. */
const HOST_BACKENDS = new Set(['cpu', 'wasm']);

/**
 * The smallest and largest id of `inputIds` (an int tensor on a host backend, read synchronously),
 * with the `[row, column]` of the first out of `[0, vocabSize)`.
 */
function idRange(inputIds: tf.Tensor, vocabSize: number): { min: number; max: number; at?: [number, number] } {
  const columns = inputIds.shape[inputIds.rank - 1] ?? 1;
  const ids = inputIds.dataSync();
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let first = -1;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < min) min = id;
    if (id > max) max = id;
    if (first < 0 && (id < 0 || id >= vocabSize)) first = i;
  }
  return first < 0 ? { min, max } : { min, max, at: [Math.floor(first / columns), first % columns] };
}

/**
 * Throws `INVALID_ARGUMENT` unless every id of `inputIds` is in `[0, vocabSize)`, naming the bad
 * id, where it is and the model's vocabulary size (tfjs would otherwise fail inside its gather
 * kernel, `GatherV2: the index value 504 is not in [0, 259]`). It reads the ids synchronously, so
 * it is for the host backends (cpu, wasm), where the ids are scanned where they lie.
 *
 * @example
 * ```ts
 * checkTokenIds(ids, { architecture: 'Llama', vocabSize: 260, maxPositions: 512, positionsKey: 'max_position_embeddings' });
 * ```
 */
export function checkTokenIds(inputIds: tf.Tensor, limits: InputLimits): void {
  if (inputIds.size === 0) return;
  const { vocabSize, architecture } = limits;
  const { min, max, at } = idRange(inputIds, vocabSize);
  if (min >= 0 && max < vocabSize) return;
  const bad = max >= vocabSize ? max : min;
  const where = at ? ` at [${at[0]}, ${at[1]}]` : '';
  throw new PosttrainError(
    'INVALID_ARGUMENT',
    `forward: expected token ids in [0, ${vocabSize}), the vocabulary of this ${architecture} model (vocab_size ${vocabSize}); got ${bad < 0 ? 'the negative id' : 'id'} ${bad}${where} (ids range over [${min}, ${max}])`,
    {
      help:
        bad < 0
          ? 'a negative id is usually a label (−100) or padding passed as an input id: pass inputIds, not labels, and pad with a real token id'
          : `the ids come from a tokenizer with a larger vocabulary than the model's ${vocabSize}: use the tokenizer the model was trained with (compare tokenizer.vocabSize with model.config.vocabSize)`,
    },
  );
}

/**
 * The checks of every forward: the sequence (cached positions plus new ones) fits the model's
 * context, and, on the host backends (cpu, wasm), every token id is in its vocabulary. Throws
 * `INVALID_ARGUMENT` naming the lengths or the id.
 *
 * @example
 * ```ts
 * checkForwardInputs(inputIds, options, { architecture: 'GPT-2', vocabSize: 256, maxPositions: 128, positionsKey: 'n_positions' });
 * ```
 */
export function checkForwardInputs(inputIds: tf.Tensor, options: ForwardOptions, limits: InputLimits): void {
  const cached = options.cache?.length ?? 0;
  const added = inputIds.shape[1] as number;
  const end = cached + added;
  if (end > limits.maxPositions) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `forward: this ${limits.architecture} model has positions up to ${limits.positionsKey} = ${limits.maxPositions}; got a sequence of ${end}${cached > 0 ? ` (${cached} cached + ${added} new)` : ''}`,
      { help: 'shorten the input (truncate records with maxLength, or the prompt) or generate fewer tokens' },
    );
  }
  // On a GPU the ids would need a synchronous read-back, which WebGPU in Node does not offer
  // (`dataSync` throws) and which would stall every step elsewhere: there the ids are checked on the
  // host where they are made (collators and tokenize functions with `vocabSize`, and `generate`).
  if (HOST_BACKENDS.has(tf.getBackend())) checkTokenIds(inputIds, limits);
}
