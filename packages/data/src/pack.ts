// Packing: several examples per fixed-length row, kept apart by segment ids and restarted positions.
import { PosttrainError, checkNumber, resolveOptions, tf } from '@posttrain/tensor-core';
import { checkOneOf } from './check-options.js';
import { checkExamples, type LabeledExample } from './collate.js';
import { IGNORE_INDEX } from './tokenize.js';

/**
 * Packed rows, int32 `[R, rowLength]` tensors, for `model.forward(inputIds, { attentionMask,
 * positionIds, segmentIds })`; the caller disposes the tensors.
 *
 * @example
 * ```ts
 * const packed = pack(examples, { rowLength: 512, padTokenId: 0 });
 * const { logits } = model.forward(packed.inputIds, { attentionMask: packed.attentionMask, positionIds: packed.positionIds, segmentIds: packed.segmentIds });
 * ```
 */
export interface PackedBatch {
  /** `[R, L]` the examples one after another, then `padTokenId`. */
  inputIds: tf.Tensor2D;
  /** `[R, L]` labels; −100 on each example's first token (its target would be predicted from the previous example's last token) and on padding. */
  labels: tf.Tensor2D;
  /** `[R, L]` 1 on examples, 0 on padding. */
  attentionMask: tf.Tensor2D;
  /** `[R, L]` positions restarting at 0 with each example (and with the padding). */
  positionIds: tf.Tensor2D;
  /** `[R, L]` 1, 2, 3, … for the examples of a row, 0 for its padding: attention stays inside a segment. */
  segmentIds: tf.Tensor2D;
  /** The indices (into the input) of the examples each row holds, in row order. */
  rows: number[][];
}

/**
 * Options of {@link pack}.
 *
 * @example
 * ```ts
 * const options: Partial<PackOptions> = { rowLength: 2048, padTokenId: 0, strategy: 'in-order' };
 * ```
 */
export interface PackOptions {
  /** Tokens per row (required). */
  rowLength: number | null;
  /** Id written on padding (required). */
  padTokenId: number | null;
  /**
   * `'best-fit'`: longest examples first, each into the fullest row it fits (best-fit decreasing,
   * TRL's `bfd`, accepted as an alias: fewest rows). `'in-order'`: examples in their order, a new row when the next does
   * not fit.
   */
  strategy: 'best-fit' | 'bfd' | 'in-order';
  /** An example longer than `rowLength`: `'error'`, or `'truncate'` (keep its first `rowLength` tokens). Examples are never split across rows. */
  overflow: 'error' | 'truncate';
}

/**
 * Defaults of {@link pack}; `rowLength` and `padTokenId` have none.
 *
 * @example
 * ```ts
 * pack(examples, { ...defaultPackOptions, rowLength: 1024, padTokenId: 0 });
 * ```
 */
export const defaultPackOptions: Readonly<PackOptions> = Object.freeze({ rowLength: null, padTokenId: null, strategy: 'best-fit', overflow: 'error' });

/**
 * Packs unpadded examples into rows of `rowLength` tokens, whole examples only. Each example gets
 * its own segment id and positions from 0, so a model's packed forward computes for every
 * example exactly what it computes for the example alone, and the loss over the packed labels
 * (shifted) is the sum of the examples' own losses.
 *
 * @example
 * ```ts
 * const packed = pack([{ inputIds: [1, 5, 2], labels: [1, 5, 2] }, { inputIds: [1, 7], labels: [1, 7] }], { rowLength: 6, padTokenId: 0 });
 * // inputIds    [[1, 5, 2, 1, 7, 0]]
 * // labels      [[-100, 5, 2, -100, 7, -100]]
 * // positionIds [[0, 1, 2, 0, 1, 0]]
 * // segmentIds  [[1, 1, 1, 2, 2, 0]]
 * ```
 */
export function pack(examples: readonly LabeledExample[], options: Partial<PackOptions> & { rowLength: number; padTokenId: number }): PackedBatch {
  const o = resolveOptions('pack', options, defaultPackOptions);
  const length = checkNumber('pack', 'rowLength', o.rowLength, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  const padTokenId = checkNumber('pack', 'padTokenId', o.padTokenId, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  const strategy = checkOneOf('pack', 'strategy', o.strategy, ['best-fit', 'bfd', 'in-order']);
  checkOneOf('pack', 'overflow', o.overflow, ['error', 'truncate']);
  checkExamples('pack', examples);
  const sizes = examples.map((example, i) => {
    if (example.inputIds.length <= length) return example.inputIds.length;
    if (o.overflow === 'truncate') return length;
    throw new PosttrainError('INVALID_ARGUMENT', `pack: example ${i}: expected at most rowLength ${length} tokens; got ${example.inputIds.length}`, {
      help: "tokenize with maxLength equal to rowLength, or pass overflow: 'truncate' to keep the first rowLength tokens",
    });
  });
  const rows = strategy === 'in-order' ? inOrder(sizes, length) : bestFit(sizes, length);

  const r = rows.length;
  const ids = new Int32Array(r * length).fill(padTokenId);
  const labels = new Int32Array(r * length).fill(IGNORE_INDEX);
  const mask = new Int32Array(r * length);
  const positions = new Int32Array(r * length);
  const segments = new Int32Array(r * length);
  rows.forEach((members, row) => {
    let at = row * length;
    members.forEach((index, k) => {
      const n = sizes[index];
      ids.set(examples[index].inputIds.slice(0, n), at);
      labels.set(examples[index].labels.slice(1, n), at + 1); // the first token's label stays −100
      mask.fill(1, at, at + n);
      segments.fill(k + 1, at, at + n);
      for (let i = 0; i < n; i++) positions[at + i] = i;
      at += n;
    });
    for (let i = 0; at + i < (row + 1) * length; i++) positions[at + i] = i;
  });
  const tensor = (values: Int32Array) => tf.tensor2d(values, [r, length], 'int32');
  return { inputIds: tensor(ids), labels: tensor(labels), attentionMask: tensor(mask), positionIds: tensor(positions), segmentIds: tensor(segments), rows };
}

/** Best-fit decreasing: longest first (ties in input order), each into the row with least room left that fits it. */
function bestFit(sizes: number[], length: number): number[][] {
  const order = sizes.map((_, i) => i).sort((a, b) => sizes[b] - sizes[a] || a - b);
  const rows: number[][] = [];
  const room: number[] = [];
  for (const index of order) {
    let best = -1;
    for (let row = 0; row < rows.length; row++) {
      if (room[row] >= sizes[index] && (best === -1 || room[row] < room[best])) best = row;
    }
    if (best === -1) {
      rows.push([]);
      room.push(length);
      best = rows.length - 1;
    }
    rows[best].push(index);
    room[best] -= sizes[index];
  }
  return rows;
}

/** In order: the next example joins the last row if it fits, else starts a new row. */
function inOrder(sizes: number[], length: number): number[][] {
  const rows: number[][] = [];
  let room = 0;
  sizes.forEach((size, index) => {
    if (size > room) {
      rows.push([]);
      room = length;
    }
    rows[rows.length - 1].push(index);
    room -= size;
  });
  return rows;
}
