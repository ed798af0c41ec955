import { tf } from './tf.js';
import { PosttrainError, formatShape } from './errors.js';
import { describe } from './options.js';

/**
 * What {@link valueAndGrads} returns; the caller owns and disposes every tensor.
 *
 * @example
 * ```ts
 * const { value, grads }: ValueAndGrads = valueAndGrads(() => model.loss(ids), model.trainableParameters());
 * tf.dispose([value, ...grads.values()]);
 * ```
 */
export interface ValueAndGrads {
  /** The scalar `fn` returned. */
  value: tf.Scalar;
  /** d value / d parameter, keyed by parameter path. */
  grads: Map<string, tf.Tensor>;
}

/**
 * Runs `fn` (which must return a scalar, typically a loss) and returns its value and its gradient
 * with respect to each trainable parameter of `params`, keyed by the parameter's path rather than
 * by tfjs's auto-generated variable name. Built on `tf.variableGrads`: intermediate tensors of
 * `fn` are freed; `value` and the gradients are the caller's to dispose.
 *
 * Parameters that are not trainable, or that `fn` does not use, get no entry. A variable listed
 * under two paths (tied weights) is differentiated once and reported under its first path.
 *
 * @example
 * ```ts
 * const model = new Linear(4, 2);
 * const x = tf.ones([3, 4]);
 * const { value, grads } = valueAndGrads(() => tf.mean(tf.square(model.forward(x))) as tf.Scalar, model.namedParameters());
 * [...grads.keys()]; // ['weight', 'bias']
 * value.dispose(); tf.dispose([...grads.values()]);
 * ```
 */
export function valueAndGrads(fn: () => tf.Scalar, params: ReadonlyMap<string, tf.Variable>): ValueAndGrads {
  if (typeof fn !== 'function') {
    throw new PosttrainError('INVALID_ARGUMENT', `valueAndGrads: expected a function returning a scalar; got ${describe(fn)}`);
  }
  if (!(params instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `valueAndGrads: expected parameters as a Map of path → tf.Variable; got ${describe(params)}`, {
      help: 'pass model.namedParameters() or model.trainableParameters()',
    });
  }
  const pathOf = new Map<string, string>(); // variable name → first path
  const variables: tf.Variable[] = [];
  for (const [path, v] of params) {
    if (!(v instanceof tf.Variable)) {
      throw new PosttrainError('INVALID_ARGUMENT', `valueAndGrads: expected "${path}" to be a tf.Variable; got ${describe(v)}`);
    }
    if (!v.trainable || pathOf.has(v.name)) continue;
    pathOf.set(v.name, path);
    variables.push(v);
  }
  if (variables.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `valueAndGrads: expected at least one trainable parameter; got ${params.size} parameters, none trainable`, {
      help: 'unfreeze the parameters to train (module.unfreeze()) or pass trainableParameters() of a model that has some',
    });
  }

  // A bad result is reported after tfjs has finished (and cleaned up) its backward pass: throwing
  // inside the taped forward pass would leave the tape's saved tensors alive.
  let returned: tf.Tensor | undefined;
  let badResult: string | undefined;
  const checked = (): tf.Scalar => {
    const y = fn() as unknown;
    if (!(y instanceof tf.Tensor)) {
      badResult = describe(y);
      returned = tf.scalar(0);
    } else if (y.rank !== 0) {
      badResult = `shape ${formatShape(y.shape)}`;
      returned = tf.sum(y);
    } else {
      returned = y;
    }
    return returned as tf.Scalar;
  };
  const notScalar = (cause?: unknown) =>
    new PosttrainError('SHAPE_MISMATCH', `valueAndGrads: expected fn to return a scalar tensor; got ${badResult}`, {
      help: 'reduce the loss to a scalar, e.g. with tf.mean(loss)',
      ...(cause === undefined ? {} : { cause }),
    });

  let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    result = tf.variableGrads(checked, variables);
  } catch (error) {
    // tfjs throws after computing the value when no variable reaches it; free the value.
    if (returned && !returned.isDisposed) returned.dispose();
    if (badResult !== undefined) throw notScalar(error);
    const message = error instanceof Error ? error.message : String(error);
    if (message.includes('Cannot find a connection')) {
      throw new PosttrainError('INVALID_ARGUMENT', `valueAndGrads: fn's result does not depend on any of the ${variables.length} trainable parameters`, {
        cause: error,
        help: 'compute the loss from the parameters inside fn (tensors computed before the call carry no gradient)',
      });
    }
    throw error;
  }
  if (badResult !== undefined) {
    tf.dispose([result.value, ...Object.values(result.grads).filter((g): g is tf.Tensor => g !== null)]);
    throw notScalar();
  }

  const grads = new Map<string, tf.Tensor>();
  for (const v of variables) {
    const grad = result.grads[v.name];
    if (grad) grads.set(pathOf.get(v.name) as string, grad);
  }
  return { value: result.value, grads };
}
