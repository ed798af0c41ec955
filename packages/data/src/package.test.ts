import { describe, expect, it } from 'vitest';
import * as data from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(data).sort()).toEqual([
      'ByteTokenizer',
      'CHATML_TEMPLATE',
      'IGNORE_INDEX',
      'RecordError',
      'additionTask',
      'applyChatTemplate',
      'collateForGeneration',
      'collateForTraining',
      'defaultAdditionOptions',
      'defaultApplyChatTemplateOptions',
      'defaultByteTokenizerOptions',
      'defaultCollateOptions',
      'defaultDecodeOptions',
      'defaultEncodeOptions',
      'defaultGenerateSplitOptions',
      'defaultPackOptions',
      'defaultReadRecordsOptions',
      'defaultReversalOptions',
      'defaultSortingOptions',
      'defaultTokenizeOptions',
      'defineVerifiableTask',
      'detectFormat',
      'extractPrompt',
      'generateSplit',
      'isConversational',
      'loadTokenizer',
      'modelLimits',
      'pack',
      'readJsonl',
      'readRecords',
      'reversalTask',
      'sortingTask',
      'tokenizeLanguageModeling',
      'tokenizePreference',
      'tokenizePromptCompletion',
      'trimCompletion',
      'validateRecord',
      'verifiableTasks',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(data)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
