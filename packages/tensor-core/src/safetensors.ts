// The safetensors format: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
// `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { str: str } }`, then the
// data buffer, offsets relative to its start. Reading validates every field before it allocates
// anything sized by the file, so a hostile or truncated file fails with SAFETENSORS_FORMAT.
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
 * Options of {@link writeSafetensors}. Floats may be stored narrower and ints wider or narrower;
 * a conversion across kinds (int32 as F16, float32 as I64, bool as U8) is rejected.
 *
 * @example
 * ```ts
 * const options: WriteSafetensorsOptions = { floatDtype: 'BF16', dtypes: { 'model.norm.weight': 'F32', ids: 'I64' } };
 * ```
 */
export interface WriteSafetensorsOptions {
  /** How float32 tensors are stored: `'F32'` (exact), `'F16'` or `'BF16'` (round-to-nearest-even). */
  floatDtype?: 'F32' | 'F16' | 'BF16';
  /** How int32 tensors are stored: `'I32'`, `'I64'`, `'I8'` or `'U8'` (values must fit). */
  intDtype?: 'I32' | 'I64' | 'I8' | 'U8';
  /** Per-tensor dtypes by name, overriding `floatDtype` and `intDtype`. */
  dtypes?: Record<string, SafetensorsDtype>;
}

/**
 * Defaults of {@link writeSafetensors}: floats as F32, ints as I32, no per-tensor dtypes.
 *
 * @example
 * ```ts
 * defaultWriteSafetensorsOptions.floatDtype; // 'F32'
 * ```
 */
export const defaultWriteSafetensorsOptions: Required<WriteSafetensorsOptions> = Object.freeze({
  floatDtype: 'F32',
  intDtype: 'I32',
  dtypes: {},
}) as Required<WriteSafetensorsOptions>;

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
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};
const FORMAT_DTYPES = Object.keys(ELEMENT_BYTES) as SafetensorsFormatDtype[];
const STORABLE: Record<string, SafetensorsDtype[]> = { float32: ['F32', 'F16', 'BF16'], int32: ['I32', 'I64', 'I8', 'U8'], bool: ['BOOL'] };
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function formatError(message: string): PosttrainError {
  return new PosttrainError('SAFETENSORS_FORMAT', `invalid safetensors file: ${message}`, {
    help: 'the file is damaged or not safetensors; re-download or re-save it (torch: safetensors.torch.save_file)',
  });
}

function fail(code: 'INVALID_ARGUMENT' | 'INVALID_OPTION' | 'DTYPE_MISMATCH', message: string, help?: string): PosttrainError {
  return new PosttrainError(code, message, help === undefined ? {} : { help });
}

/** Defines an own enumerable property, so a key like `__proto__` is data, not the prototype. */
function setOwn<T>(object: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

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

function swapBytes(bytes: Uint8Array, size: number): void {
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
      return tf.tensor(Uint8Array.from(data, (b) => (b ? 1 : 0)), shape, 'bool');
    default:
      const supported = 'F32, F16, BF16, I64, I32, I8, U8, BOOL';
      throw new PosttrainError('NOT_SUPPORTED', `tensor "${info.name}": expected one of the dtypes tfjs can hold (${supported}); got ${info.dtype}`, {
        help: 'convert it before saving (torch: t.to(torch.float32) or t.to(torch.int32))',
      });
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

/**
 * The dtype each tensor is stored as, per {@link WriteSafetensorsOptions}; throws on a conversion
 * that cannot be done (int32 as F16, float32 as I64, …) or a `dtypes` key naming no tensor.
 * Used by {@link writeSafetensors} and by checkpoint sharding to size shards.
 *
 * @example
 * ```ts
 * storedDtypes({ w: tf.zeros([2]) }, { floatDtype: 'BF16' }); // Map { 'w' => 'BF16' }
 * ```
 */
export function storedDtypes(tensors: Record<string, tf.Tensor>, options?: WriteSafetensorsOptions): Map<string, SafetensorsDtype> {
  const owner = 'writeSafetensors';
  const o = resolveOptions(owner, options, defaultWriteSafetensorsOptions);
  for (const [key, kind] of [['floatDtype', 'float32'], ['intDtype', 'int32']] as const) {
    if (!STORABLE[kind].includes(o[key])) {
      throw fail('INVALID_OPTION', `${owner}: expected ${key} to be one of ${STORABLE[kind].join(', ')}; got ${describe(o[key])}`);
    }
  }
  if (!isObject(tensors)) throw fail('INVALID_ARGUMENT', `${owner}: expected a record of name → tensor; got ${describe(tensors)}`);
  if (!isObject(o.dtypes)) throw fail('INVALID_OPTION', `${owner}: expected dtypes to be a record of name → dtype; got ${describe(o.dtypes)}`);
  const unknown = Object.keys(o.dtypes).find((name) => !Object.hasOwn(tensors, name));
  if (unknown !== undefined) {
    throw fail('INVALID_OPTION', `${owner}: dtypes names "${unknown}", which is not among the tensors [${Object.keys(tensors).join(', ')}]`);
  }
  const out = new Map<string, SafetensorsDtype>();
  for (const [name, tensor] of Object.entries(tensors)) {
    if (name === '__metadata__') throw fail('INVALID_ARGUMENT', `${owner}: "__metadata__" is reserved by the format and cannot name a tensor`);
    if (!(tensor instanceof tf.Tensor) || tensor.isDisposed) {
      const got = tensor instanceof tf.Tensor ? 'a disposed tensor' : describe(tensor);
      throw fail('INVALID_ARGUMENT', `${owner}: expected "${name}" to be a live tf.Tensor; got ${got}`);
    }
    const allowed = STORABLE[tensor.dtype];
    if (!allowed) throw fail('DTYPE_MISMATCH', `${owner}: tensor "${name}" is ${tensor.dtype}; expected float32, int32 or bool`);
    const byKind = tensor.dtype === 'float32' ? o.floatDtype : tensor.dtype === 'int32' ? o.intDtype : 'BOOL';
    const dtype = Object.hasOwn(o.dtypes, name) ? o.dtypes[name] : byKind;
    if (!allowed.includes(dtype)) {
      const can = `a ${tensor.dtype} tensor can be stored as ${allowed.join(', ')}`;
      const cast = `cast it first (tf.cast(t, '${tensor.dtype === 'float32' ? 'int32' : 'float32'}')) or pick one of ${allowed.join(', ')}`;
      throw fail('DTYPE_MISMATCH', `${owner}: cannot store tensor "${name}" (${tensor.dtype}) as ${describe(dtype)}; ${can}`, cast);
    }
    out.set(name, dtype);
  }
  return out;
}

function encode(name: string, tensor: tf.Tensor, dtype: SafetensorsDtype): Uint8Array {
  const values = tensor.dataSync() as Float32Array | Int32Array | Uint8Array;
  const toBytes = (typed: Uint16Array | Int32Array | Float32Array): Uint8Array => {
    const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength).slice(); // a copy: never swap tfjs's own data
    if (!LITTLE_ENDIAN) swapBytes(bytes, typed.BYTES_PER_ELEMENT);
    return bytes;
  };
  switch (dtype) {
    case 'F32':
      return toBytes(values instanceof Float32Array ? values : Float32Array.from(values));
    case 'I32':
      return toBytes(values instanceof Int32Array ? values : Int32Array.from(values));
    case 'BOOL':
      return Uint8Array.from(values, (v) => (v ? 1 : 0));
    case 'F16':
    case 'BF16': {
      const bits = new Uint32Array(Float32Array.from(values).buffer);
      const convert = dtype === 'F16' ? floatBitsToHalf : floatBitsToBfloat;
      const halves = new Uint16Array(bits.length);
      for (let i = 0; i < bits.length; i++) halves[i] = convert(bits[i]);
      return toBytes(halves);
    }
    case 'I64': {
      const words = new Int32Array(2 * values.length);
      for (let i = 0; i < values.length; i++) [words[2 * i], words[2 * i + 1]] = [values[i], values[i] >> 31];
      return toBytes(words);
    }
    case 'I8':
    case 'U8': {
      const [min, max] = dtype === 'I8' ? [-128, 127] : [0, 255];
      const index = values.findIndex((v) => v < min || v > max);
      if (index >= 0) {
        const message = `expected values in [${min}, ${max}]; got ${values[index]} at flat index ${index}`;
        const help = `store it as I32 or I64, or clip it first (tf.clipByValue(t, ${min}, ${max}))`;
        throw fail('INVALID_ARGUMENT', `writeSafetensors: tensor "${name}" cannot be stored as ${dtype}: ${message}`, help);
      }
      return Uint8Array.from(values, (v) => v & 0xff);
    }
  }
}

/** float32 bits → IEEE half bits, round-to-nearest-even; overflow → ±inf, NaN stays NaN. */
function floatBitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const h = m >>> shift;
    return sign | (h + (rest > halfway || (rest === halfway && h & 1) ? 1 : 0));
  }
  const h = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  return sign | (h + (rest > 0x1000 || (rest === 0x1000 && h & 1) ? 1 : 0)); // a carry may reach inf, as it should
}

/** float32 bits → bfloat16 bits, round-to-nearest-even; NaN stays a quiet NaN. */
function floatBitsToBfloat(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function compareCodePoints(a: string, b: string): number {
  // Rust compares names as UTF-8 bytes, which is code-point order (JS `<` compares UTF-16 units).
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i].codePointAt(0)! - y[i].codePointAt(0)!;
  }
  return x.length - y.length;
}

/**
 * Serialises tensors (float32, int32, bool) to safetensors bytes, as the Rust implementation
 * does: tensors ordered by dtype alignment (descending) then name, the header padded with spaces
 * to a multiple of 8 bytes, `__metadata__` first when given. The tensors stay the caller's.
 *
 * @example
 * ```ts
 * const bytes = writeSafetensors({ 'lm_head.weight': w, ids: tf.tensor1d([1, 2], 'int32') }, { format: 'pt' }, {
 *   floatDtype: 'BF16',
 *   dtypes: { ids: 'I64' },
 * });
 * ```
 */
export function writeSafetensors(
  tensors: Record<string, tf.Tensor>,
  metadata?: Record<string, string>,
  options?: WriteSafetensorsOptions,
): Uint8Array {
  const dtypes = storedDtypes(tensors, options);
  if (metadata !== undefined && !isObject(metadata)) {
    throw fail('INVALID_ARGUMENT', `writeSafetensors: expected metadata to be a record of strings; got ${describe(metadata)}`);
  }
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if (typeof value !== 'string') {
      const help = 'safetensors metadata holds only strings; JSON.stringify other values';
      throw fail('INVALID_ARGUMENT', `writeSafetensors: expected metadata "${key}" to be a string; got ${describe(value)}`, help);
    }
  }
  const rank = (name: string) => FORMAT_DTYPES.indexOf(dtypes.get(name)!);
  const names = [...dtypes.keys()].sort((a, b) => rank(b) - rank(a) || compareCodePoints(a, b));
  const parts: string[] = metadata === undefined ? [] : [`"__metadata__":${JSON.stringify(metadata)}`];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const dtype = dtypes.get(name)!;
    const chunk = encode(name, tensors[name], dtype);
    const entry = { dtype, shape: tensors[name].shape, data_offsets: [offset, offset + chunk.byteLength] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`); // by hand: an object would put "0"-like names first
    chunks.push(chunk);
    offset += chunk.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLength);
  let position = 8 + headerLength;
  for (const chunk of chunks) {
    out.set(chunk, position);
    position += chunk.byteLength;
  }
  return out;
}
