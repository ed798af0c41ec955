// pruneModel: the criteria applied to every selected linear layer of a model, in place, with the
// calibration statistics of @posttrain/policy (llm-compressor's SparseGPT / Wanda / magnitude modifiers).
import { type CalibrationBatch, type LinearLayerFilter, accumulateHessians, calibrationTargets, calibrationTokens, defaultCalibrationLayers } from '@posttrain/policy';
import { type CausalLM, Conv1D, Linear, PosttrainError, checkNumber, describeValue, resolveOptions, tf } from '@posttrain/tensor-core';
import { magnitudePrune, magnitudePruneGlobal } from './magnitude.js';
import { type SparsityPattern, checkDivides, checkFinite, resolveSparsity } from './nm.js';
import { sparsegptPrune } from './sparsegpt.js';
import { wandaPrune } from './wanda.js';

/** Options of {@link pruneModel}. */
export interface PruneModelOptions {
  method: 'magnitude' | 'wanda' | 'sparsegpt';
  /** Fraction pruned, in [0, 1); implied (1 − n/m) with an N:M pattern. */
  sparsity: number;
  pattern: SparsityPattern;
  /** Magnitude only: `'layer'` (each layer at `sparsity`) or `'global'` (one threshold over all selected layers). */
  scope: 'layer' | 'global';
  /**
   * Unstructured magnitude and Wanda: where the lowest scores of a layer are counted, `'layer'` or
   * `'row'` (each output row at `sparsity`); undefined: each method's own (magnitude per layer, Wanda
   * per row, as in their papers). SparseGPT selects within its column blocks and takes none.
   */
  comparison: 'layer' | 'row' | undefined;
  /** Which linear layers; default every linear layer but `lm_head`. */
  layers: LinearLayerFilter;
  /** SparseGPT's dampening (fraction of mean diag H). */
  dampening: number;
  /** SparseGPT's block size. */
  blockSize: number;
  /** Wanda and SparseGPT: one decoder block at a time, each block's statistics from the model with earlier blocks already pruned (the references' default). */
  sequential: boolean;
}

/** Frozen defaults of {@link pruneModel}: SparseGPT, 50% unstructured, per layer, 1% dampening, blocks of 128, sequential. */
export const defaultPruneModelOptions: Readonly<PruneModelOptions> = Object.freeze({
  method: 'sparsegpt',
  sparsity: 0.5,
  pattern: 'unstructured',
  scope: 'layer',
  comparison: undefined,
  layers: defaultCalibrationLayers,
  dampening: 0.01,
  blockSize: 128,
  sequential: true,
});

/** What {@link pruneModel} did to one layer. */
export interface PrunedLayer {
  path: string;
  /** `[out, in]`. */
  shape: [number, number];
  kept: number;
  total: number;
  /** Seconds the criterion took on this layer (calibration passes not included). */
  seconds: number;
}

/** What {@link pruneModel} returns: one row per layer and the masks (`[out, in]`, 1 = kept) by path. */
export interface PruneModelResult {
  layers: PrunedLayer[];
  masks: Map<string, Uint8Array>;
}

/**
 * Prunes the selected linear layers of `model` in place: the pruned weights become exact zeros
 * (and with SparseGPT the kept ones are updated). Magnitude needs no calibration (pass undefined);
 * Wanda and SparseGPT take their statistics from `accumulateHessians` (@posttrain/policy) over the
 * calibration batches, block by block when `sequential`. Everything is checked first; on an error
 * midway every weight is put back.
 *
 * @example
 * ```ts
 * const { layers, masks } = await pruneModel(model, calibration, { method: 'wanda', pattern: { n: 2, m: 4 } });
 * ```
 */
export async function pruneModel(model: CausalLM, calibration: readonly CalibrationBatch[] | undefined, options: Partial<PruneModelOptions> = {}): Promise<PruneModelResult> {
  const o = resolveOptions('pruneModel', options, defaultPruneModelOptions);
  const { sparsity, pattern } = resolveSparsity('pruneModel', options, o.sparsity, o.pattern);
  if (!['magnitude', 'wanda', 'sparsegpt'].includes(o.method))
    throw new PosttrainError('INVALID_OPTION', `pruneModel: expected method to be 'magnitude', 'wanda' or 'sparsegpt'; got ${describeValue(o.method)}`);
  if (o.scope !== 'layer' && o.scope !== 'global') throw new PosttrainError('INVALID_OPTION', `pruneModel: expected scope to be 'layer' or 'global'; got ${describeValue(o.scope)}`);
  if (o.scope === 'global' && (o.method !== 'magnitude' || pattern !== 'unstructured')) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `pruneModel: scope 'global' is for unstructured magnitude pruning; got method ${o.method} with pattern ${pattern === 'unstructured' ? pattern : `${pattern.n}:${pattern.m}`}`,
      { help: "use scope: 'layer'" },
    );
  }
  if (o.comparison !== undefined) {
    if (o.comparison !== 'layer' && o.comparison !== 'row')
      throw new PosttrainError('INVALID_OPTION', `pruneModel: expected comparison to be 'layer', 'row' or undefined; got ${describeValue(o.comparison)}`);
    if (o.method === 'sparsegpt' || o.scope === 'global' || pattern !== 'unstructured') {
      throw new PosttrainError(
        'INVALID_OPTION',
        `pruneModel: comparison is for unstructured magnitude or Wanda with scope 'layer'; got it with method ${o.method}, scope ${o.scope}, pattern ${pattern === 'unstructured' ? pattern : `${pattern.n}:${pattern.m}`}`,
        {
          help: 'leave comparison undefined',
        },
      );
    }
  }
  checkNumber('pruneModel', 'dampening', o.dampening, 'a number ≥ 0', (v) => v >= 0);
  checkNumber('pruneModel', 'blockSize', o.blockSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  const targets = calibrationTargets(model, o.layers);
  if (targets.length === 0) throw new PosttrainError('INVALID_ARGUMENT', 'pruneModel: the layers filter selected no linear layer of the model');
  const weights = new Map<string, Float32Array>();
  for (const [path, layer] of targets) {
    if (!(layer instanceof Linear) && !(layer instanceof Conv1D)) {
      throw new PosttrainError('NOT_SUPPORTED', `pruneModel: ${path} is a ${layer.constructor.name}, not a dense Linear or Conv1D`, {
        help: 'prune the base model before adding adapters, or leave the layer out with the layers option',
      });
    }
    const w = tf.tidy(() => (layer instanceof Conv1D ? layer.weight.transpose() : layer.weight).dataSync()) as Float32Array; // [out, in]
    checkFinite('pruneModel', w, layer.inFeatures, `the weight of ${path}`);
    if (pattern !== 'unstructured') checkDivides('pruneModel', layer.inFeatures, pattern.m, `${path}'s`);
    weights.set(path, w.slice());
  }
  if (o.method !== 'magnitude') {
    if (!Array.isArray(calibration)) throw new PosttrainError('INVALID_ARGUMENT', `pruneModel: ${o.method} needs calibration batches (an array of token-id rows); got ${describeValue(calibration)}`);
    const tokens = calibrationTokens(calibration);
    const widest = targets.reduce((a, b) => (b[1].inFeatures > a[1].inFeatures ? b : a));
    const needed = o.method === 'sparsegpt' ? widest[1].inFeatures : 1;
    if (tokens < needed) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `pruneModel: the calibration set has ${tokens} tokens; ${o.method} needs at least ${needed}${o.method === 'sparsegpt' ? `, the input features of ${widest[0]} (a full-rank Hessian needs as many tokens as inputs)` : ''}`,
        {
          help: 'add calibration rows: several times that is better (the papers use 128 × 2048 tokens)',
        },
      );
    }
  }
  const write = (path: string, w: Float32Array): void => {
    const layer = model.getModule(path) as Linear | Conv1D;
    const t = tf.tidy(() => {
      const m = tf.tensor2d(w, [layer.outFeatures, layer.inFeatures]);
      return layer instanceof Conv1D ? m.transpose() : m;
    });
    layer.weight.assign(t);
    t.dispose();
  };
  const result: PruneModelResult = { layers: [], masks: new Map() };
  const record = (path: string, mask: Uint8Array, w: Float32Array, start: number): void => {
    write(path, w);
    const layer = model.getModule(path) as Linear | Conv1D;
    result.masks.set(path, mask);
    result.layers.push({ path, shape: [layer.outFeatures, layer.inFeatures], kept: mask.reduce((s, v) => s + v, 0), total: mask.length, seconds: (performance.now() - start) / 1000 });
  };
  try {
    if (o.method === 'magnitude' && o.scope === 'global') {
      const start = performance.now();
      const masks = magnitudePruneGlobal([...weights.values()], { sparsity });
      [...weights.keys()].forEach((path, i) =>
        record(
          path,
          masks[i],
          Float32Array.from(weights.get(path) as Float32Array, (v, j) => (masks[i][j] ? v : 0)),
          start,
        ),
      );
    } else if (o.method === 'magnitude') {
      for (const [path, layer] of targets) {
        const start = performance.now();
        const r = magnitudePrune(weights.get(path) as Float32Array, [layer.outFeatures, layer.inFeatures], { sparsity, pattern, comparison: o.comparison ?? 'layer' });
        record(path, r.mask, r.weight, start);
      }
    } else {
      const blocks = new Map<string, string[]>();
      for (const [path] of targets) {
        const key = o.sequential ? blockOf(path) : '';
        blocks.set(key, [...(blocks.get(key) ?? []), path]);
      }
      for (const paths of blocks.values()) {
        const inBlock = new Set(paths);
        const stats = await accumulateHessians(model, calibration as CalibrationBatch[], { layers: (p) => inBlock.has(p), hessian: o.method === 'sparsegpt' });
        for (const path of paths) {
          const s = stats.get(path);
          if (!s || s.tokens === 0)
            throw new PosttrainError('INVALID_ARGUMENT', `pruneModel: ${path} saw no calibration input during the forward pass`, { help: 'leave it out with the layers option' });
          const start = performance.now();
          const w = weights.get(path) as Float32Array;
          const r =
            o.method === 'wanda'
              ? wandaPrune(w, s.columnNorms, { sparsity, pattern, comparison: o.comparison ?? 'row' })
              : sparsegptPrune(w, s.hessian as Float64Array, { sparsity, pattern, dampening: o.dampening, blockSize: o.blockSize });
          record(path, r.mask, r.weight, start);
        }
      }
    }
  } catch (error) {
    for (const [path, w] of weights) write(path, w);
    throw error;
  }
  return result;
}

/** The decoder block a layer belongs to: its path up to the first numeric segment (`model.layers.3`). */
function blockOf(path: string): string {
  const parts = path.split('.');
  const i = parts.findIndex((p) => /^\d+$/.test(p));
  return i < 0 ? path : parts.slice(0, i + 1).join('.');
}
