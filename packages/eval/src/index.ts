// Perplexity
export { perplexity, defaultPerplexityOptions, type PerplexityOptions, type PerplexityResult } from '@posttrain/policy';
export { recordsPerplexity, defaultRecordsPerplexityOptions, type RecordsPerplexityOptions } from './records-perplexity.js';

// Verifiable tasks: exact match, pass@k, self-consistency, calibration
export { exactMatch, defaultExactMatchOptions, type ExactMatchOptions, type ExactMatchResult, type ExactMatchTask } from './exact-match.js';
export { passAtK, meanPassAtK, samplePassAtK, defaultSamplePassAtKOptions, type SamplePassAtKOptions } from './pass-at-k.js';
export {
  selfConsistency,
  majorityVote,
  chainOfThoughtPrompt,
  extractFinalAnswer,
  wholeCompletion,
  defaultSelfConsistencyOptions,
  type SelfConsistencyOptions,
  type SelfConsistencyResult,
  type SelfConsistencyQuestion,
} from './self-consistency.js';
export {
  expectedCalibrationError,
  answerProbabilities,
  calibration,
  defaultCalibrationOptions,
  type CalibrationOptions,
  type CalibrationResult,
  type CalibrationBin,
} from './calibration.js';

// Comparing two models: reward-model win rate and an LLM judge
export { rewardWinRate, winRateOf, type WinRateResult, type RewardWinRateResult } from './win-rate.js';
export { generatorJudge, judgeWinRate, parsePairwiseVerdict, PAIRWISE_JUDGE_TEMPLATE, type PairwiseJudge, type PairwiseVerdict } from './judge.js';

// Instruction following (IFEval's verifiable instructions)
export {
  checkInstruction,
  ifevalAccuracy,
  ifevalInstructionIds,
  defaultIfevalOptions,
  type IfevalInstructionId,
  type IfevalRecord,
  type IfevalResult,
  type IfevalOptions,
} from './ifeval.js';
export { countWords, countSentences } from './ifeval-text.js';
