import { additionTask } from './addition.js';
import { reversalTask } from './reversal.js';
import { sortingTask } from './sorting.js';

/**
 * The shipped tasks by name, for configs and command lines (`--task reversal`), and to route a mixed
 * dataset's examples back to their verifier through `metadata.task`.
 *
 * @example
 * ```ts
 * const task = verifiableTasks[example.metadata.task as VerifiableTaskName];
 * task.verify(example, completion);
 * ```
 */
export const verifiableTasks = Object.freeze({ addition: additionTask, reversal: reversalTask, sorting: sortingTask });

/**
 * The name of a shipped task: `'addition' | 'reversal' | 'sorting'`.
 *
 * @example
 * ```ts
 * const name: VerifiableTaskName = 'sorting';
 * ```
 */
export type VerifiableTaskName = keyof typeof verifiableTasks;
