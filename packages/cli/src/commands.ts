import { join } from 'node:path';
import { initBackend, type CausalLM } from '@posttrain/tensor-core';
import { generateSplit, type DatasetFormat, type Tokenizer } from '@posttrain/data';
import { loadAdapter, mergeAndUnload } from '@posttrain/lora';
import { rewardModelReward, taskReward, type CalibrationBatch, type PromptRecord, type RewardFunction } from '@posttrain/policy';
import { defaultSftOptions, sftTrain } from '@posttrain/sft';
import { RewardModel, defaultRewardOptions, evaluateRewardModel, rewardTrain, saveRewardModel } from '@posttrain/reward';
import { defaultDpoOptions, defaultKtoOptions, defaultOnlineDpoOptions, dpoTrain, ktoTrain, onlineDpoTrain } from '@posttrain/dpo';
import { defaultGrpoOptions, defaultPpoOptions, defaultRlooOptions, grpoTrain, ppoTrain, rlooTrain } from '@posttrain/rl-ppo';
import { defaultDistillOptions, distillTrain } from '@posttrain/distill';
import { defaultQuantizeModelOptions, gptqModel, quantizeModel } from '@posttrain/quantize';
import { defaultPruneModelOptions, pruneModel, sparsityReport } from '@posttrain/prune';
import { checkModelDir, copyTokenizerFiles, loadPolicy, prepareOutputDir, readRecordsFile, saveModelDir, savePolicy } from './io.js';
import { loadRewardModelDir, taskNames, taskOf, type Command, type CommandContext } from './command.js';
import { evalCommand, generateCommand } from './evaluate.js';
import { UsageError, type OptionSpec } from './options.js';
import { LORA_SPECS, adapterSpec, ioSpecs, loraOption, namesIn, pick, tunableSpecs } from './specs.js';

const TRAINER = 'trainer options';
const DATA = 'data';

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
  const specs = [...ioSpecs(name), adapterSpec('a LoRA adapter to put on --model first'), ...extra, ...tunables];
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
  const specs = [...ioSpecs(name), adapterSpec('a LoRA adapter merged into --model first'), ...extra];
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
      await saveModelDir(model, out, modelDir);
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
    await saveModelDir(model, out, modelDir);
    context.print(`merged ${adapterDir} into ${modelDir}; saved to ${out}`);
    return { command: 'merge', adapter: adapterDir };
  },
};

/** Every command but `demo` (added by the entry point). */
export const commands: Command[] = [sft, reward, dpo, kto, grpo, rloo, ppo, onlineDpo, distill, quantize, prune, evalCommand, generateCommand, merge];

/** Backend set-up shared by every command. */
export async function setUpBackend(name: string): Promise<string> {
  const info = await initBackend(name as 'auto');
  return info.name;
}
