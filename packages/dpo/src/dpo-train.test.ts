import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, tf } from '@posttrain/tensor-core';
import { dpoSigmoidLoss, ewcPenalty, ipoLoss } from '@posttrain/losses';
import { dpoObjective, dpoTrain, defaultDpoOptions, ktoTrain, orpoObjective, simpoObjective, type DpoTrainOptions } from './index.js';
import { rejected, reversalPairs, reversalUnpaired, tinyModel, tokenizer } from './testing/fixtures.js';

const TRL_METRICS = ['rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'logits/chosen', 'logits/rejected'];
const pairs = reversalPairs(0, 64);
const heldOut = reversalPairs(1, 16);
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const series = (history: Record<string, unknown>[], key: string) => history.map((r) => Number(r[key]));

describe('dpoTrain', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  // A random tiny model learns little through LoRA; the learning tests fine-tune it fully (the LoRA
  // learning proof is examples/dpo's, from an SFT checkpoint).
  it("logs TRL's metric names every step and on eval (prefixed eval_), counts pairs (pairs, pairs_per_second), and learns the pairs with no tensor leak between steps", async () => {
    const model = tinyModel();
    const counts: number[] = [];
    const result = await dpoTrain({
      model,
      tokenizer,
      train: pairs.slice(0, 16),
      eval: heldOut,
      evalEvery: 20,
      lr: 1e-2,
      schedule: 'constant',
      batchSize: 8,
      maxSteps: 40,
      progress: 'none',
      callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
    });
    expect(result).toMatchObject({ objective: 'dpoSigmoidLoss', reference: 'policy before training, precomputed', steps: 40 });
    for (const record of result.history) {
      expect(
        Object.keys(record)
          .filter((k) => k.includes('/'))
          .sort(),
      ).toEqual([...TRL_METRICS].sort());
      expect(record.pairs).toBe(8);
      expect(record.tokens).toBeUndefined();
      expect(record.pairs_per_second).toBeGreaterThan(0);
    }
    expect(result.evals.map((r) => r.step)).toEqual([20, 40]);
    for (const record of result.evals)
      expect(
        Object.keys(record)
          .filter((k) => k.startsWith('eval_'))
          .sort(),
      ).toEqual(['eval_loss', ...TRL_METRICS.map((k) => `eval_${k}`)].sort());
    const [first] = result.history;
    expect(first.loss).toBeCloseTo(Math.log(2), 6); // the policy starts equal to its reference: every margin is 0
    expect(first['rewards/accuracies']).toBe(0);
    expect(first['rewards/margins']).toBe(0);
    const last5 = result.history.slice(-5);
    expect(mean(series(last5, 'loss'))).toBeLessThan(0.2); // from ln 2 = 0.693
    expect(mean(series(last5, 'rewards/accuracies'))).toBeGreaterThanOrEqual(0.9);
    expect(mean(series(last5, 'rewards/margins'))).toBeGreaterThan(2);
    for (const r of result.history) expect(Number(r['rewards/margins'])).toBeCloseTo(Number(r['rewards/chosen']) - Number(r['rewards/rejected']), 5);
    expect(new Set(counts.slice(1)).size).toBe(1);
    model.dispose();
  });

  it('gives the same losses and metrics with a frozen copy, the adapters disabled, and precomputed log-probs (within 1e-5)', async () => {
    const options = { tokenizer, train: pairs.slice(0, 24), lora: { r: 4, alpha: 8, seed: 3 }, lr: 1e-2, batchSize: 8, maxSteps: 3, progress: 'none' as const, seed: 2 };
    const run = async (reference: DpoTrainOptions['reference'] | 'copy' | 'copy-precomputed') => {
      const model = tinyModel(5);
      const copy = reference === 'copy' || reference === 'copy-precomputed' ? tinyModel(5) : undefined;
      const ref = copy ? { model: copy, precompute: reference === 'copy-precomputed' } : (reference as DpoTrainOptions['reference']);
      const result = await dpoTrain({ ...options, model, reference: ref });
      model.dispose();
      copy?.dispose();
      return result;
    };
    const copy = await run('copy');
    const disabled = await run('adapters-disabled');
    const precomputed = await run('precomputed');
    const copyPrecomputed = await run('copy-precomputed');
    expect([copy.reference, disabled.reference, precomputed.reference, copyPrecomputed.reference]).toEqual([
      'frozen copy',
      'adapters disabled',
      'adapters disabled, precomputed',
      'frozen copy, precomputed',
    ]);
    expect(precomputed.precomputeSeconds).toBeGreaterThan(0);
    expect(copy.history[0].loss).toBeCloseTo(Math.log(2), 6);
    expect(copy.history[2]['rewards/margins']).not.toBe(0); // by step 3 the policy has moved: the comparison means something
    for (const other of [disabled, precomputed, copyPrecomputed]) {
      other.history.forEach((record, i) => {
        for (const key of ['loss', ...TRL_METRICS]) expect(Math.abs(Number(record[key]) - Number(copy.history[i][key])), `${key} at step ${i + 1}`).toBeLessThan(1e-5);
      });
    }
  });

  it("defaults to 'precomputed' by the policy before training without LoRA, and trains every parameter", async () => {
    const model = tinyModel(6);
    const result = await dpoTrain({ model, tokenizer, train: pairs.slice(0, 16), lr: 1e-3, batchSize: 8, maxSteps: 2, progress: 'none' });
    expect(result.reference).toBe('policy before training, precomputed');
    expect(result.lora).toBeUndefined();
    expect(result.history[0].loss).toBeCloseTo(Math.log(2), 6);
    expect(Number(result.history[1]['rewards/margins'])).not.toBe(0);
    model.dispose();
  });

  it('runs SimPO and ORPO through the same trainer without a reference, lowering their loss', async () => {
    for (const [loss, lr, extra] of [
      [simpoObjective({ beta: 2, gamma: 0.5 }), 3e-3, []],
      [orpoObjective({ beta: 0.1 }), 1e-2, ['log_odds_chosen', 'log_odds_ratio', 'nll_loss']],
    ] as const) {
      const model = tinyModel();
      const counts: number[] = [];
      const result = await dpoTrain({
        model,
        tokenizer,
        train: pairs.slice(0, 16),
        loss,
        lr,
        schedule: 'constant',
        batchSize: 8,
        maxSteps: 40,
        progress: 'none',
        callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
      });
      expect(result).toMatchObject({ objective: loss.name, reference: 'none' });
      expect(
        Object.keys(result.history[0])
          .filter((k) => k.includes('/') || k.includes('_'))
          .sort(),
      ).toEqual([...TRL_METRICS, ...extra, 'grad_norm', 'learning_rate', 'num_tokens', 'pairs_per_second'].sort());
      const before = mean(series(result.history.slice(0, 3), 'loss'));
      const after = mean(series(result.history.slice(-5), 'loss'));
      expect(after, loss.name).toBeLessThan(before * 0.5);
      expect(mean(series(result.history.slice(-5), 'rewards/accuracies')), loss.name).toBeGreaterThanOrEqual(0.8);
      expect(new Set(counts.slice(1)).size).toBe(1);
      model.dispose();
    }
  });

  it('takes any DPO-family loss, with IPO on length-averaged log-probs, and RPO adds the chosen NLL', async () => {
    const model = tinyModel(4);
    const base = { model, tokenizer, train: pairs.slice(0, 16), batchSize: 8, maxSteps: 1, progress: 'none' as const, reference: 'precomputed' as const };
    const ipo = await dpoTrain({ ...base, loss: ipoLoss, beta: 0.5 });
    expect(ipo.objective).toBe('ipoLoss');
    expect(ipo.history[0].loss).toBeCloseTo(1, 5); // (0 − 1/(2β))² at the start
    expect(Number(ipo.history[0]['logps/chosen'])).toBeGreaterThan(-6); // a per-token mean, not a sum of ~5 tokens of ~−5.6 each
    const rpo = await dpoTrain({ ...base, loss: dpoObjective(dpoSigmoidLoss, { rpoAlpha: 2 }) });
    const nll = Number(rpo.history[0].nll_loss);
    expect(nll).toBeGreaterThan(4);
    expect(rpo.history[0].loss).toBeCloseTo(Math.log(2) + 2 * nll, 4);
    model.dispose();
  });

  it('resumes a LoRA run from a checkpoint to the same losses as an uninterrupted run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dpo-resume-'));
    try {
      // 16 pairs in batches of 4: 4 steps an epoch, so steps 4–6 run in the second, reshuffled epoch.
      const options = {
        tokenizer,
        train: pairs.slice(0, 16),
        eval: heldOut.slice(0, 4),
        evalEvery: 2,
        lora: { r: 4, alpha: 8, dropout: 0.1 },
        reference: 'adapters-disabled' as const,
        lr: 1e-2,
        batchSize: 4,
        maxSteps: 6,
        progress: 'none' as const,
        seed: 5,
      };
      const whole = tinyModel(7);
      const uninterrupted = await dpoTrain({ ...options, model: whole });
      const first = tinyModel(7);
      const stop = new AbortController();
      const cut = await dpoTrain({ ...options, model: first, checkpointDir: dir, signal: stop.signal, callbacks: { onStep: (r) => void (r.step === 3 && stop.abort()) } });
      expect(cut.steps).toBe(3);
      const second = tinyModel(7);
      const resumed = await dpoTrain({ ...options, model: second, resumeFrom: dir });
      expect(resumed.history.map((r) => r.step)).toEqual([4, 5, 6]);
      resumed.history.forEach((r, i) => {
        expect(Math.abs(r.loss! - uninterrupted.history[3 + i].loss!)).toBeLessThan(1e-6);
        expect(Math.abs(Number(r['rewards/margins']) - Number(uninterrupted.history[3 + i]['rewards/margins']))).toBeLessThan(1e-6);
      });
      expect(Math.abs(Number(resumed.evals.at(-1)!['eval_loss']) - Number(uninterrupted.evals.at(-1)!['eval_loss']))).toBeLessThan(1e-6);
      for (const model of [whole, first, second]) model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("writes TRL's keys to logFile, eval_-prefixed on evaluation, and cuts prompts on the left and completions on the right", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dpo-log-'));
    try {
      const logFile = join(dir, 'metrics.jsonl');
      const model = tinyModel();
      const options = { tokenizer, train: pairs.slice(0, 8), eval: heldOut.slice(0, 4), lr: 1e-2, batchSize: 4, maxSteps: 2, progress: 'none' as const };
      const full = await dpoTrain({ ...options, model, logFile });
      const lines = (await readFile(logFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const trainKeys = ['kind', 'step', 'epoch', 'elapsed', 'loss', 'grad_norm', 'learning_rate', 'num_tokens', 'pairs', 'pairs_per_second', ...TRL_METRICS];
      for (const line of lines.filter((l) => l.kind === 'train')) expect(Object.keys(line).sort()).toEqual([...trainKeys].sort());
      const evals = lines.filter((l) => l.kind === 'eval');
      expect(evals).toHaveLength(1);
      expect(Object.keys(evals[0]).sort()).toEqual(['kind', 'step', 'epoch', 'elapsed', 'eval_loss', ...TRL_METRICS.map((k) => `eval_${k}`)].sort());
      expect(lines.filter((l) => l.kind === 'train').map((l) => l.epoch)).toEqual([0.5, 1]);
      // num_tokens: the non-padding tokens of both sides of every pair, a running total.
      const [a, b] = lines.filter((l) => l.kind === 'train').map((l) => l.num_tokens);
      expect(b).toBeGreaterThan(a);
      // One prompt token and one completion token per side: 2 × 2 tokens a pair.
      const cut = await dpoTrain({ ...options, model: tinyModel(), eval: undefined, maxPromptLength: 1, maxCompletionLength: 1 });
      expect(cut.history.map((r) => r.num_tokens)).toEqual([16, 32]);
      expect(full.history[1].num_tokens).toBeGreaterThan(32);
      model.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad options and records by name, before touching the model', async () => {
    const model = tinyModel();
    const other = tinyModel();
    const base: DpoTrainOptions = { model, tokenizer, train: pairs.slice(0, 8), progress: 'none' };
    const message = async (options: Partial<DpoTrainOptions>) => (await rejected(dpoTrain({ ...base, ...options } as DpoTrainOptions))).message;
    expect(await message({ lr: -1 })).toBe('dpoTrain: expected lr to be a number ≥ 0; got -1');
    expect(await message({ beta: 0 })).toBe('dpoTrain: expected beta to be a number > 0; got 0');
    expect(await message({ batchSize: 1.5 })).toBe('dpoTrain: expected batchSize to be an integer ≥ 1; got 1.5');
    expect(await message({ learningRate: 1e-3 } as never)).toMatch(/^dpoTrain: unknown option "learningRate"; known options are model, tokenizer, train, .*\breference\b/);
    expect(await message({ train: [] })).toMatch(/^dpoTrain: expected train to be a non-empty array of records; got an empty array/);
    expect(await message({ eval: 'pairs' as never })).toBe('dpoTrain: expected eval to be an array of { prompt, chosen, rejected } records; got string');
    expect(await message({ train: [pairs[0], { prompt: 'ab>', chosen: 'ba' } as never] })).toBe('dpoTrain: train record 1: expected { prompt, chosen, rejected }; got keys [prompt, chosen]');
    expect(await message({ maxCompletionLength: 0 })).toBe('dpoTrain: expected maxCompletionLength to be an integer ≥ 1; got 0');
    const chat = { prompt: [{ role: 'user', content: 'ab>' }], chosen: [{ role: 'assistant', content: 'ba' }], rejected: [{ role: 'assistant', content: 'ab' }] };
    expect(await message({ eval: [chat] as never })).toMatch(
      /^dpoTrain: eval record 0: expected prompt, chosen, rejected to be strings; got message lists for prompt and chosen and rejected \(a conversational record\)\nhelp: conversational records are not supported: render each conversation to a string first \(applyChatTemplate from @posttrain\/data\)$/,
    );
    expect(await message({ reference: 'adapters-disabled' })).toMatch(/^dpoTrain: expected a model with LoRA adapters for reference 'adapters-disabled'; got a model without LoRA layers\nhelp: /);
    expect(await message({ reference: 'frozen' as never })).toMatch(/^dpoTrain: expected reference to be \{ model: frozenCopy \}, 'adapters-disabled' or 'precomputed'; got "frozen"/);
    expect(await message({ reference: { model } })).toMatch(/^dpoTrain: expected reference.model to be a separate frozen copy; got the policy itself/);
    expect(await message({ reference: { model: other, precompute: 'yes' } as never })).toBe('dpoTrain: expected reference.precompute to be true or false; got "yes"');
    expect(await message({ reference: { model: other, cache: true } as never })).toBe('dpoTrain: unknown key "cache" in reference; known keys are model, precompute');
    expect(await message({ loss: simpoObjective(), reference: 'precomputed' })).toMatch(/^dpoTrain: expected no reference for simpoLoss, which is reference-free; got "precomputed"/);
    expect(await message({ loss: dpoObjective(ipoLoss, { beta: 0.5 }), beta: 0.2 })).toMatch(/^dpoTrain: expected beta once; got beta 0.2 and an objective \(ipoLoss\) with β 0.5\nhelp: /);
    expect(await message({ loss: 'sigmoid' as never })).toMatch(/^dpoTrain: expected loss to be a preference loss function or an objective; got string/);
    const error = await rejected(dpoTrain({ ...base, lora: { r: 4 }, logEvery: 0 }));
    expect(isPosttrainError(error) && error.code).toBe('INVALID_OPTION');
    expect(model.trainableParameters().size).toBe(model.namedParameters().size); // nothing was wrapped or frozen
    expect(defaultDpoOptions).toMatchObject({ beta: 0.1, lr: 1e-6, schedule: 'linear', maxGradNorm: 1, lora: false, loss: undefined, reference: undefined });
    expect(Object.isFrozen(defaultDpoOptions)).toBe(true);
    model.dispose();
    other.dispose();
  });
});

describe('dpoTrain and ktoTrain with ewc', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  /** A Fisher over a few of the model's weights (the rest unpenalised): `scale` times their squared start values plus 1. */
  const fisherOf = (model: ReturnType<typeof tinyModel>, scale = 1) =>
    new Map([...model.trainableParameters()].filter(([key]) => key.includes('mlp') || key.includes('embed')).map(([key, p]) => [key, tf.tidy(() => tf.add(tf.mul(tf.square(p), scale), 1))] as const));

  it("adds (λ/2)·Σ F·(θ − θ*)² to the step's loss (logged as ewc_penalty) in dpoTrain and ktoTrain", async () => {
    for (const trainer of ['dpo', 'kto'] as const) {
      const run = async (ewc: boolean) => {
        const model = tinyModel(2);
        const fisher = fisherOf(model);
        const anchors = new Map([...fisher.keys()].map((key) => [key, tf.tidy(() => tf.mul(model.trainableParameters().get(key)!, 0.5))]));
        const expected = ewcPenalty(new Map([...model.trainableParameters()].filter(([key]) => fisher.has(key))), anchors, fisher, { lambda: 0.3 }).loss;
        const penalty = expected.dataSync()[0];
        const options = { model, tokenizer, batchSize: 8, maxSteps: 1, progress: 'none' as const, ...(ewc ? { ewc: { lambda: 0.3, fisher, anchors } } : {}) };
        const result = trainer === 'dpo' ? await dpoTrain({ ...options, train: pairs.slice(0, 8) }) : await ktoTrain({ ...options, train: reversalUnpaired(0, 4) });
        tf.dispose([expected, ...fisher.values(), ...anchors.values()]);
        model.dispose();
        return { penalty, record: result.history[0] };
      };
      const plain = await run(false);
      const held = await run(true);
      expect(held.penalty, trainer).toBeGreaterThan(0.01);
      expect(held.record.ewc_penalty, trainer).toBeCloseTo(held.penalty, 5);
      expect(held.record.loss, trainer).toBeCloseTo(plain.record.loss! + held.penalty, 5);
      expect(plain.record.ewc_penalty, trainer).toBeUndefined();
    }
  });

  it('holds the weights the Fisher marks near where training started, with no tensor left behind', async () => {
    const run = async (lambda: number | undefined) => {
      const model = tinyModel(3);
      const fisher = fisherOf(model, 0);
      const start = new Map([...fisher.keys()].map((key) => [key, tf.clone(model.trainableParameters().get(key)!)]));
      const before = tf.memory().numTensors;
      const counts: number[] = [];
      await dpoTrain({
        model,
        tokenizer,
        train: pairs.slice(0, 16),
        lr: 1e-2,
        batchSize: 8,
        maxSteps: 20,
        progress: 'none',
        ...(lambda === undefined ? {} : { ewc: { lambda, fisher } }),
        callbacks: { onStep: () => void counts.push(tf.memory().numTensors) },
      });
      expect(new Set(counts).size).toBe(1);
      expect(tf.memory().numTensors).toBe(before); // the cloned anchors are freed
      const moved = tf.tidy(() => tf.addN([...start].map(([key, s]) => tf.sum(tf.square(tf.sub(model.trainableParameters().get(key)!, s))))).dataSync()[0]);
      tf.dispose([...fisher.values(), ...start.values()]);
      model.dispose();
      return moved;
    };
    const plain = await run(undefined);
    const held = await run(100);
    expect(plain).toBeGreaterThan(1e-2);
    expect(held).toBeLessThan(plain / 10);
  });

  it('rejects a bad ewc option by name, with the fix, before any step', async () => {
    const model = tinyModel();
    const fisher = fisherOf(model);
    const steps: number[] = [];
    const message = async (ewc: unknown, extra: Partial<DpoTrainOptions> = {}) => {
      const error = await rejected(
        dpoTrain({ model, tokenizer, train: pairs.slice(0, 8), maxSteps: 1, progress: 'none', ewc: ewc as never, callbacks: { onStep: (r) => void steps.push(r.step) }, ...extra }),
      );
      expect(isPosttrainError(error) && error.code).toBe('INVALID_OPTION');
      return error.message;
    };
    const key = 'model.layers.0.mlp.up_proj.weight';
    expect(await message('strong')).toMatch(/^dpoTrain: expected ewc to be \{ lambda, fisher, anchors\? \}; got "strong"\nhelp: /);
    expect(await message({ lambda: -1, fisher })).toBe('dpoTrain: expected ewc.lambda to be a number ≥ 0; got -1');
    expect(await message({ lambda: 1, fisher: new Map() })).toMatch(/^dpoTrain: expected ewc.fisher to be a non-empty Map of parameter name → tensor; got an empty Map\nhelp: estimate it/);
    expect(await message({ lambda: 1, fisher: new Map([['lm_head.bias', tf.ones([2])]]) })).toMatch(
      /^dpoTrain: expected every key of ewc.fisher to name a parameter of the model; got 1 that do not: "lm_head.bias"/,
    );
    expect(await message({ lambda: 1, fisher: new Map([[key, tf.ones([2, 2])]]) })).toBe(`dpoTrain: expected ewc.fisher "${key}" to be a tensor of the parameter's shape [64, 32]; got [2, 2]`);
    expect(await message({ lambda: 1, fisher, anchors: new Map() })).toMatch(/^dpoTrain: expected ewc.anchors to hold "model.embed_tokens.weight" with the parameter's shape \[260, 32\]; got none/);
    expect(await message({ lambda: 1, fisher, strength: 2 })).toMatch(/^dpoTrain: ewc: unknown option "strength"; known options are lambda, fisher, anchors/);
    expect(await message({ lambda: 1, fisher }, { lora: { r: 2 } })).toMatch(/^dpoTrain: expected ewc with full fine-tuning \(lora: false\); got lora \{"r":2\}/);
    const kto = await rejected(ktoTrain({ model, tokenizer, train: reversalUnpaired(0, 2), lora: { r: 2 }, ewc: { lambda: 1, fisher }, progress: 'none' }));
    expect(kto.message).toMatch(/^ktoTrain: expected ewc with full fine-tuning \(lora: false\)/);
    expect(steps).toEqual([]);
    expect(model.trainableParameters().size).toBe(model.namedParameters().size); // nothing wrapped or frozen
    tf.dispose([...fisher.values()]);
    model.dispose();
  });
});
