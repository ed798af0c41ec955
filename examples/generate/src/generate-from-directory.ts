// Load a Hugging Face model directory (config.json + model.safetensors or a sharded index, and
// tokenizer.json + tokenizer_config.json) and continue a batch of text prompts: encoded with the
// model's tokenizer, left-padded together, decoded back to text.
import { collateForGeneration, loadTokenizer } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { generate } from '@posttrain/policy';
import { initBackend, tf, type BackendName } from '@posttrain/tensor-core';

/** One prompt and what the model wrote after it. */
export interface Continuation {
  prompt: string;
  /** The new text, special tokens (the end-of-turn token that stopped it) left out. */
  text: string;
  /** The new token ids, a stop token included. */
  tokens: number[];
  /** 'stop' when a stop token ended it, 'length' when `maxNewTokens` did. */
  finishReason: string;
}

/** Options of {@link generateFromDirectory}. */
export interface GenerateFromDirectoryOptions {
  backend?: BackendName;
  maxNewTokens?: number;
  /** 0 (the default) decodes greedily; above 0 samples with top-p 0.95. */
  temperature?: number;
  seed?: number;
}

/**
 * Loads the model and tokenizer of `directory` and continues each prompt.
 *
 * @example
 * ```ts
 * const [c] = await generateFromDirectory('examples/sft/tiny-base', ['dbca|']);
 * c.text; // 'abcd\n'
 * ```
 */
export async function generateFromDirectory(directory: string, prompts: string[], options: GenerateFromDirectoryOptions = {}): Promise<Continuation[]> {
  await initBackend(options.backend ?? 'auto');
  const model = await loadModel(directory);
  const tokenizer = await loadTokenizer(directory);
  // Left padding: every prompt ends at the last column, where generation continues; the mask
  // marks the padding so the positions of each row stay right.
  const { inputIds, attentionMask } = collateForGeneration(
    prompts.map((p) => tokenizer.encode(p)),
    { padTokenId: tokenizer.padTokenId ?? model.config.padTokenId ?? 0 },
  );
  try {
    const temperature = options.temperature ?? 0;
    const result = await generate(model, inputIds, {
      attentionMask,
      maxNewTokens: options.maxNewTokens ?? 12,
      ...(temperature > 0 ? { temperature, topP: 0.95, seed: options.seed ?? 0 } : { greedy: true }),
    });
    return prompts.map((prompt, i) => ({
      prompt,
      text: tokenizer.decode(result.tokens[i], { skipSpecialTokens: true }),
      tokens: result.tokens[i],
      finishReason: result.finishReasons[i],
    }));
  } finally {
    tf.dispose([inputIds, attentionMask]);
    model.dispose();
  }
}
