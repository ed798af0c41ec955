// Supervised fine-tuning
export { sftTrain, resolveSftOptions, defaultSftOptions, type SftOptions, type SftTunables, type SftTrainerOptions, type SftRecord, type SftResult } from './sft-train.js';

// Evaluation
export { exactMatch, defaultExactMatchOptions, type ExactMatchOptions, type ExactMatchResult, type ExactMatchTask } from './exact-match.js';
