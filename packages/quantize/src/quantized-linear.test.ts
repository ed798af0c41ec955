import { Conv1D, Linear, initBackend, tf } from '@posttrain/tensor-core';
import { describe, expect, it } from 'vitest';
import { type AffineFixture, maxRelError, ref } from './fixture.js';
import { unpackInt32 } from './pack.js';
import { QuantizedLinear } from './quantized-linear.js';

const OUT = ref.out_features;
const IN = ref.in_features;
const weight = Float32Array.from(ref.weight);
const bias = Float32Array.from(ref.bias);
// Forward tolerance: the dequantised weights are bit-equal to torch's; the matmul's summation order
// differs, so outputs agree to float32 rounding. Asserted: |y - y_torch| ≤ 1e-5 · max(|y_torch|, 0.01)
// (outputs are O(0.1–1); the floor keeps an output that happens to be near 0 from dividing by ~0).
const TOL = 1e-5;

const affine: [string, AffineFixture, Parameters<typeof QuantizedLinear.fromWeight>[3], number][] = [
  // bytes: packed words + float32 scales (+ zero-points packed 8 per int32 along the output dim)
  ['int8', ref.int8, { scheme: 'int8' }, 16 * 32 * 4 + 16 * 4],
  ['int4 g32 symmetric', ref.int4_g32_sym, { scheme: 'int4', groupSize: 32 }, 16 * 16 * 4 + 16 * 4 * 4],
  ['int4 g64 zero-points', ref.int4_g64_asym, { scheme: 'int4', groupSize: 64, symmetric: false }, 16 * 16 * 4 + 16 * 2 * 4 + 2 * 2 * 4],
];

/** float32, with -0 read as 0 (torch writes -0.0 where (q - zero) · scale is a negative zero). */
const f32 = (v: number) => Math.fround(v) + 0;

async function values(t: tf.Tensor): Promise<number[]> {
  const v = Array.from(await t.data(), (x) => x + 0);
  t.dispose();
  return v;
}

describe.each(['cpu', 'wasm'] as const)('QuantizedLinear on %s', (backend) => {
  it.each(affine)("%s: torch's codes, packed words and scales exactly, its forward within 1e-5", async (_, fx, options, bytes) => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const layer = QuantizedLinear.fromWeight(weight, OUT, IN, options, { bias });
    const state = layer.stateDict();
    expect(await values(state.weight_packed!.clone())).toEqual(fx.packed);
    expect(Array.from(unpackInt32(Int32Array.from(fx.packed), OUT, IN, fx.bits))).toEqual(fx.q);
    expect(await values(state.weight_scale!.clone())).toEqual(fx.scales.map(f32));
    if (fx.symmetric) expect(state.weight_zero_point).toBeUndefined();
    else {
      const zp = state.weight_zero_point!;
      expect(zp.shape).toEqual([2, IN / fx.group_size]);
      const zt = await values(zp.transpose());
      expect(Array.from(unpackInt32(Int32Array.from(zt), IN / fx.group_size, OUT, fx.bits))).toEqual(transpose(fx.zeros, OUT, IN / fx.group_size));
    }
    expect(layer.weightBytes).toBe(bytes);
    expect(layer.numParameters()).toBe(0);
    expect(await values(layer.dequantizeWeight())).toEqual(fx.dequantized.map(f32));
    const x = tf.tensor2d(ref.x, [3, IN]);
    const y = layer.forward(x);
    expect(y.shape).toEqual([3, OUT]);
    expect(maxRelError(await values(y), fx.output, 0.01)).toBeLessThan(TOL);
    // the same layer from GPTQ's hand-over: codes, scales and zero-points as typed arrays
    const again = QuantizedLinear.fromIntegers({
      scheme: fx.bits === 8 ? 'int8' : 'int4',
      inFeatures: IN,
      outFeatures: OUT,
      q: Int8Array.from(fx.q),
      scales: Float32Array.from(fx.scales),
      zeros: fx.symmetric ? undefined : Int8Array.from(fx.zeros),
      groupSize: fx.group_size,
      bias,
    });
    expect(await values(again.forward(x))).toEqual(await values(layer.forward(x)));
    tf.dispose(x);
    layer.dispose();
    again.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("nf4: bitsandbytes' bytes and double-quantised absmax exactly, its forward within 1e-5, 1064 bytes", async () => {
    await initBackend(backend);
    const before = tf.memory().numTensors;
    const layer = QuantizedLinear.fromWeight(weight, OUT, IN, { scheme: 'nf4' }, { bias });
    const state = layer.stateDict();
    expect(Object.keys(state).sort()).toEqual(['bias', 'weight', 'weight_absmax', 'weight_nested_absmax', 'weight_nested_offset']);
    const words = Int32Array.from(await values(state.weight!.clone()));
    expect(Array.from(new Uint8Array(words.buffer))).toEqual(ref.nf4.packed_bytes);
    // 1024 code bytes + 32 absmax codes + one nested absmax + the offset
    expect(layer.weightBytes).toBe(1024 + 32 + 4 + 4);
    expect(await values(layer.dequantizeWeight())).toEqual(ref.nf4.dequantized.map(f32));
    const x = tf.tensor2d(ref.x, [3, IN]);
    expect(maxRelError(await values(layer.forward(x)), ref.nf4.output, 0.01)).toBeLessThan(TOL);
    x.dispose();
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('act-order gIdx: scales gathered per column', async () => {
    await initBackend(backend);
    const q = Int8Array.from(ref.int4_g32_sym.q);
    const scales = Float32Array.from(ref.int4_g32_sym.scales);
    const gIdx = Int32Array.from({ length: IN }, (_, j) => (j * 7) % 4); // columns scattered over 4 groups
    const layer = QuantizedLinear.fromIntegers({ scheme: 'int4', inFeatures: IN, outFeatures: OUT, q, scales, gIdx, groupSize: 32 });
    const w = await values(layer.dequantizeWeight());
    const expected = Array.from({ length: OUT * IN }, (_, i) => Math.fround((q[i] as number) * (scales[Math.floor(i / IN) * 4 + (gIdx[i % IN] as number)] as number)));
    expect(w).toEqual(expected);
    expect(layer.weightBytes).toBe(16 * 16 * 4 + 16 * 4 * 4 + IN * 4);
    layer.dispose();
  });
});

describe('QuantizedLinear construction and bad input', () => {
  it('quantizes a GPT-2 Conv1D ([in, out]) and gives one back', async () => {
    await initBackend('cpu');
    const conv = new Conv1D(IN, OUT);
    const wT = new Float32Array(IN * OUT);
    for (let i = 0; i < IN; i++) for (let o = 0; o < OUT; o++) wT[i * OUT + o] = weight[o * IN + i] as number;
    conv.weight.assign(tf.tensor2d(wT, [IN, OUT]));
    const layer = QuantizedLinear.fromLinear(conv, { scheme: 'int4', groupSize: 32 });
    expect(layer.origin).toBe('conv1d');
    expect(await values(layer.dequantizeWeight())).toEqual(ref.int4_g32_sym.dequantized.map(f32));
    const back = layer.toFloat();
    expect(back).toBeInstanceOf(Conv1D);
    expect(back.weight.shape).toEqual([IN, OUT]);
    const linear = new Linear(IN, OUT);
    const ql = QuantizedLinear.fromLinear(linear, { scheme: 'int8' });
    expect(ql.toFloat()).toBeInstanceOf(Linear);
    for (const m of [conv, layer, back, linear, ql]) m.dispose();
  });

  it('rejects bad options and codes, naming the field', () => {
    expect(() => QuantizedLinear.fromWeight(weight, OUT, IN, { scheme: 'int3' as 'int4' })).toThrow(/scheme 'int8', 'int4' or 'nf4'; got "int3"/);
    expect(() => QuantizedLinear.fromWeight(weight, OUT, IN, { scheme: 'int4', groupSize: 48 })).toThrow(/groupSize 32, 64 or 128 for int4; got 48/);
    expect(() => QuantizedLinear.fromWeight(weight, OUT, IN, { scheme: 'int8', groupSize: 32 })).toThrow(/int4 only/);
    expect(() => QuantizedLinear.fromWeight(weight, OUT, IN, { scheme: 'nf4', symmetric: false })).toThrow(/int4 only/);
    expect(() => QuantizedLinear.fromWeight(weight, OUT, IN, { groupsize: 32 } as never)).toThrow(/unknown option "groupsize"/);
    expect(() => QuantizedLinear.fromWeight(new Float32Array(16 * 96), 16, 96, { scheme: 'int4', groupSize: 64 }, { name: 'h.0.mlp' })).toThrow(
      /"h.0.mlp" inFeatures 96 is not divisible by groupSize 64/,
    );
    const nan = Float32Array.from(weight);
    nan[IN + 5] = Number.NaN;
    expect(() => QuantizedLinear.fromWeight(nan, OUT, IN, { scheme: 'nf4' }, { name: 'q_proj' })).toThrow(/"q_proj" has a non-finite weight NaN at \[1, 5\]/);
    const base = { scheme: 'int4' as const, inFeatures: 64, outFeatures: 2, q: new Int8Array(128), scales: new Float32Array(4).fill(0.1) };
    expect(() => QuantizedLinear.fromIntegers({ ...base, q: new Int8Array(128).fill(8) })).toThrow(/\[-8, 7\]; got 8 at index 0/);
    expect(() => QuantizedLinear.fromIntegers({ ...base, scales: new Float32Array(3) })).toThrow(/scales \[2, groups\]; got 3/);
    expect(() => QuantizedLinear.fromIntegers({ ...base, scales: new Float32Array(4) })).toThrow(/positive finite scales; got 0/);
    expect(() => QuantizedLinear.fromIntegers({ ...base, gIdx: new Int32Array(64).fill(2) })).toThrow(/gIdx values in \[0, 1\]; got 2/);
    expect(() => QuantizedLinear.fromIntegers({ ...base, zeros: new Int8Array(3) })).toThrow(/zeros/);
  });
});

function transpose(v: number[], rows: number, cols: number): number[] {
  return Array.from({ length: v.length }, (_, i) => v[(i % rows) * cols + Math.floor(i / rows)] as number);
}
