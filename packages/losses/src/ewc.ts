// Elastic weight consolidation: the diagonal Fisher of a finished task and the quadratic penalty
// that keeps the parameters that mattered to it close to where they were.
import { PosttrainError, checkNumber, formatShape, resolveOptions, tf, valueAndGrads } from '@posttrain/tensor-core';

/**
 * The empirical Fisher diagonal of Kirkpatrick et al. 2017 (EWC, arXiv 1612.00796, §2 and
 * eq. 3's F_i), estimated from gradients: for each parameter, the mean over `batches` of the
 * squared gradient of `lossFn(batch)`,
 * F = (1/K) Σ_k (∂ L_k / ∂ θ)²,
 * computed with `valueAndGrads` one batch at a time (so memory does not grow with K).
 *
 * This is the batch-gradient empirical Fisher: the gradient is squared after the batch's loss has
 * reduced over its examples, and the data's labels are used (not labels sampled from the model).
 * It equals the per-example empirical Fisher only for batches of one example with a per-example
 * loss; a mean-reduced loss over n examples gives roughly 1/n of it. Pass single-example batches
 * for the per-example estimate, and keep the same reduction when comparing λ across runs.
 *
 * Returns a new `Map` with one float32 tensor per entry of `params` (same key and shape), which the
 * caller disposes. Parameters that are not trainable, or that the loss does not reach, get zeros;
 * a variable listed under two keys (tied weights) gets the same Fisher under both. Throws
 * INVALID_ARGUMENT when `batches` is empty, and passes on `valueAndGrads`'s errors (a loss that is
 * not a scalar, or that depends on none of the parameters), freeing what it had accumulated.
 *
 * @example
 * ```ts
 * const weight = tf.variable(tf.randomNormal([4, 3]));  // [D, C]
 * const params = new Map([['weight', weight]]);
 * const batches = [{ x: tf.randomNormal([8, 4]), y: tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1], 'int32'), 3) }];
 * const fisher = fisherDiagonal(params, batches, ({ x, y }) => tf.losses.softmaxCrossEntropy(y, tf.matMul(x, weight)) as tf.Scalar);
 * fisher.get('weight'); // [4, 3]
 * ```
 */
export function fisherDiagonal<Batch>(params: ReadonlyMap<string, tf.Variable>, batches: Iterable<Batch>, lossFn: (batch: Batch) => tf.Scalar): Map<string, tf.Tensor> {
  const owner = 'fisherDiagonal';
  if (!(params instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected params as a Map of name → tf.Variable; got ${typeof params}`, {
      help: 'pass model.namedParameters() or new Map([[name, variable], ...])',
    });
  }
  if (batches === null || typeof (batches as Partial<Iterable<Batch>>)?.[Symbol.iterator] !== 'function') {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected batches to be an iterable (an array or a generator); got ${batches === null ? 'null' : typeof batches}`);
  }
  if (typeof lossFn !== 'function') {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected lossFn to be a function from a batch to a scalar loss; got ${typeof lossFn}`);
  }
  const sums = new Map<string, tf.Tensor>(); // key of the first listing of each variable → Σ g²
  let count = 0;
  try {
    for (const batch of batches) {
      const { value, grads } = valueAndGrads(() => lossFn(batch), params);
      value.dispose();
      for (const [key, grad] of grads) {
        const previous = sums.get(key);
        sums.set(
          key,
          tf.tidy(() => (previous ? tf.add(previous, tf.square(grad)) : tf.square(grad))),
        );
        previous?.dispose();
        grad.dispose();
      }
      count++;
    }
  } catch (error) {
    tf.dispose([...sums.values()]);
    throw error;
  }
  if (count === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one batch; got none`, {
      help: 'pass the batches of the task whose parameters EWC should protect (a few hundred examples are typical)',
    });
  }

  const firstKey = new Map<tf.Variable, string>();
  for (const [key, variable] of params) if (!firstKey.has(variable)) firstKey.set(variable, key);
  const fisher = new Map<string, tf.Tensor>();
  for (const [key, variable] of params) {
    const sum = sums.get(firstKey.get(variable)!);
    fisher.set(key, sum ? tf.div(sum, count) : tf.zeros(variable.shape, 'float32'));
  }
  tf.dispose([...sums.values()]);
  return fisher;
}

/**
 * Options of {@link ewcPenalty}.
 *
 * @example
 * ```ts
 * const options: EwcPenaltyOptions = { lambda: 100 };
 * ```
 */
export interface EwcPenaltyOptions {
  /** λ ≥ 0, how much the old task matters next to the new one. Default 1 (task-dependent; EWC tunes it per experiment). */
  lambda: number;
}

/**
 * Defaults of {@link ewcPenalty}: λ = 1. TRL has no EWC; Kirkpatrick et al. tune λ per task (its
 * scale depends on the loss's reduction, see {@link fisherDiagonal}).
 *
 * @example
 * ```ts
 * ewcPenalty(params, anchors, fisher, { ...defaultEwcPenaltyOptions, lambda: 400 });
 * ```
 */
export const defaultEwcPenaltyOptions: Readonly<EwcPenaltyOptions> = Object.freeze({ lambda: 1 });

/**
 * What {@link ewcPenalty} returns; the caller disposes it.
 *
 * @example
 * ```ts
 * const { loss }: EwcPenaltyOutput = ewcPenalty(params, anchors, fisher, { lambda: 100 });
 * ```
 */
export interface EwcPenaltyOutput {
  /** Scalar: (λ/2)·Σ_i F_i (θ_i − θ*_i)², to add to the new task's loss. */
  loss: tf.Scalar;
}

/**
 * The EWC penalty of Kirkpatrick et al. 2017 (arXiv 1612.00796, eq. 3):
 * (λ/2)·Σ_i F_i·(θ_i − θ*_i)², summed over every element of every parameter in `params`, where
 * `anchors` holds θ* (the parameters after the old task) and `fisher` the Fisher diagonal F
 * ({@link fisherDiagonal}), both keyed as `params`. Add it to the new task's loss; the gradient
 * reaches `params` (tf.Variables or any tensors), and anchors and Fisher are meant to be constants.
 *
 * Every key of `params` must be in `anchors` and `fisher` with the same shape: a missing key throws
 * STATE_DICT_MISMATCH and a shape difference SHAPE_MISMATCH, each naming the keys (and shapes).
 * Extra keys in `anchors` or `fisher` are ignored, so one saved Fisher can serve a subset of the
 * parameters. An empty `params` gives 0.
 *
 * @example
 * ```ts
 * const theta = tf.variable(tf.tensor1d([1, 2]));
 * const params = new Map([['theta', theta]]);
 * const anchors = new Map([['theta', tf.tensor1d([0, 2])]]); // θ* after the old task
 * const fisher = new Map([['theta', tf.tensor1d([4, 1])]]);  // F, from fisherDiagonal
 * const { loss } = ewcPenalty(params, anchors, fisher, { lambda: 2 }); // (2/2)·4·(1 − 0)² = 4
 * ```
 */
export function ewcPenalty(
  params: ReadonlyMap<string, tf.Tensor>,
  anchors: ReadonlyMap<string, tf.Tensor>,
  fisher: ReadonlyMap<string, tf.Tensor>,
  options?: Partial<EwcPenaltyOptions>,
): EwcPenaltyOutput {
  const owner = 'ewcPenalty';
  const o = resolveOptions(owner, options, defaultEwcPenaltyOptions);
  checkNumber(owner, 'lambda', o.lambda, 'a number ≥ 0', (v) => v >= 0);
  for (const [name, map] of Object.entries({ params, anchors, fisher })) {
    if (!(map instanceof Map)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} as a Map of name → tensor; got ${map === null ? 'null' : typeof map}`);
    }
  }
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const [key, theta] of params) {
    if (!(theta instanceof tf.Tensor)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected params "${key}" to be a tensor; got ${theta === null ? 'null' : typeof theta}`);
    }
    const anchor = anchors.get(key);
    const f = fisher.get(key);
    if (!(anchor instanceof tf.Tensor)) missing.push(`anchors has no "${key}"`);
    if (!(f instanceof tf.Tensor)) missing.push(`fisher has no "${key}"`);
    const same = (t: tf.Tensor | undefined) => !(t instanceof tf.Tensor) || (t.rank === theta.rank && t.shape.every((d, i) => d === theta.shape[i]));
    if (!same(anchor) || !same(f)) {
      mismatched.push(`"${key}": params ${formatShape(theta.shape)}, anchors ${anchor ? formatShape(anchor.shape) : '(missing)'}, fisher ${f ? formatShape(f.shape) : '(missing)'}`);
    }
  }
  if (missing.length > 0) {
    throw new PosttrainError('STATE_DICT_MISMATCH', `${owner}: expected anchors and fisher to hold every key of params; ${missing.join(', ')}`, {
      help: 'snapshot the anchors and compute the Fisher from the same parameter map (same keys) after the old task',
    });
  }
  if (mismatched.length > 0) {
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected params, anchors and fisher of the same shape under each key; got ${mismatched.join('; ')}`, {
      help: 'the anchors and Fisher must come from the same model architecture as params',
    });
  }
  return tf.tidy(() => {
    let total: tf.Tensor = tf.scalar(0);
    for (const [key, theta] of params) {
      if (theta.size === 0) continue; // nothing to penalise (and wasm's sum of an empty tensor is garbage)
      const d = tf.sub(theta, anchors.get(key)!);
      total = tf.add(total, tf.sum(tf.mul(fisher.get(key)!, tf.square(d))));
    }
    return { loss: tf.mul(total, o.lambda / 2) as tf.Scalar };
  });
}
