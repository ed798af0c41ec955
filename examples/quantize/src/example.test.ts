import { describe, expect, it } from 'vitest';
import { isPosttrainError, initBackend, tf } from '@posttrain/tensor-core';
import { CONTEXT, calibrationRows, corpusSplit, lmConfig } from './lm.js';
import { QUANTIZE_SCHEMES, doneLine, runQuantizeExample, type QuantizeExampleScheme, type SchemeFigures } from './example.js';

// The example shortened: the first 16,384 held-out bytes and 32 calibration rows (4,096 tokens), every
// scheme on a fresh copy of the model. Measured on wasm (seed 0): ppl float 5.048, int8 5.048,
// int4-rtn 5.105, int4-gptq 5.076, nf4 5.088, int4-g32 5.092; ~20 s on two cores.

/** The model's linear layers as [out, in], from its config alone (lm_head is tied to the embedding). */
function linearShapes(): [number, number][] {
  const c = lmConfig();
  const h = c.hiddenSize as number;
  const i = c.intermediateSize as number;
  const kv = ((c.numKvHeads as number) * h) / (c.numHeads as number);
  const block: [number, number][] = [
    [h, h], // q_proj
    [kv, h], // k_proj
    [kv, h], // v_proj
    [h, h], // o_proj
    [i, h], // gate_proj
    [i, h], // up_proj
    [h, i], // down_proj
  ];
  return Array.from({ length: c.numLayers as number }, () => block).flat();
}

/** Bytes of the weights the example leaves in float: the embedding (tied output) and the RMSNorm weights, 4 bytes each. */
function floatLeftBytes(): number {
  const c = lmConfig();
  const h = c.hiddenSize as number;
  return 4 * ((c.vocabSize as number) * h + (2 * (c.numLayers as number) + 1) * h);
}

/** Exact quantised bytes of a [out, in] layer, written out from the storage formats (QuantizedLinear's class comment). */
function layerBytes(scheme: QuantizeExampleScheme, out: number, inFeatures: number): number {
  switch (scheme) {
    case 'float':
      return 4 * out * inFeatures;
    case 'int8': // codes 1 byte each (4 per int32 word), one float32 scale per row
      return out * Math.ceil((inFeatures * 8) / 32) * 4 + 4 * out;
    case 'int4-rtn':
    case 'int4-gptq': // 8 codes per int32 word, one float32 scale per row and group of 128
      return out * Math.ceil((inFeatures * 4) / 32) * 4 + 4 * out * (inFeatures / 128);
    case 'int4-g32':
      return out * Math.ceil((inFeatures * 4) / 32) * 4 + 4 * out * (inFeatures / 32);
    case 'nf4': {
      // 2 codes a byte, an 8-bit absmax code per block of 64, float32 nested absmax per 256 blocks, float32 offset
      const n = out * inFeatures;
      const blocks = Math.ceil(n / 64);
      return Math.ceil(n / 2) + blocks + 4 * Math.ceil(blocks / 256) + 4;
    }
  }
}

function expectedBytes(scheme: QuantizeExampleScheme): number {
  return floatLeftBytes() + linearShapes().reduce((n, [out, inFeatures]) => n + layerBytes(scheme, out, inFeatures), 0);
}

describe('the quantisation example', () => {
  it('measures every scheme on a fresh model: exact bytes, int8 within 1% of float, GPTQ int4-g128 below round-to-nearest, all below unigram', async () => {
    await initBackend('wasm');
    const before = tf.memory().numTensors;
    const lines: string[] = [];
    const t0 = performance.now();
    const result = await runQuantizeExample({ heldOutBytes: 16_384, calibration: 32, log: (line) => lines.push(line) });
    const line = doneLine(result.figures, (performance.now() - t0) / 1000);
    console.log([...lines, line].join('\n'));
    expect(tf.memory().numTensors).toBe(before);
    expect(result.calibrationTokens).toBe(32 * CONTEXT);
    const by = Object.fromEntries(result.figures.map((f) => [f.scheme, f])) as Record<QuantizeExampleScheme, SchemeFigures>;
    expect(result.figures.map((f) => f.scheme)).toEqual([...QUANTIZE_SCHEMES]);

    expect(by.float.weightBytes).toBe(4 * 820_864);
    for (const scheme of QUANTIZE_SCHEMES) {
      expect(by[scheme].weightBytes, scheme).toBe(expectedBytes(scheme));
      expect(by[scheme].layers, scheme).toBe(scheme === 'float' ? 0 : 28);
      expect(by[scheme].tokens, scheme).toBe(16_384 - 16_384 / CONTEXT);
    }
    expect(by.int8.weightBytes).toBe(944_640);
    expect(by['int4-gptq'].weightBytes).toBe(by['int4-rtn'].weightBytes);

    expect(Math.abs(by.int8.perplexity / by.float.perplexity - 1)).toBeLessThan(0.01);
    expect(by['int4-gptq'].perplexity).toBeLessThan(by['int4-rtn'].perplexity);
    for (const f of result.figures) {
      expect(Number.isFinite(f.perplexity), f.scheme).toBe(true);
      expect(f.perplexity, f.scheme).toBeLessThan(result.unigramPerplexity);
      expect(f.perplexity, f.scheme).toBeGreaterThanOrEqual(by.float.perplexity * 0.99);
      expect(f.perplexity, f.scheme).toBeLessThan(by.float.perplexity * 1.05); // 4 bits lose at most a few percent
    }

    expect(line).toMatch(/^done in \d+\.\d s: ppl float \d+\.\d{3}, int8 \d+\.\d{3}, int4-rtn \d+\.\d{3}, int4-gptq \d+\.\d{3}, nf4 \d+\.\d{3}$/);
    expect(line).toContain(`int4-gptq ${by['int4-gptq'].perplexity.toFixed(3)}`);
    expect(lines).toHaveLength(2 + QUANTIZE_SCHEMES.length);
    expect(lines[0]).toContain('32 × 128 = 4,096 tokens of the training split');
  }, 180_000);

  it('draws calibration rows from the training split only, the same for the same seed', () => {
    const rows = calibrationRows(8, 3);
    expect(rows).toHaveLength(8);
    expect(calibrationRows(8, 3)).toEqual(rows);
    expect(calibrationRows(8, 4)).not.toEqual(rows);
    const { train } = corpusSplit();
    const text = Buffer.from(train).toString('latin1');
    for (const row of rows) {
      expect(row).toHaveLength(CONTEXT);
      expect(text.includes(Buffer.from(row).toString('latin1'))).toBe(true);
    }
  });

  it('rejects bad options by name before loading anything', async () => {
    const failure = async (options: object, message: string) => {
      const error = await runQuantizeExample(options).catch((e: unknown) => e);
      expect(isPosttrainError(error)).toBe(true);
      expect((error as Error).message).toContain(message);
    };
    await failure({ heldOutBytes: 100 }, 'expected heldOutBytes to be an integer in [256, 111540] or null; got 100');
    await failure({ calibration: 2 }, 'expected calibration to be an integer ≥ 3');
    await failure({ schemes: ['int3'] }, 'expected schemes to be an array of float, int8');
    await failure({ heldOut: 1 }, 'unknown option "heldOut"');
  });
});
