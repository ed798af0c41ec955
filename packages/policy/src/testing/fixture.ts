// Reads packages/policy/fixtures/policy_ref.json, written by scripts/reference/policy_ref.py.
import { readFileSync } from 'node:fs';
import { tf, type CausalLM, type ModelConfig } from '@posttrain/tensor-core';

export interface Encoded {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: number[];
}

export interface SamplingCase {
  name: string;
  logits: Encoded;
  filters: { temperature: number; topK: number; topP: number; minP: number };
  probs: Encoded;
}

export interface LogpsCase {
  name: string;
  temperature: number;
  table: Encoded;
  input_ids: Encoded;
  attention_mask: Encoded;
  labels: Encoded;
  token_logps: Encoded;
  sum: Encoded;
  mean: Encoded;
  tokens: Encoded;
}

export const policyReference = JSON.parse(readFileSync(new URL('../../fixtures/policy_ref.json', import.meta.url), 'utf8')) as { torch: string; sampling: SamplingCase[]; sequence_logps: LogpsCase[] };

export const decode = (e: Encoded): tf.Tensor => tf.tensor(e.data, e.shape, e.dtype);

/**
 * A causal LM whose next-token logits depend only on the current token: `logits[b, t] =
 * table[ids[b, t]]`, where `table [V, V]` is a variable, so gradients reach it.
 */
export function tableModel(table: tf.Variable): CausalLM {
  const [V] = table.shape;
  const config = {
    modelType: 'table',
    vocabSize: V,
    hiddenSize: V,
    intermediateSize: V,
    numLayers: 0,
    numHeads: 1,
    numKvHeads: 1,
    headDim: V,
    maxPositions: 64,
    bosTokenId: null,
    eosTokenId: null,
    padTokenId: null,
    tieWordEmbeddings: false,
  } satisfies ModelConfig;
  return {
    config,
    forward: (ids: tf.Tensor) => {
      const logits = tf.gather(table, ids);
      return { logits, hidden: tf.zerosLike(logits) };
    },
  } as unknown as CausalLM;
}

/** A variable holding an encoded tensor (the decoded copy is disposed). */
export function variableOf(e: Encoded): tf.Variable {
  const value = decode(e);
  const v = tf.variable(value);
  value.dispose();
  return v;
}
