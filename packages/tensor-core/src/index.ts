// tfjs with gradients and chained ops registered
export { tf } from './tf.js';
export { stopGradient } from './stop-gradient.js';

// Backends
export { initBackend, type BackendInfo, type BackendName } from './backend.js';

// Errors and options
export { PosttrainError, isPosttrainError, formatShape, type PosttrainErrorCode, type PosttrainErrorOptions } from './errors.js';
export { resolveOptions, checkNumber, describe as describeValue } from './options.js';
export { runMain, formatError, type RunMainOptions } from './run-main.js';

// Modules and layers
export { Module, ModuleList, type LoadStateDictOptions, type LoadStateDictResult } from './module.js';
export {
  Linear,
  Embedding,
  Dropout,
  manualSeed,
  defaultRng,
  withDropoutRng,
  defaultLinearOptions,
  defaultEmbeddingOptions,
  type LinearLike,
  type LinearOptions,
  type EmbeddingOptions,
} from './layers.js';
export { Conv1D, defaultConv1DOptions, type Conv1DOptions } from './conv1d.js';
export { LayerNorm, RMSNorm, defaultLayerNormOptions, defaultRMSNormOptions, type LayerNormOptions, type RMSNormOptions } from './norm.js';
export { geluTanh, silu } from './activations.js';
export { Rng } from './rng.js';

// Optimisation
export { AdamW, defaultAdamWOptions, type Optimizer, type AdamWOptions } from './optim.js';
export { SGD, defaultSGDOptions, type SGDOptions } from './sgd.js';
export { clipGradNorm, clipGradNormAsync } from './clip.js';
export {
  constantSchedule,
  linearSchedule,
  cosineSchedule,
  defaultConstantScheduleOptions,
  defaultLinearScheduleOptions,
  defaultCosineScheduleOptions,
  type LrSchedule,
  type ConstantScheduleOptions,
  type LinearScheduleOptions,
  type CosineScheduleOptions,
} from './schedules.js';
export { valueAndGrads, type ValueAndGrads } from './grads.js';

// Safetensors and files
export {
  readSafetensors,
  parseSafetensorsHeader,
  decodeSafetensorsTensor,
  MAX_SAFETENSORS_HEADER_BYTES,
  type SafetensorsDtype,
  type SafetensorsFormatDtype,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
} from './safetensors.js';
export { writeSafetensors, writeSafetensorsAsync, defaultWriteSafetensorsOptions, type WriteSafetensorsOptions } from './safetensors-write.js';
export { fileSource, fileTarget, type FileSource, type FileTarget, type FileSourceInput } from './file-source.js';
export {
  readCheckpoint,
  writeCheckpoint,
  defaultReadCheckpointOptions,
  defaultWriteCheckpointOptions,
  type CheckpointIndex,
  type ReadCheckpointOptions,
  type WriteCheckpointOptions,
  type WriteCheckpointResult,
} from './checkpoint.js';
export {
  registerCheckpointQuantizer,
  unregisterCheckpointQuantizer,
  checkpointQuantizer,
  checkpointQuantizers,
  type CheckpointQuantizer,
  type QuantizedLoadPlan,
  type QuantizedSave,
} from './checkpoint-quantizers.js';

// Model contract
export type { CausalLM, ModelConfig, ForwardOptions, ForwardOutput, KVCache } from './causal-lm.js';
export {
  configFromHf,
  configToHf,
  supportedModelTypes,
  type CausalLMConfig,
  type Gpt2Config,
  type LlamaConfig,
  type Llama3RopeScaling,
} from './hf-config.js';
