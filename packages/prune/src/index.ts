// @posttrain/prune: pruning of trained models — unstructured and N:M criteria (magnitude, Wanda,
// SparseGPT), structured removal of attention heads and MLP channels, masks kept through fine-tuning,
// and sparsity reports. See docs/prune.md.
// Unstructured and N:M criteria on one layer's weight [out, in] (magnitude, Wanda, SparseGPT)
export { nmMask, nmViolations, type NMPattern, type SparsityPattern } from './nm.js';
export {
  magnitudePrune,
  magnitudePruneGlobal,
  defaultMagnitudeOptions,
  defaultMagnitudeGlobalOptions,
  type MagnitudeOptions,
  type MagnitudeGlobalOptions,
  type PruneResult,
} from './magnitude.js';
export { wandaPrune, defaultWandaOptions, type WandaOptions } from './wanda.js';
export { sparsegptPrune, defaultSparseGptOptions, type SparseGptOptions, type SparseGptResult } from './sparsegpt.js';
// The criteria on a whole model, in place, with calibration statistics from @posttrain/policy
export { pruneModel, defaultPruneModelOptions, type PruneModelOptions, type PruneModelResult, type PrunedLayer } from './prune-model.js';
// Masks that last through fine-tuning
export {
  MaskedLinear,
  MaskedConv1D,
  keepMasks,
  removeMasks,
  applyMasks,
  maskFromZeros,
  maskedLayers,
  defaultKeepMasksOptions,
  type KeepMasksOptions,
  type LayerMasks,
} from './masks.js';
// Sparsity reports
export { sparsityReport, defaultSparsityReportOptions, type SparsityReport, type SparsityReportOptions, type LayerSparsity } from './report.js';
// Structured pruning: whole attention heads and MLP channels removed, shapes and config reduced
export { pruneHeads, defaultPruneHeadsOptions, type PruneHeadsOptions } from './prune-heads.js';
export { pruneMlpChannels, defaultPruneMlpChannelsOptions, type PruneMlpChannelsOptions } from './prune-mlp-channels.js';
export { MIN_STRUCTURED_CALIBRATION_TOKENS, type StructuredPruneReport, type StructuredScore, type StructuredShape } from './structured.js';
