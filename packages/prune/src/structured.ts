// Structured pruning: whole attention heads and MLP intermediate channels removed with real shape
// reduction, the config rewritten, so the saved checkpoint is a smaller valid Hugging Face model.
import { Conv1D, Linear, PosttrainError, Rng, describeValue as describe, resolveOptions, tf, type CausalLM, type ModelConfig } from '@posttrain/tensor-core';
import { calibrationTokens, captureLinearInputs, type CalibrationBatch } from '@posttrain/policy';

/**
 * How a unit's importance is measured. `'weight'` needs no data; `'activation'` runs the
 * `calibration` batches once and measures each unit's actual contribution to the layer's output.
 */
export type StructuredScore = 'weight' | 'activation';

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

/** Options of {@link pruneMlpChannels}. Give exactly one of `fraction` and `channels`. */
export interface PruneMlpChannelsOptions {
  /** Share of the MLP's intermediate channels removed in every layer, in [0, 1): `round(fraction · intermediateSize)`. */
  fraction: number | undefined;
  /** The number of channels removed in every layer, or the removed channel indices of each layer (lists of equal length). */
  channels: number | readonly (readonly number[])[] | undefined;
  /** Importance score: `'weight'` (default) or `'activation'` (needs `calibration`). See {@link pruneMlpChannels}. */
  score: StructuredScore;
  /** Calibration batches (token-id rows, or tensors with an attention mask), read by `score: 'activation'`. */
  calibration: readonly CalibrationBatch[] | undefined;
}

/**
 * The defaults of {@link pruneMlpChannels}: weight-magnitude scores.
 *
 * @example
 * ```ts
 * await pruneMlpChannels(model, { ...defaultPruneMlpChannelsOptions, fraction: 0.25 });
 * ```
 */
export const defaultPruneMlpChannelsOptions: Readonly<PruneMlpChannelsOptions> = Object.freeze({
  fraction: undefined,
  channels: undefined,
  score: 'weight',
  calibration: undefined,
});

/** The fewest real calibration tokens `score: 'activation'` accepts: fewer give a ranking dominated by noise. */
export const MIN_STRUCTURED_CALIBRATION_TOKENS = 64;

/** The config fields structured pruning changes. */
export interface StructuredShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
}

/** What {@link pruneHeads} and {@link pruneMlpChannels} did. */
export interface StructuredPruneReport {
  /** What was removed: attention heads or MLP intermediate channels. */
  unit: 'heads' | 'mlp-channels';
  score: StructuredScore;
  /** Per layer, the removed indices in the original numbering, ascending (query heads, or channels). */
  removed: number[][];
  /** Per layer, the removed key/value heads (heads only; empty lists with `kvGroups: 'thin'`). */
  removedKvHeads: number[][];
  /** Per layer, every unit's importance (query heads, or channels), higher = kept first. */
  scores: number[][];
  before: StructuredShape;
  after: StructuredShape;
  /** Parameter count (tied weights once) before and after. */
  parametersBefore: number;
  parametersAfter: number;
  /** Bytes of the state dict's tensors as `saveModel` writes them (F32): the safetensors payload, header excluded. */
  bytesBefore: number;
  bytesAfter: number;
}

type Dense = Linear | Conv1D;
type Family = 'llama' | 'gpt2';

function family(owner: string, model: CausalLM): Family {
  const type = (model?.config as ModelConfig | undefined)?.modelType;
  if (type === 'gpt2') return 'gpt2';
  if (type === 'llama' || type === 'qwen2' || type === 'mistral') return 'llama';
  throw new PosttrainError('NOT_SUPPORTED', `${owner}: expected a GPT-2 or Llama-family model (config.modelType gpt2, llama, qwen2 or mistral); got ${describe(type)}`);
}

/** The dense layer at `path`, refusing wrappers (LoRA, quantised, masked) whose shapes cannot be cut here. */
function dense(owner: string, model: CausalLM, path: string): Dense {
  const found = model.namedModules().get(path);
  if (found instanceof Linear || found instanceof Conv1D) return found;
  throw new PosttrainError('NOT_SUPPORTED', `${owner}: expected a dense Linear or Conv1D at ${path}; got ${found ? found.constructor.name : 'no module'}`, {
    help: 'prune structurally first, then apply LoRA, masks or quantisation (merge LoRA adapters and dequantise before pruning)',
  });
}

function shape(config: ModelConfig): StructuredShape {
  return { numHeads: config.numHeads, numKvHeads: config.numKvHeads, headDim: config.headDim, intermediateSize: config.intermediateSize };
}

function stateBytes(model: CausalLM): number {
  let n = 0;
  for (const t of Object.values(model.stateDict())) n += t.size * 4;
  return n;
}

function checkFraction(owner: string, fraction: unknown): number {
  if (typeof fraction !== 'number' || !Number.isFinite(fraction) || fraction < 0 || fraction >= 1) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected fraction in [0, 1); got ${describe(fraction)}`, {
      help: 'fraction is the share of units removed in every layer: 0.25 removes a quarter; 1 would remove the whole block',
    });
  }
  return fraction;
}

/** Squared L2 norms of `w`'s rows (`axis 1` summed) or columns (`axis 0` summed) as float64. */
function squaredNorms(w: tf.Tensor, axis: 0 | 1): Float64Array {
  return Float64Array.from(read(() => w.square().sum(axis)));
}

/** The values of the tensor `fn` makes (inside `tf.tidy`), which is then disposed. */
function read(fn: () => tf.Tensor): Float32Array {
  const t = tf.tidy(fn);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

/** Per-layer selection of units to remove: `count` lowest scores, ties broken by the lower index. */
function lowest(scores: ArrayLike<number>, count: number): number[] {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
  return order.slice(0, count).sort((a, b) => a - b);
}

async function checkCalibration(owner: string, score: StructuredScore, calibration: unknown): Promise<readonly CalibrationBatch[] | undefined> {
  if (score !== 'weight' && score !== 'activation') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected score "weight" or "activation"; got ${describe(score)}`);
  }
  if (score === 'weight') {
    if (calibration !== undefined) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: calibration was given but score is "weight", which reads only the weights`, {
        help: 'pass score: "activation" to rank units by their contribution on the calibration data, or drop calibration',
      });
    }
    return undefined;
  }
  if (!Array.isArray(calibration)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: score "activation" needs calibration batches (an array of token-id rows or { inputIds, attentionMask }); got ${describe(calibration)}`, {
      help: 'pass calibration: [[...ids], ...], or use score: "weight", which needs no data',
    });
  }
  const tokens = calibrationTokens(calibration as CalibrationBatch[]);
  if (tokens < MIN_STRUCTURED_CALIBRATION_TOKENS) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected at least ${MIN_STRUCTURED_CALIBRATION_TOKENS} real calibration tokens for score "activation"; got ${tokens}`, {
      help: `add calibration rows (a few hundred tokens of text like the model's) or use score: "weight"`,
    });
  }
  return calibration as readonly CalibrationBatch[];
}

/**
 * Resolves a per-layer removal request into index lists: explicit lists are checked; a count (or a
 * fraction turned into one) is filled by `select(layer, count)`.
 */
function explicitLists(owner: string, name: string, lists: readonly (readonly number[])[], numLayers: number, size: number, unit: string): number[][] {
  if (lists.length !== numLayers) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to hold one list per layer (${numLayers}); got ${lists.length}`);
  }
  const out: number[][] = [];
  for (let l = 0; l < numLayers; l++) {
    const list = lists[l];
    if (!Array.isArray(list) || !list.every((i) => Number.isInteger(i) && i >= 0 && i < size) || new Set(list).size !== list.length) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name}[${l}] to be distinct ${unit} indices in [0, ${size}); got ${JSON.stringify(list)}`);
    }
    if (list.length !== lists[0].length) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: expected every layer to lose the same number of ${unit}s (a Hugging Face config has one size for all layers); ${name}[0] has ${lists[0].length}, ${name}[${l}] has ${list.length}`,
        {
          help: `remove ${lists[0].length} ${unit}s in every layer, or pass a count and let the score choose which in each layer`,
        },
      );
    }
    out.push([...list].sort((a, b) => a - b));
  }
  return out;
}

function checkCount(owner: string, name: string, count: unknown, size: number, unit: string): number {
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be a non-negative integer (${unit}s removed per layer) or one index list per layer; got ${describe(count)}`);
  }
  if (count >= size) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: ${name} ${count} would remove every ${unit} of each layer (${size} per layer)`, {
      help: `remove at most ${size - 1}, or use fraction (e.g. 0.25)`,
    });
  }
  return count;
}

function exactlyOne(owner: string, a: [string, unknown], b: [string, unknown]): void {
  if ((a[1] === undefined) === (b[1] === undefined)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected exactly one of ${a[0]} and ${b[0]}; got ${a[1] === undefined ? 'neither' : 'both'}`, {
      help: `${a[0]}: 0.25 removes a quarter in every layer; ${b[0]}: 2 removes two in every layer`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Cutting dense layers

/** A copy of `layer` keeping only the outputs `keep` (Linear rows / Conv1D columns, and their bias). */
function keepOutputs(layer: Dense, keep: number[]): Dense {
  return rebuild(layer, layer.inFeatures, keep.length, (w, b) => {
    const index = tf.tensor1d(keep, 'int32');
    return { weight: tf.gather(w, index, layer instanceof Linear ? 0 : 1), bias: b && tf.gather(b, index) };
  });
}

/** A copy of `layer` keeping only the inputs `keep` (Linear columns / Conv1D rows); the bias is unchanged. */
function keepInputs(layer: Dense, keep: number[]): Dense {
  return rebuild(layer, keep.length, layer.outFeatures, (w, b) => ({ weight: tf.gather(w, tf.tensor1d(keep, 'int32'), layer instanceof Linear ? 1 : 0), bias: b?.clone() }));
}

function rebuild(layer: Dense, inFeatures: number, outFeatures: number, cut: (w: tf.Tensor, b: tf.Tensor | undefined) => { weight: tf.Tensor; bias: tf.Tensor | undefined }): Dense {
  const options = { bias: layer.bias !== undefined, rng: new Rng(0), std: 0 };
  const next = layer instanceof Linear ? new Linear(inFeatures, outFeatures, options) : new Conv1D(inFeatures, outFeatures, options);
  const { weight, bias } = tf.tidy(() => cut(layer.weight, layer.bias));
  next.weight.assign(weight);
  next.weight.trainable = layer.weight.trainable;
  if (bias && next.bias && layer.bias) {
    next.bias.assign(bias);
    next.bias.trainable = layer.bias.trainable;
  }
  tf.dispose([weight, bias].filter((t): t is tf.Tensor => t !== undefined));
  return next;
}

function replace(model: CausalLM, path: string, next: Dense): void {
  model.replaceModule(path, next).dispose();
}

function complement(size: number, removed: number[]): number[] {
  const gone = new Set(removed);
  return Array.from({ length: size }, (_, i) => i).filter((i) => !gone.has(i));
}

/** Indices of the `width`-wide blocks `units` (head i → rows i·width … i·width + width − 1). */
function blocks(units: number[], width: number): number[] {
  return units.flatMap((u) => Array.from({ length: width }, (_, j) => u * width + j));
}

// ---------------------------------------------------------------------------------------------
// MLP channels

interface MlpPaths {
  /** Layers whose outputs are the channels (Llama gate/up, GPT-2 c_fc). */
  producers: string[];
  /** The layer whose inputs are the channels (Llama down_proj, GPT-2 mlp.c_proj). */
  consumer: string;
}

function mlpPaths(kind: Family, layer: number): MlpPaths {
  if (kind === 'gpt2') return { producers: [`transformer.h.${layer}.mlp.c_fc`], consumer: `transformer.h.${layer}.mlp.c_proj` };
  const base = `model.layers.${layer}.mlp`;
  return { producers: [`${base}.gate_proj`, `${base}.up_proj`], consumer: `${base}.down_proj` };
}

/** Squared norms of each channel's output weights in the consumer (Linear column j / Conv1D row j). */
function consumerNorms(layer: Dense): Float64Array {
  return squaredNorms(layer.weight, layer instanceof Linear ? 0 : 1);
}

/** Squared norms of each channel's input weights in a producer (Linear row j / Conv1D column j). */
function producerNorms(layer: Dense): Float64Array {
  return squaredNorms(layer.weight, layer instanceof Linear ? 1 : 0);
}

/**
 * Removes the same number of MLP intermediate channels from every layer, with real shape reduction:
 * Llama's `gate_proj`/`up_proj` lose rows and `down_proj` columns; GPT-2's `mlp.c_fc` loses columns
 * and `mlp.c_proj` rows (Conv1D stores `[in, out]`); biases follow. `model.config.intermediateSize`
 * is rewritten, so `saveModel` writes a smaller valid `config.json` (`intermediate_size`, GPT-2's
 * `n_inner`). Every layer loses the same count because a Hugging Face config has one
 * `intermediate_size`; which channels go is chosen per layer by importance (lowest first, ties to
 * the lower index). The model is changed in place; the removed channels' contribution is gone, so
 * the logits equal those of the original with those channels' `down_proj` columns set to zero.
 *
 * Importance of channel j (higher is kept):
 * - `score: 'weight'` (default, no data): `‖W_gate[j,:]‖₂ · ‖W_up[j,:]‖₂ · ‖W_down[:,j]‖₂` (Llama;
 *   GPT-2: `‖W_fc[:,j]‖₂ · ‖W_proj[j,:]‖₂`), the product of the norms along the channel's path.
 * - `score: 'activation'`: `‖a_j‖₂ · ‖W_down[:,j]‖₂`, where `a_j` is the channel's activation
 *   (`silu(gate)·up`, GPT-2 `gelu(fc)`) over the calibration tokens: exactly the L2 norm of the
 *   channel's contribution to the MLP output over those tokens (Wanda's `|W|·‖X‖₂` summed over a
 *   column; Sun et al. 2023; the channel score of LLM-Pruner/FLAP-style structured pruning).
 *
 * Errors: fraction outside [0, 1), a count or index list that would remove every channel or differs
 * between layers, a layer that is not dense (LoRA, quantised, masked: prune structurally first),
 * score "activation" without at least {@link MIN_STRUCTURED_CALIBRATION_TOKENS} calibration tokens.
 *
 * @example
 * ```ts
 * const report = await pruneMlpChannels(model, { fraction: 0.25 });
 * report.after.intermediateSize; // 0.75 × before, in every layer
 * await saveModel(model, './pruned'); // config.json: intermediate_size rewritten
 * await pruneMlpChannels(model2, { channels: 16, score: 'activation', calibration: [[1, 2, 3, 4, ...]] });
 * ```
 */
export async function pruneMlpChannels(model: CausalLM, options: Partial<PruneMlpChannelsOptions>): Promise<StructuredPruneReport> {
  const owner = 'pruneMlpChannels';
  const o = resolveOptions(owner, options, defaultPruneMlpChannelsOptions);
  const kind = family(owner, model);
  exactlyOne(owner, ['fraction', o.fraction], ['channels', o.channels]);
  const config = model.config;
  const size = config.intermediateSize;
  const numLayers = config.numLayers;
  let count: number | undefined;
  let lists: number[][] | undefined;
  if (o.fraction !== undefined) {
    const fraction = checkFraction(owner, o.fraction);
    count = Math.round(fraction * size);
    if (count >= size) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: fraction ${fraction} would remove every channel of each layer (${size} per layer, rounded)`, {
        help: `use a fraction below ${(size - 0.5) / size}`,
      });
    }
  } else if (Array.isArray(o.channels)) {
    lists = explicitLists(owner, 'channels', o.channels, numLayers, size, 'channel');
    if (lists[0].length >= size) checkCount(owner, 'channels', lists[0].length, size, 'channel');
  } else {
    count = checkCount(owner, 'channels', o.channels, size, 'channel');
  }
  const calibration = await checkCalibration(owner, o.score, o.calibration);
  const paths = Array.from({ length: numLayers }, (_, l) => mlpPaths(kind, l));
  const layers = paths.map((p) => ({ producers: p.producers.map((q) => dense(owner, model, q)), consumer: dense(owner, model, p.consumer) }));
  for (const [l, layer] of layers.entries()) {
    for (const [i, m] of [...layer.producers, layer.consumer].entries()) {
      const width = i < layer.producers.length ? m.outFeatures : m.inFeatures;
      if (width !== size) {
        throw new PosttrainError(
          'SHAPE_MISMATCH',
          `${owner}: expected the MLP of layer ${l} to be ${size} channels wide (config.intermediateSize); ${[...paths[l].producers, paths[l].consumer][i]} has ${width}`,
        );
      }
    }
  }

  // Importance, per layer per channel (computed before anything changes).
  const scores: number[][] = [];
  const activation = calibration
    ? await channelActivations(
        model,
        calibration,
        paths.map((p) => p.consumer),
      )
    : undefined;
  for (const [l, layer] of layers.entries()) {
    const down = consumerNorms(layer.consumer);
    const s = new Array<number>(size);
    if (activation) {
      const a = activation[l];
      for (let j = 0; j < size; j++) s[j] = Math.sqrt(a[j] * down[j]);
    } else {
      const ups = layer.producers.map(producerNorms);
      for (let j = 0; j < size; j++) s[j] = Math.sqrt(ups.reduce((p, u) => p * u[j], down[j]));
    }
    scores.push(s);
  }
  const removed = lists ?? scores.map((s) => lowest(s, count as number));

  const before = shape(config);
  const parametersBefore = model.numParameters();
  const bytesBefore = stateBytes(model);
  if (removed[0].length > 0) {
    for (const [l, layer] of layers.entries()) {
      const keep = complement(size, removed[l]);
      for (const [i, producer] of layer.producers.entries()) replace(model, paths[l].producers[i], keepOutputs(producer, keep));
      replace(model, paths[l].consumer, keepInputs(layer.consumer, keep));
    }
    setConfig(owner, model, { intermediateSize: size - removed[0].length });
  }
  return {
    unit: 'mlp-channels',
    score: o.score,
    removed,
    removedKvHeads: removed.map(() => []),
    scores,
    before,
    after: shape(config),
    parametersBefore,
    parametersAfter: model.numParameters(),
    bytesBefore,
    bytesAfter: stateBytes(model),
  };
}

/** Per consumer layer, the sum over calibration tokens of each input channel's squared activation. */
async function channelActivations(model: CausalLM, calibration: readonly CalibrationBatch[], consumers: string[]): Promise<Float64Array[]> {
  const index = new Map(consumers.map((p, i) => [p, i]));
  const sums = consumers.map((p) => new Float64Array((model.namedModules().get(p) as Dense).inFeatures));
  await captureLinearInputs(model, calibration, {
    layers: (path) => index.has(path),
    onInput: (path, x) => {
      const sum = sums[index.get(path) as number];
      const col = read(() => x.square().sum(0));
      for (let j = 0; j < col.length; j++) sum[j] += col[j];
    },
  });
  return sums;
}

function setConfig(owner: string, model: CausalLM, changes: Partial<StructuredShape>): void {
  const config = model.config as ModelConfig;
  if (Object.isFrozen(config)) {
    throw new PosttrainError('NOT_SUPPORTED', `${owner}: the model's config is frozen, so its new sizes cannot be written`, {
      help: 'load the model with loadModel or createModel, whose configs are plain objects',
    });
  }
  Object.assign(config, changes);
}

// ---------------------------------------------------------------------------------------------
// Attention heads

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
