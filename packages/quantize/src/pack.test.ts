import { initBackend, tf } from '@posttrain/tensor-core';
import { describe, expect, it } from 'vitest';
import { packInt32, packedColumns, unpackDigits, unpackInt32, unpackInt32Tensor } from './pack.js';

function codes(n: number, bits: 4 | 8, seed: number): Int8Array {
  const lo = -(2 ** (bits - 1));
  const span = 2 ** bits;
  const out = new Int8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = lo + (s % span);
  }
  // the extremes, which set the sign bit of a word
  out[0] = lo;
  out[n - 1] = -lo - 1;
  return out;
}

describe('pack-quantized int32 words (compressed-tensors pack_to_int32)', () => {
  it("matches compressed-tensors' docstring example and bit order", () => {
    // pack_to_int32 docstring: num_bits 8, [1, 2] → [129, 130, 0, 0] → 33409
    expect(Array.from(packInt32(new Int8Array([1, 2]), 1, 2, 8))).toEqual([33409]);
    // int4: element k at bits 4k, offset 8; [7, -8, 0, 0, 0, 0, 0, -1]: 15 | 0<<4 | 8<<8 | … | 7<<28
    const w = packInt32(new Int8Array([7, -8, 0, 0, 0, 0, 0, -1]), 1, 8, 4)[0] as number;
    expect(w >>> 0).toBe((15 | (0 << 4) | (8 << 8) | (8 << 12) | (8 << 16) | (8 << 20) | (8 << 24)) + 7 * 2 ** 28);
    // padding digits are 0 (the code -2^(b-1)); words per row are exact
    expect(packedColumns(100, 4)).toBe(13);
    expect(packedColumns(100, 8)).toBe(25);
  });

  it('round-trips in plain JS, padding included', () => {
    for (const bits of [4, 8] as const) {
      for (const cols of [8, 13, 64]) {
        const q = codes(3 * cols, bits, cols);
        const words = packInt32(q, 3, cols, bits);
        expect(words.length).toBe(3 * packedColumns(cols, bits));
        expect(Array.from(unpackInt32(words, 3, cols, bits))).toEqual(Array.from(q));
      }
    }
  });

  it('rejects codes outside the grid and wrong lengths', () => {
    expect(() => packInt32(new Int8Array([8]), 1, 1, 4)).toThrow(/\[-8, 7\]; got 8/);
    expect(() => packInt32(new Int8Array(3), 1, 2, 4)).toThrow(/SHAPE|expected 1·2/);
    expect(() => unpackInt32(new Int32Array(3), 1, 8, 4)).toThrow(/expected 1·1 words/);
  });

  describe.each(['cpu', 'wasm'] as const)('unpacks with tf ops on %s', (backend) => {
    it('exactly, sign-bit words included, leaving no tensor behind', async () => {
      await initBackend(backend);
      for (const bits of [4, 8] as const) {
        const cols = 37;
        const q = codes(5 * cols, bits, 7);
        const words = packInt32(q, 5, cols, bits);
        expect(words.some((w) => w < 0)).toBe(true);
        const before = tf.memory().numTensors;
        const t = tf.tensor2d(words, [5, packedColumns(cols, bits)], 'int32');
        const out = unpackInt32Tensor(t, cols, bits);
        expect(out.shape).toEqual([5, cols]);
        expect(Array.from(await out.data())).toEqual(Array.from(q));
        tf.dispose([t, out]);
        expect(tf.memory().numTensors).toBe(before);
      }
    });

    // wasm's floorDiv divides int32 in float32 (floorDiv(word, 16) is wrong for ~10% of words past
    // 2^24); unpackDigits only ever divides multiples of 2^s with at most `bits` significant bits.
    it('exactly for 20,000 seeded words, the extremes included', async () => {
      await initBackend(backend);
      const n = 20000;
      const words = new Int32Array(n);
      let s = 1;
      for (let i = 0; i < n; i++) {
        s = (s * 1103515245 + 12345) % 2147483648;
        words[i] = (s * 2 + (i % 2)) | 0;
      }
      words.set([-1, -(2 ** 31), 2 ** 31 - 1, 0, 2 ** 24 + 1, -(2 ** 24) - 1]);
      for (const [bits, shifts] of [
        [4, [0, 4, 8, 12, 16, 20, 24, 28]],
        [8, [0, 8, 16, 24]],
      ] as const) {
        const t = tf.tensor2d(words, [n, 1], 'int32');
        const out = unpackDigits(t, shifts, bits);
        const d = await out.data();
        tf.dispose([t, out]);
        let wrong = 0;
        for (let i = 0; i < n; i++) shifts.forEach((sh, k) => (wrong += d[i * shifts.length + k] === ((words[i] as number) >>> sh) % 2 ** bits ? 0 : 1));
        expect(wrong).toBe(0);
      }
    });
  });
});
