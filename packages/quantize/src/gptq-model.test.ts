import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { createModel, type PretrainedModel } from '@posttrain/models';
import { type CausalLM, Conv1D, Embedding, type ForwardOutput, Linear, Module, type ModelConfig, Rng, initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { gptqModel } from './gptq.js';
import { affineQParams, quantizeValue } from './qparams.js';
import { QuantizedLinear } from './quantized-linear.js';

// gptqModel on tiny random Llama (Linear) and GPT-2 (Conv1D) models: every projection becomes a
// packed QuantizedLinear, the logits on held-out rows are closer to the float model's than
// round-to-nearest's with the same grid, the model is unchanged when anything is wrong, and the
// tensors of the replaced layers are freed.

const configs = {
  llama: { modelType: 'llama', vocabSize: 64, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 2, numKvHeads: 1, maxPositions: 64, tieWordEmbeddings: true },
  gpt2: { modelType: 'gpt2', vocabSize: 64, hiddenSize: 32, numLayers: 2, numHeads: 2, maxPositions: 64 },
} as const;
const make = (kind: keyof typeof configs): PretrainedModel => createModel(configs[kind] as never, { seed: 7 });
const rows = (seed: number, count: number, length: number): number[][] => {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(rng.int(64))));
};
const calibration = [rows(1, 8, 32), rows(2, 8, 32)]; // 512 tokens
const heldOut = rows(3, 4, 32);

function logits(model: PretrainedModel): Float32Array {
  const ids = tf.tensor2d(heldOut, [heldOut.length, heldOut[0].length], 'int32');
  const out = model.forward(ids);
  const values = out.logits.dataSync() as Float32Array;
  tf.dispose([ids, out.logits, out.hidden]);
  return values;
}
const mse = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;
const denseLayers = (model: PretrainedModel): string[] => [...model.namedModules()].filter(([p, m]) => (m instanceof Linear || m instanceof Conv1D) && !p.endsWith('lm_head')).map(([p]) => p);
const quantizedLayers = (model: PretrainedModel): string[] => [...model.namedModules()].filter(([, m]) => m instanceof QuantizedLinear).map(([p]) => p);
const tensorsOf = (model: PretrainedModel): number => model.namedParameters().size + model.namedBuffers().size;

/** Round-to-nearest int4 with the same grid, built here from qparams.ts (not from quantizeModel). */
function rtn(model: PretrainedModel, groupSize: number): void {
  for (const path of denseLayers(model)) {
    const layer = model.getModule(path) as Linear | Conv1D;
    const w = tf.tidy(() => (layer instanceof Conv1D ? layer.weight.transpose() : layer.weight).dataSync()) as Float32Array;
    const groups = layer.inFeatures / groupSize;
    const q = new Int8Array(w.length);
    const scales = new Float32Array(layer.outFeatures * groups);
    for (let r = 0; r < layer.outFeatures; r++) {
      for (let g = 0; g < groups; g++) {
        const run = w.subarray(r * layer.inFeatures + g * groupSize, r * layer.inFeatures + (g + 1) * groupSize);
        const { scale } = affineQParams(Math.min(...run), Math.max(...run), 4, true);
        scales[r * groups + g] = scale;
        run.forEach((v, k) => {
          q[r * layer.inFeatures + g * groupSize + k] = quantizeValue(v, scale, 0, 4);
        });
      }
    }
    const bias = layer.bias ? (layer.bias.dataSync() as Float32Array).slice() : undefined;
    model.replaceModule(path, QuantizedLinear.fromIntegers({ scheme: 'int4', inFeatures: layer.inFeatures, outFeatures: layer.outFeatures, q, scales, groupSize, bias })).dispose();
  }
}

beforeAll(async () => {
  await initBackend('cpu');
});

/** The reference layer of gptq_ref.py inside a model: token t's embedding is calibration row X[t], `proj` holds W. */
class ReferenceLayerLm extends Module implements CausalLM {
  readonly config = { vocabSize: 32 } as ModelConfig;
  readonly embed: Embedding;
  readonly proj: Linear;
  constructor(X: Float32Array, W: Float32Array, tokens: number, inFeatures: number, outFeatures: number) {
    super();
    this.embed = this.registerModule('embed', new Embedding(tokens, inFeatures));
    this.proj = this.registerModule('proj', new Linear(inFeatures, outFeatures, { bias: false }));
    tf.tidy(() => {
      this.embed.weight.assign(tf.tensor2d(X, [tokens, inFeatures]));
      this.proj.weight.assign(tf.tensor2d(W, [outFeatures, inFeatures]));
    });
  }
  forward(ids: tf.Tensor): ForwardOutput {
    return tf.tidy(() => {
      const hidden = this.embed.forward(ids);
      return { logits: this.proj.forward(hidden), hidden };
    });
  }
}

describe('gptqModel end to end on the PyTorch reference layer (scripts/reference/gptq_ref.py)', () => {
  const ref = JSON.parse(readFileSync(new URL('./fixtures/gptq_ref.json', import.meta.url), 'utf8'));
  const bytes = (b64: string): Uint8Array => new Uint8Array(Buffer.from(b64, 'base64'));
  const [OUT, IN] = ref.shape as [number, number];
  const N = ref.tokens as number;
  const codes = new Int8Array(bytes(ref.inputCodes).buffer);
  const X = Float32Array.from(codes, (c, i) => c * ref.inputColumnScales[i % IN]); // exact in float32
  const W = new Float32Array(bytes(ref.weight).buffer);
  const tokenRows = Array.from({ length: 8 }, (_, r) => Array.from({ length: N / 8 }, (_, t) => r * (N / 8) + t));
  for (const [name, c] of Object.entries(ref.cases) as [
    string,
    { options: { bits: 4 | 8; group: number | null; symmetric: boolean; actorder: boolean; dynamic: boolean }; expected: { q: string; scales: number[]; zeros: number[]; gIdx: number[] } },
  ][]) {
    it(`${name}: hooks → Hessian (float32 matmuls, exact here) → GPTQ → QuantizedLinear give torch's dequantised weight`, async () => {
      const model = new ReferenceLayerLm(X, W, N, IN, OUT);
      const o = c.options;
      await gptqModel(model, [tokenRows], { bits: o.bits, groupSize: o.group, symmetric: o.symmetric, actOrder: o.actorder, groupQParams: o.dynamic ? 'dynamic' : 'static' });
      expect(model.proj).toBeInstanceOf(QuantizedLinear);
      const eye = tf.eye(IN);
      const What = model.proj.forward(eye); // [in, out] = Ŵᵀ
      const actual = What.dataSync();
      tf.dispose([eye, What]);
      const q = new Int8Array(bytes(c.expected.q).buffer);
      const groups = c.expected.scales.length / OUT;
      let wrong = 0;
      for (let r = 0; r < OUT; r++) {
        for (let j = 0; j < IN; j++) {
          const g = o.actorder ? c.expected.gIdx[j] : Math.floor(j / (o.group ?? IN));
          const k = r * groups + g;
          const expected = Math.fround((q[r * IN + j] - (o.symmetric ? 0 : c.expected.zeros[k])) * Math.fround(c.expected.scales[k]));
          if (Math.abs(actual[j * OUT + r] - expected) > 1e-6 * Math.abs(c.expected.scales[k])) wrong++;
        }
      }
      expect(wrong, `${name}: weights differing from torch's`).toBe(0);
      model.dispose();
    });
  }
});

describe('gptqModel', () => {
  for (const kind of ['llama', 'gpt2'] as const) {
    it(`${kind}: replaces every projection by a packed int4 layer whose logits beat round-to-nearest's`, async () => {
      const float = make(kind);
      const reference = logits(float);
      const targets = denseLayers(float);
      const before = tf.memory().numTensors - tensorsOf(float);
      const report = await gptqModel(float, calibration, { bits: 4, groupSize: 32, actOrder: true });
      expect(report.map((r) => r.path)).toEqual(targets);
      expect(quantizedLayers(float)).toEqual(targets);
      for (const r of report) {
        expect(r.tokens).toBe(512);
        expect(r.fellBackToRtn).toBe(false);
        expect(r.loss).toBeGreaterThan(0);
      }
      expect(tf.memory().numTensors - tensorsOf(float)).toBe(before); // the float layers' tensors were freed
      const gptqError = mse(logits(float), reference);
      const rounded = make(kind);
      rtn(rounded, 32);
      const rtnError = mse(logits(rounded), reference);
      expect(gptqError, `logit MSE vs float: gptq ${gptqError.toExponential(3)}, rtn ${rtnError.toExponential(3)}`).toBeLessThan(rtnError);
      float.dispose();
      rounded.dispose();
    });
  }

  it('sequential: false takes every Hessian from the float model in one pass (different losses after block 0)', async () => {
    const a = make('llama');
    const b = make('llama');
    const seq = await gptqModel(a, calibration, { groupSize: 32 });
    const flat = await gptqModel(b, calibration, { groupSize: 32, sequential: false });
    expect(flat.map((r) => r.path)).toEqual(seq.map((r) => r.path));
    for (let i = 0; i < 7; i++) expect(flat[i].loss).toBeCloseTo(seq[i].loss, 10); // block 0 sees the same inputs
    expect(flat.slice(7).some((r, i) => Math.abs(r.loss - seq[7 + i].loss) > 1e-9)).toBe(true);
    a.dispose();
    b.dispose();
  });

  it('leaves the model unchanged on a calibration set too small for the Hessian, a bad group size, NaN weights or a quantised layer', async () => {
    const model = make('llama');
    const dense = denseLayers(model);
    const failure = async (fn: () => Promise<unknown>, code: string, ...parts: string[]): Promise<void> => {
      try {
        await fn();
      } catch (error) {
        expect(isPosttrainError(error), String(error)).toBe(true);
        expect((error as { code: string }).code, String(error)).toBe(code);
        for (const part of parts) expect((error as Error).message).toContain(part);
        expect(denseLayers(model)).toEqual(dense);
        return;
      }
      throw new Error('expected an error');
    };
    await failure(() => gptqModel(model, [rows(4, 1, 40)], { groupSize: 32 }), 'INVALID_ARGUMENT', 'has 40 tokens; GPTQ needs at least 64', 'model.layers.0.mlp.down_proj');
    await failure(() => gptqModel(model, calibration, { groupSize: 128 }), 'INVALID_OPTION', 'groupSize 128 does not divide the 32 input features of model.layers.0.self_attn.q_proj');
    await failure(() => gptqModel(model, calibration, { bits: 8, groupSize: 32 }), 'NOT_SUPPORTED', 'int8 is per output channel');
    const weight = (model.getModule('model.layers.1.mlp.up_proj') as Linear).weight;
    const saved = weight.clone();
    weight.assign(tf.tidy(() => weight.add(tf.scalar(Number.NaN))));
    await failure(() => gptqModel(model, calibration, { groupSize: 32 }), 'NON_FINITE', 'model.layers.1.mlp.up_proj');
    weight.assign(saved);
    saved.dispose();
    await gptqModel(model, calibration, { groupSize: 32, layers: (p) => p.endsWith('q_proj') });
    expect(quantizedLayers(model)).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj']);
    const stillDense = denseLayers(model);
    try {
      await gptqModel(model, calibration, { groupSize: 32, layers: (p) => p.endsWith('_proj') });
      throw new Error('expected an error');
    } catch (error) {
      expect((error as { code: string }).code).toBe('NOT_SUPPORTED');
      expect((error as Error).message).toContain('model.layers.0.self_attn.q_proj is a QuantizedLinear');
      expect((error as Error).message).toContain('already quantised');
    }
    expect(denseLayers(model)).toEqual(stillDense);
    model.dispose();
  });
});
