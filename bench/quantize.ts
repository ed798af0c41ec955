// Quantisation on the byte-level Llama pretrained on Shakespeare (examples/quantize/lm, 0.82M
// parameters): per scheme (float, int8, int4 RTN g128, NF4) its exact weight bytes, held-out
// perplexity on the first 16,384 held-out bytes (the example measures the whole split), forward ms of
// [1, 128] and [8, 128] batches, and greedy decoding with the KV cache (prompt 16, 32 new tokens,
// batch 1); and a LoRA SFT step beside a QLoRA one on the SFT demo's tiny base (step ms, and peak
// tf.memory().numBytes of a profiled 2-step run, bench/preference.ts' method).
import { Rng } from '@posttrain/tensor-core';
import { generate, perplexity } from '@posttrain/policy';
import type { PretrainedModel } from '@posttrain/models';
import { quantizeModel } from '@posttrain/quantize';
import { CONTEXT, heldOutIds, loadLm } from '../examples/quantize/src/lm.js';
import { runQloraComparison } from '../examples/quantize/src/qlora.js';
import { median, randomIds, timeForward, timeSteps, type Run } from './timing.js';

/** The schemes measured, as `quantizeModel` options (float: none). */
const SCHEMES = {
  float: undefined,
  int8: { scheme: 'int8' },
  'int4-g128': { scheme: 'int4', groupSize: 128 },
  nf4: { scheme: 'nf4' },
} as const;

type SchemeName = keyof typeof SCHEMES;

/** Held-out bytes the bench scores (the example scores all 111,540). */
const HELD_OUT_BYTES = 16_384;

/** A quantisation run: the Run fields plus what the scheme stores and scores. */
export interface QuantizeRun extends Run {
  scheme?: string;
  /** Exact bytes of the model's weights (quantised layers' bytes + 4 per float parameter left). */
  modelBytes?: number;
}

async function loadScheme(name: SchemeName): Promise<{ model: PretrainedModel; bytes: number }> {
  const { model } = await loadLm();
  const options = SCHEMES[name];
  const summary = options === undefined ? undefined : await quantizeModel(model, options);
  let floatParameters = 0;
  for (const p of model.namedParameters().values()) floatParameters += p.size;
  return { model, bytes: (summary?.quantizedBytes ?? 0) + 4 * floatParameters };
}

/**
 * Per scheme: a forward run at [1, 128] and [8, 128] (each with the scheme's bytes and perplexity)
 * and a KV-cache decode run; then LoRA and QLoRA SFT steps with their peak bytes. `budgetSeconds`
 * bounds each timing loop.
 */
export async function benchQuantize(backend: string, budgetSeconds: number): Promise<QuantizeRun[]> {
  const runs: QuantizeRun[] = [];
  const ids = heldOutIds().subarray(0, HELD_OUT_BYTES);
  for (const name of Object.keys(SCHEMES) as SchemeName[]) {
    const { model, bytes } = await loadScheme(name);
    try {
      const { perplexity: ppl } = await perplexity(model, ids, { contextLength: CONTEXT, stride: CONTEXT, batchSize: 16 });
      for (const batch of [1, 8]) {
        const input = randomIds(new Rng(2), batch, CONTEXT, 256);
        const { ms, warmup } = await timeForward(model, input, budgetSeconds / 4);
        input.dispose();
        const msPerStep = median(ms);
        runs.push({
          name: `quantize-forward/shakespeare-lm/${backend}/${name}/${batch}x${CONTEXT}`,
          backend,
          shape: `shakespeare-lm (0.82M params) ${name}, ${batch}x${CONTEXT}; ppl on ${HELD_OUT_BYTES} held-out bytes`,
          msPerStep,
          tokensPerSec: (batch * CONTEXT * 1000) / msPerStep,
          steps: ms.length,
          warmupSteps: warmup,
          scheme: name,
          perplexity: Math.round(ppl * 1e4) / 1e4,
          modelBytes: bytes,
        });
      }
      const prompt = randomIds(new Rng(2), 1, 16, 256);
      const newTokens = 32;
      const { ms, warmup } = await timeSteps(async () => {
        const t0 = performance.now();
        const result = await generate(model, prompt, { greedy: true, maxNewTokens: newTokens, stopTokenIds: [], useCache: true });
        if (result.tokens[0].length !== newTokens) throw new Error('quantize decode benchmark: generation stopped early');
        return performance.now() - t0;
      }, budgetSeconds / 4);
      prompt.dispose();
      const msPerToken = median(ms) / newTokens;
      runs.push({
        name: `quantize-decode/shakespeare-lm/${backend}/${name}/kv-cache`,
        backend,
        shape: `shakespeare-lm ${name}, prompt 16, ${newTokens} new tokens, batch 1`,
        msPerStep: msPerToken,
        tokensPerSec: 1000 / msPerToken,
        steps: ms.length,
        warmupSteps: warmup,
        scheme: name,
        modelBytes: bytes,
      });
    } finally {
      model.dispose();
    }
  }
  // LoRA vs QLoRA steps: 22 steps each (the first 2 not timed), one held-out prompt (exact match not reported here).
  const { lora, qlora } = await runQloraComparison({ steps: 22, heldOut: 1, log: () => {} });
  for (const f of [lora, qlora]) {
    runs.push({
      name: `${f.mode}-step/tiny-base/${backend}`,
      backend,
      shape: `examples/sft tiny base (${f.mode === 'qlora' ? 'NF4' : 'float32'}) + LoRA r16 all-linear, 32 reversal examples a step (tokensPerSec: examples/s)`,
      msPerStep: f.stepMs,
      tokensPerSec: (32 * 1000) / f.stepMs,
      steps: 20,
      warmupSteps: 2,
      finalLoss: Math.round(f.loss * 1e5) / 1e5,
      peakBytes: f.peakBytes,
      bytesBefore: f.bytesBefore,
      weightBytes: f.baseLinearBytes,
      peakOverSft: Math.round((f.peakBytes / lora.peakBytes) * 1000) / 1000,
    });
  }
  return runs;
}
