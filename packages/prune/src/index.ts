// @posttrain/prune: pruning of trained models — unstructured and N:M criteria (magnitude, Wanda,
// SparseGPT), structured removal of attention heads and MLP channels, masks kept through fine-tuning,
// and sparsity reports. See docs/prune.md.
export {};
