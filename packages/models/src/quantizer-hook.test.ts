import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type CheckpointQuantizer,
  type FileTarget,
  Linear,
  type LinearLike,
  Module,
  initBackend,
  readSafetensors,
  registerCheckpointQuantizer,
  tf,
  unregisterCheckpointQuantizer,
} from '@posttrain/tensor-core';
import { createModel, loadModel, saveModel, type PretrainedModel } from './index.js';
import { expectPosttrainError, rejection } from './testing/assert.js';

// loadModel / saveModel dispatch on quantization_config.quant_method through tensor-core's
// registry (Hugging Face's HfQuantizer pattern). A test quantizer here stands in for
// @posttrain/quantize, which models may not import: weights kept as int32 thousandths in a buffer.

const llama = { modelType: 'llama', vocabSize: 32, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1 } as const;

/** A linear layer whose weight is a buffer of int32 thousandths (`weight_milli`). */
class MilliLinear extends Module implements LinearLike {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    values?: tf.Tensor,
  ) {
    super();
    this.registerBuffer('weight_milli', values ?? tf.zeros([outFeatures, inFeatures], 'int32'));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const w = tf.mul(tf.cast(this.namedBuffers().get('weight_milli') as tf.Tensor, 'float32'), 0.001);
      return tf.matMul(x.reshape([-1, this.inFeatures]), w, false, true).reshape([...x.shape.slice(0, -1), this.outFeatures]);
    });
  }
}

const milli: CheckpointQuantizer = {
  method: 'test-milli',
  async prepareLoad(model, config) {
    if (config.unit !== 0.001) throw new Error(`unit ${config.unit}`);
    const layers: string[] = [];
    for (const [path, m] of model.namedModules()) {
      if (!(m instanceof Linear) || path === 'lm_head') continue;
      model.replaceModule(path, new MilliLinear(m.inFeatures, m.outFeatures)).dispose();
      layers.push(path);
    }
    return {
      layers,
      // the file stores the thousandths as `…milli`; the layer calls them `…weight_milli`
      async convert(tensors) {
        const out: Record<string, tf.Tensor> = {};
        for (const [k, t] of Object.entries(tensors)) out[k.endsWith('.milli') ? k.replace(/\.milli$/, '.weight_milli') : k] = t;
        return { tensors: out, created: [] };
      },
    };
  },
  async describeSave(model) {
    const state = model.stateDict();
    if (!Object.keys(state).some((k) => k.endsWith('.weight_milli'))) return null;
    const tensors: Record<string, tf.Tensor> = {};
    const created: tf.Tensor[] = [];
    for (const [k, t] of Object.entries(state)) tensors[k.endsWith('.weight_milli') ? k.replace(/\.weight_milli$/, '.milli') : k] = t;
    const dtypes = Object.fromEntries(
      Object.keys(tensors)
        .filter((k) => k.endsWith('.milli'))
        .map((k) => [k, 'I32' as const]),
    );
    return { quantizationConfig: { quant_method: 'test-milli', unit: 0.001 }, tensors, dtypes, created };
  },
};

function milliModel(): PretrainedModel {
  const model = createModel(llama, { seed: 3 });
  for (const [path, m] of [...model.namedModules()]) {
    if (!(m instanceof Linear) || path === 'lm_head') continue;
    const q = tf.tidy(() => tf.cast(tf.round(tf.mul(m.weight, 1000)), 'int32'));
    model.replaceModule(path, new MilliLinear(m.inFeatures, m.outFeatures, q)).dispose();
  }
  return model;
}

/** A FileTarget over a Map that records the order of the writes. */
function recordingTarget(): FileTarget & { files: Map<string, Uint8Array>; order: string[] } {
  const files = new Map<string, Uint8Array>();
  const order: string[] = [];
  return {
    files,
    order,
    describe: () => 'memory',
    async write(name, data) {
      order.push(name);
      files.set(name, typeof data === 'string' ? new TextEncoder().encode(data) : data);
    },
    async remove(name) {
      files.delete(name);
    },
  };
}

async function logits(model: PretrainedModel): Promise<Float32Array> {
  const ids = tf.tensor2d([[1, 4, 9, 16, 25]], [1, 5], 'int32');
  const { logits: l, hidden } = model.forward(ids);
  const values = (await l.data()) as Float32Array;
  tf.dispose([ids, l, hidden]);
  return values;
}

let before: number;
beforeAll(async () => {
  await initBackend('cpu');
});
beforeEach(() => {
  before = tf.memory().numTensors;
});
afterEach(() => {
  unregisterCheckpointQuantizer('test-milli');
  expect(tf.memory().numTensors, 'tensors leaked by the test').toBe(before);
});

describe('quantised checkpoints through the quantizer registry', () => {
  it('saveModel writes the quantizer config and tensors, weights before config.json; loadModel dispatches on quant_method and gives the same logits', async () => {
    registerCheckpointQuantizer(milli);
    const model = milliModel();
    const target = recordingTarget();
    await saveModel(model, target);
    expect(target.order).toEqual(['model.safetensors', 'config.json']);
    const config = JSON.parse(new TextDecoder().decode(target.files.get('config.json'))) as Record<string, unknown>;
    expect(config.quantization_config).toEqual({ quant_method: 'test-milli', unit: 0.001 });
    const file = readSafetensors(target.files.get('model.safetensors') as Uint8Array);
    expect(file['model.layers.0.mlp.up_proj.milli'].dtype).toBe('int32');
    expect(file['model.layers.0.mlp.up_proj.milli'].shape).toEqual([32, 16]);
    expect(file['lm_head.weight'].dtype).toBe('float32');
    expect(Object.keys(file).some((k) => k.endsWith('weight_milli'))).toBe(false);
    tf.dispose(Object.values(file));

    const loaded = await loadModel(target.files);
    expect(loaded.getModule('model.layers.0.self_attn.q_proj')).toBeInstanceOf(MilliLinear);
    expect(loaded.getModule('lm_head')).toBeInstanceOf(Linear);
    expect(await logits(loaded)).toEqual(await logits(model));
    loaded.dispose();
    model.dispose();
  });

  it('an unregistered quant_method is NOT_SUPPORTED naming it, with the import to add', async () => {
    registerCheckpointQuantizer(milli);
    const model = milliModel();
    const target = recordingTarget();
    await saveModel(model, target);
    model.dispose();
    unregisterCheckpointQuantizer('test-milli');
    const error = await rejection(loadModel(target.files));
    expectPosttrainError(error, 'NOT_SUPPORTED', 'quantization_config.quant_method "test-milli"', 'import "@posttrain/quantize"');

    const config = JSON.parse(new TextDecoder().decode(target.files.get('config.json'))) as Record<string, unknown>;
    target.files.set('config.json', new TextEncoder().encode(JSON.stringify({ ...config, quantization_config: { quant_method: 'compressed-tensors' } })));
    expectPosttrainError(await rejection(loadModel(target.files)), 'NOT_SUPPORTED', '"compressed-tensors"', 'import "@posttrain/quantize" to register it');
  });

  it("a quantizer's load error leaves nothing allocated", async () => {
    registerCheckpointQuantizer(milli);
    const model = milliModel();
    const target = recordingTarget();
    await saveModel(model, target);
    model.dispose();
    const config = JSON.parse(new TextDecoder().decode(target.files.get('config.json'))) as Record<string, unknown>;
    target.files.set('config.json', new TextEncoder().encode(JSON.stringify({ ...config, quantization_config: { quant_method: 'test-milli', unit: 1 } })));
    expect((await rejection(loadModel(target.files))).message).toBe('unit 1');
  });

  it('saveModel refuses quantised layers no registered quantizer describes, writing nothing', async () => {
    const model = milliModel();
    const target = recordingTarget();
    const error = await rejection(saveModel(model, target));
    expectPosttrainError(error, 'NOT_SUPPORTED', 'model.layers.0.self_attn.q_proj.weight_milli', 'no registered checkpoint quantizer describes', 'import "@posttrain/quantize"');
    expect(target.order).toEqual([]);
    model.dispose();
  });
});
