import { describe, expect, it } from 'vitest';
import * as prune from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(prune).sort()).toEqual([
      'MIN_STRUCTURED_CALIBRATION_TOKENS',
      'MaskedConv1D',
      'MaskedLinear',
      'applyMasks',
      'defaultKeepMasksOptions',
      'defaultMagnitudeGlobalOptions',
      'defaultMagnitudeOptions',
      'defaultPruneHeadsOptions',
      'defaultPruneMlpChannelsOptions',
      'defaultPruneModelOptions',
      'defaultSparseGptOptions',
      'defaultSparsityReportOptions',
      'defaultWandaOptions',
      'keepMasks',
      'magnitudePrune',
      'magnitudePruneGlobal',
      'maskFromZeros',
      'maskedLayers',
      'nmMask',
      'nmViolations',
      'pruneHeads',
      'pruneMlpChannels',
      'pruneModel',
      'removeMasks',
      'sparsegptPrune',
      'sparsityReport',
      'wandaPrune',
    ]);
  });
});
