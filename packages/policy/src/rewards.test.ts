import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { ByteTokenizer, reversalTask } from '@posttrain/data';
import type { PretrainedModel } from '@posttrain/models';
import { formatReward, namedReward, overlongPenalty, rewardModelReward, rewardNames, scoreRewards, taskReward, type RewardBatch, type RewardFunction, type ScalarRewardModel } from './index.js';
import { expectPosttrainError, failure } from './testing/helpers.js';
import { tinyModel, tokenizer } from './testing/tiny.js';

// Reward functions in TRL's shape: the weighted sum that skips null (nansum), names, errors that
// name the function and the completion, and the built-ins (task check, regex format, DAPO's soft
// overlong penalty, a scalar reward model read at each row's last real token).

const batchOf = (completions: string[], extra: Partial<RewardBatch> = {}): RewardBatch => ({
  prompts: completions.map((_, i) => `p${i}>`),
  completions,
  completionIds: completions.map((c) => tokenizer.encode(c)),
  step: 4,
  ...extra,
});

describe('scoreRewards', () => {
  it('sums the weighted rewards, skipping null (TRL nansum: a completion no function applies to gets 0)', async () => {
    const a = namedReward('a', () => [1, null, 2, null]);
    const b = namedReward('b', async () => [0.5, 1, null, null]);
    const scored = await scoreRewards([a, b], [2, 3], batchOf(['w', 'x', 'y', 'z']));
    expect(scored.names).toEqual(['a', 'b']);
    expect([...scored.total]).toEqual([2 * 1 + 3 * 0.5, 3 * 1, 2 * 2, 0]);
    expect([...scored.perFunction[0]]).toEqual([1, Number.NaN, 2, Number.NaN]);
    expect([...scored.perFunction[1]]).toEqual([0.5, 1, Number.NaN, Number.NaN]);
  });

  it('passes the batch as given (prompts, completions, ids, step and columns) to each function, sync or async', async () => {
    const seen: RewardBatch[] = [];
    const sync: RewardFunction = (batch) => {
      seen.push(batch);
      return batch.completions.map((c) => c.length);
    };
    const slow: RewardFunction = async (batch) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return (batch.answer as string[]).map((answer, i) => (answer === batch.completions[i] ? 1 : 0));
    };
    const batch = batchOf(['ab', 'b'], { answer: ['ab', 'a'] });
    const scored = await scoreRewards([sync, slow], [1, 10], batch);
    expect(seen).toEqual([batch]);
    expect(scored.names).toEqual(['sync', 'slow']);
    expect([...scored.total]).toEqual([2 + 10, 1]);
  });

  it('names a function by rewardName, else its function name, else reward_<i>, and refuses two of one name', async () => {
    function lengthReward(batch: RewardBatch) {
      return batch.completions.map((c) => c.length);
    }
    const fns: RewardFunction[] = [namedReward('custom', lengthReward), lengthReward, (b) => b.completions.map(() => 0)];
    expect(rewardNames(fns)).toEqual(['custom', 'lengthReward', 'reward_2']);
    expect((await scoreRewards(fns, [1, 1, 1], batchOf(['abc']))).names).toEqual(['custom', 'lengthReward', 'reward_2']);
    const error = await failure(() => scoreRewards([lengthReward, namedReward('x', lengthReward), lengthReward], [1, 1, 1], batchOf(['abc'])));
    expectPosttrainError(error, 'INVALID_OPTION', "'lengthReward'", 'functions 0 and 2');
    expect((error as { help?: string }).help ?? String(error)).toContain('namedReward');
  });

  it('a function that throws is CALLBACK_FAILED naming it and the completion found by running each alone, the cause kept', async () => {
    const calls: number[] = [];
    function picky(batch: RewardBatch) {
      calls.push(batch.completions.length);
      return batch.completions.map((c) => {
        if (c === 'bad') throw new RangeError(`cannot score ${c}`);
        return 1;
      });
    }
    const batch = batchOf(['a', 'b', 'c', 'bad', 'e', 'bad']);
    const error = await failure(() => scoreRewards([namedReward('ok', () => [1, 1, 1, 1, 1, 1]), picky], [1, 1], batch));
    expectPosttrainError(error, 'CALLBACK_FAILED', "reward function 'picky'", 'completion 3', '"p3>"', '"bad"', 'cannot score bad');
    expect(error.message).not.toContain('completion 5');
    expect((error as { cause?: unknown }).cause).toBeInstanceOf(RangeError);
    expect(((error as { cause?: Error }).cause as Error).message).toBe('cannot score bad');
    expect(calls, 'the whole batch once, then completions 0–3 alone').toEqual([6, 1, 1, 1, 1]);
  });

  it('the completion is found from its own columns too, for async functions that reject', async () => {
    const byAnswer: RewardFunction = async ({ answer }) => {
      await Promise.resolve();
      return (answer as string[]).map((a) => {
        if (a === '?') throw new Error('no answer');
        return 0;
      });
    };
    const error = await failure(() => scoreRewards([namedReward('by_answer', byAnswer)], [1], batchOf(['x', 'y', 'z'], { answer: ['1', '2', '?'] })));
    expectPosttrainError(error, 'CALLBACK_FAILED', "'by_answer'", 'completion 2', 'no answer');
  });

  it('a function that throws on the batch but on no completion alone is named with the batch, the cause kept', async () => {
    const cause = new Error('batch too large');
    const error = await failure(() =>
      scoreRewards(
        [
          namedReward('limited', ({ completions }) => {
            if (completions.length > 2) throw cause;
            return completions.map(() => 0);
          }),
        ],
        [1],
        batchOf(['a', 'b', 'c']),
      ),
    );
    expectPosttrainError(error, 'CALLBACK_FAILED', "'limited'", 'batch of 3 completions', 'batch too large');
    expect((error as { cause?: unknown }).cause).toBe(cause);
  });

  it('a batch of one completion that throws names completion 0', async () => {
    const error = await failure(() =>
      scoreRewards(
        [
          namedReward('always', () => {
            throw new Error('boom');
          }),
        ],
        [1],
        batchOf(['a']),
      ),
    );
    expectPosttrainError(error, 'CALLBACK_FAILED', "'always'", 'completion 0', 'boom');
  });

  it('a result of the wrong length, or a value that is not a finite number or null, is INVALID_ARGUMENT naming the function and completion', async () => {
    const batch = batchOf(['a', 'b', 'c']);
    expectPosttrainError(await failure(() => scoreRewards([namedReward('short', () => [1, 2])], [1], batch)), 'INVALID_ARGUMENT', "reward function 'short'", 'array of 3 rewards', 'got 2 values');
    expectPosttrainError(await failure(() => scoreRewards([namedReward('scalar', () => 1 as never)], [1], batch)), 'INVALID_ARGUMENT', "'scalar'", 'array of 3 rewards', 'got 1');
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, '1']) {
      const error = await failure(() => scoreRewards([namedReward('odd', () => [0, 1, bad as number])], [1], batch));
      expectPosttrainError(error, 'INVALID_ARGUMENT', "reward function 'odd'", 'finite number or null for completion 2', typeof bad === 'string' ? '"1"' : String(bad));
      expect((error as { help?: string }).help ?? '').toContain('"c"');
    }
  });

  it('refuses weights that are not one finite number per function', async () => {
    const fns = [namedReward('a', () => [1]), namedReward('b', () => [1])];
    expectPosttrainError(await failure(() => scoreRewards(fns, [1], batchOf(['x']))), 'INVALID_ARGUMENT', 'weights', '2', 'got [1]');
    expectPosttrainError(await failure(() => scoreRewards(fns, [1, Number.NaN], batchOf(['x']))), 'INVALID_ARGUMENT', 'weights');
  });

  it('namedReward refuses an empty name or a non-function', async () => {
    expectPosttrainError(await failure(() => namedReward('', () => [])), 'INVALID_ARGUMENT', 'non-empty name');
    expectPosttrainError(await failure(() => namedReward('x', 3 as never)), 'INVALID_ARGUMENT', 'function');
  });
});

describe('taskReward on reversalTask', () => {
  const prompts = ['abc>', 'abc>', 'abc>', 'ab>'];
  const completions = ['cba', 'cab', 'cba \n', 'ab'];

  it('exact: 1 where the task verifies the completion, against the solution of the prompt without an answer column', async () => {
    const reward = taskReward(reversalTask);
    expect(reward.rewardName).toBe('reversal_exact_match');
    expect(await reward({ prompts, completions, completionIds: [], step: 0 })).toEqual([1, 0, 1, 0]);
  });

  it("partial: the task's score (share of positions right)", async () => {
    const reward = taskReward(reversalTask, { mode: 'partial' });
    expect(reward.rewardName).toBe('reversal_score');
    const scores = (await reward({ prompts, completions, completionIds: [], step: 0 })) as number[];
    expect(scores).toEqual(completions.map((c, i) => reversalTask.verify(prompts[i], c).score));
    expect(scores[0]).toBe(1);
    expect(scores[1]).toBeCloseTo(1 / 3, 12); // 'cab' vs 'cba': only c is right
    expect(scores[3]).toBe(0);
  });

  it('verifies against the answer column when the batch has one (a string per completion), else against the prompt', async () => {
    const batch = { prompts, completions: ['xyz', 'cba', 'cba', 'ba'], completionIds: [], step: 0, answer: ['xyz', 'zzz', null, 'ba'] };
    expect(await taskReward(reversalTask)(batch)).toEqual([1, 0, 1, 1]);
    expect(await taskReward(reversalTask, { mode: 'partial' })(batch)).toEqual([1, 0, 1, 1]);
  });

  it('through scoreRewards, on the examples the data package generates', async () => {
    const examples = reversalTask.generate(3, 6);
    const completions = examples.map((e, i) => (i % 2 === 0 ? e.answer : `${e.answer}x`));
    const scored = await scoreRewards([taskReward(reversalTask)], [1], { prompts: examples.map((e) => e.prompt), completions, completionIds: [], step: 0, answer: examples.map((e) => e.answer) });
    expect([...scored.total]).toEqual([1, 0, 1, 0, 1, 0]);
  });

  it('refuses an unknown mode or a task without verify', async () => {
    expectPosttrainError(await failure(() => taskReward(reversalTask, { mode: 'fuzzy' as never })), 'INVALID_OPTION', 'mode', "'exact' or 'partial'", '"fuzzy"');
    expectPosttrainError(await failure(() => taskReward({ name: 'x' } as never)), 'INVALID_ARGUMENT', 'verifiable task');
  });
});

describe('formatReward', () => {
  it('gives the reward where the pattern matches; a /g or /y pattern gives the same answer every time', async () => {
    const global = /^a+$/g;
    const reward = formatReward(global);
    expect(reward.rewardName).toBe('format');
    const completions = ['aa', 'aa', 'aa', 'ab', 'aaa', 'aaa'];
    expect(await reward({ prompts: [], completions, completionIds: [], step: 0 })).toEqual([1, 1, 1, 0, 1, 1]);
    expect(global.lastIndex, "the caller's regex is untouched").toBe(0);
    expect(await formatReward(/a/y, { reward: 0.5 })({ prompts: [], completions: ['ba', 'ab', 'ab'], completionIds: [], step: 0 })).toEqual([0.5, 0.5, 0.5]);
    expect(await formatReward(/<think>/)({ prompts: [], completions: ['x<think>y', 'nothing'], completionIds: [], step: 0 })).toEqual([1, 0]);
  });

  it('refuses a non-RegExp pattern or a non-finite reward', async () => {
    expectPosttrainError(await failure(() => formatReward('^a$' as never)), 'INVALID_ARGUMENT', 'RegExp', '"^a$"');
    expectPosttrainError(await failure(() => formatReward(/a/, { reward: Number.NaN })), 'INVALID_OPTION', 'reward', 'NaN');
  });
});

describe('overlongPenalty (DAPO eq. 13)', () => {
  const lengths = (ls: number[]) => ({ prompts: [], completions: ls.map(() => ''), completionIds: ls.map((l) => new Array<number>(l).fill(7)), step: 0 });

  it('0 up to L_max − L_cache, then ((L_max − L_cache) − L) / L_cache down to −1 at L_max, and −1 beyond', async () => {
    const penalty = overlongPenalty({ maxCompletionLength: 16, softPunishCache: 4 });
    expect(penalty.rewardName).toBe('overlong_penalty');
    // L = 1, L_max − L_cache − 1, L_max − L_cache, L_max − L_cache + 1, 14, 15, L_max, L_max + 1, 40
    expect(await penalty(lengths([1, 11, 12, 13, 14, 15, 16, 17, 40]))).toEqual([0, 0, 0, -0.25, -0.5, -0.75, -1, -1, -1]);
    // L_cache = L_max: the penalty starts at the first token.
    expect(await overlongPenalty({ maxCompletionLength: 4, softPunishCache: 4 })(lengths([0, 1, 4, 5]))).toEqual([0, -0.25, -1, -1]);
  });

  it('refuses a maxCompletionLength below 1 or a softPunishCache outside [1, maxCompletionLength], naming them', async () => {
    for (const max of [0, 2.5, Number.NaN])
      expectPosttrainError(await failure(() => overlongPenalty({ maxCompletionLength: max, softPunishCache: 1 })), 'INVALID_OPTION', 'maxCompletionLength', 'integer ≥ 1');
    for (const cache of [0, 17, 1.5]) {
      expectPosttrainError(
        await failure(() => overlongPenalty({ maxCompletionLength: 16, softPunishCache: cache })),
        'INVALID_OPTION',
        'softPunishCache',
        '[1, maxCompletionLength = 16]',
        String(cache),
      );
    }
    expectPosttrainError(await failure(() => overlongPenalty(undefined as never)), 'INVALID_OPTION', 'maxCompletionLength');
  });
});

describe('rewardModelReward', () => {
  let before: number;
  beforeAll(async () => {
    await initBackend('cpu');
  });
  beforeEach(() => {
    before = tf.memory().numTensors;
  });
  afterEach(() => {
    expect(tf.memory().numTensors, 'tensors leaked').toBe(before);
  });

  /**
   * A hand-written scalar reward model (policy cannot import @posttrain/reward: reward depends on
   * policy, and turbo refuses the cycle even as a devDependency): its reward is the id of the token
   * before each row's last real token, read from the mask as RewardModel reads it; it records the
   * rows it saw and its mode, and returns hidden states that must be freed.
   */
  function recordingModel() {
    const rows: { ids: number[]; mask: number[] }[] = [];
    const modes: boolean[] = [];
    let training = true;
    const model: ScalarRewardModel = {
      get training() {
        return training;
      },
      train(on = true) {
        training = on;
      },
      eval() {
        training = false;
      },
      forward(inputIds, { attentionMask }) {
        modes.push(training);
        const ids = inputIds.arraySync() as number[][];
        const mask = (attentionMask as tf.Tensor).arraySync() as number[][];
        const rewards = ids.map((row, b) => {
          rows.push({ ids: row, mask: mask[b] });
          const last = mask[b].lastIndexOf(1);
          return row[last - 1];
        });
        return { rewards: tf.tensor1d(rewards), hidden: tf.zeros([ids.length, ids[0].length, 2]) };
      },
    };
    return { model, rows, modes };
  }

  const prompts = ['abc>', 'ab>', 'abcd>', 'a>', 'abc>'];
  const completions = ['cba', 'b', 'dcba', '', 'x'];

  it("encodes prompt + completion, appends EOS, left-pads, scores in eval mode in batches, and reads each row's last real token", async () => {
    const { model, rows, modes } = recordingModel();
    const reward = rewardModelReward(model, tokenizer, { batchSize: 2 });
    expect(reward.rewardName).toBe('reward_model');
    const eos = tokenizer.eosTokenId as number;
    const values = await reward({ prompts, completions, completionIds: [], step: 0 });
    // The token before EOS: the completion's last character, or the prompt's '>' for an empty one.
    expect(values).toEqual(prompts.map((p, i) => (p + completions[i]).charCodeAt(p.length + completions[i].length - 1)));
    expect(rows).toHaveLength(5);
    expect(modes, 'three batches of at most 2 rows, each in eval mode').toEqual([false, false, false]);
    expect(model.training, 'mode restored').toBe(true);
    rows.forEach(({ ids, mask }, i) => {
      const expected = [...tokenizer.encode(prompts[i] + completions[i]), eos];
      const pad = mask.indexOf(1);
      expect(mask, `row ${i} left-padded`).toEqual([...new Array<number>(pad).fill(0), ...new Array<number>(expected.length).fill(1)]);
      expect(ids.slice(pad), `row ${i} ids`).toEqual(expected);
      expect(new Set(ids.slice(0, pad))).toEqual(new Set(pad ? [tokenizer.padTokenId] : []));
    });
    // Batch [abc>cba, ab>b]: the shorter row is padded by 2.
    expect(rows[1].mask.slice(0, 2)).toEqual([0, 0]);
  });

  it('appends nothing for a tokenizer without EOS, and takes the name option', async () => {
    const { model, rows } = recordingModel();
    const noEos = new ByteTokenizer({ eosToken: null });
    const reward = rewardModelReward(model, noEos, { name: 'rm' });
    expect(reward.rewardName).toBe('rm');
    const values = await reward({ prompts: ['ab>'], completions: ['ba'], completionIds: [], step: 0 });
    expect(rows[0].ids).toEqual(noEos.encode('ab>ba'));
    expect(values).toEqual(['b'.charCodeAt(0)]);
  });

  describe('on a tiny transformer scorer', () => {
    let backbone: PretrainedModel;
    let head: tf.Tensor2D;
    beforeAll(() => {
      backbone = tinyModel(9);
      head = tf.randomNormal([32, 1], 0, 1, 'float32', 3) as tf.Tensor2D;
    });
    afterAll(() => {
      head?.dispose();
      backbone?.dispose();
    });

    it('a row scores the same left-padded in a batch as alone (within 1e-5)', async () => {
      // Like RewardModel: a linear head on the hidden state at the last position whose mask is 1.
      const scorer: ScalarRewardModel = {
        get training() {
          return backbone.training;
        },
        train: (on?: boolean) => backbone.train(on),
        eval: () => backbone.eval(),
        forward(inputIds, { attentionMask }) {
          const [b, t] = inputIds.shape as [number, number];
          const mask = (attentionMask as tf.Tensor).arraySync() as number[][];
          const last = tf.tensor1d(
            mask.map((row, i) => i * t + row.lastIndexOf(1)),
            'int32',
          );
          const { logits, hidden } = backbone.forward(inputIds, { attentionMask });
          const pooled = tf.gather(hidden.reshape([b * t, hidden.shape[2] as number]), last);
          const rewards = tf.matMul(pooled, head).reshape([b]);
          return { rewards, hidden, logits, last };
        },
      };
      const batch = { prompts, completions, completionIds: [], step: 0 };
      const together = (await rewardModelReward(scorer, tokenizer)(batch)) as number[];
      const alone = (await rewardModelReward(scorer, tokenizer, { batchSize: 1 })(batch)) as number[];
      for (let i = 0; i < prompts.length; i++) expect(Math.abs(together[i] - alone[i]), `row ${i}: ${together[i]} vs ${alone[i]}`).toBeLessThan(1e-5);
      expect(new Set(together.map((v) => v.toFixed(4))).size, 'the rows score differently').toBeGreaterThan(1);
    });
  });

  it('refuses a model without forward or a bad batchSize', async () => {
    expectPosttrainError(await failure(() => rewardModelReward({} as never, tokenizer)), 'INVALID_ARGUMENT', 'reward model with forward');
    expectPosttrainError(await failure(() => rewardModelReward(recordingModel().model, tokenizer, { batchSize: 0 })), 'INVALID_OPTION', 'batchSize', '0');
  });

  it('a scorer that throws surfaces through scoreRewards as CALLBACK_FAILED naming reward_model, mode restored', async () => {
    const { model } = recordingModel();
    const broken: ScalarRewardModel = {
      get training() {
        return model.training;
      },
      train: (on?: boolean) => model.train(on),
      eval: () => model.eval(),
      forward: () => {
        throw new Error('scorer down');
      },
    };
    const error = await failure(() => scoreRewards([rewardModelReward(broken, tokenizer)], [1], { prompts: ['a>', 'b>'], completions: ['a', 'b'], completionIds: [], step: 0 }));
    expectPosttrainError(error, 'CALLBACK_FAILED', "'reward_model'", 'completion 0', 'scorer down');
    expect(isPosttrainError(error)).toBe(true);
    expect(model.training).toBe(true);
  });
});
