// `posttrain generate` and `posttrain eval`: completions, and the measures of @posttrain/eval on one model.
import { join } from 'node:path';
import { tf, type CausalLM } from '@posttrain/tensor-core';
import { applyChatTemplate, generateSplit, type Tokenizer } from '@posttrain/data';
import { generate, inProcessGenerator, padTokenIdOf, type GenerateOptions } from '@posttrain/policy';
import { calibration, exactMatch, ifevalAccuracy, recordsPerplexity, rewardWinRate, samplePassAtK, selfConsistency, type IfevalRecord } from '@posttrain/eval';
import { loadRewardModelDir, taskNames, taskOf, type Command, type CommandContext } from './command.js';
import { loadPolicy, prepareOutputDir, readRecordsFile, writeFileAtomic } from './io.js';
import { UsageError } from './options.js';
import { adapterSpec, ioSpecs } from './specs.js';

/** One prompt's completion by `generate` (KV cache), stopped at EOS, which is dropped. */
async function complete(model: CausalLM, tokenizer: Tokenizer, prompt: string, options: Partial<GenerateOptions>): Promise<string> {
  const ids = tf.tensor2d([tokenizer.encode(prompt)], undefined, 'int32');
  try {
    const eos = tokenizer.eosTokenId;
    const r = await generate(model, ids, { ...options, stopTokenIds: eos === null ? [] : [eos], padTokenId: padTokenIdOf(tokenizer) });
    return tokenizer.decode(r.finishReasons[0] === 'stop' ? r.tokens[0].slice(0, -1) : r.tokens[0]);
  } finally {
    ids.dispose();
  }
}

export const generateCommand: Command = {
  name: 'generate',
  summary: 'complete prompts with a model (KV cache; greedy or sampled)',
  specs: [
    ...ioSpecs('generate', { output: false }),
    adapterSpec('a LoRA adapter to put on --model'),
    { name: 'prompt', type: 'strings', required: true, description: 'a prompt (repeat the flag for several)', group: 'generation' },
    { name: 'maxNewTokens', type: 'integer', default: 32, description: 'new tokens at most', group: 'generation' },
    { name: 'temperature', type: 'number', default: 0, description: '0: greedy; > 0: sampling', group: 'generation' },
    { name: 'topK', type: 'integer', default: 0, description: 'sample among the k most likely (0: all)', group: 'generation' },
    { name: 'topP', type: 'number', default: 1, description: 'nucleus sampling mass', group: 'generation' },
    { name: 'seed', type: 'integer', default: 0, description: 'sampling seed', group: 'generation' },
  ],
  async run(values, context) {
    const { model, tokenizer } = await loadPolicy(values.model as string, (values.adapter as string | null) ?? undefined);
    model.eval();
    const completions: { prompt: string; completion: string }[] = [];
    const temperature = values.temperature as number;
    for (const prompt of values.prompt as string[]) {
      const completion = await complete(model, tokenizer, prompt, {
        maxNewTokens: values.maxNewTokens as number,
        greedy: temperature === 0,
        temperature: temperature === 0 ? 1 : temperature,
        topK: values.topK as number,
        topP: values.topP as number,
        seed: values.seed as number,
      });
      completions.push({ prompt, completion });
      context.print(`${prompt}${completion}`);
    }
    context.sections.push({ title: 'Completions', charts: [], tables: [], samples: completions });
    return { command: 'generate', completions };
  },
};

export const evalCommand: Command = {
  name: 'eval',
  summary: 'evaluate a model: perplexity, exact match, pass@k, self-consistency, calibration, IFEval checks, reward-model win rate',
  specs: [
    ...ioSpecs('eval'),
    adapterSpec('a LoRA adapter to put on --model'),
    { name: 'dataset', type: 'string?', description: 'JSONL text or prompt-completion records: token-weighted perplexity', group: 'measures' },
    { name: 'task', type: 'string?', choices: taskNames, description: 'a built-in verifiable task: exact match and calibration on its held-out prompts', group: 'measures' },
    { name: 'evalExamples', type: 'integer', default: 200, description: 'held-out prompts of --task', group: 'measures' },
    { name: 'taskSeed', type: 'integer', default: 0, description: 'seed of the task split (the same as training keeps held-out prompts unseen)', group: 'measures' },
    { name: 'maxNewTokens', type: 'integer', default: 16, description: 'new tokens per answer', group: 'measures' },
    { name: 'passK', type: 'integer', default: 0, description: 'samples per prompt for pass@1..k (0: skip)', group: 'measures' },
    { name: 'selfConsistency', type: 'integer', default: 0, description: 'samples per prompt for the majority vote (0: skip)', group: 'measures' },
    { name: 'ifeval', type: 'string?', description: "JSONL in IFEval's input format: the model's greedy responses are checked", group: 'measures' },
    { name: 'rewardModel', type: 'string?', description: 'reward model for the win rate against --compare', group: 'measures' },
    { name: 'compare', type: 'string?', description: 'a second model directory: win rate of --model against it on --task prompts', group: 'measures' },
  ],
  async run(values, context) {
    const out = prepareOutputDir(values.outputDir as string, values.overwrite as boolean);
    const { model, tokenizer } = await loadPolicy(values.model as string, (values.adapter as string | null) ?? undefined);
    const results = await evaluate(model, tokenizer, values, context);
    writeFileAtomic(join(out, 'eval.json'), `${JSON.stringify(results, null, 2)}\n`);
    return { command: 'eval', ...results };
  },
};

/** The measures of `posttrain eval` on one model, printed as a table and added to the report. */
export async function evaluate(model: CausalLM, tokenizer: Tokenizer, values: Record<string, unknown>, context: CommandContext): Promise<Record<string, number>> {
  const rows: [string, number][] = [];
  const samples: { prompt: string; completion: string; note?: string }[] = [];
  if (values.dataset) {
    const records = await readRecordsFile('--dataset', values.dataset as string);
    // Conversational records are rendered with the tokenizer's chat template.
    const r = await recordsPerplexity(model, tokenizer, records as never, { chat: (messages, o) => applyChatTemplate(tokenizer, messages, o) });
    rows.push(['perplexity', r.perplexity], ['nll', r.nll]);
  }
  const task = taskOf(values);
  if (task) {
    const { test } = generateSplit(task, values.taskSeed as number, { train: 0, test: values.evalExamples as number } as never);
    const maxNewTokens = values.maxNewTokens as number;
    const c = await calibration(model, tokenizer, task, test, { maxNewTokens });
    rows.push(['exact_match', c.accuracy], ['ece', c.ece], ['mean_confidence', c.confidence]);
    const em = await exactMatch(model, tokenizer, task, test.slice(0, 4), { maxNewTokens });
    samples.push(...em.samples.map((s) => ({ prompt: s.prompt, completion: s.completion, note: s.correct ? 'correct' : 'wrong' })));
    const passK = values.passK as number;
    if (passK > 0) {
      const generator = inProcessGenerator(model, tokenizer, { temperature: 1 });
      const ks = [1, passK].filter((k, i, a) => a.indexOf(k) === i);
      const p = await samplePassAtK(generator, tokenizer, task, test, { n: passK, ks, maxTokens: maxNewTokens });
      for (const k of ks) rows.push([`pass@${k}`, p.passAtK[k]]);
    }
    const sc = values.selfConsistency as number;
    if (sc > 0) {
      const r = await selfConsistency(inProcessGenerator(model, tokenizer, { temperature: 1 }), tokenizer, task, test, { n: sc, maxTokens: maxNewTokens });
      rows.push([`self_consistency@${sc}`, r.accuracy], ['sample_accuracy', r.sampleAccuracy]);
    }
    if (values.compare) {
      if (!values.rewardModel) throw new UsageError('--compare: needs --reward-model (the judge of the win rate)');
      const { model: other } = await loadPolicy(values.compare as string, undefined, '--compare');
      const mine = (await exactMatch(model, tokenizer, task, test, { maxNewTokens })).samples.map((s) => s.completion);
      const theirs = (await exactMatch(other, tokenizer, task, test, { maxNewTokens })).samples.map((s) => s.completion);
      const rm = await loadRewardModelDir(values.rewardModel as string, model);
      const w = await rewardWinRate(
        rm,
        tokenizer,
        test.map((e) => e.prompt),
        mine,
        theirs,
      );
      rows.push(['win_rate', w.winRate]);
    }
  }
  if (values.ifeval) {
    const records = (await readRecordsFile('--ifeval', values.ifeval as string, 'any' as never)) as unknown as IfevalRecord[];
    model.eval();
    const responses: string[] = [];
    for (const r of records) responses.push(await complete(model, tokenizer, r.prompt, { greedy: true, maxNewTokens: values.maxNewTokens as number }));
    const r = ifevalAccuracy(records, responses);
    rows.push(['ifeval_prompt_level', r.promptLevelAccuracy], ['ifeval_instruction_level', r.instructionLevelAccuracy]);
  }
  if (rows.length === 0) throw new UsageError('eval: nothing to measure', 'give --dataset (perplexity), --task (exact match, calibration, pass@k, self-consistency) or --ifeval');
  for (const [name, value] of rows) context.print(`${name.padEnd(28)} ${value.toFixed(4)}`);
  context.sections.push({ title: 'Evaluation', charts: [], tables: [{ title: 'Held-out measures', columns: ['measure', 'value'], rows }], samples });
  return Object.fromEntries(rows);
}
