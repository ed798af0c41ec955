// `posttrain demo`: its options (the steps of each stage, `--quick` for CI) and the command that
// runs the pipeline of demo.ts.
import type { Command } from './command.js';
import { defaultPipelineOptions, runPipeline, TINY_BASE_DIR } from './demo.js';
import { prepareOutputDir } from './io.js';
import type { OptionSpec } from './options.js';

const stepSpecs: OptionSpec[] = [
  { name: 'sftSteps', type: 'integer', default: defaultPipelineOptions.sftSteps, description: 'SFT steps', group: 'stages' },
  { name: 'rewardSteps', type: 'integer', default: defaultPipelineOptions.rewardSteps, description: 'reward-model steps', group: 'stages' },
  { name: 'dpoSteps', type: 'integer', default: defaultPipelineOptions.dpoSteps, description: 'DPO steps', group: 'stages' },
  { name: 'grpoSteps', type: 'integer', default: defaultPipelineOptions.grpoSteps, description: 'GRPO steps', group: 'stages' },
  { name: 'distillSteps', type: 'integer', default: defaultPipelineOptions.distillSteps, description: 'distillation steps', group: 'stages' },
  { name: 'heldOut', type: 'integer', default: defaultPipelineOptions.heldOut, description: 'held-out reversal prompts', group: 'stages' },
  { name: 'seed', type: 'integer', default: defaultPipelineOptions.seed, description: 'seed of data, sampling and initialisation', group: 'stages' },
  { name: 'quick', type: 'boolean', default: false, description: 'a shortened run (a tenth of the steps, 50 held-out prompts): the CI check', group: 'stages' },
];

/** `posttrain demo`. */
export const demoCommand: Command = {
  name: 'demo',
  reportByDefault: true,
  summary: 'the whole pipeline on the shipped tiny model: SFT → reward model → DPO → GRPO → distillation → quantisation → pruning → evaluation',
  specs: [
    { name: 'model', type: 'string', default: TINY_BASE_DIR, description: 'base model directory', group: 'input and output' },
    { name: 'outputDir', type: 'string', default: 'out/demo', description: "each stage's model and metrics", group: 'input and output' },
    { name: 'overwrite', type: 'boolean', default: false, description: "replace another run's files in --output-dir", group: 'input and output' },
    { name: 'report', type: 'string?', description: 'the HTML report (default <output-dir>/report.html; null: none)', group: 'input and output' },
    { name: 'backend', type: 'string', default: 'auto', choices: ['auto', 'webgpu', 'wasm', 'cpu'], description: 'tfjs backend', group: 'input and output' },
    { name: 'debug', type: 'boolean', default: false, description: 'print stack traces of errors', group: 'input and output' },
    ...stepSpecs,
  ],
  async run(values, context) {
    const out = prepareOutputDir(values.outputDir as string, values.overwrite as boolean);
    const quick = values.quick as boolean;
    const steps = (name: string) => (quick ? Math.max(5, Math.round((values[name] as number) / 10)) : (values[name] as number));
    const result = await runPipeline(
      {
        base: values.model as string,
        outputDir: out,
        sftSteps: steps('sftSteps'),
        rewardSteps: steps('rewardSteps'),
        dpoSteps: steps('dpoSteps'),
        grpoSteps: steps('grpoSteps'),
        distillSteps: steps('distillSteps'),
        heldOut: quick ? Math.min(50, values.heldOut as number) : (values.heldOut as number),
        seed: values.seed as number,
      },
      context,
    );
    return { command: 'demo', stages: result.stages.map((s) => ({ stage: s.stage, seconds: s.seconds, rows: s.rows })) };
  },
};
