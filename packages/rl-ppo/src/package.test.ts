import { describe, expect, it } from 'vitest';
import * as rl from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(rl).sort()).toEqual([
      'defaultGrpoOptions',
      'defaultPpoOptions',
      'defaultRlooOptions',
      'grpoTrain',
      'ppoTrain',
      'resolveGrpoOptions',
      'resolvePpoOptions',
      'resolveRlooOptions',
      'rlooTrain',
    ]);
  });

  it('freezes every default*Options object, and its defaults are TRL’s', () => {
    for (const [name, value] of Object.entries(rl)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
    // GRPOConfig: loss_type 'dapo', beta 0, num_generations 8, epsilon 0.2, num_iterations 1, scale_rewards 'group', learning_rate 1e-6.
    expect(rl.defaultGrpoOptions).toMatchObject({ lossType: 'dapo', beta: 0, numGenerations: 8, epsilon: 0.2, epsilonHigh: null, numIterations: 1, scaleRewards: 'group', lr: 1e-6, temperature: 1 });
    // RLOOConfig: num_generations 2, beta 0.05. PPOConfig: num_ppo_epochs 4, num_mini_batches 1, kl_coef 0.05, cliprange 0.2, vf_coef 0.1, gamma 1, lam 0.95.
    expect(rl.defaultRlooOptions).toMatchObject({ numGenerations: 2, beta: 0.05, normalizeAdvantages: false, rewardClipRange: null });
    expect(rl.defaultPpoOptions).toMatchObject({ numPpoEpochs: 4, numMiniBatches: 1, klCoef: 0.05, cliprange: 0.2, cliprangeValue: 0.2, vfCoef: 0.1, gamma: 1, lam: 0.95 });
  });
});
