// pruneHeads: whole attention heads removed (grouped-query sharing kept), q/k/v rows and o columns cut out.
import { PosttrainError, describeValue as describe, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { captureLinearInputs, type CalibrationBatch } from '@posttrain/policy';
import {
  checkCalibration,
  checkCount,
  checkFraction,
  complement,
  consumerNorms,
  dense,
  exactlyOne,
  explicitLists,
  family,
  lowest,
  producerNorms,
  read,
  replace,
  setConfig,
  shape,
  stateBytes,
  keepInputs,
  keepOutputs,
  blocks,
  type Dense,
  type StructuredPruneReport,
  type StructuredScore,
} from './structured.js';

/** Options of {@link pruneHeads}. Give exactly one of `fraction` and `heads`. */
export interface PruneHeadsOptions {
  /**
   * Share of query heads removed in every layer, in [0, 1): `round(fraction · numKvHeads)` whole
   * key/value groups (`kvGroups: 'remove'`) or `round(fraction · groupSize)` query heads of every
   * group (`kvGroups: 'thin'`).
   */
  fraction: number | undefined;
  /**
   * The number of query heads removed in every layer, or the removed query-head indices of each
   * layer (one list per layer, all of the same length, in the original numbering).
   */
  heads: number | readonly (readonly number[])[] | undefined;
  /** Importance score: `'weight'` (default) or `'activation'` (needs `calibration`). See {@link pruneHeads}. */
  score: StructuredScore;
  /** Calibration batches (token-id rows, or tensors with an attention mask), read by `score: 'activation'`. */
  calibration: readonly CalibrationBatch[] | undefined;
  /**
   * Grouped-query attention. `'remove'` (default): remove whole key/value groups — a key/value head
   * together with every query head that reads it. `'thin'`: keep every key/value head and remove the
   * same number of query heads from every group. Both keep the layer expressible by
   * `num_attention_heads` / `num_key_value_heads`; multi-head attention (groups of one) uses `'remove'`.
   */
  kvGroups: 'remove' | 'thin';
}

/**
 * The defaults of {@link pruneHeads}: weight-magnitude scores, whole key/value groups removed.
 *
 * @example
 * ```ts
 * await pruneHeads(model, { ...defaultPruneHeadsOptions, fraction: 0.5 });
 * ```
 */
export const defaultPruneHeadsOptions: Readonly<PruneHeadsOptions> = Object.freeze({
  fraction: undefined,
  heads: undefined,
  score: 'weight',
  calibration: undefined,
  kvGroups: 'remove',
});

interface HeadPaths {
  q: string;
  k: string;
  v: string;
  o: string;
}

function headPaths(layer: number): HeadPaths {
  const base = `model.layers.${layer}.self_attn`;
  return { q: `${base}.q_proj`, k: `${base}.k_proj`, v: `${base}.v_proj`, o: `${base}.o_proj` };
}

/**
 * Removes the same number of attention heads from every layer of a Llama-family model (Llama,
 * Qwen2, Mistral), with real shape reduction: `q_proj` loses the heads' rows, `o_proj` their
 * columns, and `k_proj`/`v_proj` the rows of removed key/value heads (biases follow). `head_dim`
 * stays; `model.config.numHeads` / `numKvHeads` are rewritten, so `saveModel` writes a smaller
 * valid `config.json` (`num_attention_heads`, `num_key_value_heads`, `head_dim`). The logits equal
 * those of the original with the removed query heads' `o_proj` columns set to zero.
 *
 * Grouped-query attention (query head h reads key/value head `⌊h / groupSize⌋`, as Hugging Face's
 * `repeat_kv`): with `kvGroups: 'remove'` (default) whole groups go — a key/value head with all its
 * query heads, so the removed query-head count is a multiple of the group size; with
 * `kvGroups: 'thin'` every key/value head stays and every group loses the same number of query
 * heads (a multiple of `numKvHeads` in all). Every layer loses the same count (one config for all
 * layers); which heads go is chosen per layer by importance (lowest first, ties to the lower index;
 * a group's importance is the sum of its query heads'). GPT-2 is refused: its `config.json` ties the
 * head width to `n_embd / n_head`, so fewer heads cannot be expressed (prune its MLP channels).
 *
 * Importance of query head h (higher is kept):
 * - `score: 'weight'` (default): `‖W_o[:, h]‖_F · ‖W_v[g(h)]‖_F`, the head's `o_proj` columns times
 *   its key/value head's `v_proj` rows (the path of the head's values to the output).
 * - `score: 'activation'`: `(Σ_t ‖W_o[:, h] · z_{t,h}‖₂²)^½`, the L2 norm over the calibration tokens
 *   of the head's contribution to the attention output (`z_{t,h}` the head's attention output).
 *
 * Errors: fraction outside [0, 1); a request that removes every head or every group of a layer, or
 * breaks grouped-query sharing (a count not a multiple of the group size with `'remove'`, not a
 * multiple of `numKvHeads` with `'thin'`, or index lists that are not whole groups / an equal number
 * per group); lists of different lengths per layer; a layer that is not dense; GPT-2; score
 * "activation" without at least {@link MIN_STRUCTURED_CALIBRATION_TOKENS} calibration tokens.
 *
 * @example
 * ```ts
 * // 4 query heads sharing 2 key/value heads (groups of 2):
 * await pruneHeads(model, { heads: 2 });                       // one whole group per layer → 2 heads, 1 kv head
 * await pruneHeads(model2, { heads: 2, kvGroups: 'thin' });    // one query head per group → 2 heads, 2 kv heads
 * await pruneHeads(model3, { heads: [[0, 1], [2, 3]] });       // explicit: group 0 in layer 0, group 1 in layer 1
 * ```
 */
export async function pruneHeads(model: CausalLM, options: Partial<PruneHeadsOptions>): Promise<StructuredPruneReport> {
  const owner = 'pruneHeads';
  const o = resolveOptions(owner, options, defaultPruneHeadsOptions);
  const kind = family(owner, model);
  if (kind === 'gpt2') {
    throw new PosttrainError(
      'NOT_SUPPORTED',
      `${owner}: GPT-2 heads cannot be removed: its config.json derives the head width from n_embd / n_head, so a model with fewer heads of the same width has no valid config`,
      {
        help: 'prune the MLP channels of a GPT-2 model with pruneMlpChannels, or remove heads of a Llama-family model (its config has head_dim)',
      },
    );
  }
  exactlyOne(owner, ['fraction', o.fraction], ['heads', o.heads]);
  if (o.kvGroups !== 'remove' && o.kvGroups !== 'thin') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected kvGroups "remove" or "thin"; got ${describe(o.kvGroups)}`);
  }
  const config = model.config;
  const { numHeads, numKvHeads, headDim, numLayers } = config;
  const group = numHeads / numKvHeads;
  const thin = o.kvGroups === 'thin';
  if (thin && group === 1) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: kvGroups "thin" keeps every key/value head, but each of the ${numKvHeads} key/value heads is read by a single query head, so thinning would empty the groups`,
      {
        help: 'use kvGroups: "remove" (the default), which removes a query head together with its key/value head',
      },
    );
  }
  const layout = `${numHeads} query heads in ${numKvHeads} group(s) of ${group} sharing a key/value head`;

  // How many query heads go per layer (count), or which (lists).
  let count: number | undefined;
  let lists: number[][] | undefined;
  if (o.fraction !== undefined) {
    const fraction = checkFraction(owner, o.fraction);
    count = thin ? Math.round(fraction * group) * numKvHeads : Math.round(fraction * numKvHeads) * group;
    if (count >= numHeads) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: fraction ${fraction} would remove every head of each layer (${layout}; rounded to whole ${thin ? 'heads per group' : 'groups'})`, {
        help: `use a fraction below ${thin ? (group - 0.5) / group : (numKvHeads - 0.5) / numKvHeads}`,
      });
    }
  } else if (Array.isArray(o.heads)) {
    lists = explicitLists(owner, 'heads', o.heads, numLayers, numHeads, 'query head');
    checkHeadCount(owner, lists[0].length, numHeads, numKvHeads, thin, layout);
    for (const [l, list] of lists.entries()) checkHeadList(owner, l, list, numKvHeads, group, thin, layout);
  } else {
    count = checkHeadCount(owner, o.heads, numHeads, numKvHeads, thin, layout);
  }
  const calibration = await checkCalibration(owner, o.score, o.calibration);
  const paths = Array.from({ length: numLayers }, (_, l) => headPaths(l));
  const layers = paths.map((p) => ({ q: dense(owner, model, p.q), k: dense(owner, model, p.k), v: dense(owner, model, p.v), o: dense(owner, model, p.o) }));
  for (const [l, layer] of layers.entries()) {
    const widths: [string, number, number][] = [
      [paths[l].q, layer.q.outFeatures, numHeads * headDim],
      [paths[l].k, layer.k.outFeatures, numKvHeads * headDim],
      [paths[l].v, layer.v.outFeatures, numKvHeads * headDim],
      [paths[l].o, layer.o.inFeatures, numHeads * headDim],
    ];
    for (const [path, got, want] of widths) {
      if (got !== want) throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${path} to be ${want} wide (heads × head_dim from the config); got ${got}`);
    }
  }

  const scores: number[][] = [];
  const contributions = calibration
    ? await headContributions(
        model,
        calibration,
        paths.map((p) => p.o),
        numHeads,
        headDim,
      )
    : undefined;
  for (const [l, layer] of layers.entries()) {
    const s = new Array<number>(numHeads);
    if (contributions) {
      for (let h = 0; h < numHeads; h++) s[h] = Math.sqrt(contributions[l][h]);
    } else {
      const o = consumerNorms(layer.o); // per o_proj input column
      const v = producerNorms(layer.v); // per v_proj output row
      for (let h = 0; h < numHeads; h++) {
        let on = 0;
        let vn = 0;
        for (let j = 0; j < headDim; j++) {
          on += o[h * headDim + j];
          vn += v[Math.floor(h / group) * headDim + j];
        }
        s[h] = Math.sqrt(on * vn);
      }
    }
    scores.push(s);
  }
  const removed =
    lists ??
    scores.map((s) => {
      if (thin) {
        const perGroup = (count as number) / numKvHeads;
        return Array.from({ length: numKvHeads }, (_, g) => lowest(s.slice(g * group, (g + 1) * group), perGroup).map((j) => g * group + j)).flat();
      }
      const groupScores = Array.from({ length: numKvHeads }, (_, g) => s.slice(g * group, (g + 1) * group).reduce((a, b) => a + b, 0));
      return blocks(lowest(groupScores, (count as number) / group), group);
    });
  const removedKvHeads = removed.map((list) => (thin ? [] : Array.from(new Set(list.map((h) => Math.floor(h / group)))).sort((a, b) => a - b)));

  const before = shape(config);
  const parametersBefore = model.numParameters();
  const bytesBefore = stateBytes(model);
  if (removed[0].length > 0) {
    for (const [l, layer] of layers.entries()) {
      const keepQ = blocks(complement(numHeads, removed[l]), headDim);
      const keepKv = blocks(complement(numKvHeads, removedKvHeads[l]), headDim);
      replace(model, paths[l].q, keepOutputs(layer.q, keepQ));
      replace(model, paths[l].o, keepInputs(layer.o, keepQ));
      if (removedKvHeads[l].length > 0) {
        replace(model, paths[l].k, keepOutputs(layer.k, keepKv));
        replace(model, paths[l].v, keepOutputs(layer.v, keepKv));
      }
    }
    setConfig(owner, model, { numHeads: numHeads - removed[0].length, numKvHeads: numKvHeads - removedKvHeads[0].length });
  }
  return {
    unit: 'heads',
    score: o.score,
    removed,
    removedKvHeads,
    scores,
    before,
    after: shape(config),
    parametersBefore,
    parametersAfter: model.numParameters(),
    bytesBefore,
    bytesAfter: stateBytes(model),
  };
}

function checkHeadCount(owner: string, heads: unknown, numHeads: number, numKvHeads: number, thin: boolean, layout: string): number {
  const count = checkCount(owner, 'heads', heads, numHeads, 'query head');
  const group = numHeads / numKvHeads;
  if (!thin && count % group !== 0) {
    const lower = count - (count % group);
    throw new PosttrainError('INVALID_OPTION', `${owner}: heads ${count} would break grouped-query sharing: each layer has ${layout}, and kvGroups "remove" removes whole groups`, {
      help: `remove a multiple of ${group} query heads (${[lower, lower + group].filter((n) => n > 0 && n < numHeads).join(' or ') || 'none fits'}), or kvGroups: "thin" with a multiple of ${numKvHeads}`,
    });
  }
  if (thin && count % numKvHeads !== 0) {
    const lower = count - (count % numKvHeads);
    throw new PosttrainError('INVALID_OPTION', `${owner}: heads ${count} would break grouped-query sharing: each layer has ${layout}, and kvGroups "thin" removes the same number from every group`, {
      help: `remove a multiple of ${numKvHeads} query heads (${[lower, lower + numKvHeads].filter((n) => n > 0 && n < numHeads).join(' or ') || 'none fits'}), or kvGroups: "remove" with a multiple of ${group}`,
    });
  }
  return count;
}

function checkHeadList(owner: string, layer: number, list: number[], numKvHeads: number, group: number, thin: boolean, layout: string): void {
  const perGroup = new Array<number>(numKvHeads).fill(0);
  for (const h of list) perGroup[Math.floor(h / group)]++;
  const ok = thin ? perGroup.every((n) => n === perGroup[0]) : perGroup.every((n) => n === 0 || n === group);
  if (!ok) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: heads[${layer}] ${JSON.stringify(list)} would break grouped-query sharing (${layout}); it removes ${perGroup.join(', ')} query head(s) from the groups`,
      {
        help: thin
          ? 'with kvGroups "thin", remove the same number of query heads from every group'
          : `with kvGroups "remove", list whole groups (query heads g·${group} … g·${group} + ${group - 1}), or use kvGroups: "thin" to remove the same number from every group`,
      },
    );
  }
}

/** Per o_proj layer, each query head's summed squared contribution `Σ_t ‖W_o[:, h] z_{t,h}‖²` over the calibration tokens. */
async function headContributions(model: CausalLM, calibration: readonly CalibrationBatch[], outputs: string[], numHeads: number, headDim: number): Promise<Float64Array[]> {
  const index = new Map(outputs.map((p, i) => [p, i]));
  const sums = outputs.map(() => new Float64Array(numHeads));
  const weights = outputs.map((p) => (model.namedModules().get(p) as Dense).weight);
  await captureLinearInputs(model, calibration, {
    layers: (path) => index.has(path),
    onInput: (path, x) => {
      const i = index.get(path) as number;
      const w = weights[i]; // Linear [d, H·hd]
      const per = read(() => {
        const n = x.shape[0];
        const z = x.reshape([n, numHeads, headDim]).transpose([1, 0, 2]); // [H, n, hd]
        const wh = w.reshape([-1, numHeads, headDim]).transpose([1, 2, 0]); // [H, hd, d]
        return tf.matMul(z, wh).square().sum([1, 2]); // [H]
      });
      for (let h = 0; h < numHeads; h++) sums[i][h] += per[h];
    },
  });
  return sums;
}
