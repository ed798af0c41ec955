// Validation shared by the optimisers (AdamW in optim.ts, SGD in sgd.ts): parameters, learning
// rate, gradients and state dicts, each checked before anything is updated or allocated.
import { tf } from './tf.js';
import { PosttrainError, formatShape } from './errors.js';
import { checkNumber, describe } from './options.js';

/** Throws unless `lr` is a finite number ≥ 0, naming `owner`; returns it. */
export function checkLr(owner: string, lr: unknown): number {
  return checkNumber(owner, 'lr', lr, '≥ 0', (v) => v >= 0);
}

/** Throws unless `params` is a non-empty Map of path → float32 tf.Variable; returns a copy. */
export function checkParams(owner: string, params: ReadonlyMap<string, tf.Variable>): Map<string, tf.Variable> {
  if (!(params instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected parameters as a Map of path → tf.Variable; got ${describe(params)}`, {
      help: 'pass model.namedParameters() or model.trainableParameters()',
    });
  }
  if (params.size === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least one parameter; got an empty map`);
  }
  for (const [path, p] of params) {
    if (!(p instanceof tf.Variable)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected "${path}" to be a tf.Variable; got ${describe(p)}`);
    }
    if (p.dtype !== 'float32') {
      throw new PosttrainError('DTYPE_MISMATCH', `${owner}: expected float32 parameters; "${path}" is ${p.dtype}`);
    }
  }
  return new Map(params);
}

/** Validates every gradient before anything is updated; returns [path, param, grad] triples. */
export function checkGrads(owner: string, params: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>): [string, tf.Variable, tf.Tensor][] {
  if (!(grads instanceof Map)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: expected gradients as a Map of path → tf.Tensor; got ${describe(grads)}`, {
      help: 'compute them with valueAndGrads(fn, params)',
    });
  }
  const out: [string, tf.Variable, tf.Tensor][] = [];
  const seen = new Map<tf.Variable, string>();
  for (const [path, grad] of grads) {
    const param = params.get(path);
    if (!param) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: got a gradient for "${path}", which is not one of the optimiser's ${params.size} parameters`, {
        help: `known paths start with ${[...params.keys()]
          .slice(0, 5)
          .map((k) => `"${k}"`)
          .join(', ')}${params.size > 5 ? ', …' : ''}`,
      });
    }
    if (!(grad instanceof tf.Tensor) || grad.isDisposed) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: expected the gradient of "${path}" to be a live tf.Tensor; got ${grad instanceof tf.Tensor ? 'a disposed tensor' : describe(grad)}`);
    }
    if (!sameShape(grad.shape, param.shape)) {
      throw new PosttrainError('SHAPE_MISMATCH', `${owner}.step: expected the gradient of "${path}" to have the parameter's shape ${formatShape(param.shape)}; got ${formatShape(grad.shape)}`);
    }
    if (grad.dtype !== 'float32') {
      throw new PosttrainError('DTYPE_MISMATCH', `${owner}.step: expected a float32 gradient for "${path}"; got ${grad.dtype}`);
    }
    const other = seen.get(param);
    if (other !== undefined) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}.step: got gradients for "${other}" and "${path}", which are the same variable (tied weights)`, {
        help: 'pass one gradient per variable; valueAndGrads returns tied weights under their first path',
      });
    }
    seen.set(param, path);
    out.push([path, param, grad]);
  }
  return out;
}

/**
 * Splits `<kind>.<path>` keys, checks kinds, paths, shapes and completeness, and returns per-path
 * entries: `step` kinds as numbers, the others as kept float32 copies. Throws listing every
 * problem; allocates nothing then.
 */
export function parseStateDict(
  owner: string,
  state: Record<string, tf.Tensor>,
  params: ReadonlyMap<string, tf.Variable>,
  kinds: string[],
  required: string[],
): Map<string, Record<string, tf.Tensor | number>> {
  if (typeof state !== 'object' || state === null || Array.isArray(state)) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}.loadStateDict: expected a record of tensors; got ${describe(state)}`);
  }
  const problems: string[] = [];
  const byPath = new Map<string, Record<string, tf.Tensor>>();
  const present = new Map<string, Set<string>>(); // kinds given per known path, valid or not
  for (const [key, tensor] of Object.entries(state)) {
    const dot = key.indexOf('.');
    const kind = dot < 0 ? key : key.slice(0, dot);
    const path = dot < 0 ? '' : key.slice(dot + 1);
    const param = params.get(path);
    if (!kinds.includes(kind)) {
      problems.push(`${key}: unknown state kind "${kind}" (expected ${kinds.join(', ')})`);
      continue;
    }
    if (!param) {
      problems.push(`${key}: "${path}" is not a parameter of this optimiser`);
      continue;
    }
    if (!present.has(path)) present.set(path, new Set());
    present.get(path)?.add(kind);
    if (!(tensor instanceof tf.Tensor) || tensor.isDisposed) {
      problems.push(`${key}: expected a live tf.Tensor`);
    } else if (kind === 'step' ? tensor.size !== 1 : !sameShape(tensor.shape, param.shape)) {
      problems.push(`${key}: expected shape ${kind === 'step' ? '[] (a scalar)' : formatShape(param.shape)}, got ${formatShape(tensor.shape)}`);
    } else {
      const entry = byPath.get(path) ?? {};
      entry[kind] = tensor;
      byPath.set(path, entry);
    }
  }
  for (const [path, kindsGiven] of present) {
    const missing = required.filter((k) => !kindsGiven.has(k));
    if (missing.length > 0) problems.push(`${path}: missing ${missing.map((k) => `${k}.${path}`).join(', ')}`);
  }
  const steps = new Map<string, number>();
  for (const [path, entry] of byPath) {
    if (entry.step) {
      // Scalars read one by one: a freshly created or file-loaded tensor is readable on every backend.
      const value = entry.step.dataSync()[0];
      if (!Number.isInteger(value) || value < 0) problems.push(`step.${path}: expected a non-negative integer; got ${value}`);
      steps.set(path, value);
    }
  }
  if (problems.length > 0) {
    throw new PosttrainError('STATE_DICT_MISMATCH', `${owner}.loadStateDict: the state dict does not match the optimiser:\n  ${problems.join('\n  ')}`, {
      help: 'load a state dict saved by the same kind of optimiser over the same parameters',
    });
  }
  const out = new Map<string, Record<string, tf.Tensor | number>>();
  for (const [path, entry] of byPath) {
    const copy: Record<string, tf.Tensor | number> = {};
    for (const [kind, t] of Object.entries(entry)) {
      copy[kind] = kind === 'step' ? (steps.get(path) as number) : tf.keep(tf.tidy(() => (t.dtype === 'float32' ? tf.clone(t) : tf.cast(t, 'float32'))));
    }
    out.set(path, copy);
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
