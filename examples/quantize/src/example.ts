// The example: the byte-level Llama of ./lm.ts in float and quantised by each scheme — int8, int4
// round-to-nearest in groups of 128 (and of 32), int4 by GPTQ in groups of 128 with calibration rows
// from the training split, NF4 — each on a fresh copy of the model, measured by exact weight bytes and
// held-out perplexity (policy's `perplexity`, disjoint windows of 128 bytes).
import { PosttrainError, checkNumber, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { perplexity } from '@posttrain/policy';
import type { PretrainedModel } from '@posttrain/models';
import { QuantizedLinear, gptqModel, quantizeModel, type QuantizeSummary } from '@posttrain/quantize';
import { CONTEXT, calibrationBatches, heldOutIds, loadLm, unigramBitsPerByte } from './lm.js';

/** The schemes of the example, in the order of its table (the done line names the first five). */
export const QUANTIZE_SCHEMES = Object.freeze(['float', 'int8', 'int4-rtn', 'int4-gptq', 'nf4', 'int4-g32'] as const);

/** One of {@link QUANTIZE_SCHEMES}: `int4-rtn` and `int4-gptq` are int4 in groups of 128 (symmetric), `int4-g32` round-to-nearest in groups of 32. */
export type QuantizeExampleScheme = (typeof QUANTIZE_SCHEMES)[number];

/** Options of {@link runQuantizeExample}. */
export interface QuantizeExampleOptions {
  /** Held-out bytes scored, from the start of the held-out split; null: all 111,540. */
  heldOutBytes: number | null;
  /** GPTQ's calibration rows: windows of 128 bytes drawn at random offsets from the training split. */
  calibration: number;
  /** Seed of the calibration rows' offsets. */
  seed: number;
  /** Schemes to measure, in order; float is always measured first (the others are compared with it). */
  schemes: readonly QuantizeExampleScheme[];
  /** Windows per forward pass of the perplexity. */
  batchSize: number;
  /** Where the table's lines go. */
  log: (line: string) => void;
}

/**
 * Defaults of {@link QuantizeExampleOptions}: the whole held-out split, 128 calibration rows of 128
 * bytes (16,384 tokens, 43× the widest layer's 384 inputs) from seed 0, every scheme.
 *
 * @example
 * ```ts
 * await runQuantizeExample({ ...defaultQuantizeExampleOptions, heldOutBytes: 8192 });
 * ```
 */
export const defaultQuantizeExampleOptions: Readonly<QuantizeExampleOptions> = Object.freeze({
  heldOutBytes: null,
  calibration: 128,
  seed: 0,
  schemes: QUANTIZE_SCHEMES,
  batchSize: 16,
  log: console.log,
});

/** What one scheme measured. */
export interface SchemeFigures {
  scheme: QuantizeExampleScheme;
  /** Exact bytes of the model's weights: the quantised layers' (`QuantizeSummary.quantizedBytes`) plus 4 per float parameter left (embeddings, norms). */
  weightBytes: number;
  /** Of which the quantised layers' (0 for float). */
  quantizedBytes: number;
  /** Layers quantised (0 for float). */
  layers: number;
  /** Held-out perplexity (exp of nats per byte). */
  perplexity: number;
  /** Held-out bits per byte. */
  bitsPerByte: number;
  /** Bytes scored. */
  tokens: number;
  /** Seconds to quantise (GPTQ: with its calibration passes). */
  quantizeSeconds: number;
  /** Seconds of the perplexity. */
  evalSeconds: number;
}

/** What {@link runQuantizeExample} measured. */
export interface QuantizeExampleResult {
  figures: SchemeFigures[];
  /** Calibration tokens GPTQ saw (rows × 128). */
  calibrationTokens: number;
  /** The unigram baseline's perplexity on the held-out split (2^bits per byte). */
  unigramPerplexity: number;
  seconds: number;
}

/** Float parameters of `model` in bytes (4 each): what is left unquantised. */
function floatParameterBytes(model: PretrainedModel): number {
  let n = 0;
  for (const p of model.namedParameters().values()) n += p.size;
  return 4 * n;
}

async function quantise(model: PretrainedModel, scheme: QuantizeExampleScheme, calibration: number[][][]): Promise<QuantizeSummary | undefined> {
  switch (scheme) {
    case 'float':
      return undefined;
    case 'int8':
      return quantizeModel(model, { scheme: 'int8' });
    case 'int4-rtn':
      return quantizeModel(model, { scheme: 'int4', groupSize: 128 });
    case 'int4-g32':
      return quantizeModel(model, { scheme: 'int4', groupSize: 32 });
    case 'nf4':
      return quantizeModel(model, { scheme: 'nf4' });
    case 'int4-gptq': {
      const report = await gptqModel(model, calibration, { bits: 4, groupSize: 128, symmetric: true });
      // The same summary quantizeModel gives, read from the layers GPTQ put in.
      let quantizedBytes = 0;
      for (const { path } of report) quantizedBytes += (model.getModule(path) as QuantizedLinear).weightBytes;
      return { scheme: 'int4', layers: report.map((r) => r.path), excluded: [], floatBytes: report.reduce((n, r) => n + 4 * r.inFeatures * r.outFeatures, 0), quantizedBytes };
    }
  }
}

/**
 * Loads the committed model once per scheme, quantises it (GPTQ with `calibration` rows of the
 * training split, in batches of 16), measures its exact weight bytes and held-out perplexity, and
 * logs a table row per scheme. Float comes first whatever `schemes` says. Disposes every model.
 *
 * @example
 * ```ts
 * const { figures } = await runQuantizeExample({ heldOutBytes: 16_384, calibration: 32 });
 * console.log(doneLine(figures, 12.3)); // done in 12.3 s: ppl float 4.826, int8 …
 * ```
 */
export async function runQuantizeExample(options: Partial<QuantizeExampleOptions> = {}): Promise<QuantizeExampleResult> {
  const owner = 'runQuantizeExample';
  const o = resolveOptions(owner, options, defaultQuantizeExampleOptions as QuantizeExampleOptions);
  const all = heldOutIds();
  if (o.heldOutBytes !== null)
    checkNumber(owner, 'heldOutBytes', o.heldOutBytes, `an integer in [${2 * CONTEXT}, ${all.length}] or null`, (v) => Number.isInteger(v) && v >= 2 * CONTEXT && v <= all.length);
  checkNumber(owner, 'calibration', o.calibration, 'an integer ≥ 3 (GPTQ needs at least 384 tokens, the widest layer’s inputs)', (v) => Number.isInteger(v) && v >= 3);
  checkNumber(owner, 'seed', o.seed, 'an integer', Number.isInteger);
  checkNumber(owner, 'batchSize', o.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v >= 1);
  if (!Array.isArray(o.schemes) || !o.schemes.every((s) => QUANTIZE_SCHEMES.includes(s))) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected schemes to be an array of ${QUANTIZE_SCHEMES.join(', ')}; got ${describeValue(o.schemes)}`, {
      help: "schemes: ['float', 'int8', 'nf4']",
    });
  }
  const t0 = performance.now();
  const ids = o.heldOutBytes === null ? all : all.subarray(0, o.heldOutBytes);
  const calibration = calibrationBatches(o.calibration, o.seed);
  const schemes: QuantizeExampleScheme[] = ['float', ...o.schemes.filter((s) => s !== 'float')];
  o.log(
    `held-out: ${ids.length.toLocaleString('en')} bytes, windows of ${CONTEXT} (stride ${CONTEXT}); GPTQ calibration: ${o.calibration} × ${CONTEXT} = ${(o.calibration * CONTEXT).toLocaleString('en')} tokens of the training split (seed ${o.seed})`,
  );
  o.log(
    `${'scheme'.padEnd(10)} ${'weight bytes'.padStart(13)} ${'vs float'.padStart(8)} ${'ppl'.padStart(7)} ${'bits/byte'.padStart(9)} ${'Δppl'.padStart(7)} ${'quantise s'.padStart(10)} ${'eval s'.padStart(7)}`,
  );
  const figures: SchemeFigures[] = [];
  for (const scheme of schemes) {
    const { model } = await loadLm();
    try {
      const tq = performance.now();
      const summary = await quantise(model, scheme, calibration);
      const quantizeSeconds = (performance.now() - tq) / 1000;
      const te = performance.now();
      const r = await perplexity(model, ids, { contextLength: CONTEXT, stride: CONTEXT, batchSize: o.batchSize });
      const evalSeconds = (performance.now() - te) / 1000;
      const quantizedBytes = summary?.quantizedBytes ?? 0;
      const f: SchemeFigures = {
        scheme,
        weightBytes: quantizedBytes + floatParameterBytes(model),
        quantizedBytes,
        layers: summary?.layers.length ?? 0,
        perplexity: r.perplexity,
        bitsPerByte: r.nll / Math.LN2,
        tokens: r.tokens,
        quantizeSeconds,
        evalSeconds,
      };
      figures.push(f);
      const float = figures[0] as SchemeFigures;
      const delta = scheme === 'float' ? '' : `${(100 * (f.perplexity / float.perplexity - 1)).toFixed(2)}%`;
      o.log(
        `${scheme.padEnd(10)} ${f.weightBytes.toLocaleString('en').padStart(13)} ${`${((100 * f.weightBytes) / float.weightBytes).toFixed(1)}%`.padStart(8)} ${f.perplexity.toFixed(3).padStart(7)} ${f.bitsPerByte.toFixed(3).padStart(9)} ${delta.padStart(7)} ${quantizeSeconds.toFixed(1).padStart(10)} ${evalSeconds.toFixed(1).padStart(7)}`,
      );
    } finally {
      model.dispose();
    }
  }
  const unigramPerplexity = 2 ** unigramBitsPerByte();
  return { figures, calibrationTokens: o.calibration * CONTEXT, unigramPerplexity, seconds: (performance.now() - t0) / 1000 };
}

/** The schemes the done line names, in its order. */
const DONE_SCHEMES = ['float', 'int8', 'int4-rtn', 'int4-gptq', 'nf4'] as const;

/**
 * The example's last line: `done in X s: ppl float A, int8 B, int4-rtn C, int4-gptq D, nf4 E`
 * (perplexities to 3 decimals; a scheme not measured reads `-`).
 *
 * @example
 * ```ts
 * doneLine(result.figures, 95.2); // 'done in 95.2 s: ppl float 5.503, int8 5.505, int4-rtn 5.71, …'
 * ```
 */
export function doneLine(figures: readonly SchemeFigures[], seconds: number): string {
  const ppl = (scheme: QuantizeExampleScheme) => {
    const f = figures.find((x) => x.scheme === scheme);
    return f ? f.perplexity.toFixed(3) : '-';
  };
  return `done in ${seconds.toFixed(1)} s: ppl ${DONE_SCHEMES.map((s) => `${s} ${ppl(s)}`).join(', ')}`;
}
