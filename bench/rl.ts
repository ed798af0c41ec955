// A GRPO step on the tiny Llama of the dpo suite, split into its parts: generation (the in-process
// generator, KV cache), reward scoring, reference scoring (the KL's no-gradient forward over the
// rollout) and the update (forward + backward + AdamW), with rollout tokens/s and peak memory.
import { Rng, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, collateForTraining } from '@posttrain/data';
import { createModel } from '@posttrain/models';
import { inProcessGenerator, namedReward, padTokenIdOf, sequenceLogps, type Generator } from '@posttrain/policy';
import { grpoTrain, type GrpoTrainOptions } from '@posttrain/rl-ppo';
import { tinyLlama } from './preference.js';
import { median, type Run } from './timing.js';

const tokenizer = new ByteTokenizer();
const GENERATIONS = 8;
const COMPLETIONS = 64; // one rollout per optimizer step: 8 prompts × 8 completions
const PROMPT = 16;
const NEW_TOKENS = 32;

/** Random 16-letter prompts. */
function prompts(count: number): { prompt: string }[] {
  const rng = new Rng(11);
  return Array.from({ length: count }, () => ({ prompt: Array.from({ length: PROMPT }, () => String.fromCharCode(97 + rng.int(26))).join('') }));
}

/** A generator that times each call and counts the tokens it made. */
function timed(inner: Generator): Generator & { seconds: number[]; tokens: number[] } {
  const seconds: number[] = [];
  const tokens: number[] = [];
  return {
    name: inner.name,
    seconds,
    tokens,
    async generate(request) {
      const t0 = performance.now();
      const out = await inner.generate(request);
      seconds.push((performance.now() - t0) / 1000);
      tokens.push(out.flat().reduce((n, c) => n + c.ids.length, 0));
      return out;
    },
  };
}

/** A GRPO run of the suite: LoRA r 16, β 0.04 against the adapters-disabled reference, sampling at temperature 1; its generator and reward functions time themselves. */
function setup(steps: number): { options: GrpoTrainOptions; generator: ReturnType<typeof timed>; rewardSeconds: number[]; dispose: () => void } {
  const rewardSeconds: number[] = [];
  const reward = namedReward('vowels', ({ completions }) => {
    const t0 = performance.now();
    const out = completions.map((c) => [...c].filter((ch) => 'aeiou'.includes(ch)).length / Math.max(c.length, 1));
    rewardSeconds.push((performance.now() - t0) / 1000);
    return out;
  });
  const model = createModel(tinyLlama, { seed: 0 });
  const generator = timed(inProcessGenerator(model, tokenizer));
  const options: GrpoTrainOptions = {
    model,
    tokenizer,
    train: prompts(COMPLETIONS / GENERATIONS), // one rollout's prompts, one epoch per step
    rewardFunctions: reward,
    generator,
    numGenerations: GENERATIONS,
    batchSize: COMPLETIONS,
    maxCompletionLength: NEW_TOKENS,
    lora: { r: 16, alpha: 32, targetModules: 'all-linear', seed: 0 },
    beta: 0.04,
    lr: 1e-3,
    epochs: steps,
    progress: 'none',
  };
  return { options, generator, rewardSeconds, dispose: () => model.dispose() };
}

/** Seconds of the reference's no-gradient forward over one rollout of this shape (what β > 0 adds per step). */
async function referenceSeconds(repeats: number): Promise<number[]> {
  const model = createModel(tinyLlama, { seed: 0 });
  const rng = new Rng(3);
  const examples = Array.from({ length: COMPLETIONS }, () => {
    const ids = Array.from({ length: PROMPT + NEW_TOKENS }, () => 97 + rng.int(26));
    return { inputIds: ids, labels: ids.map((id, i) => (i < PROMPT ? -100 : id)) };
  });
  const batch = collateForTraining(examples, { padTokenId: padTokenIdOf(tokenizer) });
  const seconds: number[] = [];
  try {
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const out = sequenceLogps(model, batch);
      await out.tokenLogps.data();
      tf.dispose([out.logps, out.tokenLogps, out.tokens]);
      seconds.push((performance.now() - t0) / 1000);
    }
  } finally {
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
    model.dispose();
  }
  return seconds;
}

/**
 * One run: the median GRPO step (after 2 warm-up steps) and its parts — generation and reward
 * seconds measured inside the step, the reference forward measured alone on the same shape, the
 * update the remainder — with rollout tokens/s and the peak bytes of a profiled 2-step run.
 */
export async function benchRl(backend: string, budgetSeconds: number): Promise<Run[]> {
  // A probe step sets the pace: about half the budget of measured steps.
  const probe = setup(1);
  const t0 = performance.now();
  await grpoTrain(probe.options);
  probe.dispose();
  const steps = Math.max(3, Math.min(20, Math.floor(budgetSeconds / 2 / ((performance.now() - t0) / 1000))));

  const { options, generator, rewardSeconds, dispose } = setup(steps + 2);
  const result = await grpoTrain(options);
  dispose();
  const stepSeconds = result.history.map((r) => Number(r.tokens) / Math.max(Number(r.tokens_per_second), 1e-9)).slice(2);
  const generation = generator.seconds.slice(2);
  const rewards = rewardSeconds.slice(2);
  const reference = await referenceSeconds(steps);

  const peak = setup(2);
  const before = tf.memory().numBytes;
  const profile = await tf.profile(async () => {
    await grpoTrain(peak.options);
  });
  peak.dispose();

  const ms = (xs: number[]) => Math.round(median(xs) * 1e4) / 10;
  const msPerStep = ms(stepSeconds);
  const generationMs = ms(generation);
  const rewardMs = ms(rewards);
  const scoringMs = ms(reference);
  const rolloutTokens = median(generator.tokens.slice(2));
  return [
    {
      name: `grpo-step/tiny-llama/${backend}/lora`,
      backend,
      shape: `tiny-llama + LoRA r16, ${COMPLETIONS / GENERATIONS} prompts × ${GENERATIONS} completions, ${PROMPT}-token prompts, ${NEW_TOKENS} new tokens, β 0.04 (adapters-disabled reference)`,
      msPerStep,
      tokensPerSec: rolloutTokens / median(generation),
      steps: stepSeconds.length,
      warmupSteps: 2,
      finalLoss: Math.round(result.loss * 1e5) / 1e5,
      generationMs,
      rewardMs,
      scoringMs,
      updateMs: Math.round((msPerStep - generationMs - rewardMs - scoringMs) * 10) / 10,
      rolloutTokens,
      peakBytes: profile.peakBytes,
      bytesBefore: before,
    },
  ];
}
