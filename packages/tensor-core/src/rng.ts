import { tf } from './tf.js';
import { PosttrainError } from './errors.js';

/**
 * A seeded pseudo-random generator (xoshiro128**, seeded through splitmix32). The same seed gives
 * the same numbers on every backend and platform, so initialisation, shuffling, dropout masks and
 * sampling are reproducible.
 *
 * @example
 * ```ts
 * const rng = new Rng(42);
 * rng.uniform();            // in [0, 1)
 * rng.int(10);              // in 0..9
 * const w = rng.normalTensor([4, 8], 0.02);
 * ```
 */
export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spareNormal: number | undefined;

  constructor(seed: number) {
    if (!Number.isInteger(seed)) {
      throw new PosttrainError('INVALID_ARGUMENT', `Rng: expected an integer seed; got ${seed}`);
    }
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** The next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new PosttrainError('INVALID_ARGUMENT', `Rng.int: expected a positive integer; got ${n}`);
    return Math.floor(this.uniform() * n);
  }

  /** A standard normal sample (Box–Muller). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const v = this.spareNormal;
      this.spareNormal = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  /** A new generator seeded from this one, for an independent stream. */
  fork(): Rng {
    return new Rng(this.nextUint32() | 0);
  }

  /** A float32 tensor of normal samples with the given standard deviation and mean. */
  normalTensor(shape: number[], std = 1, mean = 0): tf.Tensor {
    // std 0 is a constant: no samples drawn (models loading a checkpoint skip initialisation so).
    if (std === 0) return tf.fill(shape, mean, 'float32');
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    for (let i = 0; i < size; i++) values[i] = mean + std * this.normal();
    return tf.tensor(values, shape, 'float32');
  }

  /** A float32 tensor of uniform samples in [low, high). */
  uniformTensor(shape: number[], low = 0, high = 1): tf.Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    // A double just below `high` can round up to `high` when stored as float32; keep [low, high).
    const top = float32Below(high);
    for (let i = 0; i < size; i++) values[i] = Math.min(low + (high - low) * this.uniform(), top);
    return tf.tensor(values, shape, 'float32');
  }
}

/** The largest float32 strictly below `x` (for finite `x`). */
function float32Below(x: number): number {
  const f = new Float32Array([x]);
  if (f[0] < x) return f[0];
  const bits = new Int32Array(f.buffer);
  if (f[0] === 0)
    bits[0] = -2147483647; // -0 and 0 → the smallest negative subnormal
  else bits[0] += f[0] > 0 ? -1 : 1;
  return f[0];
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
