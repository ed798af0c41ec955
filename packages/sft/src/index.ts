// Supervised fine-tuning
export { sftTrain, resolveSftOptions, defaultSftOptions, type SftTrainOptions, type SftTunables, type SftRecord, type SftTrainResult } from './sft-train.js';

// Evaluation
export { exactMatch, defaultExactMatchOptions, type ExactMatchOptions, type ExactMatchResult, type ExactMatchTask } from './exact-match.js';
