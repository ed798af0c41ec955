// The commands of `posttrain`: each a list of option specs and a run function. Trainers take their
// tunables from flags derived from their `default*Options` (specs.ts); the rest is file handling.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend, tf, type CausalLM } from '@posttrain/tensor-core';
import { applyChatTemplate, generateSplit, verifiableTasks, type DatasetFormat, type Tokenizer, type VerifiableTaskName } from '@posttrain/data';
import { loadModel, saveModel } from '@posttrain/models';
import { loadAdapter, mergeAndUnload } from '@posttrain/lora';
import { generate, inProcessGenerator, padTokenIdOf, rewardModelReward, taskReward, type CalibrationBatch, type GenerateOptions, type PromptRecord, type RewardFunction } from '@posttrain/policy';
import { defaultSftOptions, sftTrain } from '@posttrain/sft';
import { RewardModel, defaultRewardOptions, evaluateRewardModel, loadRewardModel, rewardTrain, saveRewardModel } from '@posttrain/reward';
import { defaultDpoOptions, defaultKtoOptions, defaultOnlineDpoOptions, dpoTrain, ktoTrain, onlineDpoTrain } from '@posttrain/dpo';
import { defaultGrpoOptions, defaultPpoOptions, defaultRlooOptions, grpoTrain, ppoTrain, rlooTrain } from '@posttrain/rl-ppo';
import { defaultDistillOptions, distillTrain } from '@posttrain/distill';
import { defaultQuantizeModelOptions, gptqModel, quantizeModel } from '@posttrain/quantize';
import { defaultPruneModelOptions, pruneModel, sparsityReport } from '@posttrain/prune';
import { calibration, exactMatch, ifevalAccuracy, recordsPerplexity, rewardWinRate, samplePassAtK, selfConsistency, type IfevalRecord } from '@posttrain/eval';
import { checkModelDir, copyTokenizerFiles, loadPolicy, prepareOutputDir, readRecordsFile, savePolicy, writeFileAtomic } from './io.js';
import { UsageError, type OptionSpec } from './options.js';
import { LORA_SPECS, ioSpecs, loraOption, namesIn, pick, tunableSpecs } from './specs.js';
import type { ReportSection } from './report.js';

/** Where a command writes: its printed lines, the trainers' progress, and report sections. */
export interface CommandContext {
  /** One line of the command's own output (stdout). */
  print(line: string): void;
  /** Where trainers draw their progress bar (a terminal) or lines. */
  progress: { write(text: string): unknown; isTTY?: boolean };
  /** Sections the command adds to the HTML report. */
  sections: ReportSection[];
}

/** One `posttrain` command. */
export interface Command {
  name: string;
  summary: string;
  specs: OptionSpec[];
  /** Write the HTML report to `<output-dir>/report.html` when `--report` is not given. */
  reportByDefault?: boolean;
  /** Returns the summary written to `<output-dir>/summary.json` (when the command has one). */
  run(values: Record<string, unknown>, context: CommandContext): Promise<Record<string, unknown>>;
}

const TRAINER = 'trainer options';
const DATA = 'data';
const taskNames = Object.keys(verifiableTasks);

const datasetSpecs = (what: string, required: boolean): OptionSpec[] => [
  { name: 'dataset', type: required ? 'string' : 'string?', required, description: `JSONL file of ${what}`, group: DATA },
  { name: 'evalDataset', type: 'string?', description: 'JSONL file of held-out records (logged as eval_*)', group: DATA },
];
const taskSpecs: OptionSpec[] = [
  { name: 'task', type: 'string?', choices: taskNames, description: 'a built-in verifiable task: its prompts (and answers) are generated', group: DATA },
  { name: 'taskExamples', type: 'integer', default: 2000, description: 'training prompts generated from --task', group: DATA },
  { name: 'taskSeed', type: 'integer', default: 0, description: 'seed of the generated task split', group: DATA },
];

/** The trainers' shared pass-through: progress to the terminal, metrics to `<out>/metrics.jsonl`. */
function trainerIo(out: string, context: CommandContext) {
  return { logFile: join(out, 'metrics.jsonl'), progress: 'auto' as const, progressStream: context.progress };
}

function taskOf(values: Record<string, unknown>, flag = '--task') {
  const name = values.task as VerifiableTaskName | null | undefined;
  if (!name) return undefined;
  const task = verifiableTasks[name];
  if (!task) throw new UsageError(`${flag}: expected one of ${taskNames.join(', ')}; got ${JSON.stringify(name)}`);
  return task;
}

/** Prompt records of an online trainer: the --dataset file, or prompts generated from --task (with their answers). */
async function promptRecords(values: Record<string, unknown>): Promise<PromptRecord[]> {
  if (values.dataset) return (await readRecordsFile('--dataset', values.dataset as string)) as unknown as PromptRecord[];
  const task = taskOf(values);
  if (!task) throw new UsageError('expected --dataset (prompt records) or --task (a built-in task); got neither', `tasks: ${taskNames.join(', ')}`);
  return generateSplit(task, values.taskSeed as number, { train: values.taskExamples as number, test: 0 }).train.map((e) => ({ prompt: e.prompt, answer: e.answer }));
}

/** Reward functions of an online trainer: --reward-funcs (task, task-partial) and/or --reward-model. */
async function rewardFunctions(values: Record<string, unknown>, model: CausalLM, tokenizer: Tokenizer): Promise<RewardFunction[]> {
  const out: RewardFunction[] = [];
  for (const name of (values.rewardFuncs as string[] | undefined) ?? []) {
    if (name !== 'task' && name !== 'task-partial') throw new UsageError(`--reward-funcs: expected task or task-partial; got ${JSON.stringify(name)}`, 'or give --reward-model <dir>');
    const task = taskOf(values, '--reward-funcs task');
    if (!task) throw new UsageError(`--reward-funcs ${name}: needs --task (the task whose answers are checked)`);
    out.push(taskReward(task, { mode: name === 'task' ? 'exact' : 'partial' }));
  }
  if (values.rewardModel) out.push(rewardModelReward(await loadRewardModelDir(values.rewardModel as string, model), tokenizer));
  if (out.length === 0) throw new UsageError('expected --reward-funcs task (with --task) or --reward-model <dir>; got no reward');
  return out;
}

/** A reward model written by `posttrain reward`: full saves rebuild their own backbone from the model directory. */
async function loadRewardModelDir(dir: string, base: CausalLM): Promise<RewardModel> {
  const path = checkModelDir('--reward-model', dir);
  const backbone = existsSync(join(path, 'adapter_config.json')) ? base : await loadModel(path, { strict: false });
  return loadRewardModel(path, { backbone });
}

/**
 * The reference of an online trainer: with LoRA the trainer disables the adapters (its default);
 * without, when a KL term is on (`beta`, or PPO's `klCoef`, > 0), a frozen copy of `--ref-model`
 * (default: `--model` again, with `--adapter` when given).
 */
async function onlineReference(values: Record<string, unknown>, modelDir: string, klKey: 'beta' | 'klCoef', defaultKl: number): Promise<{ reference?: { model: CausalLM } }> {
  const kl = (values[klKey] as number | undefined) ?? defaultKl;
  if (values.useLora || kl === 0) return {};
  const from = (values.refModel as string | null | undefined) ?? modelDir;
  const { model } = await loadPolicy(from, values.refModel ? undefined : ((values.adapter as string | null) ?? undefined), '--ref-model');
  (model as unknown as { freeze(): void }).freeze();
  model.eval();
  return { reference: { model } };
}

const rewardSpecs: OptionSpec[] = [
  { name: 'rewardFuncs', type: 'strings', default: [], description: 'reward functions: task (1 when --task verifies the completion), task-partial', group: 'rewards' },
  { name: 'rewardModel', type: 'string?', description: 'directory of a reward model (from posttrain reward)', group: 'rewards' },
  {
    name: 'refModel',
    type: 'string?',
    description: 'reference model directory for the KL term (default: a frozen copy of --model; with --use-lora, --model with the adapters disabled)',
    group: 'rewards',
  },
];

/** A training command: load, train with the tunables, save, summarise. */
function trainingCommand(
  name: string,
  summary: string,
  defaults: object,
  extra: OptionSpec[],
  train: (a: {
    model: CausalLM;
    tokenizer: Tokenizer;
    values: Record<string, unknown>;
    tunables: Record<string, unknown>;
    out: string;
    modelDir: string;
    context: CommandContext;
  }) => Promise<{ history: Record<string, unknown>[]; saveAs?: 'policy' | 'none' }>,
): Command {
  const tunables = tunableSpecs(defaults, TRAINER);
  const specs = [...ioSpecs(name), { name: 'adapter', type: 'string?', description: 'a LoRA adapter to put on --model first', group: 'input and output' } as OptionSpec, ...extra, ...tunables];
  return {
    name,
    summary,
    specs,
    async run(values, context) {
      const modelDir = checkModelDir('--model', values.model as string);
      // A resumed run continues in its own output directory.
      const out = prepareOutputDir(values.outputDir as string, (values.overwrite as boolean) || typeof values.resumeFrom === 'string');
      const { model, tokenizer } = await loadPolicy(modelDir, (values.adapter as string | null) ?? undefined);
      const result = await train({ model, tokenizer, values, tunables: { ...pick(values, namesIn(specs, TRAINER)), ...trainerIo(out, context) }, out, modelDir, context });
      const last = [...result.history].reverse().find((r) => r.kind === 'train' || r.kind === undefined) ?? {};
      if (result.saveAs !== 'none') {
        const kind = await savePolicy(model, out, modelDir);
        context.print(`saved the ${kind === 'adapter' ? 'LoRA adapter (PEFT format)' : 'model'} to ${out}`);
      }
      return { command: name, steps: last.step, final: last };
    },
  };
}

/** An offline trainer's command: records from --dataset (and --eval-dataset) in `format`, LoRA flags, then `train`. */
function offlineCommand(
  name: string,
  summary: string,
  defaults: object,
  what: string,
  format: DatasetFormat | undefined,
  train: (options: Record<string, unknown>) => Promise<{ history: object[] }>,
): Command {
  return trainingCommand(name, summary, defaults, [...datasetSpecs(what, true), ...LORA_SPECS], async ({ model, tokenizer, values, tunables }) => {
    const records = await readRecordsFile('--dataset', values.dataset as string, format);
    const evalRecords = values.evalDataset ? await readRecordsFile('--eval-dataset', values.evalDataset as string, format) : undefined;
    const { history } = await train({ ...tunables, model, tokenizer, train: records, eval: evalRecords, lora: loraOption(values) });
    return { history: history as Record<string, unknown>[] };
  });
}

const sft = offlineCommand(
  'sft',
  'supervised fine-tuning (full or LoRA) on text, prompt-completion or chat records',
  defaultSftOptions,
  'SFT records ({ text }, { prompt, completion } or { messages })',
  undefined,
  (o) => sftTrain(o as never),
);

const reward = trainingCommand(
  'reward',
  'a reward model (Bradley–Terry) on preference records',
  defaultRewardOptions,
  [...datasetSpecs('preference records ({ prompt?, chosen, rejected })', true), ...LORA_SPECS],
  async ({ model, tokenizer, values, tunables, out, modelDir, context }) => {
    const train = await readRecordsFile('--dataset', values.dataset as string, 'preference');
    const evalRecords = values.evalDataset ? await readRecordsFile('--eval-dataset', values.evalDataset as string, 'preference') : undefined;
    const rm = new RewardModel(model, { seed: (values.seed as number) ?? 0 });
    const { history } = await rewardTrain({ ...tunables, model: rm, tokenizer, train, eval: evalRecords, lora: loraOption(values) } as never);
    if (evalRecords) {
      const { accuracy } = await evaluateRewardModel(rm, tokenizer, evalRecords as never);
      context.print(`held-out pairwise accuracy ${(accuracy * 100).toFixed(1)}%`);
    }
    await saveRewardModel(rm, out);
    copyTokenizerFiles(modelDir, out);
    context.print(`saved the reward model to ${out}`);
    return { history: history as never, saveAs: 'none' };
  },
);

const dpo = offlineCommand('dpo', 'direct preference optimisation (and its family: ipo, hinge, simpo, …) on preference records', defaultDpoOptions, 'preference records', 'preference', (o) =>
  dpoTrain(o as never),
);

const kto = offlineCommand('kto', 'KTO on unpaired preference records ({ prompt, completion, label })', defaultKtoOptions, 'unpaired preference records', 'unpaired-preference', (o) =>
  ktoTrain(o as never),
);

const onlineSpecs = [...datasetSpecs('prompt records ({ prompt, …columns })', false), ...taskSpecs, ...rewardSpecs, ...LORA_SPECS];

/** An online trainer's command: prompts, reward functions, the reference when a KL term needs one (`klKey`), then `train`. */
function onlineCommand(
  name: string,
  summary: string,
  defaults: object,
  klKey: 'beta' | 'klCoef',
  train: (options: Record<string, unknown>, values: Record<string, unknown>, model: CausalLM) => Promise<{ history: object[] }>,
): Command {
  return trainingCommand(name, summary, defaults, onlineSpecs, async ({ model, tokenizer, values, tunables, modelDir }) => {
    const records = await promptRecords(values);
    const reference = await onlineReference(values, modelDir, klKey, (defaults as Record<string, number>)[klKey]);
    const rewards = await rewardFunctions(values, model, tokenizer);
    const { history } = await train({ ...tunables, ...reference, model, tokenizer, train: records, rewardFunctions: rewards, lora: loraOption(values) }, values, model);
    return { history: history as Record<string, unknown>[] };
  });
}

const grpo = onlineCommand('grpo', 'GRPO (and DAPO, Dr. GRPO) with reward functions or a reward model', defaultGrpoOptions, 'beta', (o) => grpoTrain(o as never));
const rloo = onlineCommand('rloo', 'RLOO (REINFORCE leave-one-out) with reward functions or a reward model', defaultRlooOptions, 'beta', (o) => rlooTrain(o as never));
const onlineDpo = onlineCommand('online-dpo', 'online DPO: pairs sampled from the policy, ranked by reward functions or a reward model', defaultOnlineDpoOptions, 'beta', (o) =>
  onlineDpoTrain(o as never),
);
// TRL initialises PPO's value model from the reward model; without one the value head shares the policy.
const ppo = onlineCommand('ppo', 'PPO for RLHF: a reward model (or reward functions) and a value model', defaultPpoOptions, 'klCoef', async (o, values, model) =>
  ppoTrain({ ...o, valueModel: values.rewardModel ? await loadRewardModelDir(values.rewardModel as string, model) : 'shared' } as never),
);

const distill = trainingCommand(
  'distill',
  'knowledge distillation from --teacher into --model (GKD: forward/reverse KL, JSD, on-policy mix)',
  defaultDistillOptions,
  [
    ...datasetSpecs('prompt or prompt-completion records', true),
    { name: 'teacher', type: 'string', required: true, description: 'directory of the teacher model (same vocabulary)', group: 'input and output' },
    ...LORA_SPECS,
  ],
  async ({ model, tokenizer, values, tunables }) => {
    const train = await readRecordsFile('--dataset', values.dataset as string);
    const evalRecords = values.evalDataset ? await readRecordsFile('--eval-dataset', values.evalDataset as string) : undefined;
    const { model: teacher } = await loadPolicy(values.teacher as string, undefined, '--teacher');
    (teacher as unknown as { freeze(): void }).freeze();
    teacher.eval();
    const { history } = await distillTrain({ ...tunables, student: model, teacher, tokenizer, train, eval: evalRecords, lora: loraOption(values) } as never);
    return { history: history as never };
  },
);

/** Calibration batches from a JSONL file: each record's text (or prompt + completion) as one row, at most `samples` rows of at most the model's context. */
async function calibrationBatches(path: string, tokenizer: Tokenizer, model: CausalLM, samples: number): Promise<CalibrationBatch[]> {
  const records = await readRecordsFile('--calibration-dataset', path);
  const rows = records.slice(0, samples).map((r) => {
    const record = r as { text?: string; prompt?: string; completion?: string };
    const text = typeof record.text === 'string' ? record.text : `${record.prompt ?? ''}${record.completion ?? ''}`;
    return tokenizer.encode(text).slice(0, model.config.maxPositions);
  });
  const batches: CalibrationBatch[] = [];
  for (let i = 0; i < rows.length; i += 8) batches.push(rows.slice(i, i + 8));
  return batches;
}

const calibrationSpecs: OptionSpec[] = [
  { name: 'calibrationDataset', type: 'string?', description: 'JSONL records whose text calibrates GPTQ, Wanda and SparseGPT', group: 'calibration' },
  { name: 'calibrationSamples', type: 'integer', default: 128, description: 'records used for calibration', group: 'calibration' },
];

/** A transform of a saved model (quantize, prune): load, transform, save the whole model. */
function transformCommand(
  name: string,
  summary: string,
  extra: OptionSpec[],
  transform: (model: CausalLM, tokenizer: Tokenizer, values: Record<string, unknown>, context: CommandContext) => Promise<Record<string, unknown>>,
): Command {
  const specs = [...ioSpecs(name), { name: 'adapter', type: 'string?', description: 'a LoRA adapter merged into --model first', group: 'input and output' } as OptionSpec, ...extra];
  return {
    name,
    summary,
    specs,
    async run(values, context) {
      const modelDir = checkModelDir('--model', values.model as string);
      const out = prepareOutputDir(values.outputDir as string, values.overwrite as boolean);
      const { model, tokenizer } = await loadPolicy(modelDir, (values.adapter as string | null) ?? undefined);
      if (values.adapter) mergeAndUnload(model as never);
      const summaryOut = await transform(model, tokenizer, values, context);
      await saveModel(model, out);
      copyTokenizerFiles(modelDir, out);
      context.print(`saved the ${name}d model to ${out}`);
      return { command: name, ...summaryOut };
    },
  };
}

const quantize = transformCommand(
  'quantize',
  'weight-only quantisation: int8, int4 (RTN or GPTQ) or NF4, saved as compressed-tensors / bitsandbytes',
  [
    { name: 'scheme', type: 'string', default: defaultQuantizeModelOptions.scheme, choices: ['int8', 'int4', 'nf4'], description: 'quantisation scheme', group: 'quantisation' },
    { name: 'groupSize', type: 'integer?', description: `int4 group size: 32, 64 or 128 (int4 default ${defaultQuantizeModelOptions.groupSize})`, group: 'quantisation' },
    { name: 'symmetric', type: 'boolean', default: defaultQuantizeModelOptions.symmetric, description: 'int4 without zero-points', group: 'quantisation' },
    { name: 'exclude', type: 'strings', default: [...(defaultQuantizeModelOptions.exclude as readonly string[])], description: 'layers left in float', group: 'quantisation' },
    { name: 'gptq', type: 'boolean', default: false, description: 'GPTQ instead of round-to-nearest (int8/int4; needs --calibration-dataset)', group: 'quantisation' },
    ...calibrationSpecs,
  ],
  async (model, tokenizer, values, context) => {
    if (values.gptq) {
      if (values.scheme === 'nf4') throw new UsageError('--gptq: expected --scheme int8 or int4; got nf4 (NF4 is round-to-nearest)');
      if (!values.calibrationDataset) throw new UsageError('--gptq: needs --calibration-dataset (a JSONL file of text records)');
      const batches = await calibrationBatches(values.calibrationDataset as string, tokenizer, model, values.calibrationSamples as number);
      const layers = await gptqModel(model, batches, {
        bits: values.scheme === 'int4' ? 4 : 8,
        groupSize: values.scheme === 'int4' ? ((values.groupSize as number | undefined) ?? defaultQuantizeModelOptions.groupSize) : null,
        symmetric: values.symmetric as boolean,
      } as never);
      context.print(`GPTQ quantised ${layers.length} layers`);
      return { scheme: values.scheme, gptq: true, layers: layers.length };
    }
    const groupSize = values.groupSize === undefined || values.groupSize === null ? {} : { groupSize: values.groupSize as number };
    const summary = await quantizeModel(model as never, { scheme: values.scheme as 'int8', ...groupSize, symmetric: values.symmetric as boolean, exclude: values.exclude as string[] });
    context.print(`quantised ${summary.layers.length} layers: ${summary.floatBytes} → ${summary.quantizedBytes} bytes`);
    return { scheme: values.scheme, layers: summary.layers.length, floatBytes: summary.floatBytes, quantizedBytes: summary.quantizedBytes };
  },
);

const prune = transformCommand(
  'prune',
  'pruning: magnitude, Wanda or SparseGPT, unstructured or N:M (2:4)',
  [
    { name: 'method', type: 'string', default: defaultPruneModelOptions.method, choices: ['magnitude', 'wanda', 'sparsegpt'], description: 'pruning criterion', group: 'pruning' },
    { name: 'sparsity', type: 'number', default: defaultPruneModelOptions.sparsity, description: 'fraction of weights set to zero', group: 'pruning' },
    { name: 'pattern', type: 'string', default: 'unstructured', description: "'unstructured' or N:M such as 2:4", group: 'pruning' },
    ...calibrationSpecs,
  ],
  async (model, tokenizer, values, context) => {
    const method = values.method as 'magnitude' | 'wanda' | 'sparsegpt';
    if (method !== 'magnitude' && !values.calibrationDataset) throw new UsageError(`--method ${method}: needs --calibration-dataset (a JSONL file of text records)`);
    const batches = method === 'magnitude' ? undefined : await calibrationBatches(values.calibrationDataset as string, tokenizer, model, values.calibrationSamples as number);
    const pattern = values.pattern as string;
    const nm = /^(\d+):(\d+)$/.exec(pattern);
    const options = nm ? { method, pattern: { n: Number(nm[1]), m: Number(nm[2]) } } : { method, sparsity: values.sparsity as number };
    if (!nm && pattern !== 'unstructured') throw new UsageError(`--pattern: expected 'unstructured' or N:M such as 2:4; got ${JSON.stringify(pattern)}`);
    await pruneModel(model, batches, options as never);
    const report = sparsityReport(model as never);
    context.print(`pruned with ${method}: sparsity of the pruned layers ${(report.layerSparsity * 100).toFixed(1)}%`);
    return { method, pattern, sparsity: report.layerSparsity };
  },
);

const merge: Command = {
  name: 'merge',
  summary: 'merge a LoRA adapter into its base model and save the whole model',
  specs: [...ioSpecs('merge'), { name: 'adapter', type: 'string', required: true, description: 'the adapter directory (PEFT format)', group: 'input and output' }],
  async run(values, context) {
    const modelDir = checkModelDir('--model', values.model as string);
    const adapterDir = checkModelDir('--adapter', values.adapter as string);
    const out = prepareOutputDir(values.outputDir as string, values.overwrite as boolean);
    const { model } = await loadPolicy(modelDir);
    await loadAdapter(model as never, adapterDir);
    mergeAndUnload(model as never);
    await saveModel(model, out);
    copyTokenizerFiles(modelDir, out);
    context.print(`merged ${adapterDir} into ${modelDir}; saved to ${out}`);
    return { command: 'merge', adapter: adapterDir };
  },
};

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

const generateCommand: Command = {
  name: 'generate',
  summary: 'complete prompts with a model (KV cache; greedy or sampled)',
  specs: [
    ...ioSpecs('generate', { output: false }),
    { name: 'adapter', type: 'string?', description: 'a LoRA adapter to put on --model', group: 'input and output' },
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

const evalCommand: Command = {
  name: 'eval',
  summary: 'evaluate a model: perplexity, exact match, pass@k, self-consistency, calibration, IFEval checks, reward-model win rate',
  specs: [
    ...ioSpecs('eval'),
    { name: 'adapter', type: 'string?', description: 'a LoRA adapter to put on --model', group: 'input and output' },
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

/** Every command but `demo` (added by the entry point). */
export const commands: Command[] = [sft, reward, dpo, kto, grpo, rloo, ppo, onlineDpo, distill, quantize, prune, evalCommand, generateCommand, merge];

/** Backend set-up shared by every command. */
export async function setUpBackend(name: string): Promise<string> {
  const info = await initBackend(name as 'auto');
  return info.name;
}
