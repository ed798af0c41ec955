import { expect, it } from 'vitest';
import * as lora from './index.js';

it('has the intended public surface', () => {
  expect(Object.keys(lora).sort()).toEqual([
    'ADAPTER_CONFIG_FILE', 'ADAPTER_WEIGHTS_FILE', 'AdapterDict', 'LoraLinear', 'applyLora', 'defaultLoadAdapterOptions',
    'defaultLoraLinearOptions', 'defaultLoraOptions',
    'defaultSaveAdapterOptions', 'dispatchConv1D', 'dispatchLinear', 'dispatchLinearLike', 'isLinearLike', 'loadAdapter', 'loraAdapters', 'loraDispatchers', 'loraLayers', 'matchesTarget',
    'mergeAdapter',
      'mergeAndUnload', 'saveAdapter', 'setAdapter', 'topSingularTriplets', 'trainableReport', 'unmergeAdapter', 'withAdaptersDisabled',
  ]);
});
