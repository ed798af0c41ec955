import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultSftOptions } from '@posttrain/sft';
import { defaultGrpoOptions, defaultPpoOptions } from '@posttrain/rl-ppo';
import { helpText, nearest, parseOptions, type OptionSpec } from './options.js';
import { LORA_SPECS, tunableSpecs } from './specs.js';

const specs: OptionSpec[] = [
  { name: 'model', type: 'string', required: true },
  { name: 'lr', type: 'number', default: 2e-4 },
  { name: 'maxSteps', type: 'integer?' },
  { name: 'schedule', type: 'string', default: 'linear', choices: ['constant', 'linear', 'cosine'] },
  { name: 'useLora', type: 'boolean', default: false },
  { name: 'targets', type: 'strings', default: ['all-linear'] },
];
const dir = mkdtempSync(join(tmpdir(), 'posttrain-options-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('parseOptions', () => {
  it('reads kebab-case flags, --x=v, booleans with and without a value, --no-, lists, and fills defaults', () => {
    const { values, given } = parseOptions('sft', specs, ['--model', 'm', '--lr=0.005', '--max-steps', '20', '--use-lora', '--targets', 'q_proj,v_proj', '--targets', 'o_proj']);
    expect(values).toEqual({ model: 'm', lr: 0.005, maxSteps: 20, schedule: 'linear', useLora: true, targets: ['q_proj', 'v_proj', 'o_proj'] });
    expect([...given].sort()).toEqual(['lr', 'maxSteps', 'model', 'targets', 'useLora']);
    expect(parseOptions('sft', specs, ['--model', 'm', '--use-lora', 'false']).values.useLora).toBe(false);
    expect(parseOptions('sft', specs, ['--model', 'm', '--no-use-lora']).values.useLora).toBe(false);
    expect(parseOptions('sft', specs, ['--model', 'm', '--max-steps', 'null']).values.maxSteps).toBeNull();
  });

  it('takes a YAML config (snake_case or camelCase keys), flags overriding it', () => {
    const config = file('run.yaml', 'model: tiny\nlearning_rate_unused: 1\n');
    expect(() => parseOptions('sft', specs, ['--config', config])).toThrow(/run\.yaml: learning_rate_unused \(line 2\): unknown option "learning_rate_unused"/);
    const good = file('good.yaml', '# a run\nmodel: tiny\nmax_steps: 50\nlr: 1.0e-3\nschedule: cosine\ntargets: [q_proj, v_proj]\n');
    const { values } = parseOptions('sft', specs, ['--config', good, '--lr', '0.01']);
    expect(values).toEqual({ model: 'tiny', maxSteps: 50, lr: 0.01, schedule: 'cosine', useLora: false, targets: ['q_proj', 'v_proj'] });
    const json = file('run.json', '{ "model": "tiny", "maxSteps": 7 }');
    expect(parseOptions('sft', specs, ['--config', json]).values.maxSteps).toBe(7);
  });

  it('names the line and column of a syntax error (YAML and JSON)', () => {
    const yaml = file('bad.yaml', 'model: tiny\nlr: [1, 2\nmax_steps: 3\n');
    expect(() => parseOptions('sft', specs, ['--config', yaml])).toThrow(/bad\.yaml:\d+:\d+: YAML syntax error/);
    const tab = file('tab.yaml', 'model: tiny\n  lr: 1\n');
    expect(() => parseOptions('sft', specs, ['--config', tab])).toThrow(/tab\.yaml:1:8: YAML syntax error: Nested mappings are not allowed/);
    const json = file('bad.json', '{\n  "model": "tiny",\n  "lr": 0.1,,\n}');
    expect(() => parseOptions('sft', specs, ['--config', json])).toThrow(/bad\.json:3:\d+: invalid JSON/);
  });

  it('names the key, the expected type and the received value of a wrong type', () => {
    const config = file('types.yaml', 'model: tiny\nlr: fast\n');
    expect(() => parseOptions('sft', specs, ['--config', config])).toThrow(/types\.yaml: lr \(line 2\): expected a number; got "fast" \(string\)/);
    expect(() => parseOptions('sft', specs, ['--model', 'm', '--max-steps', '2.5'])).toThrow(/--max-steps: expected an integer or null; got "2.5"/);
    expect(() => parseOptions('sft', specs, ['--model', 'm', '--schedule', 'cosin'])).toThrow(/--schedule: expected a string \(one of constant, linear, cosine\); got "cosin"/);
    const list = file('list.yaml', 'model: tiny\nuse_lora: yes please\n');
    expect(() => parseOptions('sft', specs, ['--config', list])).toThrow(/use_lora \(line 2\): expected true or false; got "yes please" \(string\)/);
  });

  it('rejects unknown flags with the nearest one, and missing required options', () => {
    expect(() => parseOptions('sft', specs, ['--model', 'm', '--max-step', '3'])).toThrow(/unknown option --max-step; did you mean --max-steps\?/);
    expect(() => parseOptions('sft', specs, ['--lr', '1'])).toThrow(/--model is required/);
    expect(() => parseOptions('sft', specs, ['model'])).toThrow(/unexpected argument "model"/);
    expect(() => parseOptions('sft', specs, ['--model'])).toThrow(/--model: expected a string after it; got nothing/);
    expect(parseOptions('sft', specs, ['--help']).help).toBe(true);
  });

  it('suggests near words only', () => {
    expect(nearest('sfd', ['sft', 'dpo', 'grpo'])).toBe('sft');
    expect(nearest('gpro', ['sft', 'dpo', 'grpo'])).toBe('grpo');
    expect(nearest('banana', ['sft', 'dpo'])).toBeUndefined();
  });
});

describe('trainer flags', () => {
  it('are read off the defaults object, typed by their default, and listed by --help with it', () => {
    const sft = tunableSpecs(defaultSftOptions);
    const byName = new Map(sft.map((s) => [s.name, s]));
    expect(byName.get('lr')).toMatchObject({ type: 'number', default: 2e-4 });
    expect(byName.get('batchSize')).toMatchObject({ type: 'integer', default: 8 });
    expect(byName.get('maxSteps')).toMatchObject({ type: 'integer?' });
    expect(byName.get('completionOnlyLoss')).toMatchObject({ type: 'boolean', default: true });
    expect(byName.has('callbacks') || byName.has('progressStream') || byName.has('lora')).toBe(false);
    // A whole default does not make a real-valued option an integer.
    const grpo = new Map(tunableSpecs(defaultGrpoOptions).map((s) => [s.name, s.type]));
    expect([grpo.get('topP'), grpo.get('minP'), grpo.get('topK'), grpo.get('numGenerations')]).toEqual(['number', 'number', 'integer', 'integer']);
    expect(new Map(tunableSpecs(defaultPpoOptions).map((s) => [s.name, s.type])).get('gamma')).toBe('number');
    const help = helpText('sft', 'supervised fine-tuning', [...sft, ...LORA_SPECS]);
    expect(help).toMatch(/--lr <number>\s+peak learning rate of AdamW \(default 0\.0002\)/);
    expect(help).toMatch(/--batch-size <integer>\s+examples per micro-batch \(default 8\)/);
    expect(help).toMatch(/--lora-r <integer>\s+adapter rank \(default 16\)/);
  });
});
