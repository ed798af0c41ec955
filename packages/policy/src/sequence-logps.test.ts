import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { collateForTraining } from '@posttrain/data';
import { exampleLogps, sequenceLogps } from './index.js';
import { decode, policyReference, tableModel, variableOf } from './testing/fixture.js';
import { expectClose, expectPosttrainError, failure, logitsOf } from './testing/helpers.js';
import { tinyModel } from './testing/tiny.js';

// Per-token, summed and averaged log-probs against PyTorch (scripts/reference/policy_ref.py), on
// cpu and wasm; gradients only on request; chunking changes nothing; no tensor left behind.
const TOL = 1e-5;

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`sequenceLogps on ${backend}`, () => {
    let before: number;
    beforeAll(async () => {
      await initBackend(backend);
    });
    beforeEach(() => {
      before = tf.memory().numTensors;
    });
    afterEach(() => {
      expect(tf.memory().numTensors, 'tensors leaked').toBe(before);
    });

    for (const c of policyReference.sequence_logps) {
      it(`${c.name}: per-token, sum, mean and counts within ${TOL}, for chunk sizes null, 1 and 2`, async () => {
        const table = variableOf(c.table);
        const model = tableModel(table);
        const batch = { inputIds: decode(c.input_ids), attentionMask: decode(c.attention_mask), labels: decode(c.labels) };
        for (const chunkSize of [null, 1, 2]) {
          const sum = sequenceLogps(model, batch, { temperature: c.temperature, chunkSize });
          const mean = sequenceLogps(model, batch, { temperature: c.temperature, chunkSize, average: true });
          expectClose(await sum.tokenLogps.data(), c.token_logps.data, TOL, `tokenLogps (chunk ${chunkSize})`);
          expectClose(await sum.logps.data(), c.sum.data, TOL, `sum (chunk ${chunkSize})`);
          expectClose(await mean.logps.data(), c.mean.data, TOL, `mean (chunk ${chunkSize})`);
          expect(Array.from(await sum.tokens.data())).toEqual(c.tokens.data);
          tf.dispose([sum.logps, sum.tokenLogps, sum.tokens, mean.logps, mean.tokenLogps, mean.tokens]);
        }
        tf.dispose([table, batch.inputIds, batch.attentionMask, batch.labels]);
      });
    }

    it('carries the gradient only with gradient: true', () => {
      const c = policyReference.sequence_logps[0];
      const table = variableOf(c.table);
      const model = tableModel(table);
      const batch = { inputIds: decode(c.input_ids), attentionMask: decode(c.attention_mask), labels: decode(c.labels) };
      const norm = (gradient: boolean) =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const out = sequenceLogps(model, batch, { gradient, chunkSize: 2 });
            return tf.add(tf.sum(out.logps), tf.mul(tf.sum(table), 0)) as tf.Scalar; // the table always takes part
          }, [table]);
          value.dispose();
          return tf.norm(grads[table.name]).arraySync() as number;
        });
      expect(norm(true)).toBeGreaterThan(0.1);
      expect(norm(false)).toBe(0);
      tf.dispose([table, batch.inputIds, batch.attentionMask, batch.labels]);
    });

    it('exampleLogps reads back the sums of tokenized examples, batch by batch', async () => {
      const c = policyReference.sequence_logps[0];
      const table = variableOf(c.table);
      const ids = c.input_ids.data;
      const [B, T] = c.input_ids.shape;
      const examples = Array.from({ length: B }, (_, b) => {
        const length = c.attention_mask.data.slice(b * T, (b + 1) * T).reduce((a, x) => a + x, 0);
        return { inputIds: ids.slice(b * T, b * T + length), labels: c.labels.data.slice(b * T, b * T + length) };
      });
      expectClose(await exampleLogps(tableModel(table), examples, { batchSize: 2, average: false, padTokenId: 0 }), c.sum.data, TOL, 'exampleLogps');
      table.dispose();
    });

    it('rejects a bad option or a mask of another shape by name', async () => {
      const c = policyReference.sequence_logps[0];
      const table = variableOf(c.table);
      const batch = { inputIds: decode(c.input_ids), attentionMask: tf.ones([2, 2], 'int32'), labels: decode(c.labels) };
      expectPosttrainError(await failure(() => sequenceLogps(tableModel(table), batch)), 'SHAPE_MISMATCH', 'attentionMask', '[3, 6]');
      expectPosttrainError(await failure(() => sequenceLogps(tableModel(table), batch, { chunkSize: 0 })), 'INVALID_OPTION', 'chunkSize');
      expectPosttrainError(await failure(() => sequenceLogps(tableModel(table), batch, { temperature: 0 })), 'INVALID_OPTION', 'temperature');
      tf.dispose([table, batch.inputIds, batch.attentionMask, batch.labels]);
    });
  });
}

describe('sequenceLogps entropy on a tiny Llama (cpu)', () => {
  // Rows of different lengths (right-padded by collateForTraining), the prompt unscored (−100).
  const examples = [
    { inputIds: [97, 98, 62, 98, 97, 258], labels: [-100, -100, -100, 98, 97, 258] },
    { inputIds: [99, 62, 99], labels: [-100, -100, 99] },
    { inputIds: [97, 98, 99, 100, 62, 100, 99], labels: [-100, -100, -100, -100, -100, 100, 99] },
  ];
  let before: number;
  beforeAll(async () => {
    await initBackend('cpu');
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked').toBe(before);
  });

  /** H(softmax(logits / T)) in float64 from one row's full forward. */
  function entropyOf(logits: number[], temperature: number): number {
    const scaled = logits.map((v) => v / temperature);
    const max = Math.max(...scaled);
    const z = scaled.reduce((s, v) => s + Math.exp(v - max), 0);
    return -scaled.reduce((s, v) => {
      const logp = v - max - Math.log(z);
      return s + Math.exp(logp) * logp;
    }, 0);
  }

  it('tokenEntropy is the entropy of the (temperature-scaled) distribution that predicted each scored label, 0 elsewhere; the log-probs are unchanged', async () => {
    const model = tinyModel(4);
    model.eval();
    const batch = collateForTraining(examples, { padTokenId: 0 });
    const T = batch.inputIds.shape[1] as number;
    for (const temperature of [1, 0.7]) {
      const plain = sequenceLogps(model, batch, { temperature });
      expect(plain.tokenEntropy, 'only on request').toBeUndefined();
      for (const chunkSize of [null, 1]) {
        const out = sequenceLogps(model, batch, { temperature, chunkSize, entropy: true });
        const entropy = (out.tokenEntropy as tf.Tensor).arraySync() as number[][];
        expect(out.tokenEntropy?.shape).toEqual([3, T]);
        examples.forEach((e, b) => {
          const logits = logitsOf(model, [e.inputIds])[0];
          const expected = Array.from({ length: T }, (_, t) => (t >= 1 && t < e.inputIds.length && e.labels[t] !== -100 ? entropyOf(logits[t - 1], temperature) : 0));
          expectClose(entropy[b], expected, 1e-4, `row ${b}, T ${temperature}, chunk ${chunkSize}`);
          for (let t = 0; t < T; t++) if (expected[t] === 0) expect(entropy[b][t], `row ${b} col ${t} is exactly 0`).toBe(0);
        });
        expectClose(await out.tokenLogps.data(), await plain.tokenLogps.data(), 1e-6, 'tokenLogps with entropy');
        tf.dispose([out.logps, out.tokenLogps, out.tokens, out.tokenEntropy as tf.Tensor]);
      }
      tf.dispose([plain.logps, plain.tokenLogps, plain.tokens]);
    }
    // Entropies at T = 1 lie in (0, ln V].
    const out = sequenceLogps(model, batch, { entropy: true });
    const scored = ((out.tokenEntropy as tf.Tensor).arraySync() as number[][]).flat().filter((v) => v !== 0);
    expect(scored).toHaveLength(3 + 1 + 2);
    for (const h of scored) expect(h > 0 && h <= Math.log(model.config.vocabSize) + 1e-5).toBe(true);
    tf.dispose([out.logps, out.tokenLogps, out.tokens, out.tokenEntropy as tf.Tensor, batch.inputIds, batch.attentionMask, batch.labels]);
    model.dispose();
  });

  it('tokenEntropy carries no gradient, even with gradient: true', () => {
    const c = policyReference.sequence_logps[0];
    const table = variableOf(c.table);
    const model = tableModel(table);
    const batch = { inputIds: decode(c.input_ids), attentionMask: decode(c.attention_mask), labels: decode(c.labels) };
    const norm = (of: 'logps' | 'tokenEntropy') =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const out = sequenceLogps(model, batch, { gradient: true, entropy: true, temperature: 0.8 });
          return tf.add(tf.sum(out[of] as tf.Tensor), tf.mul(tf.sum(table), 0)) as tf.Scalar;
        }, [table]);
        expect(value.arraySync() as number, `${of} is not all zero`).not.toBe(0);
        return tf.norm(grads[table.name]).arraySync() as number;
      });
    expect(norm('logps')).toBeGreaterThan(0.1);
    expect(norm('tokenEntropy')).toBe(0);
    tf.dispose([table, batch.inputIds, batch.attentionMask, batch.labels]);
  });
});
