// Tokenizers and chat templates
export {
  loadTokenizer,
  defaultEncodeOptions,
  defaultDecodeOptions,
  type Tokenizer,
  type EncodeOptions,
  type DecodeOptions,
  type EncodingWithOffsets,
} from './tokenizer.js';
export { ByteTokenizer, defaultByteTokenizerOptions, type ByteTokenizerOptions } from './byte-tokenizer.js';
export {
  applyChatTemplate,
  defaultApplyChatTemplateOptions,
  CHATML_TEMPLATE,
  type ApplyChatTemplateOptions,
  type ChatMessage,
  type ChatTemplateEncoding,
} from './chat-template.js';

// Dataset formats and JSONL
export {
  detectFormat,
  validateRecord,
  isConversational,
  extractPrompt,
  RecordError,
  type DatasetFormat,
  type DatasetRecord,
  type RecordOf,
  type RecordLocation,
  type ValidateRecordOptions,
  type Message,
  type TextOrMessages,
  type LanguageModelingRecord,
  type PromptOnlyRecord,
  type PromptCompletionRecord,
  type PreferenceRecord,
  type UnpairedPreferenceRecord,
} from './formats.js';
export { readJsonl, readRecords, defaultReadRecordsOptions, type JsonlSource, type NumberedRecord, type ReadRecordsOptions } from './jsonl.js';

// Tokenizing with loss masks, collators and packing
export {
  tokenizePromptCompletion,
  tokenizeLanguageModeling,
  tokenizePreference,
  defaultTokenizeOptions,
  IGNORE_INDEX,
  type TokenizeOptions,
  type TokenizedExample,
  type TokenizerLike,
  type ChatEncoder,
  type ChatTokens,
} from './tokenize.js';
export { modelLimits } from './tokenize-checks.js';
export { collateForTraining, collateForGeneration, defaultCollateOptions, type CollateOptions, type LabeledExample, type TrainingBatch, type GenerationBatch } from './collate.js';
export { pack, defaultPackOptions, type PackOptions, type PackedBatch } from './pack.js';

// Synthetic verifiable tasks
export {
  defineVerifiableTask,
  trimCompletion,
  additionTask,
  defaultAdditionOptions,
  reversalTask,
  defaultReversalOptions,
  sortingTask,
  defaultSortingOptions,
  generateSplit,
  defaultGenerateSplitOptions,
  verifiableTasks,
  type VerifiableTask,
  type VerifiableTaskSpec,
  type VerifiableTaskName,
  type TaskExample,
  type VerifyResult,
  type AdditionOptions,
  type AdditionMetadata,
  type StringTaskOptions,
  type StringTaskMetadata,
  type GenerateSplitOptions,
} from './tasks/index.js';
