import { describe, expect, it } from 'vitest';
import * as reward from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(reward).sort()).toEqual([
      'RewardModel',
      'defaultEvaluateRewardOptions',
      'defaultRewardModelOptions',
      'defaultRewardOptions',
      'defaultSaveRewardModelOptions',
      'evaluateRewardModel',
      'loadRewardModel',
      'resolveRewardOptions',
      'rewardTrain',
      'saveRewardModel',
    ]);
  });
});
