import { describe, expect, it } from 'vitest';
import * as quantize from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(quantize).sort()).toEqual([
      'DYNAMIC_MAP',
      'MIN_SCALE',
      'NF4_BLOCK_SIZE',
      'NF4_CODE',
      'NF4_NESTED_BLOCK_SIZE',
      'QuantizedLinear',
      'affineQParams',
      'bucketize',
      'defaultGptqModelOptions',
      'defaultGptqOptions',
      'defaultQuantizeModelOptions',
      'defaultQuantizeOptions',
      'dequantizeBlockwise',
      'dequantizeModel',
      'dequantizeNf4',
      'dequantizeNf4Tensor',
      'dequantizeValue',
      'gptqModel',
      'gptqQuantize',
      'nf4Absmax',
      'packBytes',
      'packInt32',
      'packNibbles',
      'packedColumns',
      'qRange',
      'quantizeBlockwise',
      'quantizeModel',
      'quantizeNf4',
      'quantizeValue',
      'quantizeValues',
      'roundHalfEven',
      'unpackBytesTensor',
      'unpackDigits',
      'unpackInt32',
      'unpackInt32Tensor',
      'unpackNibbles',
      'unpackNibblesTensor',
    ]);
  });
});
