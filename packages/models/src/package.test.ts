import { describe, expect, it } from 'vitest';
import * as models from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(models).sort()).toMatchInlineSnapshot(`
      [
        "Gpt2LMHeadModel",
        "LayerKVCache",
        "LlamaForCausalLM",
        "configFromHf",
        "configToHf",
        "createModel",
        "defaultCreateModelOptions",
        "defaultGenerateOptions",
        "defaultLoadModelOptions",
        "defaultSaveModelOptions",
        "generate",
        "loadModel",
        "saveModel",
        "supportedModelTypes",
      ]
    `);
  });
});
