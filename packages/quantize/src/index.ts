// @posttrain/quantize: weight-only quantisation (int8, int4, NF4) with packed storage, GPTQ,
// quantisation-aware training and QLoRA.
export {};

// GPTQ
export * from './gptq.js';
