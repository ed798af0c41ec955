// Tokenizers and chat templates

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
