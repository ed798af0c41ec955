// Writing safetensors: the dtype each tensor is stored as, its encoding (F16/BF16 rounded to
// nearest, ties to even) and the file layout of the Rust implementation. The format is in
// safetensors.ts.
import { tf } from './tf.js';
import { describe, resolveOptions } from './options.js';
import { FORMAT_DTYPES, LITTLE_ENDIAN, fail, isObject, swapBytes, type SafetensorsDtype } from './safetensors.js';

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
export const defaultWriteSafetensorsOptions: Readonly<Required<WriteSafetensorsOptions>> = Object.freeze({
  floatDtype: 'F32',
  intDtype: 'I32',
  dtypes: {},
}) as Required<WriteSafetensorsOptions>;

const STORABLE: Record<string, SafetensorsDtype[]> = { float32: ['F32', 'F16', 'BF16'], int32: ['I32', 'I64', 'I8', 'U8'], bool: ['BOOL'] };

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
  for (const [key, kind] of [
    ['floatDtype', 'float32'],
    ['intDtype', 'int32'],
  ] as const) {
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

type Values = Float32Array | Int32Array | Uint8Array;

function encode(name: string, values: Values, dtype: SafetensorsDtype): Uint8Array {
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
export function writeSafetensors(tensors: Record<string, tf.Tensor>, metadata?: Record<string, string>, options?: WriteSafetensorsOptions): Uint8Array {
  return serialize(tensors, (name) => tensors[name].dataSync() as Values, metadata, options);
}

/**
 * {@link writeSafetensors} reading the tensors asynchronously, so it works where synchronous
 * reads do not: WebGPU in Node (no `OffscreenCanvas`), and without stalling a browser's GPU.
 *
 * @example
 * ```ts
 * const bytes = await writeSafetensorsAsync(model.stateDict(), { format: 'pt' });
 * ```
 */
export async function writeSafetensorsAsync(tensors: Record<string, tf.Tensor>, metadata?: Record<string, string>, options?: WriteSafetensorsOptions): Promise<Uint8Array> {
  storedDtypes(tensors, options); // validate before reading anything from the device
  const values = new Map<string, Values>();
  for (const [name, tensor] of Object.entries(tensors)) values.set(name, (await tensor.data()) as Values);
  return serialize(tensors, (name) => values.get(name)!, metadata, options);
}

function serialize(tensors: Record<string, tf.Tensor>, valuesOf: (name: string) => Values, metadata: Record<string, string> | undefined, options: WriteSafetensorsOptions | undefined): Uint8Array {
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
    const chunk = encode(name, valuesOf(name), dtype);
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
