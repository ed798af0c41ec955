import type { tf } from './tf.js';
import type { Module } from './module.js';

/**
 * The configuration every causal LM exposes, with camelCase names for Hugging Face's `config.json`
 * fields (`vocab_size` → `vocabSize`, `num_key_value_heads` → `numKvHeads`, …).
 */
export interface ModelConfig {
  /** Hugging Face `model_type`: `gpt2`, `llama`, `qwen2`, `mistral`, … */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  /** Width of the MLP's hidden layer. */
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads; fewer than `numHeads` is grouped-query attention. */
  numKvHeads: number;
  /** Per-head width, usually hiddenSize / numHeads. */
  headDim: number;
  /** Longest sequence the position scheme supports. */
  maxPositions: number;
  bosTokenId: number | null;
  /** One id, or several (Llama 3 stops on any of them). */
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  /** The output projection shares the input embedding's weight. */
  tieWordEmbeddings: boolean;
}

/**
 * A key/value cache for incremental decoding. Opaque to algorithms: only the model that made it
 * reads its contents. The caller disposes it.
 */
export interface KVCache {
  /** Number of positions already cached. */
  readonly length: number;
  dispose(): void;
}

/** Options of {@link CausalLM.forward}. */
export interface ForwardOptions {
  /** `[B, T]` (or `[B, past + T]` with a cache), 1 for real tokens and 0 for padding. */
  attentionMask?: tf.Tensor;
  /** `[B, T]` int32 positions; derived from the mask when absent. */
  positionIds?: tf.Tensor;
  /**
   * `[B, T]` int32 ids of packed examples: attention stays inside equal ids and positions restart
   * at each new id, so examples packed into one row never see each other.
   */
  segmentIds?: tf.Tensor;
  /** Cache from an earlier call; the returned `cache` extends it. */
  cache?: KVCache;
  /** Return a cache to continue from (default false). */
  useCache?: boolean;
}

/** What {@link CausalLM.forward} returns; the caller disposes the tensors. */
export interface ForwardOutput {
  /** `[B, T, V]` next-token logits. */
  logits: tf.Tensor;
  /** `[B, T, H]` final hidden states (after the last norm), read by reward and value heads. */
  hidden: tf.Tensor;
  cache?: KVCache;
}

/**
 * A causal language model: a {@link Module} whose parameter paths are the Hugging Face checkpoint
 * keys, with a forward pass over int32 token ids. Every algorithm in posttrain accepts any object
 * of this shape; `@posttrain/models` implements it for GPT-2 and the Llama family.
 */
export interface CausalLM extends Module {
  readonly config: ModelConfig;
  /** `inputIds [B, T]` int32 → logits and hidden states. */
  forward(inputIds: tf.Tensor, options?: ForwardOptions): ForwardOutput;
}
