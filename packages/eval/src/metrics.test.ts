import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf, type CausalLM } from '@posttrain/tensor-core';
import { ByteTokenizer } from '@posttrain/data';
import { createModel } from '@posttrain/models';
import type { Completion, GenerationRequest, Generator, ScalarRewardModel } from '@posttrain/policy';
import {
  answerProbabilities,
  chainOfThoughtPrompt,
  expectedCalibrationError,
  extractFinalAnswer,
  generatorJudge,
  judgeWinRate,
  majorityVote,
  meanPassAtK,
  parsePairwiseVerdict,
  passAtK,
  recordsPerplexity,
  rewardWinRate,
  samplePassAtK,
  selfConsistency,
  type PairwiseJudge,
} from './index.js';

const tokenizer = new ByteTokenizer();
const EOS = tokenizer.eosTokenId!;
const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });

/** C(n, k) exactly, for the closed form of pass@k. */
function binomial(n: number, k: number): bigint {
  if (k < 0 || k > n) return 0n;
  let r = 1n;
  for (let i = 1; i <= k; i++) r = (r * BigInt(n - k + i)) / BigInt(i);
  return r;
}

/** A Generator that answers each prompt with the next texts of its script (then EOS), recording the requests. */
function scriptedGenerator(script: (prompt: string) => string[], requests: GenerationRequest[] = []): Generator {
  return {
    name: 'scripted',
    async generate(request) {
      requests.push(request);
      return request.prompts.map((p) =>
        script(p)
          .slice(0, request.n)
          .map((text): Completion => ({ ids: [...encode(text), EOS], logprobs: [], finishReason: 'stop' })),
      );
    },
  };
}

const task = { verify: (e: { answer: string }, completion: string) => ({ correct: completion.trim() === e.answer }) };

describe('passAtK (Chen et al. 2021)', () => {
  it('matches hand-computed values', () => {
    expect(passAtK(10, 3, 1)).toBeCloseTo(0.3, 12);
    expect(passAtK(10, 3, 5)).toBeCloseTo(1 - 21 / 252, 12); // C(7,5) / C(10,5)
    expect(passAtK(10, 0, 5)).toBe(0);
    expect(passAtK(10, 8, 3)).toBe(1); // n − c = 2 < k: every 3-subset holds a correct sample
    expect(passAtK(1, 1, 1)).toBe(1);
  });

  it('equals 1 − C(n−c, k)/C(n, k) for every n ≤ 12', () => {
    for (let n = 1; n <= 12; n++) {
      for (let c = 0; c <= n; c++) {
        for (let k = 1; k <= n; k++) {
          const exact = 1 - Number(binomial(n - c, k)) / Number(binomial(n, k));
          expect(passAtK(n, c, k), `n ${n} c ${c} k ${k}`).toBeCloseTo(exact, 12);
        }
      }
    }
  });

  it('averages over problems and rejects bad counts', () => {
    expect(
      meanPassAtK(
        [
          { n: 4, c: 1 },
          { n: 4, c: 0 },
        ],
        [1, 2],
      ),
    ).toEqual({ 1: 0.125, 2: 0.25 });
    expect(() => passAtK(5, 6, 1)).toThrow(/expected c to be an integer in \[0, n = 5\]; got 6/);
    expect(() => passAtK(5, 1, 6)).toThrow(/expected k to be an integer in \[1, n = 5\]; got 6/);
    expect(() => meanPassAtK([], [1])).toThrow(/non-empty array/);
  });

  it('samplePassAtK counts verified samples per problem', async () => {
    const examples = [
      { prompt: 'p1', answer: 'x' },
      { prompt: 'p2', answer: 'y' },
    ];
    const generator = scriptedGenerator((p) => (p === 'p1' ? ['x', 'z', 'z', 'x'] : ['z', 'z', 'z', 'z']));
    const { passAtK: result, problems } = await samplePassAtK(generator, tokenizer, task, examples, { n: 4, ks: [1, 2, 4] });
    expect(problems.map((p) => p.c)).toEqual([2, 0]);
    // p1: pass@1 = 2/4, pass@2 = 1 − C(2,2)/C(4,2) = 5/6, pass@4 = 1; p2: 0.
    expect(result[1]).toBeCloseTo(0.25, 12);
    expect(result[2]).toBeCloseTo(5 / 12, 12);
    expect(result[4]).toBeCloseTo(0.5, 12);
    await expect(samplePassAtK(generator, tokenizer, task, examples, { n: 4, ks: [5] })).rejects.toThrow(/ks to be integers in \[1, n = 4\]; got 5/);
  });
});

describe('self-consistency (Wang et al. 2022)', () => {
  it('majorityVote ignores nulls and breaks ties by the first to reach the count', () => {
    expect(majorityVote(['12', '15', '12', null])).toEqual({ answer: '12', votes: 2, counted: 3 });
    expect(majorityVote(['a', 'b', 'b', 'a'])).toEqual({ answer: 'b', votes: 2, counted: 4 });
    expect(majorityVote([null, null])).toEqual({ answer: null, votes: 0, counted: 0 });
  });

  it('extractFinalAnswer reads "the answer is" and "####"', () => {
    expect(extractFinalAnswer('3 + 4 = 7. The answer is 7.')).toBe('7');
    expect(extractFinalAnswer('so 2 then.\n#### 42\nbye')).toBe('42');
    expect(extractFinalAnswer('The answer is 3. Wait, the answer is 5.')).toBe('5');
    expect(extractFinalAnswer('no marker')).toBeNull();
    expect(chainOfThoughtPrompt('Q: 2+3?')).toBe("Q: 2+3?\nLet's think step by step.");
  });

  it('votes over samples, with and without a chain of thought', async () => {
    const examples = [
      { prompt: 'q1', answer: '7' },
      { prompt: 'q2', answer: '5' },
      { prompt: 'q3', answer: '1' },
    ];
    const plain: Record<string, string[]> = { q1: ['7', '8', '7', '7'], q2: ['6', '5', '6', '9'], q3: [' ', '1', ' ', ' '] };
    const requests: GenerationRequest[] = [];
    const r = await selfConsistency(
      scriptedGenerator((p) => plain[p], requests),
      tokenizer,
      task,
      examples,
      { n: 4, batchSize: 2 },
    );
    // q1: vote 7 (3 votes) correct, 3/4 samples right; q2: vote 6 wrong, 1/4; q3: three blank (unanswered), vote 1 correct, 1/4.
    expect(r.questions.map((q) => [q.answer, q.votes, q.correct, q.correctSamples])).toEqual([
      ['7', 3, true, 3],
      ['6', 2, false, 1],
      ['1', 1, true, 1],
    ]);
    expect(r.accuracy).toBeCloseTo(2 / 3, 12);
    expect(r.sampleAccuracy).toBeCloseTo(5 / 12, 12);
    expect(r.unanswered).toBeCloseTo(3 / 12, 12);
    expect(requests.map((q) => [q.prompts, q.n, q.seed])).toEqual([
      [['q1', 'q2'], 4, 0],
      [['q3'], 4, 2],
    ]);

    const cot = (p: string) => (p.startsWith('q1') ? ['3+4 is 7. The answer is 7.', 'The answer is 8.', 'hmm', 'so 7. The answer is 7'] : ['x']);
    const seen: GenerationRequest[] = [];
    const c = await selfConsistency(scriptedGenerator(cot, seen), tokenizer, task, examples.slice(0, 1), { n: 4, chainOfThought: true });
    expect(seen[0].prompts).toEqual(["q1\nLet's think step by step."]);
    expect(c.questions[0].answers).toEqual(['7', '8', null, '7']);
    expect(c.accuracy).toBe(1);
    expect(c.sampleAccuracy).toBe(0.5);
  });
});

describe('expectedCalibrationError (Guo et al. 2017)', () => {
  it('matches hand-computed bins', () => {
    const r = expectedCalibrationError([0.9, 0.9, 0.2, 0.2], [true, false, false, false], 2);
    expect(r.ece).toBeCloseTo((2 * Math.abs(0.5 - 0.9) + 2 * Math.abs(0 - 0.2)) / 4, 12);
    expect(r.mce).toBeCloseTo(0.4, 12);
    expect(r.bins.map((b) => b.count)).toEqual([2, 2]);
    expect(r.accuracy).toBe(0.25);
    expect(r.confidence).toBeCloseTo(0.55, 12);
  });

  it('puts a confidence on a bin edge into the lower bin (intervals are (lo, hi]) and 0 into the first', () => {
    const r = expectedCalibrationError([0.5, 0, 1], [true, false, true], 10);
    expect(r.bins[4].count).toBe(1); // (0.4, 0.5]
    expect(r.bins[0].count).toBe(1);
    expect(r.bins[9].count).toBe(1);
    // 0.5 right: |1 − 0.5|; 0 wrong: 0; 1 right: 0 → ECE = 0.5 / 3
    expect(r.ece).toBeCloseTo(0.5 / 3, 12);
  });

  it('is 0 for a perfectly calibrated set and rejects bad input by name', () => {
    expect(expectedCalibrationError([0.75, 0.75, 0.75, 0.75], [true, true, true, false], 4).ece).toBeCloseTo(0, 12);
    expect(() => expectedCalibrationError([1.5], [true])).toThrow(/confidences\[0\] to be a probability in \[0, 1\]; got 1.5/);
    expect(() => expectedCalibrationError([0.5], [true, false])).toThrow(/as many correct flags as confidences \(1\); got 2/);
  });
});

describe('model-based measures', () => {
  let model: CausalLM;
  beforeAll(async () => {
    await initBackend('cpu');
    model = createModel({ modelType: 'llama', vocabSize: tokenizer.vocabSize, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32 }, { seed: 3 });
  });

  /** Σ log p(ids[t] | ids[<t]) for t in [from, ids.length), computed token by token from full forward passes. */
  function manualLogp(ids: number[], from: number): number {
    return tf.tidy(() => {
      const logits = model.forward(tf.tensor2d([ids], undefined, 'int32')).logits;
      const logp = tf.logSoftmax(logits).arraySync() as number[][][];
      let sum = 0;
      for (let t = from; t < ids.length; t++) sum += logp[0][t - 1][ids[t]];
      return sum;
    });
  }

  it('answerProbabilities is P(answer + EOS | prompt)', async () => {
    const before = tf.memory().numTensors;
    const [p, q] = await answerProbabilities(model, tokenizer, ['ab>', 'xyz>'], ['ba', 'zyx']);
    expect(tf.memory().numTensors).toBe(before);
    expect(Math.log(p)).toBeCloseTo(manualLogp([...encode('ab>ba'), EOS], 3), 4);
    expect(Math.log(q)).toBeCloseTo(manualLogp([...encode('xyz>zyx'), EOS], 4), 4);
  });

  it('recordsPerplexity weighs every scored token equally across records', async () => {
    const records = [{ text: 'hello there' }, { prompt: 'ab>', completion: 'ba' }];
    const a = [...encode('hello there'), EOS];
    const b = [...encode('ab>ba'), EOS];
    const total = manualLogp(a, 1) + manualLogp(b, 3);
    const tokens = a.length - 1 + (b.length - 3);
    const before = tf.memory().numTensors;
    const r = await recordsPerplexity(model, tokenizer, records);
    expect(tf.memory().numTensors).toBe(before);
    expect(r.tokens).toBe(tokens);
    expect(r.nll).toBeCloseTo(-total / tokens, 4);
    expect(r.perplexity).toBeCloseTo(Math.exp(-total / tokens), 3);
    // Not the mean of per-record perplexities.
    const perRecord = (Math.exp(-manualLogp(a, 1) / (a.length - 1)) + Math.exp(-manualLogp(b, 3) / (b.length - 3))) / 2;
    expect(Math.abs(r.perplexity - perRecord)).toBeGreaterThan(1e-3);
    await expect(recordsPerplexity(model, tokenizer, [{ prompt: 'a', chosen: 'b', rejected: 'c' } as never])).rejects.toThrow(/record 0: expected a language-modeling .* got a preference record/);
  });
});

describe('win rates', () => {
  /** Scores each row by its count of real (unpadded) tokens: longer answers win. */
  const lengthRewardModel: ScalarRewardModel = {
    training: false,
    train() {},
    eval() {},
    forward(_ids, { attentionMask }) {
      return { rewards: tf.sum(attentionMask as tf.Tensor, 1) };
    },
  };

  it('rewardWinRate counts wins, ties (half) and losses', async () => {
    const prompts = ['p', 'p', 'p', 'p'];
    const r = await rewardWinRate(lengthRewardModel, tokenizer, prompts, ['aaa', 'a', 'aa', 'aaaa'], ['a', 'aaa', 'aa', 'a']);
    expect(r.outcomes).toEqual([1, 0, 0.5, 1]);
    expect([r.wins, r.ties, r.losses]).toEqual([2, 1, 1]);
    expect(r.winRate).toBeCloseTo(2.5 / 4, 12);
    expect(r.meanRewardA - r.meanRewardB).toBeCloseTo((2 - 2 + 0 + 3) / 4, 6);
    await expect(rewardWinRate(lengthRewardModel, tokenizer, prompts, ['a'], ['b', 'b', 'b', 'b'])).rejects.toThrow(/one completion of A and one of B per prompt \(4 prompts\); got 1 of A and 4 of B/);
  });

  it('parses MT-Bench verdicts', () => {
    expect(parsePairwiseVerdict('A is better. [[A]]')).toBe(0);
    expect(parsePairwiseVerdict('[[A]] no wait [[B]]')).toBe(1);
    expect(parsePairwiseVerdict('[[C]]')).toBeNull();
    expect(parsePairwiseVerdict('A')).toBeNull();
  });

  it('generatorJudge fills the template and judgeWinRate cancels position bias by swapping', async () => {
    const requests: GenerationRequest[] = [];
    // A fair judge: prefers the longer answer, whichever side it is on.
    const fair = scriptedGenerator((p) => {
      const [, a, b] = /A: (.*)\nB: (.*)/.exec(p)!;
      return [a.length > b.length ? '[[A]]' : a.length < b.length ? '[[B]]' : '[[C]]'];
    }, requests);
    const judge = generatorJudge(fair, tokenizer, { template: 'Q: {prompt}\nA: {a}\nB: {b}', maxTokens: 8 });
    const r = await judgeWinRate(judge, ['q1', 'q2', 'q3'], ['long', 'x', 'same'], ['s', 'longer', 'abcd']);
    expect(r.outcomes).toEqual([1, 0, 0.5]);
    expect(requests[0].prompts[0]).toBe('Q: q1\nA: long\nB: s');
    expect(requests[1].prompts[0]).toBe('Q: q1\nA: s\nB: long');
    // A judge that always says "[[A]]" only ever agrees with itself in one order: every pair ties.
    const biased: PairwiseJudge = { judge: async (_p, pairs) => pairs.map(() => 0) };
    expect((await judgeWinRate(biased, ['q1', 'q2'], ['a', 'b'], ['c', 'd'])).winRate).toBe(0.5);
    expect((await judgeWinRate(biased, ['q1', 'q2'], ['a', 'b'], ['c', 'd'], { swap: false })).winRate).toBe(1);
    try {
      generatorJudge(fair, tokenizer, { template: 'no slots' });
      expect.unreachable();
    } catch (error) {
      expect(isPosttrainError(error)).toBe(true);
      expect(String(error)).toMatch(/template to contain \{prompt\}/);
    }
  });
});
