// What GPT-2 and Llama attention share: positions, the additive mask (causal + padding + packed
// segments), grouped-query scaled dot-product attention, and the KV cache.
import { PosttrainError, formatShape, tf, type ForwardOptions, type KVCache } from '@posttrain/tensor-core';

/** Added to the scores of keys a query must not see; finite, so a row with no key stays finite. */
const MASKED = -1e9;

/**
 * Cached keys and values per layer, `[B, numKvHeads, length, headDim]` (keys after RoPE), with the
 * attention mask of the cached positions. `forward` extends it in place and returns it; the caller
 * disposes it when decoding ends.
 */
export class LayerKVCache implements KVCache {
  readonly keys: (tf.Tensor | undefined)[];
  readonly values: (tf.Tensor | undefined)[];
  /** `[B, length]` of 1 (real) and 0 (padding), for the cached positions. */
  mask: tf.Tensor | undefined;

  /** `owner`: the model whose forward made the cache; another model's forward rejects it. */
  constructor(
    readonly numLayers: number,
    readonly owner?: object,
  ) {
    this.keys = new Array(numLayers).fill(undefined);
    this.values = new Array(numLayers).fill(undefined);
  }

  get length(): number {
    return this.keys[0]?.shape[2] ?? 0;
  }

  /** Appends this step's keys and values for `layer`; returns the full ones to attend over. */
  append(layer: number, k: tf.Tensor, v: tf.Tensor): { k: tf.Tensor; v: tf.Tensor } {
    const pastK = this.keys[layer];
    const pastV = this.values[layer];
    const fullK = pastK ? tf.concat([pastK, k], 2) : k;
    const fullV = pastV ? tf.concat([pastV, v], 2) : v;
    this.keys[layer] = tf.keep(fullK.clone());
    this.values[layer] = tf.keep(fullV.clone());
    pastK?.dispose();
    pastV?.dispose();
    return { k: fullK, v: fullV };
  }

  dispose(): void {
    tf.dispose([...this.keys, ...this.values, this.mask].filter((t): t is tf.Tensor => t !== undefined));
    this.keys.fill(undefined);
    this.values.fill(undefined);
    this.mask = undefined;
  }
}

/** Everything one forward pass needs for attention, computed once and shared by the layers. */
export interface AttentionContext {
  /** `[B, 1, T, past + T]` additive mask. */
  mask: tf.Tensor;
  /** `[B, T]` int32 positions. */
  positions: tf.Tensor;
  /** The cache to read and extend, when decoding. */
  cache: LayerKVCache | undefined;
}

/**
 * Checks the options and builds positions and the additive mask. Positions: explicit
 * `positionIds`; else restarting at 0 in each packed segment; else counting real tokens
 * (`cumsum(mask) − 1`, as Hugging Face's `generate` does, so left padding does not shift them);
 * else `past, past + 1, …`.
 * `owner` is the calling model: a cache is accepted only by the model that made it.
 * Must run inside `tf.tidy`.
 */
export function attentionContext(inputIds: tf.Tensor, options: ForwardOptions, numLayers: number, owner: object): AttentionContext {
  if (inputIds.rank !== 2 || inputIds.dtype !== 'int32') {
    throw new PosttrainError('SHAPE_MISMATCH', `forward: expected inputIds [B, T] int32; got ${formatShape(inputIds.shape)} ${inputIds.dtype}`);
  }
  const [b, t] = inputIds.shape as [number, number];
  let cache: LayerKVCache | undefined;
  if (options.cache !== undefined) {
    if (!(options.cache instanceof LayerKVCache) || options.cache.numLayers !== numLayers || options.cache.owner !== owner) {
      throw new PosttrainError('INVALID_ARGUMENT', 'forward: expected a cache returned by this model; got one made by another model (or not by a model)', {
        help: "pass the cache this model's forward returned, or start a new one with useCache: true",
      });
    }
    cache = options.cache;
  } else if (options.useCache) {
    cache = new LayerKVCache(numLayers, owner);
  }
  const past = cache?.length ?? 0;
  const total = past + t;
  const cachedBatch = cache?.keys[0]?.shape[0];
  if (cachedBatch !== undefined && cachedBatch !== b) {
    throw new PosttrainError('SHAPE_MISMATCH', `forward: expected inputIds with the cache's batch of ${cachedBatch} rows; got ${b}`);
  }
  // A cache made over packed rows would decode the next token against every segment at the wrong position.
  if (options.segmentIds && cache) {
    throw new PosttrainError('INVALID_ARGUMENT', 'forward: segmentIds (packed rows) cannot be combined with a cache', {
      help: 'decode unpacked rows with an attentionMask',
    });
  }

  // The mask over all positions (cached + new), [B, total]: the caller's, or the cached one
  // extended with ones for the new tokens.
  let fullMask: tf.Tensor | undefined;
  const given = options.attentionMask;
  if (given) {
    if (given.rank !== 2 || given.shape[0] !== b || (given.shape[1] !== total && given.shape[1] !== t)) {
      throw new PosttrainError('SHAPE_MISMATCH', `forward: expected attentionMask [${b}, ${total}] (cached + new positions) or [${b}, ${t}]; got ${formatShape(given.shape)}`);
    }
    fullMask = given.cast('float32');
    if (given.shape[1] !== total) fullMask = tf.concat([cache?.mask ?? tf.ones([b, past]), fullMask], 1);
  } else if (cache?.mask) {
    fullMask = tf.concat([cache.mask, tf.ones([b, t])], 1);
  }
  if (cache && fullMask) {
    cache.mask?.dispose();
    cache.mask = tf.keep(fullMask.clone());
  }

  let positions: tf.Tensor;
  if (options.positionIds) {
    if (options.positionIds.shape[0] !== b || options.positionIds.shape[1] !== t) {
      throw new PosttrainError('SHAPE_MISMATCH', `forward: expected positionIds [${b}, ${t}]; got ${formatShape(options.positionIds.shape)}`);
    }
    positions = options.positionIds.cast('int32');
  } else if (options.segmentIds) {
    positions = segmentPositions(checkSegments(options.segmentIds, b, t));
  } else if (fullMask) {
    positions = fullMask.cumsum(1).sub(1).maximum(0).slice([0, past], [b, t]).cast('int32');
  } else {
    positions = tf.range(past, total, 1, 'int32').expandDims(0).tile([b, 1]);
  }

  let mask = causalMask(t, past); // [1, 1, T, total]
  if (fullMask) mask = mask.add(tf.sub(1, fullMask).mul(MASKED).reshape([b, 1, 1, total]));
  if (options.segmentIds) {
    const seg = options.segmentIds.cast('int32');
    const same = tf.equal(seg.reshape([b, t, 1]), seg.reshape([b, 1, t]));
    mask = mask.add(tf.sub(1, same.cast('float32')).mul(MASKED).reshape([b, 1, t, t]));
  }
  mask = mask.maximum(MASKED); // several masks at once stay at MASKED, not a multiple of it
  return { mask, positions, cache };
}

function checkSegments(segmentIds: tf.Tensor, b: number, t: number): tf.Tensor {
  if (segmentIds.rank !== 2 || segmentIds.shape[0] !== b || segmentIds.shape[1] !== t) {
    throw new PosttrainError('SHAPE_MISMATCH', `forward: expected segmentIds [${b}, ${t}]; got ${formatShape(segmentIds.shape)}`);
  }
  return segmentIds.cast('int32');
}

/** Positions restarting at 0 where the segment id changes: `i − start(i)`, computed on the device. */
function segmentPositions(seg: tf.Tensor): tf.Tensor {
  const [b, t] = seg.shape as [number, number];
  const index = tf.range(0, t, 1, 'int32');
  const previous = tf.concat([seg.slice([0, 0], [b, 1]).sub(1), seg.slice([0, 0], [b, t - 1])], 1);
  const startsHere = tf.notEqual(seg, previous).cast('int32'); // [B, T]
  // start(i) = the largest j ≤ i that starts a segment.
  const lower = tf.linalg.bandPart(tf.ones([t, t], 'int32'), -1, 0); // [T, T], 1 where j ≤ i
  const starts = startsHere
    .mul(index)
    .reshape([b, 1, t])
    .mul(lower.reshape([1, t, t]))
    .max(-1); // [B, T]
  return index.reshape([1, t]).sub(starts);
}

/** `[1, 1, T, past + T]`: query i (at position past + i) sees keys ≤ past + i. */
function causalMask(t: number, past: number): tf.Tensor {
  const total = past + t;
  const values = new Float32Array(t * total);
  for (let i = 0; i < t; i++) values.fill(MASKED, i * total + past + i + 1, (i + 1) * total);
  return tf.tensor(values, [1, 1, t, total]);
}

/**
 * Scaled dot-product attention with grouped-query heads: `q [B, H, T, d]`, `k, v [B, Hkv, S, d]`,
 * additive `mask [B|1, 1, T, S]` → `[B, T, H·d]`. The query heads sharing a key/value head are
 * stacked along the query axis instead of copying keys and values H/Hkv times.
 */
export function scaledDotProductAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor): tf.Tensor {
  const [b, h, t, d] = q.shape as [number, number, number, number];
  const hkv = k.shape[1] as number;
  const s = k.shape[2] as number;
  const group = h / hkv;
  // The matMuls run on rank-3 [B·Hkv, …] tensors: tfjs-backend-wasm 4.22 writes out of bounds on a
  // rank-4 batched matMul whose batch dims are [1, 1] (one row, one KV head), corrupting its heap.
  const qg = q.reshape([b * hkv, group * t, d]);
  let scores = tf.matMul(qg, k.reshape([b * hkv, s, d]), false, true).mul(1 / Math.sqrt(d)); // [B·Hkv, group·T, S]
  scores = scores.reshape([b, hkv, group, t, s]).add(mask.reshape([mask.shape[0] as number, 1, 1, t, s]));
  const probs = tf.softmax(scores.reshape([b * hkv, group * t, s]));
  const out = tf.matMul(probs, v.reshape([b * hkv, s, d])); // [B·Hkv, group·T, d]
  return out
    .reshape([b, h, t, d])
    .transpose([0, 2, 1, 3])
    .reshape([b, t, h * d]);
}
