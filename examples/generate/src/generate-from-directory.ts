// Load a Hugging Face model directory (config.json + model.safetensors, or a sharded index) and
// continue a batch of prompts: greedy for the first, sampled for the second, left-padded together.
import { initBackend, tf, type BackendName } from '@posttrain/tensor-core';
import { loadModel } from '@posttrain/models';
import { generate } from '@posttrain/policy';

export interface Continuation {
  prompt: number[];
  tokens: number[];
  finishReason: string;
}

export async function generateFromDirectory(directory: string, prompts: number[][], options: { backend?: BackendName; maxNewTokens?: number; seed?: number } = {}): Promise<Continuation[]> {
  await initBackend(options.backend ?? 'auto');
  const model = await loadModel(directory);
  // Left-pad to one length; the attention mask marks the padding so positions stay right.
  const width = Math.max(...prompts.map((p) => p.length));
  const pad = model.config.padTokenId ?? 0;
  const rows = prompts.map((p) => [...new Array(width - p.length).fill(pad), ...p]);
  const mask = prompts.map((p) => [...new Array(width - p.length).fill(0), ...new Array(p.length).fill(1)]);
  const inputIds = tf.tensor2d(rows, undefined, 'int32');
  const attentionMask = tf.tensor2d(mask, undefined, 'int32');
  try {
    const result = await generate(model, inputIds, {
      attentionMask,
      maxNewTokens: options.maxNewTokens ?? 12,
      temperature: 0.8,
      topP: 0.95,
      seed: options.seed ?? 0,
    });
    return prompts.map((prompt, i) => ({ prompt, tokens: result.tokens[i], finishReason: result.finishReasons[i] }));
  } finally {
    tf.dispose([inputIds, attentionMask]);
    model.dispose();
  }
}
