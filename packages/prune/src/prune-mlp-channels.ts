// pruneMlpChannels: the MLP's intermediate channels removed, gate/up rows and down columns cut out.
import { PosttrainError, resolveOptions, type CausalLM } from '@posttrain/tensor-core';
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
  type Dense,
  type Family,
  type StructuredPruneReport,
  type StructuredScore,
} from './structured.js';

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
 * // rows: number[][] of token ids (one calibration batch), at least 64 tokens in all
 * await pruneMlpChannels(model2, { channels: 16, score: 'activation', calibration: [rows] });
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
