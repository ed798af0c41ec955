// NaN and infinite weights found at load, where they can be named, rather than as NaN logits later.
import { PosttrainError, formatShape, tf } from '@posttrain/tensor-core';

/**
 * Throws `NON_FINITE` naming the first float tensor of `tensors` (in key order) that holds a NaN or
 * an infinity, with how many of each and the first bad index. One reduction per tensor
 * (Σ (x − x), NaN exactly when some x is not finite), read back once for all of them, asynchronously
 * (WebGPU in Node has no synchronous read).
 *
 * @example
 * ```ts
 * await checkFiniteWeights({ 'lm_head.weight': tf.tensor([1, NaN]) }, './tiny'); // rejects with NON_FINITE naming lm_head.weight
 * ```
 */
export async function checkFiniteWeights(tensors: Readonly<Record<string, tf.Tensor>>, where: string): Promise<void> {
  const keys = Object.keys(tensors).filter((k) => tensors[k].dtype === 'float32' && tensors[k].size > 0);
  if (keys.length === 0) return;
  const sums = keys.map((k) => tf.tidy(() => tf.sum(tf.sub(tensors[k], tensors[k]))));
  const stacked = tf.stack(sums);
  const flags = await stacked.data();
  tf.dispose([stacked, ...sums]);
  const bad = keys.findIndex((_, i) => Number.isNaN(flags[i]));
  if (bad < 0) return;
  const key = keys[bad];
  const values = await tensors[key].data();
  let nan = 0;
  let inf = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isFinite(v)) continue;
    if (Number.isNaN(v)) nan++;
    else inf++;
    if (first < 0) first = i;
  }
  const more = keys.slice(bad + 1).filter((_, i) => Number.isNaN(flags[bad + 1 + i])).length;
  throw new PosttrainError(
    'NON_FINITE',
    `loadModel: expected finite weights in ${where}; ${key} ${formatShape(tensors[key].shape)} holds ${nan} NaN and ${inf} infinite of its ${values.length} values (the first at flat index ${first})${more > 0 ? `, and ${more} more tensor${more > 1 ? 's' : ''} after it` : ''}`,
    { help: 'the checkpoint is damaged or was saved after training diverged: download or export it again; pass { allowNonFinite: true } to load it anyway' },
  );
}
