import { initBackend, tf } from '@posttrain/tensor-core';
import { describe, expect, it } from 'vitest';
import { ref } from './fixture.js';
import { DYNAMIC_MAP, NF4_CODE, bucketize, dequantizeNf4, dequantizeNf4Tensor, nf4Absmax, packBytes, packNibbles, quantizeBlockwise, quantizeNf4, unpackNibbles } from './nf4.js';

const weight = Float32Array.from(ref.weight);

describe('NF4 with double quantisation (bitsandbytes quantize_4bit, default ops)', () => {
  it('holds the QLoRA table and the dynamic map bitsandbytes builds', () => {
    expect(NF4_CODE.length).toBe(16);
    expect([NF4_CODE[0], NF4_CODE[7], NF4_CODE[15]]).toEqual([-1, 0, 1]);
    expect(Array.from(DYNAMIC_MAP)).toEqual(ref.nf4.dynamic_map.map(Math.fround));
    expect(bucketize(0.5, Float32Array.from([0, 0.5, 1]))).toBe(1);
    expect(bucketize(0.50001, Float32Array.from([0, 0.5, 1]))).toBe(2);
  });

  it("gives the reference's codes, packed bytes, absmax codes and offset exactly", () => {
    const q = quantizeNf4(weight);
    expect(q.numel).toBe(2048);
    expect(q.byteLength).toBe(1024);
    expect(q.packed.length).toBe(256);
    const bytes = new Uint8Array(q.packed.buffer, 0, q.byteLength);
    expect(Array.from(bytes)).toEqual(ref.nf4.packed_bytes);
    expect(Array.from(unpackNibbles(q.packed, q.numel))).toEqual(ref.nf4.codes);
    expect(q.offset).toBeCloseTo(ref.nf4.offset, 7);
    expect(Array.from(q.absmaxCodes)).toEqual(ref.nf4.absmax_codes);
    expect(Array.from(q.absmax2)).toEqual(ref.nf4.absmax2.map(Math.fround));
    // the 64-blocks' absmax after the round trip through 8 bits, and the weight back
    expect(Array.from(nf4Absmax(q))).toEqual(ref.nf4.absmax_dequantized.map(Math.fround));
    expect(Array.from(dequantizeNf4(q))).toEqual(ref.nf4.dequantized.map(Math.fround));
  });

  it('packs two codes per byte, first element in the high nibble; odd counts pad one nibble', () => {
    const { words, byteLength } = packNibbles(Uint8Array.from([1, 2, 3]));
    expect(byteLength).toBe(2);
    expect(Array.from(new Uint8Array(words.buffer, 0, 2))).toEqual([0x12, 0x30]);
    expect(Array.from(unpackNibbles(words, 3))).toEqual([1, 2, 3]);
    expect(() => packNibbles(Uint8Array.from([16]))).toThrow(/\[0, 15\]/);
  });

  it('quantizes a partial trailing block by division and rejects NaN', () => {
    const x = Float32Array.from([0.5, -1, 0, 0.25, 3]);
    const q = quantizeBlockwise(x, 4);
    expect(Array.from(q.absmax)).toEqual([1, 3]);
    expect(DYNAMIC_MAP[q.codes[4] as number]).toBe(1);
    expect(() => quantizeNf4(Float32Array.from([0, Number.NaN]))).toThrow(/finite.*index 1/);
  });

  describe.each(['cpu', 'wasm'] as const)('dequantizes with tf ops on %s', (backend) => {
    it('to the same floats as plain JS, leaving no tensor behind', async () => {
      await initBackend(backend);
      const q = quantizeNf4(weight);
      const before = tf.memory().numTensors;
      const t = {
        packed: tf.tensor1d(q.packed, 'int32'),
        absmaxCodes: tf.tensor1d(packBytes(q.absmaxCodes), 'int32'),
        absmax2: tf.tensor1d(q.absmax2),
        offset: tf.scalar(q.offset),
      };
      const w = dequantizeNf4Tensor(t, q.numel, q.absmaxCodes.length);
      expect(Array.from(await w.data())).toEqual(ref.nf4.dequantized.map(Math.fround));
      tf.dispose([w, t.packed, t.absmaxCodes, t.absmax2, t.offset]);
      expect(tf.memory().numTensors).toBe(before);
    });
  });
});
