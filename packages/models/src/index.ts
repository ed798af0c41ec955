// Architectures
export { Gpt2LMHeadModel } from './gpt2.js';
export { LlamaForCausalLM } from './llama.js';
export { LayerKVCache } from './attention.js';

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
