import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf, type CausalLM } from '@posttrain/tensor-core';
import { ByteTokenizer, collateForTraining, generateSplit, reversalTask } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { namedReward, rewardModelReward, sequenceLogps, type Generator, type ScalarRewardModel } from '@posttrain/policy';
import { RewardModel } from '@posttrain/reward';
import { ppoTrain, type PpoTrainOptions } from './index.js';
import { completionLayout, ppoTargets } from './ppo-train.js';

const TINY_BASE = new URL('../../../examples/sft/tiny-base/', import.meta.url).pathname;
const tokenizer = new ByteTokenizer();
const EOS = tokenizer.eosTokenId as number;
const { train, test } = generateSplit(reversalTask, 0, { train: 400, test: 32, taskOptions: { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 }, uniqueTrain: false });
const records = train.map((e) => ({ prompt: e.prompt, answer: e.answer }));
const quiet = { progress: 'none' as const };

beforeAll(async () => {
  await initBackend('wasm');
});
afterAll(() => undefined);

const base = (): Promise<CausalLM> => loadModel(TINY_BASE);
/** A RewardModel as a reward (policy's ScalarRewardModel has an index signature RewardOutput lacks). */
const asScorer = (rm: RewardModel) => rm as unknown as ScalarRewardModel;
const bytes = (text: string) => [...text].map((c) => c.charCodeAt(0));

/**
 * TRL's PPO targets, transcribed from its loop (experimental/ppo/ppo_trainer.py) for rows padded to T
 * response positions: logprob/ref masked to INVALID_LOGPROB = 1 past the last token, values to 0 past
 * it + 1, k1 KL, the score at actual_end, GAE over all T, advantages whitened over the response.
 */
function trlTargets(rows: { logprob: number[]; ref: number[]; value: number[]; score: number; C: number }[], T: number, o: { klCoef: number; gamma: number; lam: number; whitenRewards: boolean }) {
  const whiten = (x: number[][], keep: boolean[][], shiftMean: boolean) => {
    const flat = x.flatMap((r, b) => r.filter((_, t) => keep[b][t]));
    const n = flat.length;
    const mean = flat.reduce((a, v) => a + v, 0) / n;
    const variance = (flat.reduce((a, v) => a + (v - mean) ** 2, 0) / n) * (n / (n - 1));
    return x.map((r) => r.map((v) => (v - mean) / Math.sqrt(variance + 1e-8) + (shiftMean ? 0 : mean)));
  };
  const seqLen = rows.map((r) => r.C - 1);
  const padding = rows.map((_, b) => Array.from({ length: T }, (_, t) => t > seqLen[b]));
  const paddingP1 = rows.map((_, b) => Array.from({ length: T }, (_, t) => t > seqLen[b] + 1));
  const logprob = rows.map((r, b) => Array.from({ length: T }, (_, t) => (padding[b][t] ? 1 : r.logprob[t])));
  const ref = rows.map((r, b) => Array.from({ length: T }, (_, t) => (padding[b][t] ? 1 : r.ref[t])));
  const values = rows.map((r, b) => Array.from({ length: T }, (_, t) => (paddingP1[b][t] ? 0 : r.value[t])));
  const kl = logprob.map((r, b) => r.map((lp, t) => lp - ref[b][t]));
  const nonScore = kl.map((r) => r.map((k) => -o.klCoef * k));
  let rewards = nonScore.map((r) => [...r]);
  rows.forEach((r, b) => {
    const actualEnd = seqLen[b] + 1 < T ? seqLen[b] + 1 : seqLen[b];
    rewards[b][actualEnd] += r.score;
  });
  if (o.whitenRewards) {
    rewards = whiten(
      rewards,
      paddingP1.map((r) => r.map((p) => !p)),
      false,
    ).map((r, b) => r.map((v, t) => (paddingP1[b][t] ? 0 : v)));
  }
  const advantages = rows.map(() => new Array(T).fill(0));
  rows.forEach((_, b) => {
    let last = 0;
    for (let t = T - 1; t >= 0; t--) {
      const next = t < T - 1 ? values[b][t + 1] : 0;
      last = rewards[b][t] + o.gamma * next - values[b][t] + o.gamma * o.lam * last;
      advantages[b][t] = last;
    }
  });
  const returns = advantages.map((r, b) => r.map((a, t) => a + values[b][t]));
  const whitened = whiten(
    advantages,
    padding.map((r) => r.map((p) => !p)),
    true,
  ).map((r, b) => r.map((v, t) => (padding[b][t] ? 0 : v)));
  return { kl, nonScore, rewards, rawAdvantages: advantages, advantages: whitened, returns, paddingP1 };
}

describe('ppoTrain: options', () => {
  const valid = async (): Promise<PpoTrainOptions> => ({
    model: await base(),
    tokenizer,
    train: records,
    rewardFunctions: [namedReward('one', ({ completions }) => completions.map(() => 1))],
    valueModel: 'shared',
    maxCompletionLength: 8,
    lora: { r: 4 },
    ...quiet,
  });

  it('names unknown and out-of-range options, a missing value model, and a rollout size that disagrees with numMiniBatches', async () => {
    const o = await valid();
    const fail = async (extra: Partial<PpoTrainOptions>) => (await ppoTrain({ ...o, ...extra } as PpoTrainOptions).catch((e) => e)) as { code: string; message: string };
    expect((await fail({ num_ppo_epochs: 2 } as never)).message).toMatch(/unknown option "num_ppo_epochs"/);
    const missing = await fail({ valueModel: undefined });
    expect(missing.code).toBe('INVALID_OPTION');
    expect(missing.message).toContain("expected valueModel to be a value model (an object with values and trainableParameters, e.g. a RewardModel) or 'shared'; got undefined");
    expect(missing.message).toMatch(/help: pass a second copy of the reward model/);
    expect((await fail({ numPpoEpochs: 0 })).message).toContain('expected numPpoEpochs to be an integer ≥ 1; got 0');
    expect((await fail({ numMiniBatches: 1.5 })).message).toContain('expected numMiniBatches to be an integer ≥ 1; got 1.5');
    expect((await fail({ klEstimator: 'k2' as never })).message).toContain("expected klEstimator to be 'k1' or 'k3'; got \"k2\"");
    expect((await fail({ cliprange: 1.5 })).message).toContain('expected cliprange to be a number in (0, 1); got 1.5');
    expect((await fail({ cliprangeValue: 0 })).message).toContain('expected cliprangeValue to be a number > 0; got 0');
    expect((await fail({ vfCoef: -1 })).message).toContain('expected vfCoef to be a number ≥ 0; got -1');
    expect((await fail({ lam: 2 })).message).toContain('expected lam to be a number in [0, 1]; got 2');
    expect((await fail({ missingEosPenalty: -1 })).message).toContain('expected missingEosPenalty to be a number ≥ 0 or null; got -1');
    expect((await fail({ whitenRewards: 'yes' as never })).message).toContain('expected whitenRewards to be true or false; got "yes"');
    const size = await fail({ batchSize: 4, numMiniBatches: 2, generationBatchSize: 16 });
    expect(size.message).toContain('expected generationBatchSize to be null or batchSize · gradientAccumulationSteps · numMiniBatches = 4 · 1 · 2 = 8 (each mini-batch is one optimizer step); got 16');
    expect(size.message).toContain('help: leave generationBatchSize null and set numMiniBatches to 4');
    const inside = await fail({ numPpoEpochs: 2, maxSteps: 3 });
    expect(inside.message).toContain('expected maxSteps to be a multiple of the 2 optimizer steps of one rollout; got 3');
    const full = await fail({ lora: false });
    expect(full.message).toContain('klCoef = 0.05 needs a reference model; got none');
  });

  it('refuses a value model that is the reward model, or that has nothing to train', async () => {
    const o = await valid();
    const rm = new RewardModel(await base());
    const same = await ppoTrain({ ...o, rewardFunctions: asScorer(rm), valueModel: rm }).catch((e) => e);
    expect(same.code).toBe('INVALID_OPTION');
    expect(same.message).toMatch(/expected valueModel to be separate from the reward model; got shared parameters \(model\.embed_tokens\.weight/);
    const frozen = new RewardModel(await base()).freeze();
    const none = await ppoTrain({ ...o, valueModel: frozen }).catch((e) => e);
    expect(none.message).toContain('expected valueModel to have trainable parameters; got none');
  });
});

describe('ppoTrain: the targets of one rollout by hand', () => {
  it('ppoTargets at predictor positions equals TRL’s loop in response positions (k1, score one past the end, GAE, whitening; whitenRewards too)', () => {
    // Row 0: prompt of 2 tokens, 3 completion tokens (stopped, < T = 4). Row 1: prompt of 1 token, 4 tokens (= T: score on the last token).
    const T = 4;
    const L = 6;
    const rows = [
      { P: 2, C: 3, logprob: [-0.5, -1.2, -0.3], ref: [-0.7, -1.0, -0.9], value: [0.2, -0.4, 0.1, 0.8], score: 1.5 },
      { P: 1, C: 4, logprob: [-2.0, -0.1, -0.6, -1.1], ref: [-1.5, -0.3, -0.6, -0.2], value: [0.5, 0.3, -0.2, 0.4], score: -0.7 },
    ];
    const layout = completionLayout(
      rows.map((r) => ({ promptLength: r.P, completionLength: r.C })),
      L,
      T,
    );
    expect(Array.from(layout.policyMask)).toEqual([0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0]);
    expect(Array.from(layout.valueMask)).toEqual([0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0]);
    expect(layout.scorePositions).toEqual([4, 3]);
    const at = (f: (r: (typeof rows)[number], j: number) => number | undefined, extra: boolean) =>
      tf.tensor2d(
        rows.flatMap((r) => Array.from({ length: L }, (_, s) => (s >= r.P - 1 && s - r.P + 1 < r.C + (extra ? 1 : 0) ? (f(r, s - r.P + 1) ?? 0) : 0))),
        [2, L],
      );
    for (const whitenRewards of [false, true]) {
      const o = { klCoef: 0.05, klEstimator: 'k1' as const, whitenRewards, gamma: 1, lam: 0.95 };
      const before = tf.memory().numTensors;
      const inputs = {
        logprobs: at((r, j) => r.logprob[j], false),
        refLogprobs: at((r, j) => r.ref[j], false),
        values: at((r, j) => r.value[j], true),
        scores: tf.tensor2d(
          rows.flatMap((r, i) => Array.from({ length: L }, (_, s) => (s === layout.scorePositions[i] ? r.score : 0))),
          [2, L],
        ),
        policyMask: tf.tensor2d(layout.policyMask, [2, L]),
        valueMask: tf.tensor2d(layout.valueMask, [2, L]),
      };
      const out = ppoTargets(inputs, o);
      const expected = trlTargets(
        rows.map((r) => ({ ...r, value: r.value.concat(0).slice(0, T) })),
        T,
        o,
      );
      const read = (t: tf.Tensor) => t.arraySync() as number[][];
      const [advantages, returns, kl, rewards] = [out.advantages, out.returns, out.kl, out.rewards].map(read);
      rows.forEach((r, b) => {
        for (let j = 0; j < T; j++) {
          const s = r.P - 1 + j;
          expect(advantages[b][s]).toBeCloseTo(expected.advantages[b][j], 5);
          if (!expected.paddingP1[b][j]) {
            expect(returns[b][s]).toBeCloseTo(expected.returns[b][j], 5);
            expect(rewards[b][s]).toBeCloseTo(expected.rewards[b][j], 5);
          }
          if (j < r.C) expect(kl[b][s]).toBeCloseTo(expected.kl[b][j], 6);
        }
      });
      // A number written out: row 1's last token gets −0.05·(−1.1 + 0.2) + score −0.7 = −0.655 as its reward.
      if (!whitenRewards) expect(rewards[1][3]).toBeCloseTo(-0.655, 6);
      tf.dispose([...Object.values(inputs), ...Object.values(out)]);
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('one on-policy step with a scripted generator: objective/* metrics and the value loss 0.5·mean(A²) are TRL’s numbers for this rollout', async () => {
    // Four prompts, one completion each: two stop, one runs out of tokens (missingEosPenalty), one stops at exactly T.
    const T = 5;
    const prompts = records.slice(0, 4);
    const script: Record<string, { ids: number[]; finishReason: 'stop' | 'length' }> = {
      [prompts[0].prompt]: { ids: [...bytes('cba'), EOS], finishReason: 'stop' },
      [prompts[1].prompt]: { ids: [...bytes('x'), EOS], finishReason: 'stop' },
      [prompts[2].prompt]: { ids: bytes('abcde'), finishReason: 'length' },
      [prompts[3].prompt]: { ids: [...bytes('dcba'), EOS], finishReason: 'stop' },
    };
    const generator: Generator = {
      name: 'scripted',
      generate: async ({ prompts: texts, n }) => texts.map((p) => Array.from({ length: n }, () => ({ ...script[p], logprobs: script[p].ids.map(() => 0) }))),
    };
    const scoreOf: Record<string, number> = { cba: 2, x: -1, abcde: 0.5, dcba: 1 };
    const reward = namedReward('scripted', ({ completions }) => completions.map((c) => scoreOf[c]));
    const model = await base();
    const reference = await base();
    const [name0, w0] = [...reference.namedParameters()][0];
    w0.assign(tf.tidy(() => tf.add(w0, tf.randomNormal(w0.shape, 0, 0.05, 'float32', 7))));
    expect(name0).toBe('model.embed_tokens.weight');
    const valueModel = new RewardModel(await base(), { seed: 3 });
    const temperature = 0.7;

    // The rollout's numbers before training: log-probs of the policy and the reference, and the values.
    const examples = prompts.map((r) => {
      const p = tokenizer.encode(r.prompt);
      return { inputIds: [...p, ...script[r.prompt].ids], labels: [...p.map(() => -100), ...script[r.prompt].ids] };
    });
    const batch = collateForTraining(examples, { padTokenId: 259 });
    const logps = (m: CausalLM) => sequenceLogps(m, batch, { temperature }).tokenLogps.arraySync() as number[][];
    const [policyLogps, refLogps] = [logps(model), logps(reference)];
    const values = valueModel.values(batch.inputIds, { attentionMask: batch.attentionMask }).arraySync() as number[][];
    const missingEosPenalty = 1;
    const rows = prompts.map((r, b) => {
      const P = tokenizer.encode(r.prompt).length;
      const C = script[r.prompt].ids.length;
      const text = script[r.prompt].finishReason === 'stop' ? String.fromCharCode(...script[r.prompt].ids.slice(0, -1)) : String.fromCharCode(...script[r.prompt].ids);
      return {
        C,
        logprob: Array.from({ length: C }, (_, j) => policyLogps[b][P + j]),
        ref: Array.from({ length: C }, (_, j) => refLogps[b][P + j]),
        value: Array.from({ length: T }, (_, j) => values[b][P - 1 + j] ?? 0),
        score: scoreOf[text] - (script[r.prompt].finishReason === 'stop' ? 0 : missingEosPenalty),
      };
    });
    const klCoef = 0.1;
    const expected = trlTargets(rows, T, { klCoef, gamma: 1, lam: 0.95, whitenRewards: false });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const sumOver = (x: number[][], b: number, n: number) => x[b].slice(0, n).reduce((a, v) => a + v, 0);
    const klSum = mean(rows.map((r, b) => sumOver(expected.kl, b, r.C)));
    const scores = mean(rows.map((r) => r.score));
    const p1 = expected.paddingP1.flatMap((r, b) => r.flatMap((p, t) => (p ? [] : [expected.rawAdvantages[b][t]])));
    const valueLoss = (0.5 * p1.reduce((a, v) => a + v * v, 0)) / p1.length;
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);

    const result = await ppoTrain({
      model,
      tokenizer,
      train: prompts,
      rewardFunctions: reward,
      generator,
      valueModel,
      reference: { model: reference },
      klCoef,
      missingEosPenalty,
      temperature,
      maxCompletionLength: T,
      batchSize: 4,
      numPpoEpochs: 1,
      lr: 1e-4,
      maxSteps: 1,
      ...quiet,
    });
    const [record] = result.history;
    expect(record['objective/kl']).toBeCloseTo(klSum, 5);
    expect(record['objective/non_score_reward']).toBeCloseTo(-klCoef * klSum, 5);
    expect(record['objective/scores']).toBeCloseTo(scores, 6);
    expect(record['objective/scores']).toBeCloseTo((2 - 1 + (0.5 - 1) + 1) / 4, 6);
    expect(record['objective/rlhf_reward']).toBeCloseTo(scores - klCoef * klSum, 5);
    expect(record['objective/entropy']).toBeCloseTo(mean(rows.map((r) => -r.logprob.reduce((a, v) => a + v, 0))), 4);
    expect(record['loss/value_avg']).toBeCloseTo(valueLoss, 5);
    expect(record['loss/policy_avg']).toBeCloseTo(0, 5); // one micro-batch on-policy: −mean of whitened advantages
    expect(record.loss).toBeCloseTo(0.1 * valueLoss, 5);
    expect(record['val/ratio']).toBeCloseTo(1, 5);
    expect(record['policy/approxkl_avg']).toBeCloseTo(0, 8);
    expect(record['policy/clipfrac_avg']).toBe(0);
    expect(record['val/clipfrac_avg']).toBe(0);
    expect(record['val/num_eos_tokens']).toBe(3);
    expect(record.reward).toBeCloseTo((2 - 1 + 0.5 + 1) / 4, 6); // the reward functions' mean, before the EOS penalty
    expect(record['completions/clipped_ratio']).toBe(0.25);
    expect(result.reference).toBe('frozen copy');
    expect(result.valueModel).toBe(valueModel);
  });
  it('with a reward model and a copy of it as the value model (TRL’s recipe): the score is the RM’s at the stop token, as rewardModelReward reads text + EOS; the value there equals it; one update climbs the surrogate (Σ A·Δlog π > 0)', async () => {
    // Guards the alignment a silent off-by-one would break while the toy-reward tests still pass: where the
    // score is read, where the value model is read, and the sign of the update.
    const T = 6;
    const prompts = records.slice(0, 4);
    const script: Record<string, { ids: number[]; finishReason: 'stop' | 'length' }> = {
      [prompts[0].prompt]: { ids: [...bytes('cba'), EOS], finishReason: 'stop' },
      [prompts[1].prompt]: { ids: [...bytes('hg'), EOS], finishReason: 'stop' },
      [prompts[2].prompt]: { ids: bytes('abcdef'), finishReason: 'length' },
      [prompts[3].prompt]: { ids: [...bytes('aaaa'), EOS], finishReason: 'stop' },
    };
    const generator: Generator = {
      name: 'scripted',
      generate: async ({ prompts: texts, n }) => texts.map((p) => Array.from({ length: n }, () => ({ ...script[p], logprobs: script[p].ids.map(() => 0) }))),
    };
    const rm = new RewardModel(await base(), { seed: 11 });
    const valueModel = new RewardModel(await base(), { seed: 11 }); // the same weights, separate parameters
    const texts = prompts.map((r) => String.fromCharCode(...script[r.prompt].ids.filter((id) => id !== EOS)));
    const read = await rewardModelReward(asScorer(rm), tokenizer)({ prompts: prompts.map((r) => r.prompt), completions: texts, completionIds: [], step: 0 } as never);
    const examples = prompts.map((r) => {
      const p = tokenizer.encode(r.prompt);
      return { inputIds: [...p, ...script[r.prompt].ids], labels: [...p.map(() => -100), ...script[r.prompt].ids] };
    });
    const batch = collateForTraining(examples, { padTokenId: 259 });
    const ends = examples.map((e) => e.inputIds.length - 1);
    const rmScores = rm.forward(batch.inputIds, { attentionMask: batch.attentionMask }).rewards.arraySync() as number[];
    const values = valueModel.values(batch.inputIds, { attentionMask: batch.attentionMask }).arraySync() as number[][];
    const missingEosPenalty = 1;
    const scores = prompts.map((r, b) => rmScores[b] - (script[r.prompt].finishReason === 'stop' ? 0 : missingEosPenalty));
    // Stopped completions: the RM read on prompt + completion ids (stop token included) = rewardModelReward on text + EOS.
    for (const b of [0, 1, 3]) expect(rmScores[b]).toBeCloseTo(read[b] as number, 5);
    // The value model reads the stop token's hidden state where the score lands: δ = score − V = 0 there.
    for (const b of [0, 1, 3]) expect(values[b][ends[b]]).toBeCloseTo(scores[b], 5);
    const model = await base();
    const tokenLogps = () => tf.tidy(() => sequenceLogps(model, batch).tokenLogps.arraySync() as number[][]);
    const before = tokenLogps();
    const rows = prompts.map((r, b) => {
      const P = tokenizer.encode(r.prompt).length;
      const C = script[r.prompt].ids.length;
      return { C, logprob: new Array(C).fill(0), ref: new Array(C).fill(0), value: Array.from({ length: T }, (_, j) => values[b][P - 1 + j] ?? 0), score: scores[b] };
    });
    const expected = trlTargets(rows, T, { klCoef: 0, gamma: 1, lam: 0.95, whitenRewards: false });
    const p1 = expected.paddingP1.flatMap((r, b) => r.flatMap((p, t) => (p ? [] : [expected.rawAdvantages[b][t]])));
    const result = await ppoTrain({
      model,
      tokenizer,
      train: prompts,
      rewardFunctions: asScorer(rm),
      generator,
      valueModel,
      klCoef: 0,
      missingEosPenalty,
      temperature: 1,
      maxCompletionLength: T,
      batchSize: 4,
      numPpoEpochs: 1,
      lora: { r: 4 },
      lr: 1e-3,
      maxSteps: 1,
      ...quiet,
    });
    const [record] = result.history;
    expect(record['objective/scores']).toBeCloseTo(mean(scores), 5);
    expect(record['loss/value_avg']).toBeCloseTo((0.5 * p1.reduce((a, v) => a + v * v, 0)) / p1.length, 4);
    // The update climbs PPO's surrogate: Σ A_t · Δlog π(token t) over the completion tokens is positive, and the
    // tokens with the largest and the smallest advantage move up and down.
    const after = tokenLogps();
    const moves = rows.flatMap((r, b) => {
      const P = tokenizer.encode(prompts[b].prompt).length;
      return Array.from({ length: r.C }, (_, j) => ({ a: expected.advantages[b][j], d: after[b][P + j] - before[b][P + j] }));
    });
    expect(moves.reduce((sum, m) => sum + m.a * m.d, 0)).toBeGreaterThan(0);
    const byAdvantage = [...moves].sort((x, y) => y.a - x.a);
    expect(byAdvantage[0].d).toBeGreaterThan(0);
    expect(byAdvantage.at(-1)?.d).toBeLessThan(0);
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
  });
});

describe('ppoTrain: runs', () => {
  it('trains the value model with the policy (LoRA), 2 mini-batches × 2 epochs per rollout, and leaks no tensor across steps; the shared value head works too', async () => {
    const model = await base();
    const valueModel = new RewardModel(await base(), { seed: 1 });
    const head = valueModel.score.weight.arraySync() as number[][];
    const embed = (valueModel.backbone.namedParameters().get('model.embed_tokens.weight') as tf.Variable).arraySync() as number[][];
    const before = tf.memory().numTensors;
    const reward = namedReward('as', ({ completions }) => completions.map((c) => [...c].filter((ch) => ch === 'a').length));
    const options = { tokenizer, train: records, rewardFunctions: reward, batchSize: 4, numMiniBatches: 2, numPpoEpochs: 2, maxCompletionLength: 6, temperature: 1, lr: 1e-3, maxSteps: 8, ...quiet };
    const result = await ppoTrain({ ...options, model, valueModel, lora: { r: 4 } });
    expect(result.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Per rollout (8 completions): 2 epochs × 2 mini-batches = 4 optimizer steps, each over 4 completions.
    expect(result.history.map((h) => h.episode)).toEqual([8, 8, 8, 8, 16, 16, 16, 16]);
    // The LoRA adapters (2 layers × 7 linears × A and B) are the only new tensors.
    expect(tf.memory().numTensors - before).toBe(28);
    const moved = (a: number[][], b: number[][]) => Math.max(...a.flatMap((r, i) => r.map((v, j) => Math.abs(v - b[i][j]))));
    expect(moved(valueModel.score.weight.arraySync() as number[][], head)).toBeGreaterThan(1e-4);
    expect(moved((valueModel.backbone.namedParameters().get('model.embed_tokens.weight') as tf.Variable).arraySync() as number[][], embed)).toBeGreaterThan(1e-4);
    // A later step of a rollout is off-policy: its ratios move and some clip.
    expect(result.history.some((h) => Number(h['policy/approxkl_avg']) > 0)).toBe(true);

    const shared = await base();
    const sharedBefore = tf.memory().numTensors;
    const out = await ppoTrain({ ...options, model: shared, valueModel: 'shared', lora: { r: 4 }, maxSteps: 4 });
    // Adapters plus the one head 'score.weight' on the policy's hidden states.
    expect(tf.memory().numTensors - sharedBefore).toBe(29);
    expect(out.valueModel).toBeInstanceOf(RewardModel);
    expect(Number.isFinite(out.loss)).toBe(true);
  });

  it('raises a tiny reward model’s score (the share of the letter a in the sequence, read through the reward-model path) in 24 steps, with the value model learning it', async () => {
    // A scorer with RewardModel's forward: one score per row from its token ids, at the last real token's row.
    const shareOfA: ScalarRewardModel = {
      training: false,
      train: () => undefined,
      eval: () => undefined,
      forward: (inputIds, { attentionMask }) => ({
        rewards: tf.tidy(() => {
          const real = tf.cast(attentionMask as tf.Tensor, 'float32');
          const a = tf.cast(tf.equal(inputIds, tf.scalar(97, 'int32')), 'float32');
          return tf.mul(tf.div(tf.sum(tf.mul(a, real), 1), tf.sum(real, 1)), 4);
        }),
      }),
    };
    const model = await base();
    const valueModel = new RewardModel(await base(), { seed: 2 });
    const result = await ppoTrain({
      model,
      tokenizer,
      train: records,
      eval: test.map((e) => ({ prompt: e.prompt, answer: e.answer })),
      rewardFunctions: shareOfA,
      valueModel,
      batchSize: 32,
      numPpoEpochs: 2,
      maxCompletionLength: 8,
      temperature: 1,
      lora: { r: 8, alpha: 16 },
      lr: 5e-3,
      schedule: 'constant',
      maxSteps: 24,
      ...quiet,
    });
    const scores = result.history.map((h) => Number(h['objective/scores']));
    const values = result.history.map((h) => Number(h['loss/value_avg']));
    const first = mean(scores.slice(0, 4));
    const last = mean(scores.slice(-4));
    console.log(
      `ppo tiny-RM score ${first.toFixed(3)} → ${last.toFixed(3)}; value loss ${mean(values.slice(0, 4)).toFixed(4)} → ${mean(values.slice(-4)).toFixed(4)}; KL ${result.history.at(-1)?.['objective/kl']}; eval reward ${result.evals.at(-1)?.eval_reward}`,
    );
    expect(last).toBeGreaterThan(first + 0.3);
    expect(mean(values.slice(-4))).toBeLessThan(mean(values.slice(0, 4)));
    expect(result.evals.at(-1)?.eval_reward).toBeGreaterThan(first + 0.2);
    expect(result.history.every((h) => Number.isFinite(h.loss))).toBe(true);
  });
});

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
