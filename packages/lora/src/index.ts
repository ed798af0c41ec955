// The LoRA layer
export {
  LoraLinear,
  AdapterDict,
  isLinearLike,
  defaultLoraLinearOptions,
  type LoraLinearOptions,
  type LoraDenseWeight,
  type LoraAdapterSettings,
  type LoraBaseLayer,
  type LoraInit,
} from './lora-linear.js';

// Applying adapters
export {
  applyLora,
  setAdapter,
  trainableReport,
  loraLayers,
  loraAdapters,
  matchesTarget,
  dispatchLinear,
  dispatchConv1D,
  dispatchLinearLike,
  loraDispatchers,
  defaultLoraOptions,
  type LoraOptions,
  type LoraReport,
  type LoraTargetModules,
  type LoraDispatcher,
  type LoraAdapterRecord,
} from './apply.js';

// Merging and disabling
export { mergeAdapter, unmergeAdapter, mergeAndUnload, withAdaptersDisabled, defaultMergeAdapterOptions, type MergeAdapterOptions } from './merge.js';

// PEFT files
export {
  saveAdapter,
  loadAdapter,
  defaultSaveAdapterOptions,
  defaultLoadAdapterOptions,
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type PeftLoraConfig,
  type SaveAdapterOptions,
  type LoadAdapterOptions,
} from './peft-io.js';

// Small linear algebra
export { topSingularTriplets, type SingularTriplets } from './svd.js';
