// Rotary position embeddings (Su et al. 2021, "RoFormer", eq. 34) in Hugging Face's layout: the
// head dimension is split in halves (`rotate_half`), not interleaved pairs.
import { tf } from '@posttrain/tensor-core';
import type { Llama3RopeScaling } from '@posttrain/tensor-core';

/**
 * The `headDim / 2` inverse frequencies `θ^(−2i/d)`, computed in float32 as transformers does,
 * with Llama 3's frequency scaling when given (transformers' `_compute_llama3_parameters`: long
 * wavelengths divided by `factor`, short ones kept, the band between interpolated smoothly).
 */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling: Llama3RopeScaling | null): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / headDim));
  if (!scaling) return inv;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
  const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
  const highFreqWavelen = originalMaxPositions / highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowFreqWavelen) {
      inv[i] = inv[i] / factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    }
  }
  return inv;
}

/** `cos` and `sin` of `positions [B, T]` times the frequencies, each `[B, 1, T, headDim]`. */
export function ropeTables(positions: tf.Tensor, inverseFrequencies: tf.Tensor): { cos: tf.Tensor; sin: tf.Tensor } {
  const [b, t] = positions.shape as [number, number];
  const angles = positions
    .cast('float32')
    .reshape([b, t, 1])
    .mul(inverseFrequencies.reshape([1, 1, -1])); // [B, T, d/2]
  const emb = tf.concat([angles, angles], -1).reshape([b, 1, t, -1]);
  return { cos: emb.cos(), sin: emb.sin() };
}

/** `x·cos + rotate_half(x)·sin` for `x [B, heads, T, headDim]`, where rotate_half(x) = [−x₂, x₁]. */
export function applyRope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  const d = x.shape[3] as number;
  const [x1, x2] = tf.split(x, [d / 2, d / 2], 3);
  return x.mul(cos).add(tf.concat([x2.neg(), x1], 3).mul(sin));
}
