// The config.json of a reward model: the backbone's Hugging Face fields, a *ForSequenceClassification class, one label.
import type { ModelConfig } from '@posttrain/tensor-core';
import type { RewardModel } from './reward-model.js';

type Json = Record<string, unknown>;

/** Hugging Face's sequence-classification class for a `model_type`. */
function architectureOf(modelType: string): string {
  const known: Record<string, string> = { llama: 'LlamaForSequenceClassification', qwen2: 'Qwen2ForSequenceClassification', mistral: 'MistralForSequenceClassification', gpt2: 'GPT2ForSequenceClassification' };
  return known[modelType] ?? `${modelType.charAt(0).toUpperCase()}${modelType.slice(1)}ForSequenceClassification`;
}

/**
 * The backbone's `config.json` fields, as `@posttrain/models`' `configToHf` writes them for GPT-2
 * and the Llama family (a test keeps the two equal), from the tensor-core contract plus the
 * architecture fields a config carries (`rmsNormEps`, `ropeTheta`, `layerNormEps`, …).
 */
function backboneConfig(config: ModelConfig): Json {
  const c = config as ModelConfig & Record<string, unknown>;
  const common = {
    vocab_size: c.vocabSize,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    tie_word_embeddings: c.tieWordEmbeddings,
    ...(c.initializerRange !== undefined ? { initializer_range: c.initializerRange } : {}),
    torch_dtype: 'float32',
  };
  if (c.modelType === 'gpt2') {
    return {
      model_type: 'gpt2',
      n_embd: c.hiddenSize,
      n_inner: c.intermediateSize === 4 * c.hiddenSize ? null : c.intermediateSize,
      n_layer: c.numLayers,
      n_head: c.numHeads,
      n_positions: c.maxPositions,
      n_ctx: c.maxPositions,
      activation_function: 'gelu_new',
      ...(c.layerNormEps !== undefined ? { layer_norm_epsilon: c.layerNormEps } : {}),
      ...common,
    };
  }
  const scaling = c.ropeScaling as { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number } | null | undefined;
  const llama = ['llama', 'qwen2', 'mistral'].includes(c.modelType);
  return {
    model_type: c.modelType,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    ...(llama ? { hidden_act: 'silu' } : {}),
    ...(c.rmsNormEps !== undefined ? { rms_norm_eps: c.rmsNormEps } : {}),
    ...(c.ropeTheta !== undefined ? { rope_theta: c.ropeTheta } : {}),
    ...(scaling !== undefined
      ? {
          rope_scaling: scaling && {
            rope_type: 'llama3',
            factor: scaling.factor,
            low_freq_factor: scaling.lowFreqFactor,
            high_freq_factor: scaling.highFreqFactor,
            original_max_position_embeddings: scaling.originalMaxPositions,
          },
        }
      : {}),
    ...(c.modelType === 'qwen2' ? { use_sliding_window: false } : llama ? { attention_bias: c.qkvBias, mlp_bias: c.mlpBias } : {}),
    ...(c.modelType === 'mistral' ? { sliding_window: null } : {}),
    ...common,
  };
}

/**
 * The `config.json` of a full save: the backbone's fields, the sequence-classification class and
 * one label (a scalar reward), then `overrides`.
 */
export function rewardConfig(model: RewardModel, overrides: Json | undefined): Json {
  const base = backboneConfig(model.config);
  return {
    architectures: [architectureOf(String(model.config.modelType))],
    ...base,
    num_labels: 1,
    id2label: { '0': 'LABEL_0' },
    label2id: { LABEL_0: 0 },
    ...overrides,
  };
}
