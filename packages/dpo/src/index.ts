// Preference optimisation: DPO and its family, SimPO and ORPO through one trainer
export { dpoTrain, resolveDpoOptions, defaultDpoOptions, type DpoTrainOptions, type DpoTunables, type DpoRecord, type DpoTrainResult } from './dpo-train.js';

// Objectives
export {
  dpoObjective,
  simpoObjective,
  orpoObjective,
  type PreferenceObjective,
  type PreferenceLossFn,
  type ObjectiveInputs,
  type ObjectiveOutput,
} from './objective.js';

// Reference log-probs
export { type ReferenceOption } from '@posttrain/policy';
export { preferenceLogps, defaultPreferenceLogpsOptions, type PreferenceLogpsOptions, type PreferenceLogpsResult } from './preference-logps.js';

// Online DPO: pairs sampled from the policy and ranked by a reward
export {
  onlineDpoTrain,
  resolveOnlineDpoOptions,
  defaultOnlineDpoOptions,
  type OnlineDpoTrainOptions,
  type OnlineDpoTunables,
  type OnlineDpoTrainResult,
} from './online-dpo-train.js';

// Unpaired preferences
export { ktoTrain, resolveKtoOptions, defaultKtoOptions, type KtoTrainOptions, type KtoTunables, type KtoRecord, type KtoTrainResult } from './kto-train.js';

// Shared options
export { type OptimizationTunables } from './common.js';
