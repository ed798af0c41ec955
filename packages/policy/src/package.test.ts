import { describe, expect, it } from 'vitest';
import * as policy from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(policy).sort()).toEqual([
      'accumulateHessians',
      'appendJsonl',
      'calibrationTargets',
      'calibrationTokens',
      'captureLinearInputs',
      'checkPromptRecords',
      'collatePairs',
      'collectRollout',
      'completionRows',
      'completionsPath',
      'createReference',
      'dampedInverseHessianFactor',
      'defaultAccumulateHessiansOptions',
      'defaultCalibrationLayers',
      'defaultGenerateOptions',
      'defaultInProcessGeneratorOptions',
      'defaultPerplexityOptions',
      'defaultSequenceLogpsOptions',
      'encodePrompts',
      'exampleLogps',
      'formatReward',
      'generate',
      'inEvalMode',
      'inProcessGenerator',
      'namedReward',
      'overlongPenalty',
      'padTokenIdOf',
      'perplexity',
      'resolveRewardFunctions',
      'rewardModelReward',
      'rewardNames',
      'rolloutExamples',
      'rolloutMetrics',
      'rolloutSchedule',
      'samplingDistribution',
      'scoreRewards',
      'sequenceLogps',
      'taskReward',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(policy)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
