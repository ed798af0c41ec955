import { beforeAll, describe, expect, it } from 'vitest';
import { Embedding, Linear, Module, initBackend, tf, type CausalLM, type ForwardOutput, type ModelConfig } from '@posttrain/tensor-core';
import { accumulateHessians, calibrationTokens, captureLinearInputs } from './index.js';
import { expectPosttrainError, failure } from './testing/helpers.js';
import { tinyModel } from './testing/tiny.js';

// Calibration statistics against hand computations on a model whose layer inputs are known
// exactly (a per-token embedding → Linear → relu → Linear), then on a real tiny Llama: every
// projection is seen, padding is left out, the original modules always come back, no leaks.

/** A position-independent toy LM: logits = lm_head(relu(up(embed(ids)))); `up` sees the embedding rows. */
class ToyLm extends Module implements CausalLM {
  readonly config = { vocabSize: 10, hiddenSize: 4 } as ModelConfig;
  readonly embed = this.registerModule('embed', new Embedding(10, 4, { std: 1 }));
  readonly up = this.registerModule('up', new Linear(4, 6));
  readonly lm_head = this.registerModule('lm_head', new Linear(6, 10));
  forward(ids: tf.Tensor): ForwardOutput {
    return tf.tidy(() => {
      const hidden = tf.relu(this.up.forward(this.embed.forward(ids)));
      return { logits: this.lm_head.forward(hidden), hidden };
    });
  }
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('accumulateHessians', () => {
  it("gives H = (2/n) Σ x xᵀ and ‖X_j‖₂ of each layer's real inputs (the up projection's are embedding rows)", async () => {
    const model = new ToyLm();
    const rows = [
      [1, 2, 3, 4],
      [5, 6],
      [7, 1, 1],
    ]; // ragged: padding must not count
    const stats = await accumulateHessians(model, [rows.slice(0, 2), rows.slice(2)], { layers: () => true });
    expect([...stats.keys()]).toEqual(['up', 'lm_head']);
    const e = model.embed.weight.arraySync() as number[][];
    const tokens = rows.flat();
    const up = stats.get('up')!;
    expect(up.tokens).toBe(9);
    expect(up.inFeatures).toBe(4);
    for (let i = 0; i < 4; i++) {
      expect(up.columnNorms[i]).toBeCloseTo(Math.sqrt(tokens.reduce((s, t) => s + e[t][i] ** 2, 0)), 5);
      for (let j = 0; j < 4; j++) expect(up.hessian![i * 4 + j]).toBeCloseTo((2 / 9) * tokens.reduce((s, t) => s + e[t][i] * e[t][j], 0), 5);
    }
    // lm_head sees relu(up(x)): 6 features, symmetric PSD Hessian with the same token count.
    const head = stats.get('lm_head')!;
    expect(head.tokens).toBe(9);
    expect(head.hessian!.length).toBe(36);
    for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) expect(head.hessian![i * 6 + j]).toBeCloseTo(head.hessian![j * 6 + i], 6);
    const normsOnly = await accumulateHessians(model, [rows], { layers: () => true, hessian: false });
    expect(normsOnly.get('up')!.hessian).toBeUndefined();
    for (let i = 0; i < 4; i++) expect(normsOnly.get('up')!.columnNorms[i]).toBeCloseTo(up.columnNorms[i], 5);
    model.dispose();
  });

  it('skips lm_head by default, sees every projection of a Llama block, and leaks nothing', async () => {
    const model = tinyModel(3);
    const before = [...model.namedModules().values()];
    const batch = [
      [1, 2, 3, 4, 5, 6, 7, 8],
      [9, 10, 11],
    ];
    await accumulateHessians(model, [batch]); // warm-up
    const tensors = tf.memory().numTensors;
    const stats = await accumulateHessians(model, [batch, batch]);
    expect(tf.memory().numTensors).toBe(tensors);
    expect([...stats.keys()].sort()).toEqual(
      ['mlp.down_proj', 'mlp.gate_proj', 'mlp.up_proj', 'self_attn.k_proj', 'self_attn.o_proj', 'self_attn.q_proj', 'self_attn.v_proj'].map((p) => `model.layers.0.${p}`).sort(),
    );
    for (const s of stats.values()) expect(s.tokens).toBe(22);
    expect(stats.get('model.layers.0.mlp.down_proj')!.inFeatures).toBe(64);
    expect([...model.namedModules().values()]).toEqual(before); // the same module objects are back
    model.dispose();
  });

  it('counts only masked-in tokens of tensor batches (left padding as collateForGeneration makes)', async () => {
    const model = new ToyLm();
    const inputIds = tf.tensor2d(
      [
        [0, 0, 3, 4],
        [5, 6, 7, 8],
      ],
      [2, 4],
      'int32',
    );
    const attentionMask = tf.tensor2d(
      [
        [0, 0, 1, 1],
        [1, 1, 1, 1],
      ],
      [2, 4],
      'int32',
    );
    const a = await accumulateHessians(model, [{ inputIds, attentionMask }]);
    const b = await accumulateHessians(model, [[[3, 4, 5, 6, 7, 8]]]);
    expect(a.get('up')!.tokens).toBe(6);
    expect(calibrationTokens([{ inputIds, attentionMask }, [[1, 2], [3]]])).toBe(9);
    for (let i = 0; i < 16; i++) expect(a.get('up')!.hessian![i]).toBeCloseTo(b.get('up')!.hessian![i], 5);
    tf.dispose([inputIds, attentionMask]);
    model.dispose();
  });
});

describe('captureLinearInputs', () => {
  it('hands [n, in] inputs to onInput, restores the modules and the mode even when onInput throws', async () => {
    const model = new ToyLm();
    model.train();
    const up = model.up;
    const shapes: number[][] = [];
    expect(await captureLinearInputs(model, [[[1, 2, 3]]], { layers: (p) => p === 'up', onInput: (_, x) => shapes.push(x.shape) })).toBe(3);
    expect(shapes).toEqual([[3, 4]]);
    const tensors = tf.memory().numTensors;
    const error = await failure(() =>
      captureLinearInputs(model, [[[1, 2]]], {
        onInput: () => {
          throw new Error('boom');
        },
      }),
    );
    expect(error.message).toBe('boom');
    expect(model.up).toBe(up);
    expect(model.getModule('up')).toBe(up);
    expect(model.training).toBe(true);
    expect(tf.memory().numTensors).toBe(tensors);
    model.dispose();
  });

  it('rejects a filter that selects nothing, bad batches and unknown options, naming them', async () => {
    const model = new ToyLm();
    expectPosttrainError(await failure(() => captureLinearInputs(model, [[[1]]], { layers: () => false, onInput: () => {} })), 'INVALID_ARGUMENT', 'selected no linear layer');
    expectPosttrainError(await failure(() => captureLinearInputs(model, [[[1, -2]]], { onInput: () => {} })), 'INVALID_ARGUMENT', 'calibration batch 0', 'non-negative integer token ids');
    expectPosttrainError(await failure(() => accumulateHessians(model, [[[1]]], { hesian: true } as never)), 'INVALID_OPTION', 'unknown option "hesian"');
    expect(model.getModule('up')).toBe(model.up);
    model.dispose();
  });
});
