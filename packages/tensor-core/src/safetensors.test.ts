import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { MAX_SAFETENSORS_HEADER_BYTES, decodeSafetensorsTensor, parseSafetensorsHeader, readSafetensors, type SafetensorsDtype } from './safetensors.js';
import { writeSafetensors } from './safetensors-write.js';
import { disposeAll, expectNoTensorLeaks } from './testing/tensors.js';

expectNoTensorLeaks(); // every test disposes what it made

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
      expect(Array.from(back[name].dataSync()).map((v) => (Object.is(v, -0) ? '-0' : v))).toEqual(Array.from(t.dataSync()).map((v) => (Object.is(v, -0) ? '-0' : v)));
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
    expect([back.a, back.b, back.m].map((t) => Array.from(t.dataSync()))).toEqual([
      [1.5, -2],
      [7, -7],
      [1, 0],
    ]);
    disposeAll(tensors);
    disposeAll(back);
  });

  it('refuses an I64 value outside int32 on read, naming the tensor, and leaks nothing already decoded', () => {
    const data = new Uint8Array(24);
    new DataView(data.buffer).setBigInt64(8, 2n ** 40n, true);
    const header = { a: { dtype: 'F32', shape: [2], data_offsets: [16, 24] }, ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } };
    expectFormatError(rawFile(header, data), 'tensor "ids" (I64): expected values in the int32 range [-2147483648, 2147483647], as tfjs has no int64; got 1099511627776 at flat index 1');
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
    expect(() => decodeSafetensorsTensor(info, bytes.subarray(0, 3))).toThrow('decodeSafetensorsTensor: expected the 16 bytes of tensor "a"; got 3 bytes');
    const f64 = { ...info, dtype: 'F64' as const, shape: [2] };
    expect(() => decodeSafetensorsTensor(f64, bytes.slice(info.start, info.end))).toThrow('tensor "a": expected one of the dtypes tfjs can hold (F32, F16, BF16, I64, I32, I8, U8, BOOL); got F64');
    expect(() => parseSafetensorsHeader(bytes.subarray(0, 20), { byteLength: bytes.byteLength })).toThrow(`expected the first ${full.dataStart} bytes (length and header); got 20`);
    [a, b, lazy].forEach((t) => t.dispose());
  });
});

describe('readSafetensors on malformed files', () => {
  const f32 = (shape: number[], offsets: number[]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const cases: [string, Uint8Array, string][] = [
    ['an empty file', new Uint8Array(0), 'expected at least 8 bytes (the header length); got 0 bytes (truncated file)'],
    ['a 5-byte file', bytesOf(1, 0, 0, 0, 0), 'expected at least 8 bytes (the header length); got 5 bytes'],
    ['a header length larger than the file', rawFile('{}', new Uint8Array(0), 100n), 'header length 100 is larger than the file: expected at most 2; got 100 (truncated file?)'],
    ['a header length above 100 MB', rawFile('{}', new Uint8Array(0), BigInt(MAX_SAFETENSORS_HEADER_BYTES + 1)), 'expected a header length of at most 100000000 bytes (100 MB); got 100000001'],
    ['a header length of 2^64 - 1', rawFile('{}', new Uint8Array(0), 2n ** 64n - 1n), 'expected a header length of at most 100000000 bytes (100 MB); got 18446744073709551615'],
    ['a header that is not UTF-8', rawFile('', bytesOf(0xff, 0xfe), 2n), 'expected a UTF-8 JSON header of 2 bytes; got bytes that are not valid UTF-8'],
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
    ['a negative dim', rawFile({ w: f32([-1], [0, 4]) }, new Uint8Array(4)), 'tensor "w": expected shape to be an array of non-negative integers; got [-1]'],
    ['a fractional dim', rawFile({ w: f32([1.5], [0, 6]) }, new Uint8Array(6)), 'tensor "w": expected shape to be an array of non-negative integers; got [1.5]'],
    ['a shape that is not an array', rawFile({ w: f32('3' as unknown as number[], [0, 12]) }, new Uint8Array(12)), 'tensor "w": expected shape to be an array of non-negative integers; got "3"'],
    ['offsets with three numbers', rawFile({ w: f32([1], [0, 4, 8]) }, new Uint8Array(8)), 'tensor "w": expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got [0,4,8]'],
    ['negative offsets', rawFile({ w: f32([1], [-4, 0]) }), 'tensor "w": expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got [-4,0]'],
    ['offsets with begin after end', rawFile({ w: f32([1], [8, 4]) }, new Uint8Array(8)), 'tensor "w": expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got [8,4]'],
    ['offsets past the buffer (truncated data)', rawFile({ w: f32([2], [0, 8]) }, new Uint8Array(4)), 'tensor "w": expected data_offsets within the 4-byte data buffer; got [0, 8] (truncated file?)'],
    ['offsets that disagree with dtype × shape', rawFile({ w: f32([3], [0, 8]) }, new Uint8Array(8)), 'tensor "w": expected 8 bytes from data_offsets [0, 8] to equal F32 size × shape [3] = 12 bytes'],
    [
      'a shape whose size overflows',
      rawFile({ w: f32([2 ** 40, 2 ** 40], [0, 4]) }, new Uint8Array(4)),
      'tensor "w": expected 4 bytes from data_offsets [0, 4] to equal F32 size × shape [1099511627776, 1099511627776] = 4.835703278458517e+24 bytes',
    ],
    ['overlapping tensors', rawFile({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, new Uint8Array(12)), 'tensor "b": data_offsets [4, 12] overlap tensor "a" [0, 8]'],
    [
      'a gap between tensors',
      rawFile({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }, new Uint8Array(12)),
      'tensor "b": expected data_offsets to begin at 4, right after tensor "a"; got 8 (a gap of 4 bytes)',
    ],
    ['a first tensor not at 0', rawFile({ a: f32([1], [4, 8]) }, new Uint8Array(8)), 'tensor "a": expected data_offsets to begin at 0, right after the buffer start; got 4'],
    [
      'trailing bytes after the last tensor',
      rawFile({ a: f32([1], [0, 4]) }, new Uint8Array(12)),
      'expected the tensors to cover the whole 12-byte data buffer; they end at 4, leaving 8 trailing bytes',
    ],
    ['metadata that is not an object', rawFile({ __metadata__: ['x'] }), 'expected "__metadata__" to be an object of strings; got an array of length 1'],
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
});
