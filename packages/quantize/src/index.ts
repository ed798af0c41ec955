// @posttrain/quantize: weight-only quantisation (int8, int4, NF4) with packed storage, GPTQ,
// quantisation-aware training and QLoRA.

// Integer grids (compressed-tensors' calculate_qparams / _quantize)
export { affineQParams, quantizeValue, quantizeValues, dequantizeValue, qRange, roundHalfEven, MIN_SCALE } from './qparams.js';

// Packing into int32 words (compressed-tensors' pack-quantized layout)
export { packInt32, unpackInt32, unpackInt32Tensor, unpackDigits, packedColumns, type PackBits } from './pack.js';

// NF4 with double quantisation (bitsandbytes)
export {
  NF4_CODE,
  DYNAMIC_MAP,
  NF4_BLOCK_SIZE,
  NF4_NESTED_BLOCK_SIZE,
  quantizeNf4,
  dequantizeNf4,
  dequantizeNf4Tensor,
  nf4Absmax,
  quantizeBlockwise,
  dequantizeBlockwise,
  bucketize,
  packNibbles,
  unpackNibbles,
  unpackNibblesTensor,
  packBytes,
  unpackBytesTensor,
  type Nf4Quantized,
  type BlockwiseQuantized,
} from './nf4.js';

// The quantised layer and whole-model transforms
export { QuantizedLinear, defaultQuantizeOptions, type QuantScheme, type QuantizeOptions, type QuantizedIntegers, type QuantizedLayerSpec } from './quantized-linear.js';
export { quantizeModel, dequantizeModel, defaultQuantizeModelOptions, type QuantizeModelOptions, type QuantizeSummary } from './quantize-model.js';

// GPTQ
export * from './gptq.js';

// Quantised checkpoints (compressed-tensors pack-quantized, bitsandbytes NF4); importing registers them with loadModel / saveModel
export { compressedTensorsQuantizer, bitsandbytesQuantizer, COMPRESSED_TENSORS_VERSION } from './checkpoint.js';

// Quantisation-aware training (torchao's prepare → train → convert)
export { FakeQuantizedLinear, prepareQat, convertQat, defaultQatOptions, type QatOptions, type QatSummary } from './qat.js';
