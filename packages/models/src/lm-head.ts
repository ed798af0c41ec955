import { tf, type LinearLike } from '@posttrain/tensor-core';

/** `hidden [B, T, H]` → logits `[B, T, V]` through the tied embedding or the separate head (a Linear, or a LoRA / quantised layer put in its place). */
export function outputLogits(hidden: tf.Tensor, embedding: tf.Tensor, head: LinearLike | undefined): tf.Tensor {
  if (head) return head.forward(hidden);
  const [b, t, d] = hidden.shape as [number, number, number];
  return tf.matMul(hidden.reshape([b * t, d]), embedding, false, true).reshape([b, t, -1]);
}
