import { describe, expect, it } from 'vitest';
import * as evaluation from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(evaluation).sort()).toEqual([
      'PAIRWISE_JUDGE_TEMPLATE',
      'answerProbabilities',
      'calibration',
      'chainOfThoughtPrompt',
      'checkInstruction',
      'countSentences',
      'countWords',
      'defaultCalibrationOptions',
      'defaultExactMatchOptions',
      'defaultIfevalOptions',
      'defaultPerplexityOptions',
      'defaultRecordsPerplexityOptions',
      'defaultSamplePassAtKOptions',
      'defaultSelfConsistencyOptions',
      'exactMatch',
      'expectedCalibrationError',
      'extractFinalAnswer',
      'generatorJudge',
      'ifevalAccuracy',
      'ifevalInstructionIds',
      'judgeWinRate',
      'majorityVote',
      'meanPassAtK',
      'parsePairwiseVerdict',
      'passAtK',
      'perplexity',
      'recordsPerplexity',
      'rewardWinRate',
      'samplePassAtK',
      'selfConsistency',
      'wholeCompletion',
      'winRateOf',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(evaluation)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
