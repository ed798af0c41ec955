// The safetensors format: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
// `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { str: str } }`, then the
// data buffer, offsets relative to its start. Reading validates every field before it allocates
// anything sized by the file, so a hostile or truncated file fails with SAFETENSORS_FORMAT.
// The writer is in safetensors-write.ts.
import { tf } from './tf.js';
import { PosttrainError, formatShape } from './errors.js';
import { describe, resolveOptions } from './options.js';

/**
 * The safetensors dtypes read into and written from tfjs tensors: F32/F16/BF16 ↔ float32,
 * I64/I32/I8/U8 ↔ int32, BOOL ↔ bool.
 *
 * @example
 * ```ts
 * const dtypes: Record<string, SafetensorsDtype> = { 'lm_head.weight': 'BF16', position_ids: 'I64' };
 * ```
 */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I8' | 'U8' | 'BOOL';

/**
 * Every dtype the format defines. A header may name any of them; only a {@link SafetensorsDtype}
 * decodes to a tensor (the others throw `NOT_SUPPORTED` when decoded, not when parsed).
 *
 * @example
 * ```ts
 * const f64 = [...parseSafetensorsHeader(bytes).tensors.values()].filter((t) => t.dtype === 'F64');
 * ```
 */
export type SafetensorsFormatDtype = SafetensorsDtype | 'F8_E5M2' | 'F8_E4M3' | 'I16' | 'U16' | 'U32' | 'F64' | 'U64';

/**
 * One tensor's entry in a safetensors header, validated.
 *
 * @example
 * ```ts
 * const info = parseSafetensorsHeader(bytes).tensors.get('wte.weight')!;
 * // { name: 'wte.weight', dtype: 'F32', shape: [256, 128], dataOffsets: [0, 131072], start: 136, end: 131208 }
 * ```
 */
export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsFormatDtype;
  shape: number[];
  /** `[begin, end)` as written in the header, relative to the data buffer. */
  dataOffsets: [number, number];
  /** `[start, end)` in the whole file: `bytes.subarray(start, end)` is this tensor's data. */
  start: number;
  end: number;
}

/**
 * A parsed and validated safetensors header, from {@link parseSafetensorsHeader}.
 *
 * @example
 * ```ts
 * const { metadata, tensors, dataStart } = parseSafetensorsHeader(bytes);
 * console.log(metadata.format, [...tensors.keys()], dataStart);
 * ```
 */
export interface SafetensorsHeader {
  /** The `__metadata__` strings (empty when the file has none). */
  metadata: Record<string, string>;
  /** Every tensor by name, in buffer order. */
  tensors: Map<string, SafetensorsTensorInfo>;
  /** N, the JSON header's length in bytes (padding included). */
  headerLength: number;
  /** Where the data buffer starts in the file: 8 + N. */
  dataStart: number;
  /** The whole file's length. */
  byteLength: number;
}

/**
 * The header-length limit of the reference (Rust) implementation: 100 MB. A longer header is a
 * format error, so a hostile length never makes the reader allocate.
 *
 * @example
 * ```ts
 * if (headerLength > MAX_SAFETENSORS_HEADER_BYTES) throw new Error('not a safetensors file');
 * ```
 */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

// The Rust `Dtype` enum's order (increasing alignment): writers sort by it, descending, then by name.
// prettier-ignore
const ELEMENT_BYTES: Record<SafetensorsFormatDtype, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};
/** Every format dtype in the Rust `Dtype` enum's order (increasing alignment). */
export const FORMAT_DTYPES = Object.keys(ELEMENT_BYTES) as SafetensorsFormatDtype[];
/** Whether this host stores typed arrays little-endian, as the format does. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function formatError(message: string): PosttrainError {
  return new PosttrainError('SAFETENSORS_FORMAT', `invalid safetensors file: ${message}`, {
    help: 'the file is damaged or not safetensors; re-download or re-save it (torch: safetensors.torch.save_file)',
  });
}

/** A PosttrainError with `code`, and a `help` line when given. */
export function fail(code: 'INVALID_ARGUMENT' | 'INVALID_OPTION' | 'DTYPE_MISMATCH', message: string, help?: string): PosttrainError {
  return new PosttrainError(code, message, help === undefined ? {} : { help });
}

/** Defines an own enumerable property, so a key like `__proto__` is data, not the prototype. */
function setOwn<T>(object: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Whether `v` is a plain object (not null, not an array). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses and validates a safetensors header without decoding any tensor: metadata, and each
 * tensor's dtype, shape and byte range. `bytes` starts at the file's start and holds at least
 * the header; pass `byteLength` when it is only a prefix of a longer file.
 *
 * @example
 * ```ts
 * const header = parseSafetensorsHeader(bytes);
 * header.metadata.format; // 'pt'
 * const info = header.tensors.get('lm_head.weight')!;
 * const weight = decodeSafetensorsTensor(info, bytes.subarray(info.start, info.end));
 * ```
 */
export function parseSafetensorsHeader(bytes: Uint8Array, options: { byteLength?: number } = {}): SafetensorsHeader {
  const owner = 'parseSafetensorsHeader';
  if (!(bytes instanceof Uint8Array)) throw fail('INVALID_ARGUMENT', `${owner}: expected a Uint8Array; got ${describe(bytes)}`);
  const byteLength = resolveOptions(owner, options, { byteLength: bytes.byteLength }).byteLength;
  if (!Number.isSafeInteger(byteLength) || byteLength < bytes.byteLength) {
    const expected = `an integer ≥ bytes.byteLength (${bytes.byteLength})`;
    throw fail('INVALID_OPTION', `${owner}: expected byteLength to be ${expected}; got ${describe(byteLength)}`);
  }
  if (byteLength < 8) throw formatError(`expected at least 8 bytes (the header length); got ${byteLength} bytes (truncated file)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
    throw formatError(`expected a header length of at most ${MAX_SAFETENSORS_HEADER_BYTES} bytes (100 MB); got ${n64}`);
  }
  const n = Number(n64);
  if (8 + n > byteLength) {
    throw formatError(`header length ${n} is larger than the file: expected at most ${byteLength - 8}; got ${n} (truncated file?)`);
  }
  if (8 + n > bytes.byteLength) {
    throw fail('INVALID_ARGUMENT', `${owner}: expected the first ${8 + n} bytes (length and header); got ${bytes.byteLength}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw formatError(`expected a UTF-8 JSON header of ${n} bytes; got bytes that are not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const start = JSON.stringify(text.slice(0, 40)) + (text.length > 40 ? '…' : '');
    throw formatError(`expected a JSON header; got ${start} (${(error as Error).message})`);
  }
  if (!isObject(json)) {
    const kind = json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json;
    throw formatError(`expected the header to be a JSON object; got ${kind}`);
  }

  const dataLength = byteLength - 8 - n;
  const metadata: Record<string, string> = {};
  const infos: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isObject(entry)) throw formatError(`expected "__metadata__" to be an object of strings; got ${describe(entry)}`);
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== 'string') throw formatError(`expected "__metadata__"."${key}" to be a string; got ${describe(value)}`);
        setOwn(metadata, key, value);
      }
      continue;
    }
    infos.push(checkEntry(name, entry, dataLength, 8 + n));
  }
  infos.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let position = 0;
  for (let i = 0; i < infos.length; i++) {
    const [begin, end] = infos[i].dataOffsets;
    const where = `tensor "${infos[i].name}"`;
    const previous = infos[i - 1];
    if (begin > position) {
      const after = previous ? `tensor "${previous.name}"` : 'the buffer start';
      const gap = `got ${begin} (a gap of ${begin - position} bytes)`;
      throw formatError(`${where}: expected data_offsets to begin at ${position}, right after ${after}; ${gap}`);
    }
    if (begin < position) {
      throw formatError(`${where}: data_offsets [${begin}, ${end}] overlap tensor "${previous.name}" [${previous.dataOffsets.join(', ')}]`);
    }
    position = end;
  }
  if (position !== dataLength) {
    const detail = `they end at ${position}, leaving ${dataLength - position} trailing bytes`;
    throw formatError(`expected the tensors to cover the whole ${dataLength}-byte data buffer; ${detail}`);
  }
  return { metadata, tensors: new Map(infos.map((info) => [info.name, info])), headerLength: n, dataStart: 8 + n, byteLength };
}

function checkEntry(name: string, entry: unknown, dataLength: number, dataStart: number): SafetensorsTensorInfo {
  const where = `tensor "${name}"`;
  if (!isObject(entry)) throw formatError(`${where}: expected {dtype, shape, data_offsets}; got ${describe(entry)}`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || !FORMAT_DTYPES.includes(dtype as SafetensorsFormatDtype)) {
    throw formatError(`${where}: expected dtype to be one of ${FORMAT_DTYPES.join(', ')}; got ${describe(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw formatError(`${where}: expected shape to be an array of non-negative integers; got ${JSON.stringify(shape) ?? 'undefined'}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw formatError(`${where}: expected data_offsets to be [begin, end] with 0 ≤ begin ≤ end; got ${JSON.stringify(offsets) ?? 'undefined'}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    throw formatError(`${where}: expected data_offsets within the ${dataLength}-byte data buffer; got [${begin}, ${end}] (truncated file?)`);
  }
  // Multiplying non-negative dims stays monotonic; past 2^53 it can only mismatch, never wrap.
  const bytes = (shape as number[]).reduce((a, d) => a * d, ELEMENT_BYTES[dtype as SafetensorsFormatDtype]);
  if (bytes !== end - begin) {
    const product = `${dtype} size × shape ${formatShape(shape)} = ${bytes} bytes`;
    throw formatError(`${where}: expected ${end - begin} bytes from data_offsets [${begin}, ${end}] to equal ${product}`);
  }
  const info = { name, dtype: dtype as SafetensorsFormatDtype, shape: [...shape] };
  return { ...info, dataOffsets: [begin, end], start: dataStart + begin, end: dataStart + end };
}

/** A copy of `data` as a typed array of little-endian elements, aligned, swapped on big-endian hosts. */
function littleEndian<T>(data: Uint8Array, Ctor: { new (buffer: ArrayBuffer): T; BYTES_PER_ELEMENT: number }): T {
  const copy = new Uint8Array(data); // not data.slice(): on a Node Buffer that is a view, not a copy
  if (!LITTLE_ENDIAN) swapBytes(copy, Ctor.BYTES_PER_ELEMENT);
  return new Ctor(copy.buffer);
}

/** Reverses the bytes of each `size`-byte element of `bytes`, in place. */
export function swapBytes(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}

let halfTable: Float32Array | undefined;
function halfToFloat(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) halfTable[h] = sign * mantissa * 2 ** -24;
    else if (exponent === 31) halfTable[h] = mantissa ? NaN : sign * Infinity;
    else halfTable[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return halfTable;
}

/**
 * Decodes one tensor's bytes (exactly `info.end - info.start` of them) into a new tensor the
 * caller disposes: F32/F16/BF16 → float32 (exact upcast), I64/I32/I8/U8 → int32 (an I64 value
 * outside int32 throws), BOOL → bool.
 *
 * @example
 * ```ts
 * const info = parseSafetensorsHeader(bytes).tensors.get('bias')!;
 * const bias = decodeSafetensorsTensor(info, bytes.subarray(info.start, info.end)); // float32
 * ```
 */
export function decodeSafetensorsTensor(info: SafetensorsTensorInfo, data: Uint8Array): tf.Tensor {
  const expected = info.end - info.start;
  if (!(data instanceof Uint8Array) || data.byteLength !== expected) {
    const got = data instanceof Uint8Array ? `${data.byteLength} bytes` : describe(data);
    throw fail('INVALID_ARGUMENT', `decodeSafetensorsTensor: expected the ${expected} bytes of tensor "${info.name}"; got ${got}`);
  }
  const { shape } = info;
  switch (info.dtype) {
    case 'F32':
      return tf.tensor(littleEndian(data, Float32Array), shape, 'float32');
    case 'F16': {
      const table = halfToFloat();
      const halves = littleEndian(data, Uint16Array);
      const out = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
      return tf.tensor(out, shape, 'float32');
    }
    case 'BF16': {
      const halves = littleEndian(data, Uint16Array);
      const bits = new Uint32Array(halves.length);
      for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
      return tf.tensor(new Float32Array(bits.buffer), shape, 'float32');
    }
    case 'I32':
      return tf.tensor(littleEndian(data, Int32Array), shape, 'int32');
    case 'I64': {
      const words = littleEndian(data, Int32Array); // [low, high] pairs
      const out = new Int32Array(words.length / 2);
      for (let i = 0; i < out.length; i++) {
        const low = words[2 * i];
        if (words[2 * i + 1] !== low >> 31) {
          const value = new DataView(data.buffer, data.byteOffset + 8 * i, 8).getBigInt64(0, true);
          const expectation = 'expected values in the int32 range [-2147483648, 2147483647], as tfjs has no int64';
          throw new PosttrainError('SAFETENSORS_FORMAT', `tensor "${info.name}" (I64): ${expectation}; got ${value} at flat index ${i}`, {
            help: 'clamp or re-map the values before saving, or decode this tensor yourself from parseSafetensorsHeader',
          });
        }
        out[i] = low;
      }
      return tf.tensor(out, shape, 'int32');
    }
    case 'I8':
      return tf.tensor(Int32Array.from(new Int8Array(data.buffer, data.byteOffset, data.byteLength)), shape, 'int32');
    case 'U8':
      return tf.tensor(Int32Array.from(data), shape, 'int32');
    case 'BOOL':
      return tf.tensor(
        Uint8Array.from(data, (b) => (b ? 1 : 0)),
        shape,
        'bool',
      );
    default: {
      const supported = 'F32, F16, BF16, I64, I32, I8, U8, BOOL';
      throw new PosttrainError('NOT_SUPPORTED', `tensor "${info.name}": expected one of the dtypes tfjs can hold (${supported}); got ${info.dtype}`, {
        help: 'convert it before saving (torch: t.to(torch.float32) or t.to(torch.int32))',
      });
    }
  }
}

/**
 * Reads a whole safetensors file into new tensors, which the caller disposes. Every malformed
 * input throws a PosttrainError with code `SAFETENSORS_FORMAT` naming the tensor or field.
 *
 * @example
 * ```ts
 * const tensors = readSafetensors(new Uint8Array(await fs.readFile('model.safetensors')));
 * tensors['lm_head.weight'].shape; // [vocab, hidden]
 * ```
 */
export function readSafetensors(bytes: Uint8Array): Record<string, tf.Tensor> {
  const header = parseSafetensorsHeader(bytes);
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const info of header.tensors.values()) {
      setOwn(out, info.name, decodeSafetensorsTensor(info, bytes.subarray(info.start, info.end)));
    }
  } catch (error) {
    for (const tensor of Object.values(out)) tensor.dispose();
    throw error;
  }
  return out;
}
