// Reads the fixtures written by scripts/reference/models_ref.py: tiny random checkpoints in
// Hugging Face layout with PyTorch's logits, hidden states and greedy continuations.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ForwardCase {
  name: string;
  input_ids: number[][];
  attention_mask: number[][];
  position_ids: number[][];
  segment_ids?: number[][];
  /** 1 where a position is a real token whose outputs are compared. */
  compare_mask: number[][];
  logits: number[][][];
  hidden: number[][][];
}

export interface Reference {
  model_type: string;
  num_parameters: number;
  cases: ForwardCase[];
  greedy: { prompt: number[]; new_tokens: number[]; logprobs: number[]; min_margin: number };
}

export const referenceModels = ['gpt2', 'llama', 'qwen2'] as const;

/** The fixture directory of one reference model (config.json, model.safetensors, reference.json). */
export function fixtureDir(name: (typeof referenceModels)[number]): string {
  return fileURLToPath(new URL(`../../fixtures/${name}/`, import.meta.url));
}

export function readReference(name: (typeof referenceModels)[number]): Reference {
  return JSON.parse(readFileSync(`${fixtureDir(name)}reference.json`, 'utf8')) as Reference;
}
