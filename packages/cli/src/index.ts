// The command line, as a library: run it, or reuse its parts.
export { runCli, allCommands, type CliIo } from './main.js';
export { commands, evaluate, type Command, type CommandContext } from './commands.js';
export { demoCommand, runPipeline, defaultPipelineOptions, type PipelineOptions, type PipelineResult, type StageResult } from './demo.js';
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
