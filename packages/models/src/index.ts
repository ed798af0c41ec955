// Architectures
export { Gpt2LMHeadModel } from './gpt2.js';
export { LlamaForCausalLM } from './llama.js';
export { LayerKVCache } from './attention.js';

// Configuration
export {
  configFromHf,
  configToHf,
  supportedModelTypes,
  type CausalLMConfig,
  type Gpt2Config,
  type LlamaConfig,
  type Llama3RopeScaling,
} from './config.js';

// Loading, saving, creating
export {
  loadModel,
  saveModel,
  createModel,
  defaultCreateModelOptions,
  defaultSaveModelOptions,
  defaultLoadModelOptions,
  type PretrainedModel,
  type ModelConfigInput,
  type CreateModelOptions,
  type SaveModelOptions,
  type LoadModelOptions,
} from './load.js';

// Generation
export { generate, defaultGenerateOptions, type GenerateOptions, type GenerateResult, type FinishReason } from './generate.js';
