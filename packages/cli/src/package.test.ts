import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as cli from './index.js';
import { TINY_BASE_DIR } from './demo.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(cli).sort()).toEqual([
      'LORA_SPECS',
      'UsageError',
      'allCommands',
      'camel',
      'chartSvg',
      'chartsFromMetrics',
      'coerce',
      'commands',
      'defaultPipelineOptions',
      'demoCommand',
      'editDistance',
      'evaluate',
      'helpText',
      'kebab',
      'nearest',
      'parseOptions',
      'readConfigFile',
      'renderReport',
      'runCli',
      'runPipeline',
      'tunableSpecs',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(cli)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });

  it('ships the same tiny base as examples/sft (a copy, so the published package is self-contained)', () => {
    for (const file of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
      const shipped = readFileSync(new URL(file, `file://${TINY_BASE_DIR}`));
      const original = readFileSync(new URL(`../../../examples/sft/tiny-base/${file}`, import.meta.url));
      expect(shipped.equals(original), file).toBe(true);
    }
  });
});
