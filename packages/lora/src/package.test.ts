import { describe, expect, it } from 'vitest';
import * as lora from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(lora).sort()).toEqual([
      'ADAPTER_CONFIG_FILE',
      'ADAPTER_WEIGHTS_FILE',
      'AdapterDict',
      'LoraLinear',
      'applyLora',
      'defaultLoadAdapterOptions',
      'defaultLoraLinearOptions',
      'defaultLoraOptions',
      'defaultMergeAdapterOptions',
      'defaultSaveAdapterOptions',
      'dispatchConv1D',
      'dispatchLinear',
      'dispatchLinearLike',
      'isLinearLike',
      'loadAdapter',
      'loraAdapters',
      'loraDispatchers',
      'loraLayers',
      'matchesTarget',
      'mergeAdapter',
      'mergeAndUnload',
      'saveAdapter',
      'setAdapter',
      'topSingularTriplets',
      'trainableReport',
      'unmergeAdapter',
      'withAdaptersDisabled',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(lora)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
