import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, tf } from '@posttrain/tensor-core';
import { exampleLogps, sequenceLogps } from './index.js';
import { decode, policyReference, tableModel, variableOf } from './testing/fixture.js';
import { expectClose, expectPosttrainError, failure } from './testing/helpers.js';

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
