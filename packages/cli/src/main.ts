// The `posttrain` entry point: picks the command, parses its options, runs it, writes the summary,
// the metrics and the report; failures are one message and a help line, with an exit code.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isPosttrainError } from '@posttrain/tensor-core';
import type { Command, CommandContext } from './command.js';
import { commands, setUpBackend } from './commands.js';
import { demoCommand } from './demo-command.js';
import { readMetrics, writeFileAtomic } from './io.js';
import { UsageError, helpText, nearest, parseOptions } from './options.js';
import { chartsFromMetrics, renderReport, type ReportSection } from './report.js';

/** Where `runCli` writes. */
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
}

/** Every command of `posttrain`, by name. */
export const allCommands: readonly Command[] = [...commands, demoCommand];

function usage(): string {
  const width = Math.max(...allCommands.map((c) => c.name.length));
  return [
    'usage: posttrain <command> [--config file.yaml] [--option value ...]',
    '',
    'commands:',
    ...allCommands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'posttrain <command> --help lists its options and their defaults.',
  ].join('\n');
}

/**
 * Runs `posttrain` with `argv` (the arguments after the executable) and returns the exit code: 0
 * on success, 1 when the command failed, 2 for a usage error. Errors print as `error: <message>`
 * plus a help line; the stack trace only with `--debug`.
 *
 * @example
 * ```ts
 * const code = await runCli(['sft', '--model', 'tiny-base', '--dataset', 'train.jsonl', '--max-steps', '100']);
 * ```
 */
export async function runCli(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const print = (line: string) => io.stdout.write(`${line}\n`);
  const debug = argv.includes('--debug');
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    print(usage());
    return name === undefined ? 2 : 0;
  }
  const command = allCommands.find((c) => c.name === name);
  try {
    if (!command) {
      const guess = nearest(
        name,
        allCommands.map((c) => c.name),
      );
      throw new UsageError(`unknown command ${JSON.stringify(name)}${guess ? `; did you mean ${guess}?` : ''}`, `commands: ${allCommands.map((c) => c.name).join(', ')}`);
    }
    const { values, help } = parseOptions(command.name, command.specs, rest);
    if (help) {
      print(helpText(command.name, command.summary, command.specs));
      return 0;
    }
    const backend = await setUpBackend(values.backend as string);
    io.stderr.write(`posttrain ${command.name} (backend ${backend})\n`);
    const sections: ReportSection[] = [];
    const context: CommandContext = { print, progress: io.stderr, sections };
    const started = Date.now();
    const summary = await command.run(values, context);
    const seconds = (Date.now() - started) / 1000;
    const out = typeof values.outputDir === 'string' ? resolve(values.outputDir) : undefined;
    if (out && existsSync(out)) writeFileAtomic(join(out, 'summary.json'), `${JSON.stringify({ ...summary, seconds, options: values }, null, 2)}\n`);
    const report = typeof values.report === 'string' ? values.report : command.reportByDefault && out && values.report === undefined ? join(out, 'report.html') : undefined;
    if (report !== undefined) {
      const metrics = out ? readMetrics(join(out, 'metrics.jsonl')) : [];
      if (metrics.length > 0) sections.unshift({ title: `${command.name} training`, charts: chartsFromMetrics(metrics), tables: [], samples: [] });
      const path = resolve(report);
      writeFileAtomic(path, renderReport({ title: `posttrain ${command.name}`, subtitle: out, createdAt: new Date().toISOString(), sections }));
      print(`report: ${path}`);
    }
    print(`done in ${seconds.toFixed(1)} s`);
    return 0;
  } catch (error) {
    const usageError = error instanceof UsageError;
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`error: ${message}\n`);
    if (!message.includes('\nhelp:')) io.stderr.write(`help: posttrain ${command?.name ?? ''}${command ? ' ' : ''}--help\n`);
    if (debug && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    return usageError || (isPosttrainError(error) && (error as { code?: string }).code === 'INVALID_OPTION') ? 2 : 1;
  }
}
