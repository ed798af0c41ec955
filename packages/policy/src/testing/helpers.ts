// Test support (not exported from src/index.ts): error assertions, int32 tensors, a full forward's
// logits, and the reference checkpoints that @posttrain/models' PyTorch script wrote.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { isPosttrainError, tf, type CausalLM } from '@posttrain/tensor-core';

/** The error `fn` throws (sync) or its promise rejects with; fails the test if it succeeds. */
export async function failure(fn: () => unknown): Promise<Error & { code?: string }> {
  try {
    await fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected the call to fail');
}

/** Expects a posttrain error of `code` whose message contains every one of `parts`. */
export function expectPosttrainError(error: unknown, code: string, ...parts: string[]): void {
  expect(isPosttrainError(error), String(error)).toBe(true);
  expect((error as { code?: string }).code, String(error)).toBe(code);
  for (const part of parts) expect((error as Error).message).toContain(part);
}

/** Nested number rows as an int32 `[B, T]` tensor. */
export const int2d = (rows: number[][]): tf.Tensor2D => tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');

/** The logits of one full forward pass over `rows`, as `[B][T][V]` arrays; disposes what it made. */
export function logitsOf(model: CausalLM, rows: number[][]): number[][][] {
  const ids = int2d(rows);
  const out = model.forward(ids);
  const logits = out.logits.arraySync() as number[][][];
  tf.dispose([ids, out.logits, out.hidden]);
  return logits;
}

/** The PyTorch greedy continuation stored beside @posttrain/models' llama fixture (scripts/reference/models_ref.py). */
export interface GreedyReference {
  prompt: number[];
  new_tokens: number[];
  logprobs: number[];
  min_margin: number;
}

/** The directory of one of @posttrain/models' reference checkpoints (config.json, model.safetensors, reference.json). */
export const fixtureDir = (name: 'gpt2' | 'llama' | 'qwen2'): string => fileURLToPath(new URL(`../../../models/fixtures/${name}/`, import.meta.url));

/** That checkpoint's greedy reference. */
export const greedyReference = (name: 'gpt2' | 'llama' | 'qwen2'): GreedyReference => (JSON.parse(readFileSync(`${fixtureDir(name)}reference.json`, 'utf8')) as { greedy: GreedyReference }).greedy;

/** Expects max|actual − expected| ≤ tol · max(1, max|expected|) over equally long arrays; NaN fails. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let error = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    error = Number.isNaN(d) ? Infinity : Math.max(error, d);
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  expect(error, `${what}: max|actual − expected| = ${error.toExponential(2)}`).toBeLessThanOrEqual(tol * scale);
}
