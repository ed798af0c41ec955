import { PosttrainError, tf } from '@posttrain/tensor-core';
import { unpackDigits } from './pack.js';

/**
 * NF4 with double quantisation, as bitsandbytes does it (QLoRA, Dettmers et al. 2023, §3).
 * Sources, at commit 95f9af3 of github.com/bitsandbytes-foundation/bitsandbytes:
 * - `functional.py` `get_4bit_type('nf4')`: the 16-value NormalFloat table ({@link NF4_CODE});
 * - `functional.py` `quantize_4bit`: blocks of 64 (`blocksize`), and with `compress_statistics`
 *   (double quantisation) `offset = absmax.mean()` and `quantize_blockwise(absmax - offset,
 *   blocksize=256)` with the signed dynamic map of `create_dynamic_map()` ({@link DYNAMIC_MAP});
 * - `backends/default/ops.py` (the reference kernels): the flattened tensor is cut into blocks;
 *   a full block is scaled by `x · (1 / max(absmax, 1e-38))`, a trailing partial block by
 *   `x / max(absmax, 1e-38)`; both clamped to [-1, 1]; the code is `torch.bucketize(scaled,
 *   midpoints)` (the number of midpoints strictly below the value); two codes per byte, the first
 *   element in the high nibble; dequantisation is `code[q] · absmax[block]`, and with double
 *   quantisation `absmax = dynamic[qabsmax] · absmax2[block256] + offset` first.
 *
 * All arithmetic is float32 (`Math.fround`), as the reference kernels compute it.
 */

const f = Math.fround;

/**
 * bitsandbytes' NF4 table (`get_4bit_type('nf4')`, QLoRA's NormalFloat4), float32, ascending.
 *
 * @example
 * ```ts
 * NF4_CODE[7]; // 0: zero is exact
 * ```
 */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * bitsandbytes' signed 8-bit dynamic map, `create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8)`, the code of the double-quantised block scales: 256 ascending float32 values.
 * Held as the table torch 1.13 produces (its float32 `linspace` rounds a few entries differently
 * from a naive evaluation, so the table is copied rather than recomputed); a bitsandbytes
 * checkpoint carries the same table as `nested_quant_map`.
 *
 * @example
 * ```ts
 * DYNAMIC_MAP.length; // 256
 * ```
 */
export const DYNAMIC_MAP: Float32Array = Float32Array.from([
  -0.992968738, -0.978906214, -0.96484375, -0.950781226, -0.936718702, -0.922656238, -0.908593774, -0.89453125, -0.880468726, -0.866406202, -0.852343738, -0.838281214, -0.82421875, -0.810156226,
  -0.796093702, -0.782031238, -0.767968774, -0.75390625, -0.739843786, -0.725781262, -0.711718798, -0.697656274, -0.68359375, -0.669531286, -0.655468762, -0.641406238, -0.627343774, -0.61328125,
  -0.599218726, -0.585156262, -0.571093798, -0.557031274, -0.54296875, -0.528906226, -0.514843762, -0.500781238, -0.486718774, -0.47265625, -0.458593726, -0.444531262, -0.430468738, -0.416406214,
  -0.40234375, -0.388281226, -0.374218762, -0.360156238, -0.346093714, -0.33203125, -0.317968726, -0.303906262, -0.289843738, -0.275781274, -0.26171875, -0.247656256, -0.233593762, -0.219531253,
  -0.205468744, -0.19140625, -0.177343741, -0.163281247, -0.149218753, -0.135156244, -0.12109375, -0.107031256, -0.0985937491, -0.0957812443, -0.0929687545, -0.0901562497, -0.0873437524,
  -0.0845312476, -0.0817187428, -0.078906253, -0.0760937482, -0.0732812509, -0.0704687461, -0.0676562563, -0.0648437515, -0.0620312467, -0.0592187531, -0.0564062484, -0.053593751, -0.05078125,
  -0.047968749, -0.0451562516, -0.0423437469, -0.0395312496, -0.0367187522, -0.0339062475, -0.0310937501, -0.0282812472, -0.0254687499, -0.0226562507, -0.0198437497, -0.0170312505, -0.0142187504,
  -0.0114062503, -0.00971874967, -0.00915624946, -0.00859375019, -0.00803124998, -0.00746874977, -0.00690625003, -0.00634374982, -0.00578125007, -0.00521875033, -0.00465624966, -0.00409374991,
  -0.00353124971, -0.00296874996, -0.00240624999, -0.00184375001, -0.00128124992, -0.000943750085, -0.000831249985, -0.00071875006, -0.000606250076, -0.000493750034, -0.000381250022, -0.000268750038,
  -0.000156250011, -8.87499991e-5, -6.62500024e-5, -4.37499984e-5, -2.12499981e-5, -7.7499999e-6, -3.25000019e-6, -5.50000038e-7, 0, 5.50000038e-7, 3.25000019e-6, 7.7499999e-6, 2.12499981e-5,
  4.37499984e-5, 6.62500024e-5, 8.87499991e-5, 0.000156250011, 0.000268750038, 0.000381250022, 0.000493750034, 0.000606250076, 0.00071875006, 0.000831249985, 0.000943750085, 0.00128124992,
  0.00184375001, 0.00240624999, 0.00296874996, 0.00353124971, 0.00409374991, 0.00465624966, 0.00521875033, 0.00578125007, 0.00634374982, 0.00690625003, 0.00746874977, 0.00803124998, 0.00859375019,
  0.00915624946, 0.00971874967, 0.0114062503, 0.0142187504, 0.0170312505, 0.0198437497, 0.0226562507, 0.0254687499, 0.0282812472, 0.0310937501, 0.0339062475, 0.0367187522, 0.0395312496, 0.0423437469,
  0.0451562516, 0.047968749, 0.05078125, 0.053593751, 0.0564062484, 0.0592187531, 0.0620312467, 0.0648437515, 0.0676562563, 0.0704687461, 0.0732812509, 0.0760937482, 0.078906253, 0.0817187428,
  0.0845312476, 0.0873437524, 0.0901562497, 0.0929687545, 0.0957812443, 0.0985937491, 0.107031256, 0.12109375, 0.135156244, 0.149218753, 0.163281247, 0.177343741, 0.19140625, 0.205468744, 0.219531253,
  0.233593762, 0.247656256, 0.26171875, 0.275781274, 0.289843738, 0.303906262, 0.317968726, 0.33203125, 0.346093714, 0.360156238, 0.374218762, 0.388281226, 0.40234375, 0.416406214, 0.430468738,
  0.444531262, 0.458593726, 0.47265625, 0.486718774, 0.500781238, 0.514843762, 0.528906226, 0.54296875, 0.557031274, 0.571093798, 0.585156262, 0.599218726, 0.61328125, 0.627343774, 0.641406238,
  0.655468762, 0.669531286, 0.68359375, 0.697656274, 0.711718798, 0.725781262, 0.739843786, 0.75390625, 0.767968774, 0.782031238, 0.796093702, 0.810156226, 0.82421875, 0.838281214, 0.852343738,
  0.866406202, 0.880468726, 0.89453125, 0.908593774, 0.922656238, 0.936718702, 0.950781226, 0.96484375, 0.978906214, 0.992968738, 1,
]);

/**
 * NF4's block size (bitsandbytes' default `blocksize` for `quantize_4bit`).
 *
 * @example
 * ```ts
 * Math.ceil(4096 / NF4_BLOCK_SIZE); // 64 absmax values for a 64×64 weight
 * ```
 */
export const NF4_BLOCK_SIZE = 64;
/**
 * The block size of the double quantisation of the absmax values (`quantize_blockwise(…, blocksize=256)`).
 *
 * @example
 * ```ts
 * Math.ceil(64 / NF4_NESTED_BLOCK_SIZE); // 1 nested absmax for 64 block absmax values
 * ```
 */
export const NF4_NESTED_BLOCK_SIZE = 256;

function midpoints(code: Float32Array): Float32Array {
  const out = new Float32Array(code.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = f(f((code[i] as number) + (code[i + 1] as number)) / 2);
  return out;
}
const NF4_BOUNDS = midpoints(NF4_CODE);
const DYNAMIC_BOUNDS = midpoints(DYNAMIC_MAP);

/**
 * `torch.bucketize(x, bounds)` (right=False) for one value: the number of `bounds` strictly below `x`.
 *
 * @example
 * ```ts
 * bucketize(0.5, Float32Array.from([0, 0.5, 1])); // 1
 * ```
 */
export function bucketize(x: number, bounds: Float32Array): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((bounds[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Codes and per-block absmax of a blockwise quantisation. */
export interface BlockwiseQuantized {
  /** One code per value, an index into the code table. */
  codes: Uint8Array;
  /** `max |x|` of each block (the last block may be partial). */
  absmax: Float32Array;
}

function blockwise(x: Float32Array, bounds: Float32Array, blockSize: number): BlockwiseQuantized {
  const n = x.length;
  const blocks = Math.ceil(n / blockSize);
  const full = n - (n % blockSize);
  const codes = new Uint8Array(n);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, n);
    let am = 0;
    for (let i = start; i < end; i++) am = Math.max(am, Math.abs(x[i] as number));
    const safe = Math.max(am, f(1e-38));
    // ops.py keeps a full block's absmax as is and a trailing partial block's clamped at 1e-38
    absmax[b] = start < full ? am : safe;
    const inv = f(1 / safe);
    for (let i = start; i < end; i++) {
      // full blocks multiply by the reciprocal, the trailing partial block divides (ops.py)
      const v = start < full ? f((x[i] as number) * inv) : f((x[i] as number) / safe);
      codes[i] = bucketize(Math.min(Math.max(v, -1), 1), bounds);
    }
  }
  return { codes, absmax };
}

/**
 * bitsandbytes' `quantize_blockwise` with the signed dynamic map: 8-bit codes and one absmax per block.
 *
 * @example
 * ```ts
 * const { codes, absmax } = quantizeBlockwise(Float32Array.from([0.5, -1, 0]), 256); // absmax [1]
 * ```
 */
export function quantizeBlockwise(x: Float32Array, blockSize: number = NF4_NESTED_BLOCK_SIZE): BlockwiseQuantized {
  checkFinite('quantizeBlockwise', x);
  return blockwise(x, DYNAMIC_BOUNDS, blockSize);
}

/**
 * The inverse of {@link quantizeBlockwise}: `DYNAMIC_MAP[code] · absmax[block]` in float32.
 *
 * @example
 * ```ts
 * const q = quantizeBlockwise(Float32Array.from([0.5, -1, 0]));
 * dequantizeBlockwise(q, 256); // ≈ [0.5, -0.993, 0]
 * ```
 */
export function dequantizeBlockwise(q: BlockwiseQuantized, blockSize: number = NF4_NESTED_BLOCK_SIZE): Float32Array {
  const out = new Float32Array(q.codes.length);
  for (let i = 0; i < out.length; i++) out[i] = f((DYNAMIC_MAP[q.codes[i] as number] as number) * (q.absmax[Math.floor(i / blockSize)] as number));
  return out;
}

function checkFinite(owner: string, x: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new PosttrainError('NON_FINITE', `${owner}: expected finite values; got ${x[i]} at index ${i}`);
  }
}

/** An NF4-quantised tensor as bitsandbytes stores it, with the packed bytes held in int32 words. */
export interface Nf4Quantized {
  /** Number of values (the flattened tensor's size). */
  numel: number;
  /** `ceil(numel / 2)` bytes of codes, two per byte, first element in the high nibble, held little-endian in int32 words (zero-padded). */
  packed: Int32Array;
  /** Exact byte length of the packed codes: `ceil(numel / 2)`. */
  byteLength: number;
  /** Double quantisation: one 8-bit dynamic-map code per 64-block absmax (bitsandbytes' `absmax`, uint8). */
  absmaxCodes: Uint8Array;
  /** Double quantisation: one float32 absmax per 256 absmax codes (`state2.absmax`). */
  absmax2: Float32Array;
  /** Double quantisation: the mean of the block absmax values, subtracted before their quantisation (`offset`). */
  offset: number;
}

/**
 * Packs 4-bit codes two per byte, bitsandbytes' order (`(q[2i] << 4) | q[2i+1]`), the bytes held
 * little-endian in int32 words so a checkpoint writes `new Uint8Array(words.buffer, 0, byteLength)`.
 *
 * @example
 * ```ts
 * packNibbles(Uint8Array.from([1, 2, 3])); // { words: Int32Array [0x3012], byteLength: 2 }
 * ```
 */
export function packNibbles(codes: Uint8Array): { words: Int32Array; byteLength: number } {
  const byteLength = Math.ceil(codes.length / 2);
  const words = new Int32Array(Math.ceil(byteLength / 4));
  const bytes = new Uint8Array(words.buffer);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] as number;
    if (c > 15) throw new PosttrainError('INVALID_ARGUMENT', `packNibbles: expected 4-bit codes in [0, 15]; got ${c} at index ${i}`);
    const b = i >> 1;
    bytes[b] = (bytes[b] as number) | (i % 2 === 0 ? c << 4 : c);
  }
  return { words, byteLength };
}

/**
 * The inverse of {@link packNibbles}: the first `numel` 4-bit codes.
 *
 * @example
 * ```ts
 * unpackNibbles(Int32Array.from([0x3012]), 3); // Uint8Array [1, 2, 3]
 * ```
 */
export function unpackNibbles(words: Int32Array, numel: number): Uint8Array {
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  if (bytes.length < Math.ceil(numel / 2)) {
    throw new PosttrainError('SHAPE_MISMATCH', `unpackNibbles: expected at least ${Math.ceil(numel / 2)} bytes for ${numel} codes; got ${bytes.length}`);
  }
  const out = new Uint8Array(numel);
  for (let i = 0; i < numel; i++) {
    const b = bytes[i >> 1] as number;
    out[i] = i % 2 === 0 ? b >> 4 : b & 15;
  }
  return out;
}

/** Bit offsets of the 8 nibbles of a word in element order: byte k holds elements 2k (high) and 2k+1 (low). */
const NIBBLE_SHIFTS = [4, 0, 12, 8, 20, 16, 28, 24];
const BYTE_SHIFTS = [0, 8, 16, 24];

/**
 * Unpacks bitsandbytes-ordered nibbles from int32 words with tf ops: `[W]` int32 → `[numel]` int32 codes.
 *
 * @example
 * ```ts
 * unpackNibblesTensor(tf.tensor1d([0x3012], 'int32'), 3); // [1, 2, 3]
 * ```
 */
export function unpackNibblesTensor(words: tf.Tensor1D, numel: number): tf.Tensor1D {
  return tf.tidy(
    () =>
      unpackDigits(words.reshape([1, -1]) as tf.Tensor2D, NIBBLE_SHIFTS, 4)
        .reshape([-1])
        .slice(0, numel) as tf.Tensor1D,
  );
}

/**
 * Unpacks bytes held little-endian in int32 words with tf ops: `[W]` int32 → `[count]` int32 in [0, 255].
 *
 * @example
 * ```ts
 * unpackBytesTensor(tf.tensor1d([0x0201], 'int32'), 2); // [1, 2]
 * ```
 */
export function unpackBytesTensor(words: tf.Tensor1D, count: number): tf.Tensor1D {
  return tf.tidy(
    () =>
      unpackDigits(words.reshape([1, -1]) as tf.Tensor2D, BYTE_SHIFTS, 8)
        .reshape([-1])
        .slice(0, count) as tf.Tensor1D,
  );
}

/**
 * Bytes held little-endian in int32 words, zero-padded (how the absmax codes are kept in memory).
 *
 * @example
 * ```ts
 * packBytes(Uint8Array.from([1, 2])); // Int32Array [0x0201]
 * ```
 */
export function packBytes(bytes: Uint8Array): Int32Array {
  const words = new Int32Array(Math.ceil(bytes.length / 4));
  new Uint8Array(words.buffer).set(bytes);
  return words;
}

/**
 * NF4 quantisation of a flattened tensor with double quantisation of the block absmax values,
 * bitsandbytes' `quantize_4bit(A, blocksize=64, compress_statistics=True, quant_type='nf4')`.
 *
 * @example
 * ```ts
 * const q = quantizeNf4(weightValues); // weightValues: Float32Array of a [out, in] weight, row-major
 * q.byteLength; // ceil(weightValues.length / 2)
 * ```
 */
export function quantizeNf4(x: Float32Array): Nf4Quantized {
  checkFinite('quantizeNf4', x);
  const { codes, absmax } = blockwise(x, NF4_BOUNDS, NF4_BLOCK_SIZE);
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = f(sum / absmax.length);
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = f((absmax[i] as number) - offset);
  const nested = quantizeBlockwise(centred, NF4_NESTED_BLOCK_SIZE);
  const { words, byteLength } = packNibbles(codes);
  return { numel: x.length, packed: words, byteLength, absmaxCodes: nested.codes, absmax2: nested.absmax, offset };
}

/**
 * The block absmax values recovered from their double quantisation:
 * `DYNAMIC_MAP[absmaxCodes] · absmax2[block of 256] + offset` in float32.
 *
 * @example
 * ```ts
 * nf4Absmax(quantizeNf4(weightValues)); // one float per 64 values
 * ```
 */
export function nf4Absmax(q: Nf4Quantized): Float32Array {
  const nested = dequantizeBlockwise({ codes: q.absmaxCodes, absmax: q.absmax2 }, NF4_NESTED_BLOCK_SIZE);
  return nested.map((v) => f(v + q.offset));
}

/**
 * NF4 back to floats, bitsandbytes' `dequantize_4bit`: `NF4_CODE[q] · absmax[block]` in float32.
 *
 * @example
 * ```ts
 * const w = dequantizeNf4(quantizeNf4(weightValues)); // Float32Array, same length
 * ```
 */
export function dequantizeNf4(q: Nf4Quantized): Float32Array {
  const absmax = nf4Absmax(q);
  const codes = unpackNibbles(q.packed, q.numel);
  const out = new Float32Array(q.numel);
  for (let i = 0; i < out.length; i++) out[i] = f((NF4_CODE[codes[i] as number] as number) * (absmax[Math.floor(i / NF4_BLOCK_SIZE)] as number));
  return out;
}

/**
 * {@link dequantizeNf4} with tf ops, from the tensors a {@link Nf4Quantized} is held in:
 * packed `[W]` int32, absmax codes packed as bytes in `[W2]` int32, `absmax2` `[B2]` float32,
 * `offset` a float32 scalar. Returns `[numel]` float32.
 *
 * @example
 * ```ts
 * const w = dequantizeNf4Tensor({ packed, absmaxCodes, absmax2, offset }, numel, numBlocks);
 * ```
 */
export function dequantizeNf4Tensor(t: { packed: tf.Tensor1D; absmaxCodes: tf.Tensor1D; absmax2: tf.Tensor1D; offset: tf.Scalar }, numel: number, numBlocks: number): tf.Tensor1D {
  return tf.tidy(() => {
    const b2 = Math.ceil(numBlocks / NF4_NESTED_BLOCK_SIZE);
    const aCodes = unpackBytesTensor(t.absmaxCodes, numBlocks);
    const padded2 = b2 * NF4_NESTED_BLOCK_SIZE;
    let nested = tf.gather(tf.tensor1d(DYNAMIC_MAP), aCodes);
    if (padded2 > numBlocks) nested = tf.pad(nested, [[0, padded2 - numBlocks]]);
    const absmax = nested
      .reshape([b2, NF4_NESTED_BLOCK_SIZE])
      .mul(t.absmax2.reshape([b2, 1]))
      .reshape([-1])
      .slice(0, numBlocks)
      .add(t.offset);
    const codes = unpackNibblesTensor(t.packed, numel);
    const padded = numBlocks * NF4_BLOCK_SIZE;
    let values = tf.gather(tf.tensor1d(NF4_CODE), codes);
    if (padded > numel) values = tf.pad(values, [[0, padded - numel]]);
    return values
      .reshape([numBlocks, NF4_BLOCK_SIZE])
      .mul(absmax.reshape([numBlocks, 1]))
      .reshape([-1])
      .slice(0, numel) as tf.Tensor1D;
  });
}
