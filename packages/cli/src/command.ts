// What every `posttrain` command is, and the pieces the training and evaluation commands share:
// the built-in tasks and reward models written by `posttrain reward`.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CausalLM } from '@posttrain/tensor-core';
import { verifiableTasks, type VerifiableTaskName } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { loadRewardModel, type RewardModel } from '@posttrain/reward';
import { checkModelDir } from './io.js';
import type { OptionSpec } from './options.js';
import { UsageError } from './options.js';
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

/** The built-in verifiable tasks' names (`--task`). */
export const taskNames = Object.keys(verifiableTasks);

/** The task `--task` names, or undefined when none is given. */
export function taskOf(values: Record<string, unknown>, flag = '--task') {
  const name = values.task as VerifiableTaskName | null | undefined;
  if (!name) return undefined;
  const task = verifiableTasks[name];
  if (!task) throw new UsageError(`${flag}: expected one of ${taskNames.join(', ')}; got ${JSON.stringify(name)}`);
  return task;
}

/** A reward model written by `posttrain reward`: full saves rebuild their own backbone from the model directory. */
export async function loadRewardModelDir(dir: string, base: CausalLM): Promise<RewardModel> {
  const path = checkModelDir('--reward-model', dir);
  const backbone = existsSync(join(path, 'adapter_config.json')) ? base : await loadModel(path, { strict: false });
  return loadRewardModel(path, { backbone });
}
