// tfjs with gradients and chained ops registered
export { tf } from './tf.js';

// Backends
export { initBackend, type BackendInfo, type BackendName } from './backend.js';

// Errors and options
export { PosttrainError, isPosttrainError, formatShape, type PosttrainErrorCode, type PosttrainErrorOptions } from './errors.js';
export { resolveOptions, checkNumber } from './options.js';

// Modules and layers
export { Module, ModuleList, type LoadStateDictOptions, type LoadStateDictResult } from './module.js';
export {
  Linear,
  Embedding,
  Dropout,
  manualSeed,
  defaultRng,
  defaultLinearOptions,
  defaultEmbeddingOptions,
  type LinearLike,
  type LinearOptions,
  type EmbeddingOptions,
} from './layers.js';
export { LayerNorm, RMSNorm, defaultLayerNormOptions, defaultRMSNormOptions, type LayerNormOptions, type RMSNormOptions } from './norm.js';
export { Rng } from './rng.js';

// Optimisation

// Safetensors and files

// Model contract
export type { CausalLM, ModelConfig, ForwardOptions, ForwardOutput, KVCache } from './causal-lm.js';
