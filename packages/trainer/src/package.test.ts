import { describe, expect, it } from 'vitest';
import * as trainer from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(trainer).sort()).toEqual([
      'OPTIMIZER_FILE',
      'TRAINER_STATE_FILE',
      'checkEvalRecords',
      'checkFineTuneOptions',
      'defaultFineTuneTrainerOptions',
      'defaultTrainOptions',
      'findCheckpoint',
      'fineTune',
      'fineTunePlan',
      'fineTuneSchedule',
      'formatProgressBar',
      'formatProgressLine',
      'loadTrainerCheckpoint',
      'resolveTrainOptions',
      'saveTrainerCheckpoint',
      'shuffledOrder',
      'train',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(trainer)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
