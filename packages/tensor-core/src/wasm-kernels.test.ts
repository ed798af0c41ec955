import { afterAll, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { initBackend } from './backend.js';
import { expectAllClose, readValues, seededNormal as random, type Values } from './testing/backend-parity.js';

// Every replaced or added wasm kernel is checked against the cpu backend, which is tfjs's
// reference implementation, on shapes that exercise each code path.

const TOL = 1e-5; // max |wasm − cpu| ≤ TOL · max(1, max |cpu|)

async function on(backend: 'cpu' | 'wasm', f: () => tf.Tensor | tf.Tensor[]): Promise<Values[]> {
  await initBackend(backend);
  return readValues(f());
}

describe('wasm kernels agree with cpu', () => {
  afterAll(async () => {
    await initBackend('cpu');
  });

  const cases: Array<{ name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }> = [
    { name: '2-D plain', a: [7, 5], b: [5, 3], ta: false, tb: false },
    { name: '2-D transposeA', a: [5, 7], b: [5, 3], ta: true, tb: false },
    { name: '2-D transposeB', a: [7, 5], b: [3, 5], ta: false, tb: true },
    { name: '2-D transposeB, fewer rows than the weight (swapped form)', a: [3, 5], b: [7, 5], ta: false, tb: true },
    { name: 'one row times a transposed weight (decoding)', a: [1, 5], b: [9, 5], ta: false, tb: true },
    { name: 'batch-1 3-D times a transposed 2-D weight', a: [1, 2, 5], b: [6, 5], ta: false, tb: true },
    { name: '2-D both transposed', a: [5, 7], b: [3, 5], ta: true, tb: true },
    { name: 'batched plain', a: [2, 3, 7, 5], b: [2, 3, 5, 4], ta: false, tb: false },
    { name: 'batched transposeB (attention scores)', a: [2, 3, 7, 5], b: [2, 3, 7, 5], ta: false, tb: true },
    { name: 'batched transposeA', a: [6, 5, 7], b: [6, 5, 4], ta: true, tb: false },
    { name: 'broadcast right operand', a: [4, 7, 5], b: [5, 3], ta: false, tb: false },
    { name: 'broadcast left operand', a: [1, 7, 5], b: [4, 5, 3], ta: false, tb: false },
  ];
  for (const c of cases) {
    it(`matMul: ${c.name}`, async () => {
      const a = random(c.a, 1);
      const b = random(c.b, 2);
      const run = () => tf.matMul(a(), b(), c.ta, c.tb);
      expectAllClose(await on('wasm', run), await on('cpu', run), TOL);
    });
  }

  it.each([
    [6, 4],
    [2, 7],
  ])('fused matMul with bias and transposeB, [%i, 5] × [%i, 5]ᵀ, forward and gradients', async (m, n) => {
    const x = random([m, 5], 3);
    const w = random([n, 5], 4);
    const bias = random([n], 5);
    const upstream = random([m, n], 6);
    const run = () => {
      const f = (xs: tf.Tensor, ws: tf.Tensor, bs: tf.Tensor) =>
        tf.fused
          .matMul({ a: xs as tf.Tensor2D, b: ws as tf.Tensor2D, transposeB: true, bias: bs })
          .mul(upstream())
          .sum();
      const { value, grads } = tf.valueAndGrads(f)([x(), w(), bias()]);
      return [value, ...grads];
    };
    expectAllClose(await on('wasm', run), await on('cpu', run), TOL);
  });

  it('UnsortedSegmentSum (the gradient of gather) scatter-adds repeated ids', async () => {
    const x = random([6, 3], 7);
    const ids = [2, 0, 2, 5, 1, 2];
    const run = () => tf.unsortedSegmentSum(x(), tf.tensor1d(ids, 'int32'), 6);
    expectAllClose(await on('wasm', run), await on('cpu', run), TOL);
  });

  it('UnsortedSegmentSum drops out-of-range ids, as TensorFlow does', async () => {
    const [out] = await on('wasm', () =>
      tf.unsortedSegmentSum(
        tf.tensor2d([
          [1, 2],
          [3, 4],
          [5, 6],
        ]),
        tf.tensor1d([0, 7, -1], 'int32'),
        2,
      ),
    );
    expect(out.values).toEqual([1, 2, 0, 0]);
  });

  for (const dtype of ['float32', 'int32'] as const) {
    it(`OneHot writes ${dtype} values`, async () => {
      const run = () => tf.oneHot(tf.tensor1d([2, 0, 3, -1], 'int32'), 4, 5, -2, dtype);
      const [wasm] = await on('wasm', run);
      expect(wasm.dtype).toBe(dtype);
      expect(wasm.values).toEqual([-2, -2, 5, -2, 5, -2, -2, -2, -2, -2, -2, 5, -2, -2, -2, -2]);
      expect(wasm).toEqual((await on('cpu', run))[0]);
    });
  }

  it('embedding gradient at a 32k vocabulary trains on wasm', async () => {
    const table = random([32000, 8], 8);
    const idValues = Array.from({ length: 64 }, (_, i) => (i * 7919) % 32000);
    idValues[5] = idValues[9]; // a repeat
    const run = () => tf.grad((w: tf.Tensor) => tf.gather(w, tf.tensor1d(idValues, 'int32')).square().sum())(table());
    const wasm = await on('wasm', run);
    expectAllClose(wasm, await on('cpu', run), TOL);
    expect(wasm[0].shape).toEqual([32000, 8]);
  });

  it('leaves no tensors behind', async () => {
    await initBackend('wasm');
    const a = tf.ones([2, 3, 4, 5]);
    const b = tf.ones([2, 3, 6, 5]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.matMul(a, b, false, true).dispose();
    tf.tidy(() => tf.unsortedSegmentSum(tf.ones([4, 2]), tf.tensor1d([0, 1, 0, 1], 'int32'), 2)).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b]);
  });
});
