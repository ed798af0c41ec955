// Option specs: the ones every command shares, and each trainer's tunables read off its
// `default*Options` object, so a new trainer option is a new flag without a change here.
import type { LoraOptions } from '@posttrain/lora';
import type { OptionSpec, OptionType } from './options.js';

/** Tunables that are not flags: callbacks, streams, objects built by the command itself. */
const NOT_FLAGS = new Set([
  'callbacks',
  'progress',
  'progressStream',
  'signal',
  'eval',
  'lora',
  'reference',
  'ewc',
  'lwf',
  'generator',
  'teacherTokenizer',
  'logFile',
  'layers',
  'rewardFunctions',
  'valueModel',
  'teacherCache',
]);

/** Types of tunables whose default (null or undefined) does not tell. */
const UNSET_TYPES: Record<string, OptionType> = {
  maxSteps: 'integer?',
  evalEvery: 'integer?',
  logEvery: 'integer?',
  checkpointEvery: 'integer?',
  saveTotalLimit: 'integer?',
  checkpointDir: 'string?',
  resumeFrom: 'string?',
  completionsFile: 'string?',
  maxLength: 'integer?',
  maxPromptLength: 'integer?',
  maxCompletionLength: 'integer?',
  generationBatchSize: 'integer?',
  epsilonHigh: 'number?',
  rewardClipRange: 'number?',
  missingEosPenalty: 'number?',
  temperature: 'number?',
  rewardWeights: 'numbers?',
  loss: 'string?',
  comparison: 'string?',
};

/** One-line descriptions of the tunables most runs set (the package docs describe every one). */
const DESCRIPTIONS: Record<string, string> = {
  maxSteps: 'optimizer steps (null: epochs over the data)',
  epochs: 'passes over the training records',
  batchSize: 'examples per micro-batch',
  gradientAccumulationSteps: 'micro-batches per optimizer step',
  lr: 'peak learning rate of AdamW',
  weightDecay: "AdamW's decoupled weight decay",
  schedule: 'learning-rate schedule after warm-up: constant, linear or cosine',
  warmupSteps: 'steps of linear warm-up',
  maxGradNorm: 'clip the gradient norm to this',
  seed: 'seed of shuffling, dropout and sampling',
  beta: 'strength of the KL (or implicit-reward) term',
  logEvery: 'log a metrics row every N steps',
  evalEvery: 'evaluate on --eval-dataset every N steps',
  checkpointDir: 'write resumable checkpoints here',
  checkpointEvery: 'checkpoint every N steps',
  resumeFrom: 'resume from this checkpoint directory',
  numGenerations: 'completions sampled per prompt',
  maxCompletionLength: 'new tokens per completion at most',
  temperature: 'sampling temperature',
  lossType: 'loss aggregation (grpo, bnpo, dr_grpo, dapo)',
  saveTotalLimit: 'keep at most this many checkpoints',
  maxLength: 'longest example in tokens (null: no limit)',
  maxPromptLength: 'longest prompt in tokens, cut on the left (null: no limit)',
  completionOnlyLoss: 'loss on completion tokens only',
  rewardWeights: 'weight of each reward function (null: all 1)',
  generationBatchSize: 'completions generated per rollout (null: batch size)',
  topK: 'sample among the k most likely tokens (0: all)',
  topP: 'nucleus sampling mass',
  minP: 'drop tokens below this fraction of the top probability',
  completionsFile: 'append every sampled completion to this JSONL file',
  epsilon: 'clipping range of the policy ratio',
  epsilonHigh: 'upper clipping range (DAPO; null: epsilon)',
  numIterations: 'optimizer passes over each rollout',
  scaleRewards: "advantage scaling: 'group', 'batch' or 'none'",
  maskTruncatedCompletions: 'no loss on completions that hit the length limit',
  importanceSamplingLevel: "'token' (GRPO) or 'sequence' (GSPO)",
  loss: 'preference loss (sigmoid, ipo, hinge, …; null: sigmoid) or distillation loss',
  centerCoefficient: 'weight of the reward-centring term',
  desirableWeight: "weight of KTO's desirable examples",
  undesirableWeight: "weight of KTO's undesirable examples",
  klCoef: 'weight of the KL penalty in the reward',
  klEstimator: 'KL estimator (k1, k3)',
  missingEosPenalty: 'subtracted from the reward of completions without EOS (null: none)',
  whitenRewards: 'whiten rewards per batch',
  cliprange: "PPO's policy clipping range",
  cliprangeValue: "PPO's value clipping range",
  vfCoef: 'weight of the value loss',
  gamma: 'discount factor',
  lam: "GAE's lambda",
  numPpoEpochs: 'PPO epochs over each rollout',
  numMiniBatches: 'mini-batches per PPO epoch',
  rewardClipRange: 'clip rewards to ±this (null: no clipping)',
  normalizeAdvantages: 'normalise advantages per batch',
  maxNewTokens: 'new tokens per sampled completion',
  alpha: 'mix of the distillation loss and the answers’ cross-entropy',
  lmbda: 'fraction of on-policy (student-sampled) batches',
  seqKd: 'sequence-level KD: train on the teacher’s generations',
  generationTemperature: 'temperature of the student’s samples',
};

/** Numeric tunables that are counts (integers); every other number is real-valued even when its default is whole (topP 1, gamma 1). */
const INTEGER_NAMES = /(Steps|Size|Every|Limit|Length|Tokens|Iterations|Epochs|MiniBatches|Generations)$|^(seed|epochs|topK|num\w+)$/;

function typeOf(name: string, value: unknown): OptionType | undefined {
  if (name in UNSET_TYPES && (value === null || value === undefined)) return UNSET_TYPES[name];
  if (typeof value === 'number') return INTEGER_NAMES.test(name) ? 'integer' : 'number';
  if (typeof value === 'boolean') return 'boolean';
  if (typeof value === 'string') return 'string';
  if (Array.isArray(value)) return value.every((v) => typeof v === 'number') && value.length > 0 ? 'numbers' : 'strings';
  return undefined;
}

/**
 * The flags of a trainer: one per tunable of its defaults object that a command line can carry
 * (numbers, booleans, strings, lists), typed by its default, with the default shown in `--help`.
 * Objects the command builds itself (LoRA, reference, reward functions, callbacks) are left out.
 */
export function tunableSpecs(defaults: object, group = 'trainer options'): OptionSpec[] {
  const specs: OptionSpec[] = [];
  for (const [name, value] of Object.entries(defaults)) {
    if (NOT_FLAGS.has(name)) continue;
    const type = typeOf(name, value);
    if (!type) continue;
    specs.push({ name, type, default: value === undefined ? undefined : value, description: DESCRIPTIONS[name], group });
  }
  return specs;
}

/** The names of `specs` in `group`, for picking a trainer's tunables out of the parsed values. */
export function namesIn(specs: readonly OptionSpec[], group: string): string[] {
  return specs.filter((s) => s.group === group).map((s) => s.name);
}

/** Picks the set values of `names` (undefined ones are left to the library's defaults). */
export function pick(values: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of names) if (values[name] !== undefined) out[name] = values[name];
  return out;
}

/** The options of every command that reads a model and writes a directory. */
export function ioSpecs(command: string, { output = true, model = true } = {}): OptionSpec[] {
  return [
    ...(model ? [{ name: 'model', type: 'string', required: true, description: 'model directory (config.json, model.safetensors, tokenizer.json)', group: 'input and output' } as const] : []),
    ...(output
      ? [
          { name: 'outputDir', type: 'string', default: `out/${command}`, description: 'where the result, metrics.jsonl and summary.json go', group: 'input and output' } as const,
          { name: 'overwrite', type: 'boolean', default: false, description: "replace another run's files in --output-dir", group: 'input and output' } as const,
        ]
      : []),
    { name: 'report', type: 'string?', description: 'also write a self-contained HTML report here', group: 'input and output' },
    { name: 'backend', type: 'string', default: 'auto', choices: ['auto', 'webgpu', 'wasm', 'cpu'], description: 'tfjs backend', group: 'input and output' },
    { name: 'debug', type: 'boolean', default: false, description: 'print stack traces of errors', group: 'input and output' },
  ];
}

/** `--adapter`: a PEFT LoRA adapter directory loaded onto `--model` (what the command does with it is `description`). */
export function adapterSpec(description: string): OptionSpec {
  return { name: 'adapter', type: 'string?', description, group: 'input and output' };
}

/** LoRA flags (TRL's `use_peft`, `lora_r`, …): adapters train instead of the whole model. */
export const LORA_SPECS: readonly OptionSpec[] = [
  { name: 'useLora', type: 'boolean', default: false, description: 'train LoRA adapters instead of every weight (TRL: use_peft)', group: 'LoRA' },
  { name: 'loraR', type: 'integer', default: 16, description: 'adapter rank', group: 'LoRA' },
  { name: 'loraAlpha', type: 'number', default: 32, description: 'adapter scale numerator (scale = alpha / r)', group: 'LoRA' },
  { name: 'loraDropout', type: 'number', default: 0.05, description: 'dropout on the adapter input', group: 'LoRA' },
  { name: 'loraTargetModules', type: 'strings', default: ['all-linear'], description: "layers to adapt ('all-linear' or names such as q_proj,v_proj)", group: 'LoRA' },
];

/** The `lora` option of a trainer from the LoRA flags (false: full fine-tuning). */
export function loraOption(values: Record<string, unknown>): false | Partial<LoraOptions> {
  if (!values.useLora) return false;
  const targets = values.loraTargetModules as string[];
  return {
    r: values.loraR as number,
    alpha: values.loraAlpha as number,
    dropout: values.loraDropout as number,
    targetModules: targets.length === 1 && targets[0] === 'all-linear' ? 'all-linear' : targets,
  } as Partial<LoraOptions>;
}
