// The reward model
export { RewardModel, defaultRewardModelOptions, type RewardModelOptions, type RewardForwardOptions, type RewardOutput } from './reward-model.js';

// Training and evaluation
export type { RewardRecord } from './pairs.js';
export { rewardTrain, resolveRewardOptions, defaultRewardOptions, type RewardTrainOptions, type RewardTunables, type RewardTrainResult } from './reward-train.js';
export { evaluateRewardModel, defaultEvaluateRewardOptions, type RewardEvaluation, type EvaluateRewardOptions } from './evaluate.js';

// Saving and loading
export { saveRewardModel, loadRewardModel, defaultSaveRewardModelOptions, type SaveRewardModelOptions, type LoadRewardModelOptions } from './reward-io.js';
