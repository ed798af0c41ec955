import { describe, expect, it } from 'vitest';
import * as models from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(models).sort()).toEqual([
      'Gpt2LMHeadModel',
      'LayerKVCache',
      'LlamaForCausalLM',
      'createModel',
      'defaultCreateModelOptions',
      'defaultLoadModelOptions',
      'defaultSaveModelOptions',
      'loadModel',
      'saveModel',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(models)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});
