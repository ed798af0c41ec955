import { beforeAll, describe, expect, it } from 'vitest';
import { Conv1D, Linear, Module, Rng, initBackend, tf, valueAndGrads } from '@posttrain/tensor-core';
import { ByteTokenizer, reversalTask } from '@posttrain/data';
import { createModel, loadModel, saveModel, type PretrainedModel } from '@posttrain/models';
import { mergeAndUnload } from '@posttrain/lora';
import { sftTrain, type SftRecord } from '@posttrain/sft';
import { MaskedConv1D, MaskedLinear, applyMasks, keepMasks, maskFromZeros, maskedLayers, removeMasks } from './index.js';

const tokenizer = new ByteTokenizer();
const tinyLlama = (seed = 1): PretrainedModel =>
  createModel(
    { modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true },
    { seed },
  );
const tinyGpt2 = (seed = 1): PretrainedModel => createModel({ modelType: 'gpt2', vocabSize: tokenizer.vocabSize, hiddenSize: 32, numLayers: 1, numHeads: 2, maxPositions: 32 }, { seed });
const records: SftRecord[] = reversalTask.generate(0, 32, { minLength: 3, maxLength: 4 }).map((e) => reversalTask.toPromptCompletion(e));

const isDense = (m: Module): m is Linear | Conv1D => m instanceof Linear || m instanceof Conv1D;

/** Per-layer magnitude masks at 50% on every linear layer but lm_head (the criteria's job; here by hand). */
function halfMasks(model: Module): Map<string, Uint8Array> {
  const masks = new Map<string, Uint8Array>();
  for (const [path, m] of model.namedModules()) {
    if (!isDense(m) || path.endsWith('lm_head')) continue;
    const rows = (m instanceof Conv1D ? tf.tidy(() => m.weight.transpose().dataSync()) : m.weight.dataSync()) as Float32Array;
    const sorted = Float32Array.from(rows, Math.abs).sort();
    const threshold = sorted[Math.floor(sorted.length / 2)];
    masks.set(
      path,
      Uint8Array.from(rows, (w) => (Math.abs(w) < threshold ? 0 : 1)),
    );
  }
  return masks;
}

/** The weight of each layer as [out, in] rows (a Conv1D's read transposed), by module path. */
function weightsByPath(model: Module, paths: Iterable<string>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const path of paths) {
    const m = model.getModule(path) as Linear | Conv1D;
    out.set(path, (m instanceof Conv1D ? tf.tidy(() => m.weight.transpose().dataSync()) : m.weight.dataSync().slice()) as Float32Array);
  }
  return out;
}

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

describe('MaskedLinear', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it("computes a Linear's forward with the pruned weights at zero, passes no gradient to them, and keeps a Linear's state-dict keys", () => {
    const linear = new Linear(4, 3, { rng: new Rng(3) });
    const mask = Uint8Array.from([1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0]);
    const before = tf.memory().numTensors;
    const masked = MaskedLinear.fromLinear(linear, mask);
    expect(masked).toBeInstanceOf(Linear);
    expect(Object.keys(masked.stateDict()).sort()).toEqual(['bias', 'weight']);
    expect(masked.sparsity).toBeCloseTo(5 / 12, 12);
    const w = masked.weight.dataSync();
    const original = linear.weight.dataSync();
    mask.forEach((m, k) => expect(w[k]).toBe(m === 0 ? 0 : original[k]));
    const x = tf.tensor2d([
      [1, -2, 0.5, 3],
      [0.25, 1, -1, 2],
    ]);
    tf.tidy(() => {
      const expected = x.matMul(tf.tensor2d(w, [3, 4]).transpose()).add(linear.bias!);
      expect(tf.max(tf.abs(masked.forward(x).sub(expected))).dataSync()[0]).toBeLessThan(1e-6);
    });
    const { value, grads } = valueAndGrads(() => tf.sum(tf.square(masked.forward(x))) as tf.Scalar, masked.namedParameters());
    const g = grads.get('weight')!.dataSync();
    mask.forEach((m, k) => (m === 0 ? expect(g[k]).toBe(0) : expect(Math.abs(g[k])).toBeGreaterThan(0)));
    tf.dispose([value, ...grads.values(), x]);
    masked.dispose();
    expect(tf.memory().numTensors).toBe(before);
    linear.dispose();
  });

  it('rejects a mask of the wrong length, with values other than 0 and 1, or of the wrong type, naming the value', () => {
    const linear = new Linear(2, 2, { rng: new Rng(0) });
    expect(thrown(() => MaskedLinear.fromLinear(linear, new Uint8Array(3))).message).toMatch(/expected mask to have 2·2 = 4 entries .*; got 3/);
    expect(thrown(() => MaskedLinear.fromLinear(linear, Uint8Array.from([1, 2, 0, 1]))).message).toMatch(/only 0 \(pruned\) and 1 \(kept\); got 2 at index 1/);
    expect(thrown(() => MaskedLinear.fromLinear(linear, [1, 0, 0, 1] as never)).message).toMatch(/expected mask to be a Uint8Array of 2·2 = 4 entries/);
    expect(thrown(() => MaskedLinear.fromLinear(new Conv1D(2, 2) as never, new Uint8Array(4))).message).toMatch(/expected a Linear; got a Conv1D/);
    linear.dispose();
  });
});

describe('keepMasks: pruned weights stay at zero through fine-tuning', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('full fine-tuning with sftTrain (AdamW, weight decay) leaves every pruned entry exactly 0, moves the others, lowers the loss, leaks nothing; removeMasks and save/load keep the zeros', async () => {
    const model = tinyLlama();
    const masks = halfMasks(model);
    expect(applyMasks(model, masks)).toEqual([...masks.keys()]);
    const layers = keepMasks(model); // from the zeros applyMasks wrote
    expect([...layers.keys()]).toEqual([...masks.keys()]);
    for (const [path, layer] of layers) expect(layer.mask).toEqual(masks.get(path));
    const before = weightsByPath(model, masks.keys());
    const counts: number[] = [];
    const result = await sftTrain({
      model,
      tokenizer,
      train: records,
      lr: 1e-2,
      weightDecay: 0.1,
      schedule: 'constant',
      batchSize: 8,
      maxSteps: 12,
      progress: 'none',
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
    });
    expect(result.history.at(-1)!.loss!).toBeLessThan(result.history[0].loss! * 0.8);
    expect(new Set(counts.slice(1)).size).toBe(1);
    const after = weightsByPath(model, masks.keys());
    for (const [path, mask] of masks) {
      const w = after.get(path)!;
      const w0 = before.get(path)!;
      let moved = 0;
      mask.forEach((m, k) => {
        if (m === 0) expect(w[k], `${path}[${k}]`).toBe(0);
        else if (w[k] !== w0[k]) moved++;
      });
      expect(moved, path).toBeGreaterThan(0.9 * (mask.length / 2));
    }

    const ids = tf.tensor2d([[5, 9, 2, 7, 1]], [1, 5], 'int32');
    const logits = tf.tidy(() => model.forward(ids).logits.dataSync().slice());
    expect(removeMasks(model)).toEqual([...masks.keys()]);
    expect(maskedLayers(model).size).toBe(0);
    for (const path of masks.keys()) expect(model.getModule(path).constructor).toBe(Linear);
    const files = new Map<string, Uint8Array>();
    await saveModel(model, files);
    const loaded = await loadModel(files);
    for (const [path, mask] of masks) expect(maskFromZeros(loaded.getModule(path) as Linear)).toEqual(mask);
    const reloaded = tf.tidy(() => loaded.forward(ids).logits.dataSync().slice());
    expect(Math.max(...reloaded.map((v, i) => Math.abs(v - logits[i])))).toBeLessThan(1e-5);
    ids.dispose();
    model.dispose();
    loaded.dispose();
  });

  it('a masked model saves as a plain checkpoint (no mask tensors) that loads with the same zeros', async () => {
    const model = tinyLlama(2);
    const masks = halfMasks(model);
    keepMasks(model, { masks });
    const files = new Map<string, Uint8Array>();
    await saveModel(model, files);
    const loaded = await loadModel(files);
    expect(Object.keys(loaded.stateDict()).sort()).toEqual(Object.keys(model.stateDict()).sort());
    for (const [path, mask] of masks) expect(maskFromZeros(loaded.getModule(path) as Linear)).toEqual(mask);
    model.dispose();
    loaded.dispose();
  });

  it('LoRA on a pruned base: the base is untouched; merging with keepSparsity keeps the zeros, without fills them in', async () => {
    const run = async (keepSparsity: boolean, masked: boolean) => {
      const model = tinyLlama(3);
      const masks = halfMasks(model);
      applyMasks(model, masks);
      if (masked) keepMasks(model);
      const before = weightsByPath(model, masks.keys());
      await sftTrain({ model, tokenizer, train: records, lora: { r: 4, alpha: 8 }, lr: 1e-2, batchSize: 8, maxSteps: 4, progress: 'none' });
      const base = weightsByPath(
        model,
        [...masks.keys()].map((p) => `${p}.base_layer`),
      );
      for (const path of masks.keys()) expect(base.get(`${path}.base_layer`)).toEqual(before.get(path));
      if (masked) expect(thrown(() => removeMasks(model)).message).toMatch(/is the base of a LoRA layer.*nothing was changed/);
      mergeAndUnload(model, { keepSparsity });
      if (masked && keepSparsity) removeMasks(model); // removeMasks would write W ⊙ M: the masks win over a dense merge
      const merged = weightsByPath(model, masks.keys());
      model.dispose();
      return { masks, before, merged };
    };
    for (const masked of [false, true]) {
      const kept = await run(true, masked);
      for (const [path, mask] of kept.masks) {
        const w = kept.merged.get(path)!;
        let changed = 0;
        mask.forEach((m, k) => {
          if (m === 0) expect(w[k], `${path}[${k}]`).toBe(0);
          else if (w[k] !== kept.before.get(path)![k]) changed++;
        });
        expect(changed, path).toBeGreaterThan(0);
      }
      const dense = await run(false, masked);
      for (const [path, mask] of dense.masks) {
        const w = dense.merged.get(path)!;
        const zeros = [...mask].filter((m, k) => m === 0 && w[k] === 0).length;
        expect(zeros, path).toBe(0);
      }
    }
  });

  it('keeps the zeros of a GPT-2 (Conv1D) model through full fine-tuning', async () => {
    const model = tinyGpt2();
    const masks = halfMasks(model);
    const layers = keepMasks(model, { masks });
    expect([...layers.values()].every((l) => l instanceof MaskedConv1D)).toBe(true);
    await sftTrain({ model, tokenizer, train: records, lr: 1e-2, weightDecay: 0.1, batchSize: 8, maxSteps: 3, progress: 'none' });
    const after = weightsByPath(model, masks.keys());
    for (const [path, mask] of masks) mask.forEach((m, k) => (m === 0 ? expect(after.get(path)![k]).toBe(0) : undefined));
    removeMasks(model);
    for (const path of masks.keys()) expect(model.getModule(path).constructor).toBe(Conv1D);
    for (const [path, mask] of masks) expect(maskFromZeros(model.getModule(path) as Conv1D)).toEqual(mask);
    model.dispose();
  });

  it('refuses a dense model without masks, an unknown path, a non-linear module and a mis-sized mask, changing nothing', () => {
    const model = tinyLlama(4);
    const e = thrown(() => keepMasks(model));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/found no pruned layer/);
    expect(thrown(() => keepMasks(model, { masks: { 'model.layers.0.mlp.nope': new Uint8Array(4) } })).message).toMatch(/masks name "model.layers.0.mlp.nope", which is no module of the model/);
    expect(thrown(() => keepMasks(model, { masks: { 'model.layers.0.mlp': new Uint8Array(4) } })).message).toMatch(
      /expected the module at "model.layers.0.mlp" to be a Linear or a Conv1D; got a LlamaMlp/,
    );
    const up = 'model.layers.0.mlp.up_proj';
    expect(thrown(() => applyMasks(model, new Map([[`${up}.weight`, new Uint8Array(10)]]))).message).toMatch(/mask of "model.layers.0.mlp.up_proj" to have 64·32 = 2048 entries/);
    expect(thrown(() => keepMasks(model, { mask: undefined } as never)).message).toMatch(/unknown option "mask"; known options are masks/);
    expect(maskedLayers(model).size).toBe(0);
    model.dispose();
  });
});
