import {
  PosttrainError,
  isPosttrainError,
  fileSource,
  resolveOptions,
  fileTarget,
  readCheckpoint,
  tf,
  writeCheckpoint,
  type CausalLM,
  type FileSource,
  type FileSourceInput,
  type FileTarget,
  configFromHf,
  configToHf,
  type CausalLMConfig,
  type Gpt2Config,
  type LlamaConfig,
  checkpointQuantizer,
  checkpointQuantizers,
  type QuantizedSave,
} from '@posttrain/tensor-core';
import { Gpt2LMHeadModel } from './gpt2.js';
import { LlamaForCausalLM } from './llama.js';
import { checkFiniteWeights } from './finite.js';

/** A model of `@posttrain/models`: GPT-2 or the Llama family, with its typed config. */
export type PretrainedModel = Gpt2LMHeadModel | LlamaForCausalLM;

/** What {@link createModel} needs: the architecture's sizes; everything else has Hugging Face's defaults. */
export type ModelConfigInput =
  | (Pick<Gpt2Config, 'modelType' | 'vocabSize' | 'hiddenSize' | 'numLayers' | 'numHeads'> & Partial<Gpt2Config>)
  | (Pick<LlamaConfig, 'modelType' | 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads'> & Partial<LlamaConfig>);

/** Options of {@link createModel}. */
export interface CreateModelOptions {
  /** Seed of the initialisation (default 0): the same seed gives the same weights on every backend. */
  seed: number;
}

export const defaultCreateModelOptions: Readonly<CreateModelOptions> = Object.freeze({ seed: 0 });

/** Options of {@link saveModel}. */
export interface SaveModelOptions {
  /** The most tensor bytes in one shard (default: writeCheckpoint's). */
  maxShardBytes: number | undefined;
  /** Store float weights as F32 (default), F16 or BF16. */
  floatDtype: 'F32' | 'F16' | 'BF16';
}

export const defaultSaveModelOptions: Readonly<SaveModelOptions> = Object.freeze({ maxShardBytes: undefined, floatDtype: 'F32' });

/**
 * A randomly initialised model, as Hugging Face initialises it: weights normal with std
 * `initializerRange` (0.02; GPT-2's residual projections scaled by 1/√(2·layers)), biases 0,
 * norms 1.
 *
 * @example
 * ```ts
 * const model = createModel({ modelType: 'llama', vocabSize: 256, hiddenSize: 64, intermediateSize: 172, numLayers: 2, numHeads: 4, numKvHeads: 2 }, { seed: 1 });
 * ```
 */
export function createModel(config: ModelConfigInput, options: Partial<CreateModelOptions> = {}): PretrainedModel {
  const { seed } = resolveOptions('createModel', options, defaultCreateModelOptions);
  const complete: CausalLMConfig = config.modelType === 'gpt2' ? completeGpt2(config as Gpt2Config) : completeLlama(config as LlamaConfig);
  const defaults =
    config.modelType === 'gpt2'
      ? completeGpt2({ modelType: 'gpt2', vocabSize: 1, hiddenSize: 1, numLayers: 1, numHeads: 1 })
      : completeLlama({ modelType: 'llama', vocabSize: 1, hiddenSize: 2, intermediateSize: 1, numLayers: 1, numHeads: 1 });
  for (const key of Object.keys(config)) {
    if (!(key in defaults)) {
      throw new PosttrainError('INVALID_OPTION', `createModel: unknown config key "${key}"; known keys are ${Object.keys(defaults).join(', ')}`);
    }
  }

  // Going through config.json validates the values and keeps the model saveable: refuse a
  // combination Hugging Face's config cannot express rather than change it silently.
  const full = configFromHf(configToHf(complete));
  for (const [key, value] of Object.entries(complete)) {
    const kept = (full as unknown as Record<string, unknown>)[key];
    if (JSON.stringify(kept) !== JSON.stringify(value)) {
      throw new PosttrainError('INVALID_OPTION', `createModel: ${key} ${JSON.stringify(value)} cannot be expressed in a ${complete.modelType} config.json (it would load as ${JSON.stringify(kept)})`);
    }
  }
  return build(full, seed);
}

function completeGpt2(c: Partial<Gpt2Config> & Pick<Gpt2Config, 'vocabSize' | 'hiddenSize' | 'numLayers' | 'numHeads'>): Gpt2Config {
  return {
    modelType: 'gpt2',
    intermediateSize: 4 * c.hiddenSize,
    numKvHeads: c.numHeads,
    headDim: c.hiddenSize / c.numHeads,
    maxPositions: 1024,
    bosTokenId: null,
    eosTokenId: null,
    padTokenId: null,
    tieWordEmbeddings: true,
    layerNormEps: 1e-5,
    initializerRange: 0.02,
    ...c,
  };
}

function completeLlama(c: Partial<LlamaConfig> & Pick<LlamaConfig, 'modelType' | 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads'>): LlamaConfig {
  return {
    numKvHeads: c.numHeads,
    headDim: c.hiddenSize / c.numHeads,
    maxPositions: 2048,
    bosTokenId: null,
    eosTokenId: null,
    padTokenId: null,
    tieWordEmbeddings: false,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    ropeScaling: null,
    qkvBias: c.modelType === 'qwen2',
    outputBias: false,
    mlpBias: false,
    initializerRange: 0.02,
    ...c,
  };
}

/**
 * Options of {@link loadModel}.
 *
 * @example
 * ```ts
 * const options: Partial<LoadModelOptions> = { strict: false };
 * ```
 */
export interface LoadModelOptions {
  /**
   * true (the default): the checkpoint holds exactly the architecture's weights. false: as
   * transformers' `from_pretrained`, a missing weight keeps its random initialisation and an
   * unexpected one is skipped, each listed in a warning. A mis-shaped weight is always an error.
   */
  strict: boolean;
  /** false (the default): a NaN or infinite weight is a `NON_FINITE` error naming the tensor; true loads it as it is. */
  allowNonFinite: boolean;
}

/**
 * The defaults of {@link loadModel}: strict keys, finite weights.
 *
 * @example
 * ```ts
 * const model = await loadModel('./tiny', { ...defaultLoadModelOptions, strict: false });
 * ```
 */
export const defaultLoadModelOptions: Readonly<LoadModelOptions> = Object.freeze({ strict: true, allowNonFinite: false });

function build(config: CausalLMConfig, seed: number, initialize = true): PretrainedModel {
  return config.modelType === 'gpt2' ? new Gpt2LMHeadModel(config, seed, { initialize }) : new LlamaForCausalLM(config, seed, { initialize });
}

function toSource(from: FileSource | FileSourceInput): FileSource {
  if (from === null || (typeof from !== 'object' && typeof from !== 'string')) {
    throw new PosttrainError('INVALID_ARGUMENT', `loadModel: expected a directory path, a URL, a map of file names to bytes or a FileSource; got ${from === null ? 'null' : typeof from}`);
  }
  return typeof (from as FileSource).read === 'function' && typeof (from as FileSource).describe === 'function' ? (from as FileSource) : fileSource(from as FileSourceInput);
}

/**
 * Loads a Hugging Face model directory — `config.json` plus `model.safetensors` or a sharded
 * `model.safetensors.index.json` (F32, F16 or BF16, upcast to float32) — from a directory path, a
 * URL or an in-memory map. Keys are matched strictly: a missing, unexpected or mis-shaped weight
 * is an error listing every one (`strict: false` keeps a random initialisation for missing weights
 * and skips unexpected ones, with a warning). A NaN or infinite weight is a `NON_FINITE` error
 * naming the tensor (`allowNonFinite: true` loads it). Old GPT-2 checkpoints without the `transformer.` prefix, their
 * `attn.bias` mask buffers, and a stored `lm_head.weight` of a tied model are accepted.
 *
 * @example
 * ```ts
 * const model = await loadModel('./SmolLM2-135M');          // Node directory
 * const model2 = await loadModel(new URL('https://example.com/models/tiny/'));
 * const partial = await loadModel('./with-value-head', { strict: false }); // warns about v_head.weight
 * ```
 */
export async function loadModel(from: FileSource | FileSourceInput, options: Partial<LoadModelOptions> = {}): Promise<PretrainedModel> {
  const { strict, allowNonFinite } = resolveOptions('loadModel', options, defaultLoadModelOptions);
  for (const [name, value] of Object.entries({ strict, allowNonFinite })) {
    if (typeof value !== 'boolean') throw new PosttrainError('INVALID_OPTION', `loadModel: expected ${name} to be true or false; got ${JSON.stringify(value)}`);
  }
  const source = toSource(from);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await source.readText('config.json')) as Record<string, unknown>;
  } catch (cause) {
    if (cause instanceof SyntaxError) {
      throw new PosttrainError('INVALID_ARGUMENT', `config.json in ${source.describe()} is not valid JSON: ${cause.message}`, { cause });
    }
    throw cause;
  }
  const config = configFromHf(json);
  const quantizer = quantizerFor(json, source.describe());
  const tensors = await readCheckpoint(source);
  const model = build(config, 0, !strict); // strict: zeros, as the checkpoint overwrites every weight
  let created: tf.Tensor[] = [];
  try {
    let named = normaliseKeys(tensors, model);
    if (quantizer) {
      // HfQuantizer: swap the float layers for empty quantised ones, then map the file's tensors
      const plan = await quantizer.prepareLoad(model, json.quantization_config as Record<string, unknown>);
      const converted = await plan.convert(named);
      created = converted.created;
      named = converted.tensors;
    }
    if (!allowNonFinite) await checkFiniteWeights(named, source.describe());
    const { missingKeys, unexpectedKeys } = loadWeights(model, named, strict, source.describe());
    const list = (keys: string[]) => `${keys.slice(0, 8).join(', ')}${keys.length > 8 ? `, … (${keys.length} in all)` : ''}`;
    if (missingKeys.length > 0)
      console.warn(`loadModel: ${missingKeys.length} weight(s) of the ${config.modelType} architecture are not in ${source.describe()} and keep their random initialisation: ${list(missingKeys)}`);
    if (unexpectedKeys.length > 0)
      console.warn(`loadModel: ${unexpectedKeys.length} tensor(s) in ${source.describe()} are not weights of the ${config.modelType} architecture and were skipped: ${list(unexpectedKeys)}`);
  } catch (error) {
    model.dispose();
    throw error;
  } finally {
    tf.dispose(Object.values(tensors));
    tf.dispose(created);
  }
  return model;
}

/** The registered quantizer for config.json's `quantization_config`, or undefined when there is none. */
function quantizerFor(json: Record<string, unknown>, where: string) {
  const qc = json.quantization_config;
  if (qc === undefined || qc === null) return undefined;
  if (typeof qc !== 'object' || Array.isArray(qc)) {
    throw new PosttrainError('INVALID_ARGUMENT', `config.json in ${where}: expected quantization_config to be an object; got ${JSON.stringify(qc)}`);
  }
  const method = (qc as Record<string, unknown>).quant_method;
  const known = checkpointQuantizers().map((q) => JSON.stringify(q.method));
  const quantizer = typeof method === 'string' ? checkpointQuantizer(method) : undefined;
  if (!quantizer) {
    throw new PosttrainError(
      'NOT_SUPPORTED',
      `loadModel: config.json in ${where} has quantization_config.quant_method ${JSON.stringify(method)}, which no registered quantizer reads (registered: ${known.length ? known.join(', ') : 'none'})`,
      {
        help:
          method === 'compressed-tensors' || method === 'bitsandbytes'
            ? `import "@posttrain/quantize" to register it (it reads "compressed-tensors" pack-quantized and "bitsandbytes" NF4)`
            : `import "@posttrain/quantize" to register it; it reads "compressed-tensors" (pack-quantized int4/int8) and "bitsandbytes" (NF4), not ${JSON.stringify(method)}`,
      },
    );
  }
  return quantizer;
}

/** `loadStateDict`, with loadModel's own help when the keys do not match. */
function loadWeights(model: PretrainedModel, tensors: Record<string, tf.Tensor>, strict: boolean, where: string): { missingKeys: string[]; unexpectedKeys: string[] } {
  try {
    return model.loadStateDict(tensors, { strict });
  } catch (error) {
    if (!isPosttrainError(error) || error.code !== 'STATE_DICT_MISMATCH' || /mis-shaped keys/.test(error.message)) throw error;
    throw new PosttrainError('STATE_DICT_MISMATCH', `loadModel: the weights in ${where} do not match its config.json; ${error.message.split('\nhelp: ')[0]}`, {
      cause: error,
      help: "check that config.json and the weights come from the same model; loadModel(source, { strict: false }) loads them anyway, keeping a random initialisation for missing weights and skipping unexpected ones (with a warning), as transformers' from_pretrained does",
    });
  }
}

/** Adds GPT-2's `transformer.` prefix when a checkpoint lacks it and drops keys transformers also ignores. */
function normaliseKeys(tensors: Record<string, tf.Tensor>, model: PretrainedModel): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  const gpt2 = model instanceof Gpt2LMHeadModel;
  for (const [key, t] of Object.entries(tensors)) {
    let name = key;
    if (gpt2 && !name.startsWith('transformer.') && name !== 'lm_head.weight') name = `transformer.${name}`;
    if (gpt2 && /\.attn\.(masked_)?bias$/.test(name)) continue; // causal-mask buffers of old checkpoints
    if (model.config.tieWordEmbeddings && name === 'lm_head.weight') continue;
    if (/\.rotary_emb\.inv_freq$/.test(name)) continue;
    out[name] = t;
  }
  return out;
}

/**
 * Writes `config.json` and `model.safetensors` (sharded above `maxShardBytes`) that Hugging Face
 * `transformers` loads, to a directory path or a {@link FileTarget}; each file is written to a
 * temporary name and renamed, the weights first and `config.json` last, so a crash never leaves a
 * config naming weights that are not there. A saved model loads back bit-identical.
 *
 * A model holding quantised layers (from `@posttrain/quantize`) is written by the registered
 * quantizer that recognises them: its `quantization_config` goes into config.json and its tensors
 * and dtypes into the weights (compressed-tensors' pack-quantized layout for int4/int8,
 * bitsandbytes' for NF4). Quantised layers that no quantizer describes are a `NOT_SUPPORTED`
 * error, raised before anything is written.
 *
 * @example
 * ```ts
 * await saveModel(model, './out/my-model');
 * ```
 */
export async function saveModel(model: CausalLM, to: FileTarget | string | Map<string, Uint8Array>, options: Partial<SaveModelOptions> = {}): Promise<void> {
  const { maxShardBytes, floatDtype } = resolveOptions('saveModel', options, defaultSaveModelOptions);
  const config = model.config as CausalLMConfig;
  if (!('modelType' in config) || !['gpt2', 'llama', 'qwen2', 'mistral'].includes(config.modelType)) {
    throw new PosttrainError('NOT_SUPPORTED', `saveModel: expected a GPT-2 or Llama-family model; got model type ${JSON.stringify((config as { modelType?: unknown }).modelType)}`);
  }
  const target = typeof to === 'string' || to instanceof Map ? fileTarget(to) : to;
  const quantized = await describeQuantized(model as unknown as PretrainedModel);
  try {
    const hf = configToHf(config);
    if (quantized) hf.quantization_config = quantized.quantizationConfig;
    const tensors = quantized ? quantized.tensors : model.stateDict();
    const dtypes = quantized ? { dtypes: quantized.dtypes } : {};
    await writeCheckpoint(tensors, target, { floatDtype, ...dtypes, ...(maxShardBytes === undefined ? {} : { maxShardBytes }) });
    await target.write('config.json', new TextEncoder().encode(`${JSON.stringify(hf, null, 2)}\n`));
  } finally {
    if (quantized) tf.dispose(quantized.created);
  }
}

/**
 * The registered quantizer's description of the model's quantised layers; null for a float model.
 * Persistent buffers are how quantised layers hold their weights (the float architectures have
 * none), so a model with some that no quantizer describes is refused rather than saved half-readable.
 */
async function describeQuantized(model: PretrainedModel): Promise<QuantizedSave | null> {
  const found: { method: string; save: QuantizedSave }[] = [];
  for (const quantizer of checkpointQuantizers()) {
    const save = await quantizer.describeSave(model);
    if (save) found.push({ method: quantizer.method, save });
  }
  if (found.length > 1) {
    for (const { save } of found) tf.dispose(save.created);
    throw new PosttrainError(
      'NOT_SUPPORTED',
      `saveModel: the model holds quantised layers of several checkpoint formats (${found.map((f) => f.method).join(', ')}); one config.json names one quant_method`,
      {
        help: 'quantise every layer with one family of schemes (int4/int8, or nf4) before saving',
      },
    );
  }
  if (found.length === 1) return found[0].save;
  const params = new Set(model.namedParameters().keys());
  const buffers = Object.keys(model.stateDict()).filter((key) => !params.has(key));
  if (buffers.length > 0) {
    const registered = checkpointQuantizers().map((q) => q.method);
    throw new PosttrainError(
      'NOT_SUPPORTED',
      `saveModel: the model holds non-parameter state (${buffers.slice(0, 4).join(', ')}${buffers.length > 4 ? ', …' : ''}), quantised layers that no registered checkpoint quantizer describes (registered: ${registered.length ? registered.join(', ') : 'none'})`,
      { help: 'import "@posttrain/quantize" to register its quantizers, or dequantizeModel(model) to save float weights' },
    );
  }
  return null;
}
