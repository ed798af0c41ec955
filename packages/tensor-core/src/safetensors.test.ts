import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import {
  MAX_SAFETENSORS_HEADER_BYTES,
  decodeSafetensorsTensor,
  parseSafetensorsHeader,
  readSafetensors,
  writeSafetensors,
  type SafetensorsDtype,
} from './safetensors.js';

let before = 0;
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  expect(tf.memory().numTensors).toBe(before); // every test disposes what it made
});

const disposeAll = (tensors: Record<string, tf.Tensor>) => Object.values(tensors).forEach((t) => t.dispose());
const bytesOf = (...values: number[]) => new Uint8Array(values);

/** A safetensors file from a header object (or raw header text) and a data buffer. */
function rawFile(header: unknown, data = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** Writes one float32 tensor as `dtype` and reads it back as plain numbers. */
function roundTrip(values: number[], dtype: SafetensorsDtype): number[] {
  const x = tf.tensor1d(values, 'float32');
  const back = readSafetensors(writeSafetensors({ x }, undefined, { dtypes: { x: dtype } }));
  const out = Array.from(back.x.dataSync());
  x.dispose();
  disposeAll(back);
  return out;
}

function expectFormatError(bytes: Uint8Array, message: string | RegExp): void {
  try {
    readSafetensors(bytes);
  } catch (error) {
    expect(isPosttrainError(error) && error.code).toBe('SAFETENSORS_FORMAT');
    expect((error as Error).message).toMatch(typeof message === 'string' ? new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : message);
    return;
  }
  throw new Error('expected readSafetensors to throw');
}

describe('writeSafetensors and readSafetensors', () => {
  it('round-trip float32, int32 and bool tensors exactly, with metadata, a scalar and an empty tensor', () => {
    const tensors = {
      'model.w': tf.tensor2d([
        [1.5, -0, Infinity],
        [-Infinity, 1e-45, 3.4028234663852886e38],
      ]),
      ids: tf.tensor1d([-2147483648, 2147483647, 0], 'int32'),
      mask: tf.tensor1d([true, false, true], 'bool'),
      scalar: tf.scalar(3.25),
      empty: tf.zeros([0, 3]),
      ['__proto__']: tf.tensor1d([7], 'int32'),
    } as Record<string, tf.Tensor>;
    const bytes = writeSafetensors(tensors, { format: 'pt', note: 'héllo ✓' });
    const header = parseSafetensorsHeader(bytes);
    expect(header.metadata).toEqual({ format: 'pt', note: 'héllo ✓' });
    const back = readSafetensors(bytes);
    expect(Object.keys(back).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      expect(back[name].dtype).toBe(t.dtype);
      expect(back[name].shape).toEqual(t.shape);
      expect(Array.from(back[name].dataSync()).map((v) => (Object.is(v, -0) ? '-0' : v))).toEqual(
        Array.from(t.dataSync()).map((v) => (Object.is(v, -0) ? '-0' : v)),
      );
    }
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype); // "__proto__" is a tensor, not the prototype
    disposeAll(tensors);
    disposeAll(back);
  });

  it('reads from a Node Buffer that is a view into a shared pool', () => {
    const tensors = { a: tf.tensor1d([1.5, -2]), b: tf.tensor1d([7, -7], 'int32'), m: tf.tensor1d([true, false], 'bool') };
    const bytes = Buffer.from(writeSafetensors(tensors, undefined, { dtypes: { b: 'I64' } }));
    expect(bytes.byteOffset > 0 || bytes.buffer.byteLength > bytes.length).toBe(true); // small Buffers share Node's pool
    const back = readSafetensors(bytes);
    expect([back.a, back.b, back.m].map((t) => Array.from(t.dataSync()))).toEqual([[1.5, -2], [7, -7], [1, 0]]);
    disposeAll(tensors);
    disposeAll(back);
  });

  it('matches the Rust implementation byte for byte (its test_serialization and test_empty vectors)', () => {
    const attn = tf.tensor3d([0, 1, 2, 3, 4, 5], [1, 2, 3]);
    const rust = [
      64,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      ...new TextEncoder().encode('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'),
      0,
      0,
      0,
      0,
      0,
      0,
      128,
      63,
      0,
      0,
      0,
      64,
      0,
      0,
      64,
      64,
      0,
      0,
      128,
      64,
      0,
      0,
      160,
      64,
    ];
    expect(Array.from(writeSafetensors({ 'attn.0': attn }))).toEqual(rust);
    attn.dispose();
    expect(Array.from(writeSafetensors({}))).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const withMetadata = [40, 0, 0, 0, 0, 0, 0, 0, ...new TextEncoder().encode('{"__metadata__":{"framework":"pt"}}     ')];
    expect(Array.from(writeSafetensors({}, { framework: 'pt' }))).toEqual(withMetadata);
  });

  it('orders tensors by dtype alignment (descending), then name, and pads the header to 8 bytes with spaces', () => {
    const f = tf.tensor1d([1]);
    const i = tf.tensor1d([1], 'int32');
    const b = tf.tensor1d([true], 'bool');
    const tensors = { u8: i, bool: b, b32: f, a32: f, i32: i, bf16: f, f16: f, i8: i, i64: i };
    const bytes = writeSafetensors(tensors, undefined, { dtypes: { u8: 'U8', bf16: 'BF16', f16: 'F16', i8: 'I8', i64: 'I64' } });
    const header = parseSafetensorsHeader(bytes);
    expect([...header.tensors.keys()]).toEqual(['i64', 'a32', 'b32', 'i32', 'bf16', 'f16', 'i8', 'u8', 'bool']);
    expect(header.dataStart % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, header.dataStart));
    expect(text).toMatch(/^\{"i64":\{"dtype":"I64","shape":\[1\],"data_offsets":\[0,8\]\},"a32":.*\}\}\s{0,7}$/);
    expect(text.trimEnd().length).toBeGreaterThan(header.headerLength - 8);
    [f, i, b].forEach((t) => t.dispose());
  });

  it('stores float32 as F16 rounding to nearest, ties to even, with overflow to ±inf and subnormals', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -11, 1], // halfway between 1 and 1 + 2^-10: to the even mantissa
      [1 + 3 * 2 ** -11, 1 + 2 ** -9], // halfway, rounds up to the even one
      [65504, 65504], // the largest half
      [65519.99609375, 65504], // just below the overflow threshold
      [65520, Infinity], // at the threshold: overflows
      [2 ** -24, 2 ** -24], // the smallest subnormal
      [2 ** -25, 0], // halfway between 0 and 2^-24: to even, 0
      [1.5 * 2 ** -25, 2 ** -24],
      [3 * 2 ** -25, 2 ** -23], // halfway between 2^-24 and 2^-23: to even
      [2 ** -14 - 2 ** -24, 2 ** -14 - 2 ** -24], // the largest subnormal
      [-0, -0],
      [NaN, NaN],
      [-Infinity, -Infinity],
      [0.1, 0.0999755859375],
      [1e-8, 0],
    ];
    const got = roundTrip(
      cases.map(([x]) => x),
      'F16',
    );
    cases.forEach(([x, want], k) => expect(Object.is(got[k], want), `F16 of ${x}: expected ${want}, got ${got[k]}`).toBe(true));
  });

  it('stores float32 as BF16 rounding to nearest, ties to even (values checked against torch .to(bfloat16))', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -8, 1], // halfway: to even
      [1 + 3 * 2 ** -8, 1 + 2 ** -6], // halfway: up to even
      [3.4028234663852886e38, Infinity], // the largest float32 rounds past the largest bfloat16
      [0.1, 0.10009765625],
      [-0, -0],
      [NaN, NaN],
      [1e-40, 9.183549615799121e-41], // a float32 subnormal
      [-1e30, -1.0002555517425873e30],
      [Infinity, Infinity],
    ];
    const got = roundTrip(
      cases.map(([x]) => x),
      'BF16',
    );
    cases.forEach(([x, want], k) => expect(Object.is(got[k], want), `BF16 of ${x}: expected ${want}, got ${got[k]}`).toBe(true));
    expect(roundTrip([0.1, 2 ** -130], 'F32')).toEqual([Math.fround(0.1), 2 ** -130]);
  });

  it('stores int32 as I64, I8 or U8 per tensor, and floats by a default float dtype', () => {
    const ids = tf.tensor1d([-2147483648, 2147483647, -1], 'int32');
    const small = tf.tensor1d([-128, 127, 0], 'int32');
    const byte = tf.tensor1d([0, 255, 128], 'int32');
    const w = tf.tensor1d([1.5, 0.1]);
    const bytes = writeSafetensors({ ids, small, byte, w }, undefined, { floatDtype: 'BF16', intDtype: 'I64', dtypes: { small: 'I8', byte: 'U8' } });
    const header = parseSafetensorsHeader(bytes);
    expect([...header.tensors.values()].map((t) => [t.name, t.dtype])).toEqual([
      ['ids', 'I64'],
      ['w', 'BF16'],
      ['small', 'I8'],
      ['byte', 'U8'],
    ]);
    expect(Array.from(bytes.subarray(header.tensors.get('ids')!.start, header.tensors.get('ids')!.start + 16))).toEqual([
      0, 0, 0, 128, 255, 255, 255, 255, 255, 255, 255, 127, 0, 0, 0, 0,
    ]);
    const back = readSafetensors(bytes);
    expect(Array.from(back.ids.dataSync())).toEqual([-2147483648, 2147483647, -1]);
    expect(Array.from(back.small.dataSync())).toEqual([-128, 127, 0]);
    expect(Array.from(back.byte.dataSync())).toEqual([0, 255, 128]);
    expect(Array.from(back.w.dataSync())).toEqual([1.5, 0.10009765625]);
    expect(Object.values(back).map((t) => t.dtype)).toEqual(['int32', 'float32', 'int32', 'int32']);
    [ids, small, byte, w].forEach((t) => t.dispose());
    disposeAll(back);
  });

  it('rejects impossible conversions and bad arguments with the tensor named', () => {
    const f = tf.tensor1d([1.5]);
    const i = tf.tensor1d([300, -1], 'int32');
    const b = tf.tensor1d([true], 'bool');
    const gone = tf.tensor1d([1]);
    gone.dispose();
    const cases: [() => unknown, string, string][] = [
      [
        () => writeSafetensors({ i }, undefined, { dtypes: { i: 'F16' } }),
        'DTYPE_MISMATCH',
        'cannot store tensor "i" (int32) as "F16"; a int32 tensor can be stored as I32, I64, I8, U8',
      ],
      [
        () => writeSafetensors({ f }, undefined, { dtypes: { f: 'I64' } }),
        'DTYPE_MISMATCH',
        'cannot store tensor "f" (float32) as "I64"; a float32 tensor can be stored as F32, F16, BF16',
      ],
      [() => writeSafetensors({ b }, undefined, { dtypes: { b: 'U8' } }), 'DTYPE_MISMATCH', 'cannot store tensor "b" (bool) as "U8"'],
      [
        () => writeSafetensors({ i }, undefined, { dtypes: { i: 'I8' } }),
        'INVALID_ARGUMENT',
        'tensor "i" cannot be stored as I8: expected values in [-128, 127]; got 300 at flat index 0',
      ],
      [
        () => writeSafetensors({ i }, undefined, { intDtype: 'U8' }),
        'INVALID_ARGUMENT',
        'tensor "i" cannot be stored as U8: expected values in [0, 255]; got 300 at flat index 0',
      ],
      [
        () => writeSafetensors({ f }, undefined, { floatDtype: 'F64' as 'F32' }),
        'INVALID_OPTION',
        'expected floatDtype to be one of F32, F16, BF16; got "F64"',
      ],
      [
        () => writeSafetensors({ f }, undefined, { dtype: 'F16' } as object),
        'INVALID_OPTION',
        'unknown option "dtype"; known options are floatDtype, intDtype, dtypes',
      ],
      [() => writeSafetensors({ f }, undefined, { dtypes: { g: 'F16' } }), 'INVALID_OPTION', 'dtypes names "g", which is not among the tensors [f]'],
      [() => writeSafetensors({ __metadata__: f }), 'INVALID_ARGUMENT', '"__metadata__" is reserved by the format'],
      [() => writeSafetensors({ f }, { step: 3 as unknown as string }), 'INVALID_ARGUMENT', 'expected metadata "step" to be a string; got 3'],
      [() => writeSafetensors({ gone }), 'INVALID_ARGUMENT', 'expected "gone" to be a live tf.Tensor; got a disposed tensor'],
      [
        () => writeSafetensors({ x: [1, 2] as unknown as tf.Tensor }),
        'INVALID_ARGUMENT',
        'expected "x" to be a live tf.Tensor; got an array of length 2',
      ],
    ];
    for (const [run, code, message] of cases) {
      expect(run).toThrow(message);
      try {
        run();
      } catch (error) {
        expect(isPosttrainError(error) && error.code).toBe(code);
      }
    }
    [f, i, b].forEach((t) => t.dispose());
  });

  it('refuses an I64 value outside int32 on read, naming the tensor, and leaks nothing already decoded', () => {
    const data = new Uint8Array(24);
    new DataView(data.buffer).setBigInt64(8, 2n ** 40n, true);
    const header = { a: { dtype: 'F32', shape: [2], data_offsets: [16, 24] }, ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } };
    expectFormatError(
      rawFile(header, data),
      'tensor "ids" (I64): expected values in the int32 range [-2147483648, 2147483647], as tfjs has no int64; got 1099511627776 at flat index 1',
    );
  });

  it('parses the header alone and decodes one tensor lazily, from a prefix of the file', () => {
    const a = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    const b = tf.tensor1d([5, 6], 'int32');
    const bytes = writeSafetensors({ a, b }, { format: 'pt' });
    const full = parseSafetensorsHeader(bytes);
    const prefix = parseSafetensorsHeader(bytes.subarray(0, full.dataStart), { byteLength: bytes.byteLength });
    expect(prefix).toEqual(full);
    expect(full.metadata).toEqual({ format: 'pt' });
    expect(full.tensors.get('b')).toEqual({
      name: 'b',
      dtype: 'I32',
      shape: [2],
      dataOffsets: [16, 24],
      start: full.dataStart + 16,
      end: full.dataStart + 24,
    });
    const info = full.tensors.get('a')!;
    const lazy = decodeSafetensorsTensor(info, bytes.slice(info.start, info.end));
    expect(Array.from(lazy.dataSync())).toEqual([1, 2, 3, 4]);
    expect(() => decodeSafetensorsTensor(info, bytes.subarray(0, 3))).toThrow(
      'decodeSafetensorsTensor: expected the 16 bytes of tensor "a"; got 3 bytes',
    );
    const f64 = { ...info, dtype: 'F64' as const, shape: [2] };
    expect(() => decodeSafetensorsTensor(f64, bytes.slice(info.start, info.end))).toThrow(
      'tensor "a": expected one of the dtypes tfjs can hold (F32, F16, BF16, I64, I32, I8, U8, BOOL); got F64',
    );
    expect(() => parseSafetensorsHeader(bytes.subarray(0, 20), { byteLength: bytes.byteLength })).toThrow(
      `expected the first ${full.dataStart} bytes (length and header); got 20`,
    );
    [a, b, lazy].forEach((t) => t.dispose());
  });
});

describe('readSafetensors on malformed files', () => {
  const f32 = (shape: number[], offsets: number[]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const cases: [string, Uint8Array, string][] = [
    ['an empty file', new Uint8Array(0), 'expected at least 8 bytes (the header length); got 0 bytes (truncated file)'],
    ['a 5-byte file', bytesOf(1, 0, 0, 0, 0), 'expected at least 8 bytes (the header length); got 5 bytes'],
    [
      'a header length larger than the file',
      rawFile('{}', new Uint8Array(0), 100n),
      'header length 100 is larger than the file: expected at most 2; got 100 (truncated file?)',
    ],
    [
      'a header length above 100 MB',
      rawFile('{}', new Uint8Array(0), BigInt(MAX_SAFETENSORS_HEADER_BYTES + 1)),
      'expected a header length of at most 100000000 bytes (100 MB); got 100000001',
    ],
    [
      'a header length of 2^64 - 1',
      rawFile('{}', new Uint8Array(0), 2n ** 64n - 1n),
      'expected a header length of at most 100000000 bytes (100 MB); got 18446744073709551615',
    ],
    [
      'a header that is not UTF-8',
      rawFile('', bytesOf(0xff, 0xfe), 2n),
      'expected a UTF-8 JSON header of 2 bytes; got bytes that are not valid UTF-8',
    ],
    ['a header that is not JSON', rawFile('{"a": '), 'expected a JSON header; got "{\\"a\\": "'],
    ['a JSON array', rawFile('[1, 2]'), 'expected the header to be a JSON object; got an array'],
    ['JSON null', rawFile('null'), 'expected the header to be a JSON object; got null'],
    ['a JSON number', rawFile('42'), 'expected the header to be a JSON object; got number'],
    ['a tensor entry that is not an object', rawFile({ w: 3 }), 'tensor "w": expected {dtype, shape, data_offsets}; got 3'],
    [
      'an unknown dtype',
      rawFile({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)),
      'tensor "w": expected dtype to be one of BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64; got "F128"',
    ],
    ['a missing dtype', rawFile({ w: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), 'tensor "w": expected dtype to be one of'],
    [
      'a negative dim',
      rawFile({ w: f32([-1], [0, 4]) }, new Uint8Array(4)),
      'tensor "w": expected shape to be an array of non-negative integers; got [-1]',
    ],
    [
      'a fractional dim',
      rawFile({ w: f32([1.5], [0, 6]) }, new Uint8Array(6)),
      'tensor "w": expected shape to be an array of non-negative integers; got [1.5]',
    ],
    [
      'a shape that is not an array',
      rawFile({ w: f32('3' as unknown as number[], [0, 12]) }, new Uint8Array(12)),
      'tensor "w": expected shape to be an array of non-negative integers; got "3"',
    ],
    [
      'offsets with three numbers',
      rawFile({ w: f32([1], [0, 4, 8]) }, new Uint8Array(8)),
      'tensor "w": expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got [0,4,8]',
    ],
    ['negative offsets', rawFile({ w: f32([1], [-4, 0]) }), 'tensor "w": expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got [-4,0]'],
    [
      'offsets with begin after end',
      rawFile({ w: f32([1], [8, 4]) }, new Uint8Array(8)),
      'tensor "w": expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got [8,4]',
    ],
    [
      'offsets past the buffer (truncated data)',
      rawFile({ w: f32([2], [0, 8]) }, new Uint8Array(4)),
      'tensor "w": expected data_offsets within the 4-byte data buffer; got [0, 8] (truncated file?)',
    ],
    [
      'offsets that disagree with dtype × shape',
      rawFile({ w: f32([3], [0, 8]) }, new Uint8Array(8)),
      'tensor "w": expected 8 bytes from data_offsets [0, 8] to equal F32 size × shape [3] = 12 bytes',
    ],
    [
      'a shape whose size overflows',
      rawFile({ w: f32([2 ** 40, 2 ** 40], [0, 4]) }, new Uint8Array(4)),
      'tensor "w": expected 4 bytes from data_offsets [0, 4] to equal F32 size × shape [1099511627776, 1099511627776] = 4.835703278458517e+24 bytes',
    ],
    [
      'overlapping tensors',
      rawFile({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, new Uint8Array(12)),
      'tensor "b": data_offsets [4, 12] overlap tensor "a" [0, 8]',
    ],
    [
      'a gap between tensors',
      rawFile({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, new Uint8Array(12)),
      'tensor "b": expected data_offsets to begin at 4, right after tensor "a"; got 8 (a gap of 4 bytes)',
    ],
    [
      'a first tensor not at 0',
      rawFile({ a: f32([1], [4, 8]) }, new Uint8Array(8)),
      'tensor "a": expected data_offsets to begin at 0, right after the buffer start; got 4',
    ],
    [
      'trailing bytes after the last tensor',
      rawFile({ a: f32([1], [0, 4]) }, new Uint8Array(12)),
      'expected the tensors to cover the whole 12-byte data buffer; they end at 4, leaving 8 trailing bytes',
    ],
    [
      'metadata that is not an object',
      rawFile({ __metadata__: ['x'] }),
      'expected "__metadata__" to be an object of strings; got an array of length 1',
    ],
    ['a metadata value that is not a string', rawFile({ __metadata__: { step: 3 } }), 'expected "__metadata__"."step" to be a string; got 3'],
  ];
  it.each(cases)('throws SAFETENSORS_FORMAT on %s', (_, bytes, message) => {
    expectFormatError(bytes, `invalid safetensors file: ${message}`);
  });

  it('throws SAFETENSORS_FORMAT (never another error) on every truncation and on corrupted header bytes', () => {
    const a = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    const ids = tf.tensor1d([1, 2, 3], 'int32');
    const bytes = writeSafetensors({ a, ids }, { format: 'pt' }, { dtypes: { ids: 'I64' } });
    for (let n = 0; n < bytes.length; n++) expectFormatError(bytes.slice(0, n), /invalid safetensors file/);
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let trial = 0; trial < 500; trial++) {
      const corrupt = bytes.slice();
      for (let k = 0; k < 3; k++) corrupt[Math.floor(random() * parseSafetensorsHeader(bytes).dataStart)] = Math.floor(random() * 256);
      try {
        disposeAll(readSafetensors(corrupt));
      } catch (error) {
        expect(isPosttrainError(error) && error.code, String(error)).toBe('SAFETENSORS_FORMAT');
      }
    }
    [a, ids].forEach((t) => t.dispose());
  });
});

describe('the PyTorch reference (scripts/reference/safetensors_ref.py)', () => {
  const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
  const number = (v: unknown) => (typeof v === 'string' ? { nan: NaN, inf: Infinity, '-inf': -Infinity, '-0': -0 }[v] : v);
  const tag = (v: unknown) => (Object.is(v, -0) ? '-0' : typeof v === 'number' && Number.isNaN(v) ? 'nan' : v);
  type Expected = { metadata: Record<string, string>; tensors: Record<string, { dtype: SafetensorsDtype; shape: number[]; values: unknown[] }> };

  it('reads every dtype of the file PyTorch wrote, value for value, and writes it back byte-identical', async () => {
    const bytes = new Uint8Array(await readFile(fixture('reference.safetensors')));
    const expected = JSON.parse(await readFile(fixture('reference.json'), 'utf8')) as Expected;
    const header = parseSafetensorsHeader(bytes);
    expect(header.metadata).toEqual(expected.metadata);
    const tensors = readSafetensors(bytes);
    expect(Object.keys(tensors).sort()).toEqual(Object.keys(expected.tensors).sort());
    for (const [name, want] of Object.entries(expected.tensors)) {
      const t = tensors[name];
      expect(t.dtype, name).toBe(want.dtype === 'BOOL' ? 'bool' : want.dtype.startsWith('F') || want.dtype === 'BF16' ? 'float32' : 'int32');
      expect(t.shape, name).toEqual(want.shape);
      const got = Array.from(t.dataSync() as ArrayLike<number>, (v) => (t.dtype === 'bool' ? v === 1 : v));
      expect(got.map(tag), name).toEqual(want.values.map(number).map(tag));
    }
    const dtypes = Object.fromEntries([...header.tensors.values()].map((info) => [info.name, info.dtype as SafetensorsDtype]));
    expect(writeSafetensors(tensors, header.metadata, { dtypes })).toEqual(bytes);
    disposeAll(tensors);
  });

  const python = [process.env.PYTHON, '/usr/bin/python3', 'python3'].find((p) => p && spawnSync(p, ['--version']).status === 0);
  it.skipIf(!python)(`writes files that the Python reference reads back${python ? '' : ' (SKIPPED: no python3 on this machine)'}`, async () => {
    const values: Record<string, { input: tf.Tensor; dtype: SafetensorsDtype }> = {
      weights: {
        input: tf.tensor2d([
          [1.5, -0, Infinity],
          [-Infinity, 1e-45, NaN],
        ]),
        dtype: 'F32',
      },
      half: {
        input: tf.tensor1d([
          1 + 2 ** -11,
          1 + 3 * 2 ** -11,
          65504,
          65519.99609375,
          65520,
          2 ** -24,
          2 ** -25,
          3 * 2 ** -25,
          -0,
          NaN,
          -Infinity,
          0.1,
          1e-8,
          6.1e-5,
        ]),
        dtype: 'F16',
      },
      brain: { input: tf.tensor1d([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4028234663852886e38, 0.1, -0, NaN, 1e-40, -1e30]), dtype: 'BF16' },
      counts: {
        input: tf.tensor2d(
          [
            [-2147483648, 2147483647],
            [0, 9],
          ],
          [2, 2],
          'int32',
        ),
        dtype: 'I32',
      },
      ids: { input: tf.tensor1d([-2147483648, 2147483647, -1, 5], 'int32'), dtype: 'I64' },
      small: { input: tf.tensor1d([-128, 127, 0, -1], 'int32'), dtype: 'I8' },
      pixels: { input: tf.tensor1d([0, 255, 128], 'int32'), dtype: 'U8' },
      mask: { input: tf.tensor1d([true, false], 'bool'), dtype: 'BOOL' },
      scalar: { input: tf.scalar(3.25), dtype: 'F32' },
      empty: { input: tf.zeros([0, 4]), dtype: 'F32' },
    };
    const metadata = { format: 'pt', note: 'héllo ✓' };
    const tensors = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.input]));
    const bytes = writeSafetensors(tensors, metadata, { dtypes: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.dtype])) });
    const expected: Expected = { metadata, tensors: {} };
    for (const [name, { input, dtype }] of Object.entries(values)) {
      const flat = Array.from(input.dataSync() as ArrayLike<number>, (v) => (input.dtype === 'bool' ? v === 1 : v));
      expected.tensors[name] = {
        dtype,
        shape: input.shape,
        values: flat.map((v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v).replace('Infinity', 'inf').toLowerCase() : tag(v))),
      };
    }
    disposeAll(tensors);
    const dir = await mkdtemp(join(tmpdir(), 'posttrain-safetensors-'));
    try {
      await writeFile(join(dir, 'ours.safetensors'), bytes);
      await writeFile(join(dir, 'expected.json'), JSON.stringify(expected));
      const script = fileURLToPath(new URL('../../../scripts/reference/safetensors_ref.py', import.meta.url));
      const run = spawnSync(python!, [script, '--check', join(dir, 'ours.safetensors'), join(dir, 'expected.json')], { encoding: 'utf8' });
      expect(`${run.stdout}${run.stderr}`).toMatch(/^ok: 10 tensors checked/);
      expect(run.status).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
