import { describe, expect, it } from 'vitest';
import { reversalTask } from '@posttrain/data';
import {
  collectRollout,
  completionRows,
  namedReward,
  rolloutExamples,
  rolloutMetrics,
  rolloutSchedule,
  taskReward,
  type Completion,
  type GenerationRequest,
  type Generator,
  type RewardBatch,
  type Rollout,
  type RolloutHooks,
} from './index.js';
import { expectPosttrainError, failure } from './testing/helpers.js';
import { tokenizer } from './testing/tiny.js';

// Rollouts: what collectRollout hands the reward functions and returns, the checks on a generator's
// answer, the training examples, TRL's metrics by hand, the completion table, and the seekable
// schedule (epochs, seeds, resume, disposal).

const eos = tokenizer.eosTokenId as number;
const stopped = (text: string): Completion => {
  const ids = [...tokenizer.encode(text), eos];
  return { ids, logprobs: ids.map((_, i) => -0.1 * (i + 1)), finishReason: 'stop' };
};
const cut = (text: string): Completion => {
  const ids = tokenizer.encode(text);
  return { ids, logprobs: ids.map(() => -1), finishReason: 'length' };
};

/** A generator that answers from a script: completions[p][j] for prompt p, and records each request. */
function scripted(completions: Completion[][], name = 'scripted'): Generator & { requests: GenerationRequest[] } {
  const requests: GenerationRequest[] = [];
  return {
    name,
    requests,
    generate: async (request) => {
      requests.push(request);
      return completions.map((group) => group.map((c) => (c ? { ...c, ids: [...c.ids], logprobs: [...c.logprobs] } : c)));
    },
  };
}

const records = [
  { prompt: 'ab>', answer: 'ba', level: 1 },
  { prompt: 'abc>', answer: 'cba', source: 'x' },
];
const promptIds = records.map((r) => tokenizer.encode(r.prompt));
const script = [
  [stopped('ba'), stopped('ab'), cut('bab')],
  [stopped('cba'), cut('cbaa'), stopped('')],
];

describe('collectRollout', () => {
  it('asks the generator for n per prompt, drops the stop token from the texts, and passes every column repeated n times with the step', async () => {
    const generator = scripted(script);
    const batches: RewardBatch[] = [];
    const spy = namedReward('spy', (batch) => {
      batches.push(batch);
      return batch.completions.map((c) => c.length);
    });
    const rollout = await collectRollout({
      generator,
      tokenizer,
      records,
      promptIds,
      n: 3,
      maxTokens: 5,
      seed: 11,
      rewardFunctions: [spy, taskReward(reversalTask)],
      rewardWeights: [0.5, 2],
      step: 7,
    });
    expect(generator.requests).toEqual([{ prompts: ['ab>', 'abc>'], promptIds, n: 3, maxTokens: 5, seed: 11 }]);
    expect(rollout.texts).toEqual(['ba', 'ab', 'bab', 'cba', 'cbaa', '']);
    expect(rollout.completions.map((c) => c.ids)).toEqual(script.flat().map((c) => c.ids));
    expect(rollout).toMatchObject({ records, promptIds, n: 3 });
    const [batch] = batches;
    expect(batch.prompts).toEqual(['ab>', 'ab>', 'ab>', 'abc>', 'abc>', 'abc>']);
    expect(batch.completions).toEqual(rollout.texts);
    expect(batch.completionIds, 'the stop token kept in the ids').toEqual(script.flat().map((c) => c.ids));
    expect(batch.completionIds[0].at(-1)).toBe(eos);
    expect(batch.step).toBe(7);
    expect(batch.answer).toEqual(['ba', 'ba', 'ba', 'cba', 'cba', 'cba']);
    expect(batch.level).toEqual([1, 1, 1, undefined, undefined, undefined]);
    expect(batch.source).toEqual([undefined, undefined, undefined, 'x', 'x', 'x']);
    expect(rollout.rewards.names).toEqual(['spy', 'reversal_exact_match']);
    expect([...rollout.rewards.perFunction[1]]).toEqual([1, 0, 0, 1, 0, 0]);
    expect([...rollout.rewards.total]).toEqual([0.5 * 2 + 2, 0.5 * 2, 0.5 * 3, 0.5 * 3 + 2, 0.5 * 4, 0]);
  });

  it('weights default to 1 each', async () => {
    const rollout = await collectRollout({
      generator: scripted(script),
      tokenizer,
      records,
      promptIds,
      n: 3,
      maxTokens: 5,
      seed: 0,
      rewardFunctions: [taskReward(reversalTask), namedReward('one', (b) => b.completions.map(() => 1))],
      step: 0,
    });
    expect([...rollout.rewards.total]).toEqual([2, 1, 1, 2, 1, 1]);
  });

  it('refuses a generator answer of the wrong count or with ids and log-probs that do not match, naming the generator', async () => {
    const options = { tokenizer, records, promptIds, n: 3, maxTokens: 5, seed: 0, rewardFunctions: [taskReward(reversalTask)], step: 0 };
    const check = async (completions: Completion[][], ...parts: string[]) =>
      expectPosttrainError(await failure(() => collectRollout({ ...options, generator: scripted(completions, 'remote-vllm') })), 'INVALID_ARGUMENT', "generator 'remote-vllm'", ...parts);
    await check([script[0]], 'expected 2 lists of 3 completions', 'lengths [3]');
    await check([script[0], script[1].slice(0, 2)], 'expected 2 lists of 3 completions', 'lengths [3, 2]');
    const [a, b, c] = script[1];
    await check([script[0], [a, { ...b, logprobs: b.logprobs.slice(1) }, c]], 'completion 4', '1 to 5 ids and one log-prob per id', '4 ids and 3 log-probs');
    await check([script[0], [a, b, { ids: [], logprobs: [], finishReason: 'length' }]], 'completion 5', '0 ids');
    await check([[cut('abcdef'), ...script[0].slice(1)], script[1]], 'completion 0', '6 ids');
    await check([script[0], [a, b, null as never]], 'completion 5', 'null');
    expectPosttrainError(await failure(() => collectRollout({ ...options, generator: { name: 'broken', generate: async () => 'nope' as never } })), 'INVALID_ARGUMENT', "generator 'broken'", '"nope"');
  });
});

describe('rolloutExamples', () => {
  it('prompt ids then completion ids, labels −100 on the prompt, completion i taken from prompt ⌊i / n⌋', async () => {
    const rollout = await collectRollout({ generator: scripted(script), tokenizer, records, promptIds, n: 3, maxTokens: 5, seed: 0, rewardFunctions: [taskReward(reversalTask)], step: 0 });
    const [first, fifth] = rolloutExamples(rollout, [0, 4]);
    expect(first).toEqual({ inputIds: [...promptIds[0], ...script[0][0].ids], labels: [-100, -100, -100, ...script[0][0].ids] });
    expect(fifth).toEqual({ inputIds: [...promptIds[1], ...script[1][1].ids], labels: [-100, -100, -100, -100, ...script[1][1].ids] });
    expect(rolloutExamples(rollout, [])).toEqual([]);
  });
});

/** A rollout made by hand: 2 prompts × 3 completions, two reward functions, 'b' applying to two completions. */
function handRollout(): Rollout {
  const nan = Number.NaN;
  const completion = (length: number, finishReason: 'stop' | 'length'): Completion => ({ ids: new Array<number>(length).fill(97), logprobs: new Array<number>(length).fill(-1), finishReason });
  return {
    records: [{ prompt: 'p0' }, { prompt: 'p1' }],
    promptIds: [[1], [2]],
    n: 3,
    completions: [completion(2, 'stop'), completion(4, 'stop'), completion(8, 'length'), completion(3, 'stop'), completion(8, 'length'), completion(8, 'length')],
    texts: ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'],
    rewards: {
      names: ['a', 'b'],
      perFunction: [Float64Array.from([1, 2, 3, 2, 2, 2]), Float64Array.from([nan, 4, nan, 6, nan, nan])],
      total: Float64Array.from([1, 2, 3, 2, 2, 2]),
    },
  };
}

describe('rolloutMetrics', () => {
  it("gives TRL's keys with the values computed by hand", () => {
    const m = rolloutMetrics(handRollout());
    expect(Object.keys(m).sort()).toEqual(
      [
        'reward',
        'reward_std',
        'frac_reward_zero_std',
        'rewards/a/mean',
        'rewards/a/std',
        'rewards/b/mean',
        'rewards/b/std',
        'completions/mean_length',
        'completions/min_length',
        'completions/max_length',
        'completions/clipped_ratio',
        'completions/mean_terminated_length',
        'completions/min_terminated_length',
        'completions/max_terminated_length',
      ].sort(),
    );
    expect(m.reward).toBeCloseTo(12 / 6, 12);
    // Group stds (Bessel): [1, 2, 3] → 1, [2, 2, 2] → 0; their mean is 0.5.
    expect(m.reward_std).toBeCloseTo(0.5, 12);
    expect(m.frac_reward_zero_std).toBe(0.5);
    expect(m['rewards/a/mean']).toBeCloseTo(2, 12);
    expect(m['rewards/a/std']).toBeCloseTo(Math.sqrt(2 / 5), 12); // deviations −1, 0, 1, 0, 0, 0
    // 'b' applies to two completions only (4 and 6): null is left out, not counted as 0.
    expect(m['rewards/b/mean']).toBeCloseTo(5, 12);
    expect(m['rewards/b/std']).toBeCloseTo(Math.SQRT2, 12);
    expect(m['completions/mean_length']).toBeCloseTo(33 / 6, 12);
    expect(m['completions/min_length']).toBe(2);
    expect(m['completions/max_length']).toBe(8);
    expect(m['completions/clipped_ratio']).toBeCloseTo(0.5, 12);
    expect(m['completions/mean_terminated_length']).toBeCloseTo(3, 12);
    expect(m['completions/min_terminated_length']).toBe(2);
    expect(m['completions/max_terminated_length']).toBe(4);
  });

  it('without terminated completions the terminated lengths are 0 and the clipped ratio 1; a function that never applies has mean and std 0', () => {
    const rollout = handRollout();
    rollout.completions = rollout.completions.map((c) => ({ ...c, finishReason: 'length' }));
    rollout.rewards.perFunction[1].fill(Number.NaN);
    const m = rolloutMetrics(rollout);
    expect(m['completions/clipped_ratio']).toBe(1);
    expect([m['completions/mean_terminated_length'], m['completions/min_terminated_length'], m['completions/max_terminated_length']]).toEqual([0, 0, 0]);
    expect([m['rewards/b/mean'], m['rewards/b/std']]).toEqual([0, 0]);
  });
});

describe('completionRows', () => {
  it('one row per completion: step, its prompt, text, total, each reward (null where it did not apply) and extra fields', () => {
    const rows = completionRows(handRollout(), 9, { advantage: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6] });
    expect(rows).toHaveLength(6);
    expect(rows[0]).toEqual({ step: 9, prompt: 'p0', completion: 'c0', reward: 1, a: 1, b: null, advantage: 0.1 });
    expect(rows[3]).toEqual({ step: 9, prompt: 'p1', completion: 'c3', reward: 2, a: 2, b: 6, advantage: 0.4 });
    expect(JSON.parse(JSON.stringify(rows[5]))).toEqual({ step: 9, prompt: 'p1', completion: 'c5', reward: 2, a: 2, b: null, advantage: 0.6 });
  });
});

describe('rolloutSchedule', () => {
  interface State {
    indices: number[];
    seed: number;
    index: number;
  }
  interface Batch {
    rollout: number;
    k: number;
  }
  /** Hooks that record every call. */
  function recorder() {
    const log = { rollouts: [] as State[], disposed: [] as number[], batchesFreed: [] as Batch[] };
    const hooks: RolloutHooks<Batch, State> = {
      rollout: async (indices, seed, index) => {
        const state = { indices, seed, index };
        log.rollouts.push(state);
        return state;
      },
      microBatch: (state, k) => ({ rollout: state.index, k }),
      disposeMicroBatch: (batch) => log.batchesFreed.push(batch),
      dispose: (state) => log.disposed.push(state.index),
    };
    return { log, hooks };
  }
  const shape = { prompts: 10, promptsPerRollout: 3, microBatchesPerRollout: 2, iterations: 2, seed: 5 };
  const drain = async <T>(it: AsyncGenerator<T>) => {
    const out: T[] = [];
    for await (const x of it) out.push(x);
    return out;
  };

  it('an epoch is ⌊prompts / promptsPerRollout⌋ rollouts of distinct prompts, each micro-batch k visited in order for every iteration', async () => {
    const { log, hooks } = recorder();
    const source = rolloutSchedule(shape, hooks);
    expect(source.rolloutsPerEpoch).toBe(3);
    expect(source.batchesPerEpoch).toBe(12);
    const batches = await drain(source.open(0, 0));
    expect(batches).toEqual([0, 1, 2].flatMap((rollout) => [0, 1, 2, 3].map((k) => ({ rollout, k }))));
    expect(log.rollouts.map((r) => r.index)).toEqual([0, 1, 2]);
    const used = log.rollouts.flatMap((r) => r.indices);
    expect(log.rollouts.every((r) => r.indices.length === 3)).toBe(true);
    expect(new Set(used).size, 'no prompt twice in an epoch').toBe(9);
    for (const i of used) expect(i >= 0 && i < 10).toBe(true);
    expect(log.disposed).toEqual([0, 1, 2]);
    expect(log.batchesFreed).toEqual(batches);
  });

  it('epochs are shuffled differently; seeds differ per rollout of the run and are reproducible; another seed changes both', async () => {
    const walk = async (seed: number) => {
      const { log, hooks } = recorder();
      const source = rolloutSchedule({ ...shape, seed }, hooks);
      await drain(source.open(0, 0));
      await drain(source.open(1, 0));
      return log.rollouts;
    };
    const first = await walk(5);
    expect(first.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(new Set(first.map((r) => r.seed)).size, 'one seed per rollout').toBe(6);
    for (const r of first) expect(Number.isInteger(r.seed)).toBe(true);
    expect(
      first.slice(3).map((r) => r.indices),
      'epoch 1 is another order',
    ).not.toEqual(first.slice(0, 3).map((r) => r.indices));
    expect(new Set(first.slice(3).flatMap((r) => r.indices)).size).toBe(9);
    expect(await walk(5)).toEqual(first);
    const other = await walk(6);
    expect(other.map((r) => r.seed)).not.toEqual(first.map((r) => r.seed));
    expect(other.map((r) => r.indices)).not.toEqual(first.map((r) => r.indices));
  });

  it('open(epoch, start) at a rollout boundary resumes with the same prompts and seeds as the uninterrupted walk, without making earlier rollouts', async () => {
    const whole = recorder();
    const source = rolloutSchedule(shape, whole.hooks);
    const uninterrupted = [...(await drain(source.open(0, 0))), ...(await drain(source.open(1, 0)))];
    const resumed = recorder();
    const batches = await drain(rolloutSchedule(shape, resumed.hooks).open(1, 4));
    expect(
      resumed.log.rollouts.map((r) => r.index),
      'only rollouts 4 and 5 are made',
    ).toEqual([4, 5]);
    expect(resumed.log.rollouts).toEqual(whole.log.rollouts.slice(4));
    expect(batches).toEqual(uninterrupted.slice(16));
    expect(await drain(rolloutSchedule(shape, recorder().hooks).open(0, 12)), 'past the last rollout: nothing').toEqual([]);
  });

  it('refuses a start inside a rollout (INVALID_OPTION) before making any rollout', async () => {
    const { log, hooks } = recorder();
    const source = rolloutSchedule(shape, hooks);
    for (const start of [1, 3, 6]) {
      expectPosttrainError(await failure(() => source.open(0, start).next()), 'INVALID_OPTION', 'rollout boundary', 'multiple of 4 micro-batches', `micro-batch ${start}`);
    }
    expect(log.rollouts).toEqual([]);
  });

  it('disposes each rollout once, also when the consumer stops early or a hook throws', async () => {
    const { log, hooks } = recorder();
    const source = rolloutSchedule(shape, hooks);
    let seen = 0;
    for await (const _ of source.open(0, 0)) if (++seen === 6) break; // inside rollout 1
    expect(log.rollouts.map((r) => r.index)).toEqual([0, 1]);
    expect(log.disposed).toEqual([0, 1]);
    expect(log.batchesFreed).toHaveLength(6);
    const it = source.open(1, 0);
    await it.next();
    await it.return(undefined);
    expect(log.disposed).toEqual([0, 1, 3]);
    expect(log.batchesFreed).toHaveLength(7);
    await it.return(undefined);
    expect(log.disposed, 'not twice').toEqual([0, 1, 3]);
    const failing = rolloutSchedule(shape, {
      ...hooks,
      microBatch: (state, k) => {
        if (k === 2) throw new Error('bad micro-batch');
        return { rollout: state.index, k };
      },
    });
    const error = await failure(() => drain(failing.open(0, 0)));
    expect(error.message).toBe('bad micro-batch');
    expect(log.disposed).toEqual([0, 1, 3, 0]);
  });

  it('refuses fewer prompts than one rollout, naming the counts, and a shape or start that is not a count', async () => {
    expectPosttrainError(await failure(() => rolloutSchedule({ ...shape, prompts: 2 }, recorder().hooks)), 'INVALID_OPTION', 'at least 3 prompts', 'got 2');
    expectPosttrainError(await failure(() => rolloutSchedule({ ...shape, prompts: 0 }, recorder().hooks)), 'INVALID_OPTION', 'at least 3 prompts', 'got 0');
    for (const key of ['promptsPerRollout', 'microBatchesPerRollout', 'iterations'] as const) {
      for (const bad of [0, 1.5]) expectPosttrainError(await failure(() => rolloutSchedule({ ...shape, [key]: bad }, recorder().hooks)), 'INVALID_OPTION', key, 'a positive integer', String(bad));
    }
    expectPosttrainError(await failure(() => rolloutSchedule({ ...shape, seed: 0.5 }, recorder().hooks)), 'INVALID_OPTION', 'seed');
    const { log, hooks } = recorder();
    const source = rolloutSchedule(shape, hooks);
    // −4 is a multiple of 4: it must not read as rollout −1 (an empty slice of prompts).
    expectPosttrainError(await failure(() => source.open(0, -4).next()), 'INVALID_OPTION', 'start', 'non-negative integer', '-4');
    expectPosttrainError(await failure(() => source.open(-1, 0).next()), 'INVALID_OPTION', 'epoch', '-1');
    expect(log.rollouts).toEqual([]);
  });
});
