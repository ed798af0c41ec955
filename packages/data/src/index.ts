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

// Tokenizing with loss masks, collators and packing

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
