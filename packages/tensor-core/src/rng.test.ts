import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { isPosttrainError } from './errors.js';
import { Rng } from './rng.js';

function draw(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextUint32());
}

function meanAndStd(values: ArrayLike<number>): { mean: number; std: number } {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i];
  const mean = sum / values.length;
  let sq = 0;
  for (let i = 0; i < values.length; i++) sq += (values[i] - mean) ** 2;
  return { mean, std: Math.sqrt(sq / values.length) };
}

describe('Rng', () => {
  it('is xoshiro128**: matches the reference implementation from a known state', () => {
    // State and first outputs of Blackman & Vigna's xoshiro128starstar.c, as published with the
    // xoshiro-6502 port's test data (state words 964D4A0C D40AB895 AD7FDECB 3006F0F0).
    const rng = new Rng(0) as unknown as { s0: number; s1: number; s2: number; s3: number; nextUint32(): number };
    rng.s0 = 0x964d4a0c;
    rng.s1 = 0xd40ab895;
    rng.s2 = 0xad7fdecb;
    rng.s3 = 0x3006f0f0;
    expect(draw(rng as unknown as Rng, 4)).toEqual([0xf1391922, 0x6fe53806, 0xa5be2840, 0xf510ee70]);
  });

  it('gives the same sequence for the same seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    expect(draw(a, 100)).toEqual(draw(b, 100));
    expect([a.uniform(), a.normal(), a.int(1000)]).toEqual([b.uniform(), b.normal(), b.int(1000)]);
    const [t1, t2] = [new Rng(7).normalTensor([3, 4]), new Rng(7).normalTensor([3, 4])];
    expect(t1.arraySync()).toEqual(t2.arraySync());
    tf.dispose([t1, t2]);
  });

  it('gives different sequences for different seeds, including nearby and negative ones', () => {
    const seeds = [0, 1, 2, 42, -1, 2 ** 31 - 1];
    const firsts = seeds.map((s) => draw(new Rng(s), 4).join(','));
    expect(new Set(firsts).size).toBe(seeds.length);
    const a = draw(new Rng(1), 1000);
    const b = draw(new Rng(2), 1000);
    expect(a.filter((v, i) => v === b[i]).length).toBe(0);
  });

  it('outputs unsigned 32-bit integers', () => {
    expect(draw(new Rng(3), 10_000).every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32)).toBe(true);
  });

  it('rejects a non-integer seed', () => {
    for (const seed of [0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      let error: unknown;
      try {
        new Rng(seed);
      } catch (e) {
        error = e;
      }
      expect(isPosttrainError(error)).toBe(true);
      expect((error as Error).message).toContain('expected an integer seed');
    }
  });

  it('uniform is in [0, 1) with mean 1/2 and variance 1/12', () => {
    // n = 1e5: the standard error of the mean is 0.29/√n ≈ 0.0009; tolerances are ~5 standard errors.
    const rng = new Rng(11);
    const values = Array.from({ length: 100_000 }, () => rng.uniform());
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    const { mean, std } = meanAndStd(values);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(std - Math.sqrt(1 / 12))).toBeLessThan(0.003);
    // Each tenth of [0, 1) gets its share: expected 10,000, binomial sd ≈ 95.
    const bins = new Array(10).fill(0);
    for (const v of values) bins[Math.floor(v * 10)]++;
    for (const count of bins) expect(Math.abs(count - 10_000)).toBeLessThan(500);
  });

  it('int(n) covers exactly 0..n-1, evenly', () => {
    const rng = new Rng(5);
    const counts = new Array(7).fill(0);
    let outside = 0;
    for (let i = 0; i < 70_000; i++) {
      const k = rng.int(7);
      if (Number.isInteger(k) && k >= 0 && k < 7) counts[k]++;
      else outside++;
    }
    expect(outside).toBe(0);
    // Expected 10,000 each, binomial sd ≈ 93.
    for (const count of counts) expect(Math.abs(count - 10_000)).toBeLessThan(500);
    expect(new Rng(1).int(1)).toBe(0);
  });

  it('int rejects a non-positive or non-integer bound', () => {
    const rng = new Rng(0);
    for (const n of [0, -3, 2.5, Number.NaN]) expect(() => rng.int(n)).toThrow(/Rng.int: expected a positive integer/);
  });

  it('normal has mean ≈ 0 and std ≈ 1 over 1e5 samples', () => {
    // Standard errors at n = 1e5: mean 1/√n ≈ 0.0032, std 1/√(2n) ≈ 0.0022. Tolerance 0.015 (≥ 4.7 s.e.).
    const rng = new Rng(123);
    const values = Array.from({ length: 100_000 }, () => rng.normal());
    const { mean, std } = meanAndStd(values);
    expect(Math.abs(mean)).toBeLessThan(0.015);
    expect(Math.abs(std - 1)).toBeLessThan(0.015);
    // Tails as a standard normal: P(|z| > 1) = 0.3173, P(|z| > 2) = 0.0455; tolerance 0.006.
    expect(Math.abs(values.filter((v) => Math.abs(v) > 1).length / values.length - 0.3173)).toBeLessThan(0.006);
    expect(Math.abs(values.filter((v) => Math.abs(v) > 2).length / values.length - 0.0455)).toBeLessThan(0.006);
    expect(values.every(Number.isFinite)).toBe(true);
  });

  it('normalTensor and uniformTensor have the shape, dtype, scale and range asked for', () => {
    const rng = new Rng(9);
    const n = rng.normalTensor([200, 500], 0.02, 3);
    expect(n.shape).toEqual([200, 500]);
    expect(n.dtype).toBe('float32');
    const ns = meanAndStd(n.dataSync());
    expect(Math.abs(ns.mean - 3)).toBeLessThan(0.001); // s.e. 0.02/√1e5 ≈ 6e-5
    expect(Math.abs(ns.std - 0.02)).toBeLessThan(0.0005);
    const u = rng.uniformTensor([100_000], -0.25, 0.25);
    const data = u.dataSync();
    expect(data.every((v) => v >= -0.25 && v < 0.25)).toBe(true);
    expect(Math.abs(meanAndStd(data).mean)).toBeLessThan(0.003);
    tf.dispose([n, u]);
  });

  it('uniformTensor stays below high even where float32 would round up to it', () => {
    const rng = new Rng(0);
    // The largest uniform() value, 1 − 2⁻³², rounds to 1 in float32.
    (rng as unknown as { uniform: () => number }).uniform = () => 1 - 2 ** -32;
    for (const [low, high] of [
      [0, 1],
      [-0.5, 0.5],
      [-1, 0],
      [2, 3.1],
    ]) {
      const t = rng.uniformTensor([2], low, high);
      const v = t.dataSync()[0];
      t.dispose();
      expect(v).toBeLessThan(high);
      expect(v).toBeGreaterThan(high - 1e-6);
    }
  });

  it('shuffle returns the same array as a permutation, reproducibly', () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const shuffled = new Rng(4).shuffle(items);
    expect(shuffled).toBe(items);
    expect([...shuffled].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(shuffled.filter((v, i) => v === i).length).toBeLessThan(10); // expected fixed points: 1
    expect(new Rng(4).shuffle(Array.from({ length: 100 }, (_, i) => i))).toEqual(shuffled);
    expect(new Rng(5).shuffle(Array.from({ length: 100 }, (_, i) => i))).not.toEqual(shuffled);
    expect(new Rng(1).shuffle([])).toEqual([]);
    expect(new Rng(1).shuffle(['only'])).toEqual(['only']);
  });

  it('shuffle is uniform over the permutations of three items', () => {
    const rng = new Rng(8);
    const counts = new Map<string, number>();
    for (let i = 0; i < 60_000; i++) {
      const key = rng.shuffle(['a', 'b', 'c']).join('');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(counts.size).toBe(6);
    for (const count of counts.values()) expect(Math.abs(count - 10_000)).toBeLessThan(500); // sd ≈ 91
  });

  it('fork gives an independent stream, reproducibly', () => {
    const parent = new Rng(10);
    const child = parent.fork();
    const childValues = draw(child, 1000);
    const parentValues = draw(parent, 1000);
    expect(childValues.filter((v, i) => v === parentValues[i]).length).toBe(0);
    // Drawing from the child does not move the parent.
    const p2 = new Rng(10);
    const c2 = p2.fork();
    expect(draw(p2, 1000)).toEqual(parentValues);
    expect(draw(c2, 1000)).toEqual(childValues);
    // Two forks of one parent differ from each other.
    const p3 = new Rng(10);
    expect(draw(p3.fork(), 10)).not.toEqual(draw(p3.fork(), 10));
    // No linear relation between the child's and the parent's uniforms: |r| < 0.1 (s.e. ≈ 0.032 at n = 1000).
    const x = childValues.map((v) => v / 2 ** 32);
    const y = parentValues.map((v) => v / 2 ** 32);
    const mx = meanAndStd(x);
    const my = meanAndStd(y);
    let cov = 0;
    for (let i = 0; i < x.length; i++) cov += (x[i] - mx.mean) * (y[i] - my.mean);
    expect(Math.abs(cov / x.length / (mx.std * my.std))).toBeLessThan(0.1);
  });
});
