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

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(reward)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
