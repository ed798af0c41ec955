// Rollouts: the Generator interface the online trainers sample through, and its in-process
// implementation on `generate` (KV cache, batched, seeded). A remote generator (an OpenAI-compatible
// server) implements the same interface; no trainer assumes generation runs in this process.
import { PosttrainError, checkNumber, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForGeneration, type TokenizerLike } from '@posttrain/data';
import { generate, type FinishReason } from './generate.js';
import { padTokenIdOf } from './pad.js';
import { inEvalMode } from './reference.js';

/**
 * One call of {@link Generator.generate}: the prompts as text and as the token ids the trainer will
 * score (a remote generator sends whichever its server takes), `n` completions per prompt, at most
 * `maxTokens` new tokens each, from the sampling stream `seed`.
 *
 * @example
 * ```ts
 * const request: GenerationRequest = { prompts: ['abc>'], promptIds: [[97, 98, 99, 62]], n: 4, maxTokens: 8, seed: 17 };
 * ```
 */
export interface GenerationRequest {
  prompts: readonly string[];
  promptIds: readonly (readonly number[])[];
  /** Completions per prompt, ≥ 1. */
  n: number;
  /** New tokens per completion at most, the stop token included. */
  maxTokens: number;
  /** Seed of this request's sampling: the same request with the same seed gives the same completions. */
  seed: number;
}

/**
 * One sampled completion: its token ids (the stop token included when it stopped), the log-prob of
 * each under the sampling policy (temperature 1, before any top-k/top-p filter; see
 * {@link GenerateResult.logprobs}), and why it ended.
 *
 * @example
 * ```ts
 * const c: Completion = { ids: [99, 98, 97, 258], logprobs: [-0.1, -0.3, -0.05, -0.01], finishReason: 'stop' };
 * ```
 */
export interface Completion {
  ids: number[];
  logprobs: number[];
  finishReason: FinishReason;
}

/**
 * Where the online trainers (GRPO, RLOO, PPO, online DPO) get completions from: `generate`
 * returns, for each prompt of the request, its `n` completions, in order. The in-process
 * {@link inProcessGenerator} samples from the model being trained; a remote one (an
 * OpenAI-compatible server such as vLLM) would send the prompts and, through `syncWeights`,
 * receive the policy's new weights after each update.
 *
 * @example
 * ```ts
 * const echo: Generator = {
 *   name: 'echo',
 *   generate: async ({ promptIds, n }) => promptIds.map((ids) => Array.from({ length: n }, () => ({ ids: [...ids], logprobs: ids.map(() => 0), finishReason: 'length' as const }))),
 * };
 * ```
 */
export interface Generator {
  /** For logs, e.g. 'in-process'. */
  readonly name: string;
  generate(request: GenerationRequest): Promise<Completion[][]>;
  /** Called after each optimizer step that changed the policy, before the next request: a remote generator uploads the new weights here. */
  syncWeights?(): Promise<void> | void;
}

/**
 * Sampling options of {@link inProcessGenerator}, named as `generate`'s (TRL's `temperature`,
 * `top_k`, `top_p`, `min_p`).
 *
 * @example
 * ```ts
 * const sampling: Partial<InProcessGeneratorOptions> = { temperature: 0.9, topP: 0.95, batchSize: 32 };
 * ```
 */
export interface InProcessGeneratorOptions {
  /** Softmax temperature, > 0 (default 1, TRL's GRPO default). */
  temperature: number;
  /** Keep the k most likely tokens; 0 keeps all (default 0). */
  topK: number;
  /** Nucleus sampling threshold in (0, 1] (default 1: off). */
  topP: number;
  /** Min-p threshold in [0, 1] (default 0: off). */
  minP: number;
  /** Prompts per `generate` call, each with its n completions (default 64). */
  batchSize: number;
  /** Ids that end a completion (default: the tokenizer's EOS, else the model's). */
  stopTokenIds: number[] | undefined;
}

/**
 * The defaults of {@link inProcessGenerator}.
 *
 * @example
 * ```ts
 * inProcessGenerator(model, tokenizer, { ...defaultInProcessGeneratorOptions, temperature: 0.7 });
 * ```
 */
export const defaultInProcessGeneratorOptions: Readonly<InProcessGeneratorOptions> = Object.freeze({
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  batchSize: 64,
  stopTokenIds: undefined,
});

/**
 * A {@link Generator} that samples from `model` in this process with policy's `generate`: prompts
 * of one token length are decoded together (no padding), `batchSize` at a time with their `n`
 * completions each, with the KV cache, in eval mode (no dropout), each chunk from a stream seeded by
 * (request seed, chunk). Deterministic: the same request gives the same completions.
 *
 * @example
 * ```ts
 * const generator = inProcessGenerator(model, tokenizer, { temperature: 1 });
 * const [samples] = await generator.generate({ prompts: ['abc>'], promptIds: [tokenizer.encode('abc>')], n: 4, maxTokens: 8, seed: 0 });
 * samples.map((c) => tokenizer.decode(c.ids)); // 4 completions of 'abc>'
 * ```
 */
export function inProcessGenerator(model: CausalLM, tokenizer: Pick<TokenizerLike, 'eosTokenId'> & { padTokenId?: number | null }, options?: Partial<InProcessGeneratorOptions>): Generator {
  const owner = 'inProcessGenerator';
  const o = resolveOptions(owner, options, defaultInProcessGeneratorOptions);
  checkNumber(owner, 'temperature', o.temperature, 'a number > 0 (sampling; greedy decoding gives every completion of a prompt the same tokens)', (v) => v > 0);
  checkNumber(owner, 'topK', o.topK, 'a non-negative integer', (v) => Number.isInteger(v) && v >= 0);
  checkNumber(owner, 'topP', o.topP, 'a number in (0, 1]', (v) => v > 0 && v <= 1);
  checkNumber(owner, 'minP', o.minP, 'a number in [0, 1]', (v) => v >= 0 && v <= 1);
  checkNumber(owner, 'batchSize', o.batchSize, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  const eos = tokenizer.eosTokenId ?? model.config.eosTokenId;
  const stopTokenIds = o.stopTokenIds ?? (eos === null || eos === undefined ? [] : Array.isArray(eos) ? [...eos] : [eos as number]);
  const padTokenId = padTokenIdOf(tokenizer);
  return {
    name: 'in-process',
    async generate(request) {
      checkRequest(owner, request);
      const { promptIds, n, maxTokens, seed } = request;
      const out: Completion[][] = promptIds.map(() => []);
      const byLength = new Map<number, number[]>();
      promptIds.forEach((ids, i) => byLength.set(ids.length, [...(byLength.get(ids.length) ?? []), i]));
      let chunkIndex = 0;
      await inEvalMode(model, async () => {
        for (const indices of byLength.values()) {
          for (let start = 0; start < indices.length; start += o.batchSize) {
            const chunk = indices.slice(start, start + o.batchSize);
            const batch = collateForGeneration(
              chunk.map((i) => promptIds[i]),
              { padTokenId },
            );
            try {
              const result = await generate(model, batch.inputIds, {
                maxNewTokens: maxTokens,
                temperature: o.temperature,
                topK: o.topK,
                topP: o.topP,
                minP: o.minP,
                numReturnSequences: n,
                returnLogprobs: true,
                stopTokenIds,
                padTokenId,
                seed: (seed ^ Math.imul(chunkIndex + 1, 0x9e3779b1)) | 0,
              });
              chunk.forEach((promptIndex, k) => {
                for (let j = 0; j < n; j++) {
                  const row = k * n + j;
                  out[promptIndex].push({ ids: result.tokens[row], logprobs: (result.logprobs as number[][])[row], finishReason: result.finishReasons[row] });
                }
              });
            } finally {
              tf.dispose([batch.inputIds, batch.attentionMask]);
            }
            chunkIndex += 1;
          }
        }
      });
      return out;
    },
  };
}

/** Checks a request's shape; throws INVALID_ARGUMENT naming the field. */
function checkRequest(owner: string, r: GenerationRequest): void {
  if (!r || !Array.isArray(r.promptIds) || !Array.isArray(r.prompts) || r.prompts.length !== r.promptIds.length) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${owner}: expected a request with prompts and promptIds of one length; got ${r ? `${r.prompts?.length} prompts and ${r.promptIds?.length} promptIds` : String(r)}`,
    );
  }
  checkNumber(owner, 'n', r.n, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber(owner, 'maxTokens', r.maxTokens, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber(owner, 'seed', r.seed, 'an integer', Number.isInteger);
}
