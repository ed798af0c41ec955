// The optimiser reference: scripts/reference/optim_ref.py writes fixtures/optim.json — 20-step runs
// of torch.optim.AdamW / SGD (+ clip_grad_norm_) on a toy loss, the gradients of the step-0 loss at
// the initial parameters, and clip_grad_norm_ on fixed gradients. Test support only: not exported
// from src/index.ts.
import { readFileSync } from 'node:fs';
import { tf } from '../tf.js';
import { variable } from './tensors.js';

/** One 20-step run of a torch optimiser on the toy loss. */
export interface OptimRun {
  name: string;
  optimizer: 'AdamW' | 'SGD';
  options: Record<string, unknown>;
  maxNorm: number | null;
  losses: number[];
  gradNorms: number[];
  clipped: boolean[];
  finalParams: Record<string, number[]>;
}

/** torch.nn.utils.clip_grad_norm_ on fixed gradients, for several maxNorm. */
export interface ClipFixture {
  shapes: Record<string, number[]>;
  grads: Record<string, number[]>;
  cases: { maxNorm: number; totalNorm: number; clipped: Record<string, number[]> }[];
}

export interface OptimFixture {
  steps: number;
  lossScales: number[];
  shapes: Record<string, number[]>;
  initialParams: Record<string, number[]>;
  initialGrads: Record<string, number[]>;
  data: Record<string, number[]>;
  runs: OptimRun[];
  clip: ClipFixture;
}

/** fixtures/optim.json. */
export const optimFixture = JSON.parse(readFileSync(new URL('../../fixtures/optim.json', import.meta.url), 'utf8')) as OptimFixture;

/**
 * The fixture's parameters as fresh variables keyed `toy.a`, `toy.b`, `toy.c`, in the fixture's order.
 *
 * @example
 * const params = makeParams();
 * const sgd = new SGD(params, { lr: 0.1 });
 */
export function makeParams(): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, values] of Object.entries(optimFixture.initialParams)) {
    out.set(`toy.${name}`, variable(values, optimFixture.shapes[name]));
  }
  return out;
}

/**
 * The fixture's data tensors (x, t, w) as fresh float32 tensors.
 *
 * @example
 * const loss = makeLoss(makeParams(), makeData());
 */
export function makeData(): Record<string, tf.Tensor> {
  return Object.fromEntries(Object.entries(optimFixture.data).map(([k, v]) => [k, tf.tensor(v, optimFixture.shapes[k], 'float32')]));
}

/**
 * The fixture's loss at step k: s_k·(mean((tanh(x a + b) − t)²) + 0.1·Σ w c² + 0.05·Σ tanh(c)·mean(h)),
 * h = tanh(x a + b), with s_k cycling through `lossScales`.
 *
 * @example
 * const { value, grads } = valueAndGrads(() => makeLoss(params, data)(0), params);
 */
export function makeLoss(params: Map<string, tf.Variable>, data: Record<string, tf.Tensor>): (k: number) => tf.Scalar {
  const [a, b, c] = ['toy.a', 'toy.b', 'toy.c'].map((p) => params.get(p) as tf.Variable);
  return (k) =>
    tf.tidy(() => {
      const h = tf.tanh(tf.add(tf.matMul(data.x as tf.Tensor2D, a as tf.Tensor2D), b));
      const fit = tf.mean(tf.square(tf.sub(h, data.t)));
      const decay = tf.mul(0.1, tf.sum(tf.mul(data.w, tf.square(c))));
      const coupling = tf.mul(tf.mul(0.05, tf.sum(tf.tanh(c))), tf.mean(h));
      return tf.mul(optimFixture.lossScales[k % optimFixture.lossScales.length], tf.add(tf.add(fit, decay), coupling)) as tf.Scalar;
    });
}
