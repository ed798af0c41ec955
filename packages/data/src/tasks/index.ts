export { defineVerifiableTask, trimCompletion, type VerifiableTask, type TaskExample, type VerifiableTaskSpec, type VerifyResult } from './task.js';
export { additionTask, defaultAdditionOptions, type AdditionOptions, type AdditionMetadata } from './addition.js';
export { reversalTask, defaultReversalOptions } from './reversal.js';
export { sortingTask, defaultSortingOptions } from './sorting.js';
export type { StringTaskOptions, StringTaskMetadata } from './strings.js';
export { generateSplit, defaultGenerateSplitOptions, type GenerateSplitOptions } from './split.js';
export { verifiableTasks, type VerifiableTaskName } from './registry.js';
