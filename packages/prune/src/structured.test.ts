import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel, loadModel, saveModel, type PretrainedModel } from '@posttrain/models';
import { captureLinearInputs } from '@posttrain/policy';
import { AdamW, Linear, Module, initBackend, isPosttrainError, tf, valueAndGrads, type CausalLM } from '@posttrain/tensor-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneHeads } from './prune-heads.js';
import { pruneMlpChannels } from './prune-mlp-channels.js';
import { MIN_STRUCTURED_CALIBRATION_TOKENS, type StructuredPruneReport } from './structured.js';

// fixtures/structured.json is written by scripts/reference/prune_structured_ref.py (PyTorch): for
// the tiny checkpoints of packages/models/fixtures and a fixed removal, the logits of the original
// model with the removed units' output weights zeroed (masked_logits) and of the smaller model torch
// builds by cutting them out (pruned_logits).
interface FixtureCase {
  name: string;
  model: 'llama' | 'qwen2' | 'gpt2';
  heads: number[][] | null;
  kv_groups: 'remove' | 'thin' | null;
  channels: number[][];
  after: { numHeads: number; numKvHeads: number; intermediateSize: number };
  num_parameters: number;
  input_ids: number[][];
  masked_logits: number[][];
  pruned_logits: number[][];
}
const fixture = JSON.parse(await readFile(new URL('./fixtures/structured.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };
const modelsDir = (name: string) => fileURLToPath(new URL(`../../models/fixtures/${name}`, import.meta.url));

const llama = { modelType: 'llama', vocabSize: 40, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, tieWordEmbeddings: false } as const;
const mha = { ...llama, numKvHeads: 4 } as const;
const gpt2 = { modelType: 'gpt2', vocabSize: 40, hiddenSize: 32, numLayers: 2, numHeads: 4, maxPositions: 32 } as const;
const rows = [
  [1, 5, 9, 13, 2, 7, 30, 11, 4, 8, 17, 21],
  [3, 6, 12, 24, 39, 18, 36, 33, 27, 15, 10, 20],
];
const calibration = Array.from({ length: 6 }, (_, i) => [rows[i % 2].map((t) => (t * (i + 1)) % 40)]); // 72 tokens

let dir: string;
beforeAll(async () => {
  await initBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'posttrain-prune-structured-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function logits(model: CausalLM, ids: number[][] = rows): Float32Array {
  return readLogits(model, ids);
}

function readLogits(model: CausalLM, ids: number[][]): Float32Array {
  const input = tf.tensor2d(ids, undefined, 'int32');
  const { logits: l, hidden } = model.forward(input);
  const v = l.dataSync() as Float32Array;
  tf.dispose([input, l, hidden]);
  return v;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Sets columns `cols` of a Linear's weight [out, in] to zero. */
function zeroColumns(layer: Linear, cols: number[]): void {
  const mask = new Float32Array(layer.inFeatures).fill(1);
  for (const c of cols) mask[c] = 0;
  const next = tf.tidy(() => layer.weight.mul(tf.tensor1d(mask)));
  layer.weight.assign(next);
  next.dispose();
}

/** The masked original: the same weights, the removed heads' o_proj columns and channels' down_proj columns zeroed. */
function mask(model: PretrainedModel, report: StructuredPruneReport, headDim = 8): void {
  for (let l = 0; l < report.removed.length; l++) {
    const path = report.unit === 'heads' ? `model.layers.${l}.self_attn.o_proj` : `model.layers.${l}.mlp.down_proj`;
    const cols = report.unit === 'heads' ? report.removed[l].flatMap((h) => Array.from({ length: headDim }, (_, j) => h * headDim + j)) : report.removed[l];
    zeroColumns(model.getModule(path) as Linear, cols);
  }
}

async function rejects(fn: () => Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  let error: unknown;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  expect(isPosttrainError(error), String(error)).toBe(true);
  const text = `${(error as Error).message}\n${(error as { help?: string }).help ?? ''}`;
  for (const p of patterns) expect(text).toMatch(p);
}

describe('against PyTorch: the smaller checkpoint equals the masked original', () => {
  for (const c of fixture.cases) {
    it(`${c.name}: prune, compare with torch's masked and pruned logits, save, load, compare again`, async () => {
      const model = await loadModel(modelsDir(c.model));
      const dense = readLogits(model, c.input_ids);
      const masked = Float32Array.from(c.masked_logits.flat());
      expect(maxAbs(dense, masked)).toBeGreaterThan(1e-2); // the removal matters
      const tensors = tf.memory().numTensors;
      if (c.heads) await pruneHeads(model, { heads: c.heads, kvGroups: c.kv_groups ?? 'remove' });
      if (c.channels[0].length > 0) await pruneMlpChannels(model, { channels: c.channels });
      expect(tf.memory().numTensors).toBe(tensors);
      expect({ numHeads: model.config.numHeads, numKvHeads: model.config.numKvHeads, intermediateSize: model.config.intermediateSize }).toEqual(c.after);
      expect(model.numParameters()).toBe(c.num_parameters);

      const ours = readLogits(model, c.input_ids);
      expect(maxAbs(ours, masked)).toBeLessThan(1e-4);
      expect(maxAbs(ours, Float32Array.from(c.pruned_logits.flat()))).toBeLessThan(1e-4);

      const out = join(dir, c.name);
      await saveModel(model, out);
      const json = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
      if (c.model === 'gpt2') expect(json.n_inner).toBe(c.after.intermediateSize);
      else {
        expect([json.num_attention_heads, json.num_key_value_heads, json.intermediate_size, json.head_dim]).toEqual([c.after.numHeads, c.after.numKvHeads, c.after.intermediateSize, 8]);
      }
      const back = await loadModel(out);
      expect(maxAbs(readLogits(back, c.input_ids), ours)).toBe(0);
      model.dispose();
      back.dispose();
    });
  }
});

describe('pruneHeads', () => {
  it('kvGroups "remove" (default): whole groups by weight score, logits equal the masked original, the KV cache still decodes', async () => {
    const model = createModel(llama, { seed: 3 });
    const reference = createModel(llama, { seed: 3 });
    const before = tf.memory().numTensors;
    const report = await pruneHeads(model, { fraction: 0.5 });
    expect(tf.memory().numTensors).toBe(before);
    expect(report.after).toEqual({ numHeads: 2, numKvHeads: 1, headDim: 8, intermediateSize: 48 });
    for (let l = 0; l < 2; l++) {
      const [g] = report.removedKvHeads[l];
      expect(report.removed[l]).toEqual([2 * g, 2 * g + 1]);
      const s = report.scores[l];
      expect(s[2 * g] + s[2 * g + 1]).toBeLessThanOrEqual(s[2 * (1 - g)] + s[2 * (1 - g) + 1]);
    }
    expect((model.getModule('model.layers.0.self_attn.q_proj') as Linear).weight.shape).toEqual([16, 32]);
    expect((model.getModule('model.layers.0.self_attn.k_proj') as Linear).weight.shape).toEqual([8, 32]);
    expect((model.getModule('model.layers.0.self_attn.o_proj') as Linear).weight.shape).toEqual([32, 16]);
    // 2 layers × (q 16·32 + o 32·16 for two query heads, k 8·32 + v 8·32 for one KV head) removed
    expect(report.parametersBefore - report.parametersAfter).toBe(2 * (512 + 512 + 256 + 256));
    expect(report.bytesBefore - report.bytesAfter).toBe(4 * 2 * (512 + 512 + 256 + 256));
    mask(reference, report);
    expect(maxAbs(logits(model), logits(reference))).toBeLessThan(1e-5);

    // Decoding with the cache, one token at a time, gives the full forward's last logits.
    const full = logits(model, [rows[0]]);
    const first = model.forward(tf.tensor2d([rows[0].slice(0, 11)], undefined, 'int32'), { useCache: true });
    const step = model.forward(tf.tensor2d([rows[0].slice(11)], undefined, 'int32'), { cache: first.cache });
    const last = step.logits.dataSync();
    expect(maxAbs(last, full.slice(11 * 40))).toBeLessThan(1e-5);
    first.cache?.dispose();
    step.cache?.dispose();
    tf.dispose([first.logits, first.hidden, step.logits, step.hidden]);
    model.dispose();
    reference.dispose();
  });

  it('kvGroups "thin": every KV head stays and each group loses the same number of query heads; weight score ranks o_proj · v_proj', async () => {
    const model = createModel(llama, { seed: 4 });
    // Shrink query head 3's o_proj columns: it must be the one its group (heads 2, 3) loses in layer 0.
    zeroColumns(model.getModule('model.layers.0.self_attn.o_proj') as Linear, [24, 25, 26, 27, 28, 29, 30, 31]);
    const reference = createModel(llama, { seed: 4 });
    zeroColumns(reference.getModule('model.layers.0.self_attn.o_proj') as Linear, [24, 25, 26, 27, 28, 29, 30, 31]);
    const report = await pruneHeads(model, { heads: 2, kvGroups: 'thin' });
    expect(report.after).toMatchObject({ numHeads: 2, numKvHeads: 2 });
    expect(report.removedKvHeads).toEqual([[], []]);
    expect(report.scores[0][3]).toBe(0);
    expect(report.removed[0]).toContain(3);
    for (const list of report.removed) expect(list.map((h) => Math.floor(h / 2))).toEqual([0, 1]);
    mask(reference, report);
    expect(maxAbs(logits(model), logits(reference))).toBeLessThan(1e-5);
    model.dispose();
    reference.dispose();
  });

  it('score "activation": each head scores the L2 norm of its o_proj contribution over the calibration tokens', async () => {
    const model = createModel(mha, { seed: 5 });
    const reference = createModel(mha, { seed: 5 });
    // Independent computation from the captured o_proj inputs, in plain JS.
    const sums = [new Float64Array(4), new Float64Array(4)];
    const weights = [0, 1].map((l) => (model.getModule(`model.layers.${l}.self_attn.o_proj`) as Linear).weight.arraySync() as number[][]);
    await captureLinearInputs(model, calibration, {
      layers: (path) => path.endsWith('o_proj'),
      onInput: (path, x) => {
        const l = Number(path.split('.')[2]);
        for (const row of x.arraySync()) {
          for (let h = 0; h < 4; h++) {
            for (let i = 0; i < 32; i++) {
              let y = 0;
              for (let j = 0; j < 8; j++) y += weights[l][i][h * 8 + j] * row[h * 8 + j];
              sums[l][h] += y * y;
            }
          }
        }
      },
    });
    const before = tf.memory().numTensors;
    const report = await pruneHeads(model, { heads: 1, score: 'activation', calibration });
    expect(tf.memory().numTensors).toBe(before);
    for (let l = 0; l < 2; l++) {
      for (let h = 0; h < 4; h++) expect(report.scores[l][h]).toBeCloseTo(Math.sqrt(sums[l][h]), 4);
      const min = Math.min(...report.scores[l]);
      expect(report.removed[l]).toEqual([report.scores[l].indexOf(min)]);
    }
    // Multi-head attention: a removed query head takes its own key/value head along.
    expect(report.removedKvHeads).toEqual(report.removed);
    expect(report.after).toMatchObject({ numHeads: 3, numKvHeads: 3 });
    mask(reference, report);
    expect(maxAbs(logits(model), logits(reference))).toBeLessThan(1e-5);
    model.dispose();
    reference.dispose();
  });

  it('rejects what would remove every head, break grouped-query sharing, or cannot be expressed, naming the value and the fix', async () => {
    const model = createModel(llama, { seed: 6 });
    await rejects(() => pruneHeads(model, { fraction: 1 }), /fraction in \[0, 1\); got 1/);
    await rejects(() => pruneHeads(model, { fraction: -0.1 }), /got -0\.1/);
    await rejects(() => pruneHeads(model, { fraction: 0.9 }), /fraction 0\.9 would remove every head/, /use a fraction below 0\.75/);
    await rejects(() => pruneHeads(model, { heads: 4 }), /heads 4 would remove every query head/, /at most 3/);
    await rejects(() => pruneHeads(model, { heads: 1 }), /heads 1 would break grouped-query sharing/, /4 query heads in 2 group\(s\) of 2/, /multiple of 2/);
    await rejects(() => pruneHeads(model, { heads: 3, kvGroups: 'thin' }), /heads 3 would break grouped-query sharing/, /multiple of 2/);
    await rejects(() => pruneHeads(model, { heads: 2, kvGroups: 'thin', fraction: 0.5 }), /exactly one of fraction and heads; got both/);
    await rejects(() => pruneHeads(model, {}), /got neither/);
    await rejects(
      () =>
        pruneHeads(model, {
          heads: [
            [1, 2],
            [0, 1],
          ],
        }),
      /heads\[0\] \[1,2\] would break grouped-query sharing/,
      /list whole groups/,
    );
    await rejects(
      () =>
        pruneHeads(model, {
          heads: [
            [0, 1],
            [2, 3],
          ],
          kvGroups: 'thin',
        }),
      /heads\[0\] \[0,1\] would break/,
      /same number of query heads from every group/,
    );
    await rejects(() => pruneHeads(model, { heads: [[0, 1], [2]] }), /same number of query heads/, /heads\[1\] has 1/);
    await rejects(() => pruneHeads(model, { heads: [[0, 1]] }), /one list per layer \(2\); got 1/);
    await rejects(
      () =>
        pruneHeads(model, {
          heads: [
            [0, 7],
            [0, 1],
          ],
        }),
      /heads\[0\] to be distinct query head indices in \[0, 4\); got \[0,7\]/,
    );
    await rejects(() => pruneHeads(model, { heads: 2, kvGroups: 'some' as 'thin' }), /kvGroups "remove" or "thin"; got "some"/);
    await rejects(() => pruneHeads(model, { heads: 2, score: 'activation' }), /needs calibration batches/);
    await rejects(
      () => pruneHeads(model, { heads: 2, score: 'activation', calibration: [[[1, 2, 3, 4]]] }),
      new RegExp(`at least ${MIN_STRUCTURED_CALIBRATION_TOKENS} real calibration tokens.*got 4`),
    );
    await rejects(() => pruneHeads(model, { heads: 2, calibration }), /score is "weight"/);
    await rejects(() => pruneHeads(model, { heads: 2, extra: 1 } as never), /unknown option "extra"/);
    await rejects(() => pruneHeads(createModel(mha, { seed: 1 }), { heads: 1, kvGroups: 'thin' }), /single query head/, /kvGroups: "remove"/);
    await rejects(() => pruneHeads(createModel(gpt2, { seed: 1 }), { heads: 1 }), /GPT-2 heads cannot be removed/, /pruneMlpChannels/);
    // A wrapped layer (LoRA, quantised, masked) is refused before anything changes.
    class Wrapper extends Module {
      constructor(readonly inner: Linear) {
        super();
        this.registerModule('base_layer', inner);
      }
    }
    const q = model.getModule('model.layers.1.self_attn.q_proj') as Linear;
    model.replaceModule('model.layers.1.self_attn.q_proj', new Wrapper(q));
    await rejects(() => pruneHeads(model, { heads: 2 }), /dense Linear or Conv1D at model\.layers\.1\.self_attn\.q_proj; got Wrapper/, /prune structurally first/);
    expect(model.config.numHeads).toBe(4);
    expect((model.getModule('model.layers.0.self_attn.q_proj') as Linear).weight.shape).toEqual([32, 32]);
    model.dispose();
  });
});

describe('pruneMlpChannels', () => {
  it('fraction 0.25 by weight score: every layer loses the same count, lowest scores first, logits equal the masked original; saved bytes reported', async () => {
    const model = createModel(llama, { seed: 7 });
    const reference = createModel(llama, { seed: 7 });
    const before = tf.memory().numTensors;
    const report = await pruneMlpChannels(model, { fraction: 0.25 });
    expect(tf.memory().numTensors).toBe(before);
    expect(report.before.intermediateSize).toBe(48);
    expect(report.after.intermediateSize).toBe(36);
    for (let l = 0; l < 2; l++) {
      expect(report.removed[l]).toHaveLength(12);
      const cut = Math.max(...report.removed[l].map((j) => report.scores[l][j]));
      const kept = report.scores[l].filter((_, j) => !report.removed[l].includes(j));
      expect(Math.min(...kept)).toBeGreaterThanOrEqual(cut);
    }
    // the weight score is the product of the channel's gate row, up row and down column norms
    const norm = (v: number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    const gate = (reference.getModule('model.layers.0.mlp.gate_proj') as Linear).weight.arraySync() as number[][];
    const up = (reference.getModule('model.layers.0.mlp.up_proj') as Linear).weight.arraySync() as number[][];
    const down = (reference.getModule('model.layers.0.mlp.down_proj') as Linear).weight.arraySync() as number[][];
    expect(report.scores[0][5]).toBeCloseTo(norm(gate[5]) * norm(up[5]) * norm(down.map((r) => r[5])), 5);
    expect(report.parametersBefore - report.parametersAfter).toBe(2 * 3 * 12 * 32);
    mask(reference, report);
    expect(maxAbs(logits(model), logits(reference))).toBeLessThan(1e-5);

    const out = join(dir, 'mlp-quarter');
    await saveModel(model, out);
    const bytes = await readFile(join(out, 'model.safetensors'));
    const header = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(bytes.length - 8 - header).toBe(report.bytesAfter);
    model.dispose();
    reference.dispose();
  });

  it('score "activation": ‖a_j‖₂ · ‖W_down[:, j]‖₂ over the calibration tokens; a dead channel goes first', async () => {
    const model = createModel(llama, { seed: 8 });
    zeroColumns(model.getModule('model.layers.1.mlp.down_proj') as Linear, [30]);
    const sums = [new Float64Array(48), new Float64Array(48)];
    await captureLinearInputs(model, calibration, {
      layers: (path) => path.endsWith('down_proj'),
      onInput: (path, x) => {
        const l = Number(path.split('.')[2]);
        for (const row of x.arraySync()) for (let j = 0; j < 48; j++) sums[l][j] += row[j] * row[j];
      },
    });
    const down = [0, 1].map((l) => (model.getModule(`model.layers.${l}.mlp.down_proj`) as Linear).weight.arraySync() as number[][]);
    const report = await pruneMlpChannels(model, { channels: 4, score: 'activation', calibration });
    for (let l = 0; l < 2; l++) {
      for (const j of [0, 17, 30, 47]) {
        const col = Math.sqrt(down[l].reduce((a, r) => a + r[j] * r[j], 0));
        expect(report.scores[l][j]).toBeCloseTo(Math.sqrt(sums[l][j]) * col, 4);
      }
    }
    expect(report.scores[1][30]).toBe(0);
    expect(report.removed[1]).toContain(30);
    expect(model.config.intermediateSize).toBe(44);
    model.dispose();
  });

  it('GPT-2: c_fc columns and mlp.c_proj rows (Conv1D) go, n_inner is written, logits equal the masked original', async () => {
    const model = createModel(gpt2, { seed: 9 });
    const reference = createModel(gpt2, { seed: 9 });
    const report = await pruneMlpChannels(model, { channels: 32, score: 'activation', calibration });
    expect(model.config.intermediateSize).toBe(96);
    for (let l = 0; l < 2; l++) {
      const cProj = reference.getModule(`transformer.h.${l}.mlp.c_proj`) as unknown as { weight: tf.Variable };
      const keep = new Float32Array(128).fill(1);
      for (const j of report.removed[l]) keep[j] = 0;
      const next = tf.tidy(() => cProj.weight.mul(tf.tensor2d(keep, [128, 1])));
      cProj.weight.assign(next);
      next.dispose();
    }
    expect(maxAbs(logits(model), logits(reference))).toBeLessThan(1e-5);
    const out = join(dir, 'gpt2-mlp');
    await saveModel(model, out);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8')).n_inner).toBe(96);
    model.dispose();
    reference.dispose();
  });

  it('the smaller model trains (recovery fine-tuning): the parameters are the new shapes, the loss falls, no tensor leaks', async () => {
    const model = createModel(llama, { seed: 11 });
    await pruneMlpChannels(model, { fraction: 0.25 });
    await pruneHeads(model, { heads: 2 });
    const params = model.trainableParameters();
    expect(params.get('model.layers.0.mlp.gate_proj.weight')?.shape).toEqual([36, 32]);
    expect(params.get('model.layers.0.self_attn.k_proj.weight')?.shape).toEqual([8, 32]);
    const optimizer = new AdamW(params, { lr: 1e-2 });
    const ids = tf.tensor2d(rows, undefined, 'int32');
    const inputs = ids.slice([0, 0], [2, 11]);
    const targets = ids.slice([0, 1], [2, 11]);
    const losses: number[] = [];
    let tensors = 0;
    for (let step = 0; step < 8; step++) {
      const { value, grads } = valueAndGrads(() => {
        const { logits: l, hidden } = model.forward(inputs);
        hidden.dispose();
        return tf.losses.softmaxCrossEntropy(tf.oneHot(targets.reshape([-1]), 40), l.reshape([-1, 40])) as tf.Scalar;
      }, params);
      optimizer.step(grads);
      losses.push(value.dataSync()[0]);
      tf.dispose([value, ...grads.values()]);
      if (step === 1) tensors = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect(losses[7]).toBeLessThan(0.8 * losses[0]);
    tf.dispose([ids, inputs, targets]);
    model.dispose();
  });

  it('rejects fraction outside [0, 1), too many channels, unequal or bad lists', async () => {
    const model = createModel(llama, { seed: 10 });
    await rejects(() => pruneMlpChannels(model, { fraction: 1 }), /expected fraction in \[0, 1\); got 1/);
    await rejects(() => pruneMlpChannels(model, { fraction: 0.995 }), /fraction 0\.995 would remove every channel/);
    await rejects(() => pruneMlpChannels(model, { channels: 48 }), /channels 48 would remove every channel of each layer \(48 per layer\)/, /at most 47/);
    await rejects(() => pruneMlpChannels(model, { channels: 60 }), /channels 60 would remove every channel/);
    await rejects(() => pruneMlpChannels(model, { channels: 2.5 }), /non-negative integer.*got 2\.5/);
    await rejects(() => pruneMlpChannels(model, { channels: [[1, 2], [3]] }), /same number of channels/);
    await rejects(
      () =>
        pruneMlpChannels(model, {
          channels: [
            [1, 48],
            [3, 4],
          ],
        }),
      /channels\[0\] to be distinct channel indices in \[0, 48\); got \[1,48\]/,
    );
    await rejects(() => pruneMlpChannels(model, { fraction: 0.25, channels: 4 }), /got both/);
    await rejects(() => pruneMlpChannels(model, { fraction: 0.25, score: 'activation', calibration: [[[1, 2, 3]]] }), /got 3/, /add calibration rows/);
    await rejects(() => pruneMlpChannels(model, { fraction: 0.25, score: 'magnitude' as 'weight' }), /score "weight" or "activation"; got "magnitude"/);
    expect(model.config.intermediateSize).toBe(48);
    model.dispose();
  });
});
