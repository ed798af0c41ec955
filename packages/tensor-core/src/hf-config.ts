// Hugging Face `config.json` ⇄ ModelConfig for the architectures posttrain builds (GPT-2 and the
// Llama family): the one codec, read by models (load/save) and reward (sequence-classification saves).
import { PosttrainError } from './errors.js';
import type { ModelConfig } from './causal-lm.js';

/** The `llama3` RoPE frequency scaling (Llama 3.1/3.2), as Hugging Face's `rope_scaling`. */
export interface Llama3RopeScaling {
  ropeType: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  /** `original_max_position_embeddings`: the context the base frequencies were trained for. */
  originalMaxPositions: number;
}

/** GPT-2: learned positions, LayerNorm, GELU-tanh MLP, `Conv1D` projections. */
export interface Gpt2Config extends ModelConfig {
  modelType: 'gpt2';
  layerNormEps: number;
  initializerRange: number;
}

/** Llama and the models that share its layout: Qwen2/2.5, SmolLM/SmolLM2, Mistral (no sliding window). */
export interface LlamaConfig extends ModelConfig {
  modelType: 'llama' | 'qwen2' | 'mistral';
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  /** Biases on q/k/v projections (Qwen2 always; Llama with `attention_bias`). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama with `attention_bias`; never Qwen2). */
  outputBias: boolean;
  /** Biases on gate/up/down (`mlp_bias`). */
  mlpBias: boolean;
  initializerRange: number;
}

/** Every configuration `@posttrain/models` builds. */
export type CausalLMConfig = Gpt2Config | LlamaConfig;

/**
 * The `model_type`s {@link configFromHf} reads.
 *
 * @example
 * ```ts
 * supportedModelTypes.includes('qwen2'); // true
 * ```
 */
export const supportedModelTypes = Object.freeze(['gpt2', 'llama', 'qwen2', 'mistral'] as const);

type Json = Record<string, unknown>;

function notSupported(message: string, help?: string): PosttrainError {
  return new PosttrainError('NOT_SUPPORTED', `config.json: ${message}`, { help });
}

function int(json: Json, key: string, fallback?: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `config.json: expected ${key} to be a positive integer; got ${JSON.stringify(json[key])}`);
  }
  return value;
}

function num(json: Json, key: string, fallback: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `config.json: expected ${key} to be a positive number; got ${JSON.stringify(json[key])}`);
  }
  return value;
}

function divisible(sizeKey: string, size: number, headsKey: string, heads: number): void {
  if (size % heads !== 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `config.json: expected ${sizeKey} (${size}) to be a multiple of ${headsKey} (${heads})`);
  }
}

function tokenId(json: Json, key: string): number | null {
  const value = json[key];
  return typeof value === 'number' && Number.isInteger(value) ? value : null;
}

function eosId(json: Json): number | number[] | null {
  const value = json.eos_token_id;
  if (Array.isArray(value) && value.every((v) => Number.isInteger(v))) return value as number[];
  return tokenId(json, 'eos_token_id');
}

function ropeScaling(json: Json): Llama3RopeScaling | null {
  const scaling = json.rope_scaling as Json | null | undefined;
  if (scaling === null || scaling === undefined) return null;
  const type = scaling.rope_type ?? scaling.type;
  if (type === 'default') return null;
  if (type !== 'llama3') {
    throw notSupported(`rope_scaling type ${JSON.stringify(type)} is not supported; supported: "llama3", "default" or none`);
  }
  return {
    ropeType: 'llama3',
    factor: num(scaling, 'factor', NaN),
    lowFreqFactor: num(scaling, 'low_freq_factor', NaN),
    highFreqFactor: num(scaling, 'high_freq_factor', NaN),
    originalMaxPositions: int(scaling, 'original_max_position_embeddings'),
  };
}

/**
 * Reads a Hugging Face `config.json` object into a {@link CausalLMConfig}. An unsupported
 * `model_type` or feature (sliding-window attention, another activation, another RoPE scaling) is
 * a `NOT_SUPPORTED` error, never silently ignored.
 *
 * @example
 * ```ts
 * const config = configFromHf(JSON.parse(await source.readText('config.json')));
 * config.numKvHeads; // num_key_value_heads
 * ```
 */
export function configFromHf(json: Json): CausalLMConfig {
  const modelType = json.model_type;
  if (typeof modelType !== 'string' || !(supportedModelTypes as readonly string[]).includes(modelType)) {
    throw notSupported(`model_type ${JSON.stringify(modelType)} is not supported; supported: ${supportedModelTypes.join(', ')}`);
  }
  if (modelType === 'gpt2') return gpt2FromHf(json);
  return llamaFromHf(json, modelType as LlamaConfig['modelType']);
}

function gpt2FromHf(json: Json): Gpt2Config {
  const activation = json.activation_function ?? 'gelu_new';
  if (activation !== 'gelu_new' && activation !== 'gelu_pytorch_tanh') {
    throw notSupported(`GPT-2 activation_function ${JSON.stringify(activation)} is not supported; supported: "gelu_new"`);
  }
  for (const flag of ['scale_attn_by_inverse_layer_idx', 'add_cross_attention']) {
    if (json[flag] === true) throw notSupported(`GPT-2 ${flag}: true is not supported`);
  }
  if (json.scale_attn_weights === false) throw notSupported('GPT-2 scale_attn_weights: false is not supported');
  const hiddenSize = int(json, 'n_embd');
  const numHeads = int(json, 'n_head');
  divisible('n_embd', hiddenSize, 'n_head', numHeads);
  return {
    modelType: 'gpt2',
    vocabSize: int(json, 'vocab_size'),
    hiddenSize,
    intermediateSize: json.n_inner == null ? 4 * hiddenSize : int(json, 'n_inner'),
    numLayers: int(json, 'n_layer'),
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    maxPositions: int(json, 'n_positions'),
    bosTokenId: tokenId(json, 'bos_token_id'),
    eosTokenId: eosId(json),
    padTokenId: tokenId(json, 'pad_token_id'),
    tieWordEmbeddings: json.tie_word_embeddings !== false,
    layerNormEps: num(json, 'layer_norm_epsilon', 1e-5),
    initializerRange: num(json, 'initializer_range', 0.02),
  };
}

function llamaFromHf(json: Json, modelType: LlamaConfig['modelType']): LlamaConfig {
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu') throw notSupported(`hidden_act ${JSON.stringify(act)} is not supported; supported: "silu"`);
  const sliding = modelType === 'qwen2' ? json.use_sliding_window === true : json.sliding_window != null;
  if (sliding) {
    throw notSupported(
      `sliding-window attention (${modelType === 'qwen2' ? 'use_sliding_window: true' : `sliding_window: ${JSON.stringify(json.sliding_window)}`}) is not supported`,
      'posttrain attends over the whole context; use a checkpoint without a sliding window',
    );
  }
  const hiddenSize = int(json, 'hidden_size');
  const numHeads = int(json, 'num_attention_heads');
  const numKvHeads = int(json, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `config.json: expected num_attention_heads (${numHeads}) to be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  if (json.head_dim == null) divisible('hidden_size', hiddenSize, 'num_attention_heads', numHeads);
  const headDim = json.head_dim == null ? hiddenSize / numHeads : int(json, 'head_dim');
  if (headDim % 2 !== 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `config.json: expected an even head dimension for rotary embeddings; got ${headDim}`);
  }
  const attentionBias = json.attention_bias === true;
  return {
    modelType,
    vocabSize: int(json, 'vocab_size'),
    hiddenSize,
    intermediateSize: int(json, 'intermediate_size'),
    numLayers: int(json, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositions: int(json, 'max_position_embeddings', 2048),
    bosTokenId: tokenId(json, 'bos_token_id'),
    eosTokenId: eosId(json),
    padTokenId: tokenId(json, 'pad_token_id'),
    tieWordEmbeddings: json.tie_word_embeddings === true,
    rmsNormEps: num(json, 'rms_norm_eps', 1e-6),
    ropeTheta: num(json, 'rope_theta', 10000),
    ropeScaling: ropeScaling(json),
    qkvBias: modelType === 'qwen2' ? true : attentionBias,
    outputBias: modelType === 'qwen2' ? false : attentionBias,
    mlpBias: json.mlp_bias === true,
    initializerRange: num(json, 'initializer_range', 0.02),
  };
}

/**
 * The `config.json` object Hugging Face `transformers` loads for `config`.
 *
 * @example
 * ```ts
 * await target.write('config.json', new TextEncoder().encode(JSON.stringify(configToHf(model.config), null, 2)));
 * ```
 */
export function configToHf(config: CausalLMConfig): Json {
  if (!(supportedModelTypes as readonly string[]).includes(config?.modelType)) {
    throw notSupported(`cannot write model_type ${JSON.stringify(config?.modelType)}; supported: ${supportedModelTypes.join(', ')}`);
  }
  const common = {
    vocab_size: config.vocabSize,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    pad_token_id: config.padTokenId,
    tie_word_embeddings: config.tieWordEmbeddings,
    initializer_range: config.initializerRange,
    torch_dtype: 'float32',
  };
  if (config.modelType === 'gpt2') {
    return {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      n_embd: config.hiddenSize,
      n_inner: config.intermediateSize === 4 * config.hiddenSize ? null : config.intermediateSize,
      n_layer: config.numLayers,
      n_head: config.numHeads,
      n_positions: config.maxPositions,
      n_ctx: config.maxPositions,
      activation_function: 'gelu_new',
      layer_norm_epsilon: config.layerNormEps,
      ...common,
    };
  }
  const architecture = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', mistral: 'MistralForCausalLM' }[config.modelType];
  const scaling = config.ropeScaling;
  return {
    architectures: [architecture],
    model_type: config.modelType,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    max_position_embeddings: config.maxPositions,
    hidden_act: 'silu',
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: scaling && {
      rope_type: 'llama3',
      factor: scaling.factor,
      low_freq_factor: scaling.lowFreqFactor,
      high_freq_factor: scaling.highFreqFactor,
      original_max_position_embeddings: scaling.originalMaxPositions,
    },
    ...(config.modelType === 'qwen2' ? { use_sliding_window: false } : { attention_bias: config.qkvBias, mlp_bias: config.mlpBias }),
    ...(config.modelType === 'mistral' ? { sliding_window: null } : {}),
    ...common,
  };
}
