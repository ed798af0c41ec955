// The command line, as a library: run it, or reuse its parts.
export { runCli, allCommands, type CliIo } from './main.js';
export { commands } from './commands.js';
export { evaluate } from './evaluate.js';
export type { Command, CommandContext } from './command.js';
export { runPipeline, defaultPipelineOptions, type PipelineOptions, type PipelineResult, type StageResult } from './demo.js';
export { demoCommand } from './demo-command.js';
export { parseOptions, helpText, readConfigFile, coerce, kebab, camel, nearest, editDistance, UsageError, type OptionSpec, type OptionType, type ParsedOptions } from './options.js';
export { tunableSpecs, LORA_SPECS } from './specs.js';
export {
  renderReport,
  chartsFromMetrics,
  chartSvg,
  type ReportData,
  type ReportSection,
  type ReportChart,
  type ReportSeries,
  type ReportTable,
  type ReportSample,
} from './report.js';
