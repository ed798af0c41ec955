import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { parseSafetensorsHeader, readSafetensors, type SafetensorsDtype } from './safetensors.js';
import { writeSafetensors } from './safetensors-write.js';
import { withTempDir } from './testing/temp-dir.js';
import { disposeAll, expectNoTensorLeaks } from './testing/tensors.js';

// The writer: byte layout, dtype conversions and rounding. Round-trips and the reader are in safetensors.test.ts.
expectNoTensorLeaks(); // every test disposes what it made

/** Writes one float32 tensor as `dtype` and reads it back as plain numbers. */
function roundTrip(values: number[], dtype: SafetensorsDtype): number[] {
  const x = tf.tensor1d(values, 'float32');
  const back = readSafetensors(writeSafetensors({ x }, undefined, { dtypes: { x: dtype } }));
  const out = Array.from(back.x.dataSync());
  x.dispose();
  disposeAll(back);
  return out;
}

describe('writeSafetensors', () => {
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
    expect(Array.from(bytes.subarray(header.tensors.get('ids')!.start, header.tensors.get('ids')!.start + 16))).toEqual([0, 0, 0, 128, 255, 255, 255, 255, 255, 255, 255, 127, 0, 0, 0, 0]);
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
      [() => writeSafetensors({ i }, undefined, { dtypes: { i: 'F16' } }), 'DTYPE_MISMATCH', 'cannot store tensor "i" (int32) as "F16"; a int32 tensor can be stored as I32, I64, I8, U8'],
      [() => writeSafetensors({ f }, undefined, { dtypes: { f: 'I64' } }), 'DTYPE_MISMATCH', 'cannot store tensor "f" (float32) as "I64"; a float32 tensor can be stored as F32, F16, BF16'],
      [() => writeSafetensors({ b }, undefined, { dtypes: { b: 'U8' } }), 'DTYPE_MISMATCH', 'cannot store tensor "b" (bool) as "U8"'],
      [() => writeSafetensors({ i }, undefined, { dtypes: { i: 'I8' } }), 'INVALID_ARGUMENT', 'tensor "i" cannot be stored as I8: expected values in [-128, 127]; got 300 at flat index 0'],
      [() => writeSafetensors({ i }, undefined, { intDtype: 'U8' }), 'INVALID_ARGUMENT', 'tensor "i" cannot be stored as U8: expected values in [0, 255]; got 300 at flat index 0'],
      [() => writeSafetensors({ f }, undefined, { floatDtype: 'F64' as 'F32' }), 'INVALID_OPTION', 'expected floatDtype to be one of F32, F16, BF16; got "F64"'],
      [() => writeSafetensors({ f }, undefined, { dtype: 'F16' } as object), 'INVALID_OPTION', 'unknown option "dtype"; known options are floatDtype, intDtype, dtypes'],
      [() => writeSafetensors({ f }, undefined, { dtypes: { g: 'F16' } }), 'INVALID_OPTION', 'dtypes names "g", which is not among the tensors [f]'],
      [() => writeSafetensors({ __metadata__: f }), 'INVALID_ARGUMENT', '"__metadata__" is reserved by the format'],
      [() => writeSafetensors({ f }, { step: 3 as unknown as string }), 'INVALID_ARGUMENT', 'expected metadata "step" to be a string; got 3'],
      [() => writeSafetensors({ gone }), 'INVALID_ARGUMENT', 'expected "gone" to be a live tf.Tensor; got a disposed tensor'],
      [() => writeSafetensors({ x: [1, 2] as unknown as tf.Tensor }), 'INVALID_ARGUMENT', 'expected "x" to be a live tf.Tensor; got an array of length 2'],
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
});

describe('the PyTorch reference (scripts/reference/safetensors_ref.py)', () => {
  const tag = (v: unknown) => (Object.is(v, -0) ? '-0' : typeof v === 'number' && Number.isNaN(v) ? 'nan' : v);
  type Expected = { metadata: Record<string, string>; tensors: Record<string, { dtype: SafetensorsDtype; shape: number[]; values: unknown[] }> };

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
        input: tf.tensor1d([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519.99609375, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -25, -0, NaN, -Infinity, 0.1, 1e-8, 6.1e-5]),
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
    await withTempDir('posttrain-safetensors-', async (dir) => {
      await writeFile(join(dir, 'ours.safetensors'), bytes);
      await writeFile(join(dir, 'expected.json'), JSON.stringify(expected));
      const script = fileURLToPath(new URL('../../../scripts/reference/safetensors_ref.py', import.meta.url));
      const run = spawnSync(python!, [script, '--check', join(dir, 'ours.safetensors'), join(dir, 'expected.json')], { encoding: 'utf8' });
      expect(`${run.stdout}${run.stderr}`).toMatch(/^ok: 10 tensors checked/);
      expect(run.status).toBe(0);
    });
  });
});
