import { PosttrainError, tf } from '@posttrain/tensor-core';

/**
 * Packing of small signed integers into int32 words in compressed-tensors' `pack-quantized` layout
 * (`compressors/quantized_compressors/pack_quantized.py` `pack_to_int32`, commit 52792be): each
 * code is offset by 2^(bits-1) to an unsigned digit, a row `[out, in]` is padded with zero digits to
 * a multiple of 32/bits columns, and element k of each run of 32/bits goes to bits
 * [k·bits, (k+1)·bits) of its word — the first element in the lowest bits. The words are int32
 * (two's complement), so a checkpoint writes them unchanged as `weight_packed` `[out, ceil(in·bits/32)]`.
 *
 * Unpacking with tensors uses only `mod`, `sub` and `floorDiv` by powers of two (tfjs has no bit
 * shifts), arranged so that every division is exact in float32 (see {@link unpackDigits}); exact on
 * cpu and wasm. WebGPU's shader snippets compute `mod` of int32 through f32, which is not exact
 * for words past 2^24, so there a small WGSL program reads the words as integers and shifts them.
 */

/** Bit widths a word can pack: 4 (eight per int32) and 8 (four per int32). */
export type PackBits = 4 | 8;

function checkBits(owner: string, bits: number): asserts bits is PackBits {
  if (bits !== 4 && bits !== 8) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected bits 4 or 8; got ${String(bits)}`);
  }
}

/**
 * Number of int32 words per row of `cols` codes: `ceil(cols · bits / 32)`.
 *
 * @example
 * ```ts
 * packedColumns(100, 4); // 13
 * ```
 */
export function packedColumns(cols: number, bits: PackBits): number {
  return Math.ceil(cols / (32 / bits));
}

/**
 * Packs row-major signed codes `q` `[rows, cols]` (values in [-2^(bits-1), 2^(bits-1) - 1]) into int32
 * words `[rows, packedColumns(cols)]`, compressed-tensors' `pack_to_int32` order (packed_dim 1).
 *
 * @example
 * ```ts
 * packInt32(new Int8Array([1, 2]), 1, 2, 8); // Int32Array [33409]  (129 + 130·256)
 * ```
 */
export function packInt32(q: Int8Array, rows: number, cols: number, bits: PackBits): Int32Array {
  checkBits('packInt32', bits);
  if (q.length !== rows * cols) {
    throw new PosttrainError('SHAPE_MISMATCH', `packInt32: expected ${rows}·${cols} = ${rows * cols} codes; got ${q.length}`);
  }
  const per = 32 / bits;
  const offset = 2 ** (bits - 1);
  const wcols = packedColumns(cols, bits);
  const out = new Int32Array(rows * wcols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = q[r * cols + c] as number;
      if (v < -offset || v >= offset) {
        throw new PosttrainError('INVALID_ARGUMENT', `packInt32: expected ${bits}-bit codes in [${-offset}, ${offset - 1}]; got ${v} at [${r}, ${c}]`);
      }
      const w = r * wcols + Math.floor(c / per);
      out[w] = (out[w] as number) | ((v + offset) << ((c % per) * bits));
    }
  }
  return out;
}

/**
 * The inverse of {@link packInt32}: words `[rows, packedColumns(cols)]` → signed codes `[rows, cols]`.
 *
 * @example
 * ```ts
 * unpackInt32(new Int32Array([33409]), 1, 2, 8); // Int8Array [1, 2]
 * ```
 */
export function unpackInt32(words: Int32Array, rows: number, cols: number, bits: PackBits): Int8Array {
  checkBits('unpackInt32', bits);
  const per = 32 / bits;
  const offset = 2 ** (bits - 1);
  const mask = 2 ** bits - 1;
  const wcols = packedColumns(cols, bits);
  if (words.length !== rows * wcols) {
    throw new PosttrainError('SHAPE_MISMATCH', `unpackInt32: expected ${rows}·${wcols} words for ${cols} columns; got ${words.length}`);
  }
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const w = words[r * wcols + Math.floor(c / per)] as number;
      out[r * cols + c] = ((w >>> ((c % per) * bits)) & mask) - offset;
    }
  }
  return out;
}

/**
 * Splits int32 words `[rows, W]` into digits with tf ops, the digit at bit offset `s` being
 * `floorDiv(mod(word, 2^(s+bits)) - mod(word, 2^s), 2^s)` (for the top digit, `word - mod(word, 2^s)`
 * then `mod 2^bits`). Every value divided is a multiple of 2^s with at most `bits` significant bits,
 * so the division is exact even where a backend divides int32 in float32 (wasm's `floorDiv` does:
 * `floorDiv(word, 16)` of a word past 2^24 loses its low bits there; `mod` and `sub` are exact).
 * The digits of a word are laid out in the order of `shifts`. Returns int32 `[rows, W · shifts.length]`.
 * Shared by the int packing (shifts 0, b, 2b, …) and NF4's byte-wise nibbles.
 *
 * @example
 * ```ts
 * unpackDigits(tf.tensor2d([[33409]], [1, 1], 'int32'), [0, 8, 16, 24], 8); // [[129, 130, 0, 0]]
 * ```
 */
export function unpackDigits(words: tf.Tensor2D, shifts: readonly number[], bits: number): tf.Tensor2D {
  const backend = tf.getBackend();
  if (backend === 'webgpu') return unpackDigitsWebGpu(words, shifts, bits);
  if (backend === 'cpu' || backend === 'wasm') return unpackDigitsJs(words, shifts, bits);
  return tf.tidy(() => {
    const [rows, w] = words.shape;
    const pow = (e: number) => tf.scalar(2 ** e, 'int32');
    const base = pow(bits);
    const digits = shifts.map((s) => {
      if (s === 0) return tf.mod(words, base);
      const low = tf.mod(words, pow(s));
      if (s + bits >= 32) return tf.mod(tf.floorDiv(tf.sub(words, low), pow(s)), base);
      return tf.floorDiv(tf.sub(tf.mod(words, pow(s + bits)), low), pow(s));
    });
    return tf.stack(digits, 2).reshape([rows, w * shifts.length]) as tf.Tensor2D;
  });
}

/**
 * On cpu and wasm the words are already in host memory, so one synchronous read and a plain loop
 * replace the ~4 tf ops per digit: digit k of word w is `(w >>> shifts[k]) & (2^bits - 1)`, the same
 * integers as the floor `mod`/`floorDiv` chain above gives for every int32 word, negative ones included.
 */
function unpackDigitsJs(words: tf.Tensor2D, shifts: readonly number[], bits: number): tf.Tensor2D {
  const [rows, w] = words.shape;
  const per = shifts.length;
  const src = words.dataSync() as Int32Array;
  const out = new Int32Array(rows * w * per);
  const mask = bits >= 32 ? -1 : 2 ** bits - 1;
  for (let i = 0; i < src.length; i++) {
    const word = src[i] as number;
    const at = i * per;
    for (let k = 0; k < per; k++) out[at + k] = (word >>> (shifts[k] as number)) & mask;
  }
  return tf.tensor2d(out, [rows, w * per], 'int32');
}

/** The part of tfjs-backend-webgpu's backend that runs a program (not in its typings' public surface). */
interface WebGpuBackendLike {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], outputDtype: tf.DataType): tf.TensorInfo;
}

/**
 * WebGPU's shader snippets run int32 `mod` and `floorDiv` through f32, which garbles any word past
 * 2^24, so on WebGPU the digits come from a small WGSL program that reads the packed words as `i32`
 * and shifts them as `u32`: digit k of word w is `(bitcast<u32>(w) >> shifts[k]) & (2^bits - 1)`.
 */
function unpackDigitsWebGpu(words: tf.Tensor2D, shifts: readonly number[], bits: number): tf.Tensor2D {
  const [rows, w] = words.shape;
  const per = shifts.length;
  const size = rows * w * per;
  const workgroup = 64;
  const program = {
    variableNames: ['A'],
    outputShape: [size],
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(size / workgroup), 1, 1],
    workgroupSize: [workgroup, 1, 1],
    size: true,
    shaderKey: `posttrain_unpack_digits_${bits}_${shifts.join('_')}`,
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var shifts = array<u32, ${per}>(${shifts.map((v) => `${v}u`).join(', ')});
          let word = bitcast<u32>(A[index / ${per}]);
          let digit = (word >> shifts[index % ${per}]) & ${2 ** bits - 1}u;
          setOutputAtIndexI32(index, i32(digit));
        }
      }`,
  };
  const backend = tf.backend() as unknown as WebGpuBackendLike;
  const info = backend.runWebGPUProgram(program, [words], 'int32');
  return tf.tidy(
    () =>
      tf
        .engine()
        .makeTensorFromTensorInfo(info)
        .reshape([rows, w * per]) as tf.Tensor2D,
  );
}

/**
 * {@link unpackInt32} with tf ops: int32 words `[rows, W]` → int32 signed codes `[rows, cols]`.
 *
 * @example
 * ```ts
 * unpackInt32Tensor(tf.tensor2d([[33409]], [1, 1], 'int32'), 2, 8); // [[1, 2]]
 * ```
 */
export function unpackInt32Tensor(words: tf.Tensor2D, cols: number, bits: PackBits): tf.Tensor2D {
  checkBits('unpackInt32Tensor', bits);
  const per = 32 / bits;
  if (words.shape[1] !== packedColumns(cols, bits)) {
    throw new PosttrainError('SHAPE_MISMATCH', `unpackInt32Tensor: expected ${packedColumns(cols, bits)} words per row for ${cols} columns; got ${words.shape[1]}`);
  }
  return tf.tidy(() => {
    const shifts = Array.from({ length: per }, (_, k) => k * bits);
    const digits = unpackDigits(words, shifts, bits);
    const codes = digits.shape[1] === cols ? digits : digits.slice([0, 0], [-1, cols]);
    return tf.sub(codes, tf.scalar(2 ** (bits - 1), 'int32')) as tf.Tensor2D;
  });
}
