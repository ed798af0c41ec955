// Preference optimisation: DPO and its family, SimPO and ORPO through one trainer
export { dpoTrain, resolveDpoOptions, defaultDpoOptions, type DpoOptions, type DpoTunables, type DpoRecord, type DpoResult } from './dpo-train.js';

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

// Unpaired preferences
export { ktoTrain, resolveKtoOptions, defaultKtoOptions, type KtoOptions, type KtoTunables, type KtoRecord, type KtoResult } from './kto-train.js';

// Shared options
export { type OptimizationTunables, type PreferenceTrainerOptions } from './common.js';
