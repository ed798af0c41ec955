// Generation
export { generate, defaultGenerateOptions, type GenerateOptions, type GenerateResult, type FinishReason } from './generate.js';
export { samplingDistribution, type SamplingFilters } from './sampling.js';

// Log-probs of sequences
export {
  sequenceLogps,
  exampleLogps,
  defaultSequenceLogpsOptions,
  type SequenceLogpsOptions,
  type SequenceLogpsResult,
  type ScoredBatch,
  type ExampleLogpsOptions,
} from './sequence-logps.js';

// Reference models
export { createReference, inEvalMode, type Reference, type ReferenceOption, type ReferenceContext } from './reference.js';

// Batches
export { padTokenIdOf } from './pad.js';
export { collatePairs, type PairBatch, type TokenizedPair } from './pairs.js';

// Rollouts of the online trainers
export {
  inProcessGenerator,
  defaultInProcessGeneratorOptions,
  type Generator,
  type GenerationRequest,
  type Completion,
  type InProcessGeneratorOptions,
} from './generator.js';
export {
  scoreRewards,
  rewardNames,
  namedReward,
  taskReward,
  formatReward,
  overlongPenalty,
  rewardModelReward,
  type RewardBatch,
  type RewardFunction,
  type ScoredRewards,
  type TaskRewardOptions,
  type ScalarRewardModel,
} from './rewards.js';
export {
  collectRollout,
  rolloutExamples,
  rolloutMetrics,
  completionRows,
  rolloutSchedule,
  type PromptRecord,
  type Rollout,
  type CollectRolloutOptions,
  type RolloutScheduleShape,
  type RolloutHooks,
} from './rollout.js';
export { checkPromptRecords, encodePrompts, resolveRewardFunctions, completionsPath, appendJsonl, type PromptFit } from './online-inputs.js';

// Calibration statistics (GPTQ, pruning)
export {
  captureLinearInputs,
  accumulateHessians,
  calibrationTargets,
  calibrationTokens,
  defaultCalibrationLayers,
  defaultAccumulateHessiansOptions,
  type CalibrationBatch,
  type LinearLayerFilter,
  type CaptureLinearInputsOptions,
  type AccumulateHessiansOptions,
  type LayerInputStatistics,
} from './calibration.js';
export { dampedInverseHessianFactor } from './hessian-inverse.js';

// Perplexity (sliding windows; a later eval package re-exports it)
export { perplexity, defaultPerplexityOptions, type PerplexityOptions, type PerplexityResult } from './perplexity.js';
