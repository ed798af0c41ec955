// Registration of the checkpoint quantizers: importing '@posttrain/quantize' lets
// `@posttrain/models`' loadModel / saveModel read and write quantised checkpoints (Hugging Face's
// HfQuantizer pattern, keyed by config.json's `quantization_config.quant_method`). This file has a
// side effect on purpose; package.json's "sideEffects" lists it so bundlers keep it.
import { registerCheckpointQuantizer } from '@posttrain/tensor-core';
import { bitsandbytesQuantizer } from './checkpoint-bitsandbytes.js';
import { compressedTensorsQuantizer } from './checkpoint-compressed-tensors.js';

registerCheckpointQuantizer(compressedTensorsQuantizer);
registerCheckpointQuantizer(bitsandbytesQuantizer);

export { bitsandbytesQuantizer, compressedTensorsQuantizer };
export { COMPRESSED_TENSORS_VERSION } from './checkpoint-compressed-tensors.js';
