// The `posttrain` command end to end on the shipped tiny base: tiny runs of each kind of command,
// the files they write, and the failures a user meets (exit codes, messages, nothing overwritten).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateSplit, reversalTask } from '@posttrain/data';
import { runCli } from './main.js';
import { TINY_BASE_DIR } from './demo.js';

/** Runs the CLI in process, capturing stdout and stderr. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t), isTTY: false } });
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'posttrain-cli-'));
const path = (name: string) => join(dir, name);

beforeAll(() => {
  const { train, test } = generateSplit(reversalTask, 0, { train: 64, test: 8, taskOptions: { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 }, uniqueTrain: false });
  const lines = (rows: object[]) => `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
  writeFileSync(path('sft.jsonl'), lines(train.map((e) => reversalTask.toPromptCompletion(e))));
  writeFileSync(path('eval.jsonl'), lines(test.map((e) => reversalTask.toPromptCompletion(e))));
  writeFileSync(path('pairs.jsonl'), lines(train.map((e, i) => reversalTask.preferencePair(e, i))));
  writeFileSync(path('text.jsonl'), lines(train.slice(0, 16).map((e) => ({ text: `${e.prompt}${e.answer}` }))));
  writeFileSync(
    path('kto.jsonl'),
    lines(
      train.flatMap((e, i) => [
        { prompt: e.prompt, completion: e.answer, label: true },
        { prompt: e.prompt, completion: reversalTask.preferencePair(e, i).rejected, label: false },
      ]),
    ),
  );
  writeFileSync(path('prompts.jsonl'), lines(train.map((e) => ({ prompt: e.prompt, answer: e.answer }))));
  writeFileSync(
    path('ifeval.jsonl'),
    lines([
      { key: 1, prompt: 'abc>', instruction_id_list: ['punctuation:no_comma'], kwargs: [{}] },
      { key: 2, prompt: 'abd>', instruction_id_list: ['length_constraints:number_words'], kwargs: [{ relation: 'at least', num_words: 300 }] },
    ]),
  );
});

describe('posttrain: usage errors', () => {
  it('suggests the nearest command for an unknown one, exits 2, prints no stack', async () => {
    const r = await cli('sfd', '--model', 'x');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /^error: unknown command "sfd"; did you mean sft\?\nhelp: commands: sft, reward, dpo, kto, grpo, rloo, ppo, online-dpo, distill, quantize, prune, eval, generate, merge, demo\n$/,
    );
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('lists every command, and every option of a command with its default', async () => {
    const all = await cli('--help');
    expect(all.code).toBe(0);
    for (const name of ['sft', 'reward', 'dpo', 'kto', 'grpo', 'rloo', 'ppo', 'online-dpo', 'distill', 'quantize', 'prune', 'eval', 'generate', 'merge', 'demo'])
      expect(all.out).toContain(`  ${name} `);
    const dpo = await cli('dpo', '--help');
    expect(dpo.code).toBe(0);
    expect(dpo.out).toMatch(/--beta <number>\s+strength of the KL \(or implicit-reward\) term \(default 0\.1\)/);
    expect(dpo.out).toMatch(/--model <string>.*\(required\)/);
    const grpo = await cli('grpo', '--help');
    expect(grpo.out).toMatch(/--num-generations <integer>.*\(default 8\)/);
    expect(grpo.out).toMatch(/--loss-type <string>.*\(default dapo\)/);
  });

  it('names a missing model directory; --debug adds the stack', async () => {
    const r = await cli('sft', '--model', path('nowhere'), '--dataset', path('sft.jsonl'), '--output-dir', path('never'));
    expect(r.code).toBe(2);
    expect(r.err).toContain(`error: --model: model directory ${path('nowhere')} does not exist`);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(existsSync(path('never'))).toBe(false);
    const debug = await cli('sft', '--model', path('nowhere'), '--dataset', path('sft.jsonl'), '--debug');
    expect(debug.err).toMatch(/\n\s+at /);
  });

  it('refuses an output directory holding another run, and overwrites nothing', async () => {
    const out = path('taken');
    mkdirSync(out);
    writeFileSync(join(out, 'adapter_model.safetensors'), 'precious');
    const r = await cli('sft', '--model', TINY_BASE_DIR, '--dataset', path('sft.jsonl'), '--output-dir', out, '--max-steps', '1');
    expect(r.code).toBe(2);
    expect(r.err).toContain(`--output-dir: ${out} already holds another run's files (adapter_model.safetensors); nothing was written`);
    expect(r.err).toContain('help: pass --overwrite to replace them');
    expect(readdirSync(out)).toEqual(['adapter_model.safetensors']);
    expect(readFileSync(join(out, 'adapter_model.safetensors'), 'utf8')).toBe('precious');
  });

  it('names the line of a malformed JSONL record and the key of a wrong config type', async () => {
    writeFileSync(path('broken.jsonl'), '{"prompt": "ab>", "completion": "ba"}\n{"prompt": "ab>", \n');
    const r = await cli('sft', '--model', TINY_BASE_DIR, '--dataset', path('broken.jsonl'), '--output-dir', path('broken-out'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/line 2/);
    writeFileSync(path('wrong.yaml'), `model: ${TINY_BASE_DIR}\nmax_steps: many\n`);
    const w = await cli('sft', '--config', path('wrong.yaml'));
    expect(w.code).toBe(2);
    expect(w.err).toContain('wrong.yaml: max_steps (line 2): expected an integer or null; got "many" (string)');
  });
});

describe('posttrain: runs', () => {
  it('sft (LoRA) → merge → generate → eval → quantize → prune, with metrics, summary and report', async () => {
    writeFileSync(path('sft.yaml'), `model: ${TINY_BASE_DIR}\ndataset: ${path('sft.jsonl')}\nuse_lora: true\nlr: 5.0e-3\nmax_steps: 4\nbatch_size: 8\nbackend: cpu\n`);
    const sft = await cli('sft', '--config', path('sft.yaml'), '--max-steps', '3', '--output-dir', path('sft'), '--report', path('sft/report.html'), '--eval-dataset', path('eval.jsonl'));
    expect(sft.err).not.toMatch(/^error/m);
    expect(sft.code).toBe(0);
    expect(readdirSync(path('sft')).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'metrics.jsonl', 'report.html', 'summary.json', 'tokenizer.json', 'tokenizer_config.json']);
    const summary = JSON.parse(readFileSync(path('sft/summary.json'), 'utf8'));
    expect(summary.steps).toBe(3); // the flag overrode the file's max_steps: 4
    expect(summary.options.lr).toBe(5e-3);
    const metrics = readFileSync(path('sft/metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.filter((m) => m.kind === 'train').map((m) => m.step)).toEqual([1, 2, 3]);
    expect(readFileSync(path('sft/report.html'), 'utf8')).toContain('<svg class="chart"');

    const merged = await cli('merge', '--model', TINY_BASE_DIR, '--adapter', path('sft'), '--output-dir', path('merged'), '--backend', 'cpu');
    expect(merged.code).toBe(0);
    expect(readdirSync(path('merged'))).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json']));

    const generated = await cli('generate', '--model', path('merged'), '--prompt', 'abc>', '--prompt', 'dcb>', '--max-new-tokens', '4', '--backend', 'cpu');
    expect(generated.code).toBe(0);
    expect(generated.out.split('\n').filter((l) => l.startsWith('abc>') || l.startsWith('dcb>'))).toHaveLength(2);

    const evaluated = await cli(
      'eval',
      '--model',
      path('merged'),
      '--task',
      'reversal',
      '--eval-examples',
      '8',
      '--dataset',
      path('eval.jsonl'),
      '--pass-k',
      '2',
      '--output-dir',
      path('eval'),
      '--backend',
      'cpu',
    );
    expect(evaluated.code).toBe(0);
    const results = JSON.parse(readFileSync(path('eval/eval.json'), 'utf8'));
    expect(Object.keys(results)).toEqual(['perplexity', 'nll', 'exact_match', 'ece', 'mean_confidence', 'pass@1', 'pass@2']);
    expect(results.perplexity).toBeGreaterThan(1);
    expect(results['pass@2']).toBeGreaterThanOrEqual(results['pass@1']);

    const quantized = await cli('quantize', '--model', path('merged'), '--scheme', 'int4', '--group-size', '32', '--output-dir', path('int4'), '--backend', 'cpu');
    expect(quantized.code).toBe(0);
    expect(JSON.parse(readFileSync(path('int4/config.json'), 'utf8')).quantization_config).toBeDefined();

    const pruned = await cli(
      'prune',
      '--model',
      path('merged'),
      '--method',
      'wanda',
      '--pattern',
      '2:4',
      '--calibration-dataset',
      path('text.jsonl'),
      '--output-dir',
      path('pruned'),
      '--backend',
      'cpu',
    );
    expect(pruned.code).toBe(0);
    expect(pruned.out).toMatch(/sparsity of the pruned layers 50\.0%/);
    const noCalibration = await cli('prune', '--model', path('merged'), '--method', 'sparsegpt', '--output-dir', path('pruned-2'), '--backend', 'cpu');
    expect(noCalibration.code).toBe(2);
    expect(noCalibration.err).toContain('--method sparsegpt: needs --calibration-dataset');
  });

  it('reward → dpo and grpo on a task, each writing its result', async () => {
    const reward = await cli('reward', '--model', TINY_BASE_DIR, '--dataset', path('pairs.jsonl'), '--max-steps', '2', '--output-dir', path('rm'), '--backend', 'cpu');
    expect(reward.code).toBe(0);
    expect(readdirSync(path('rm'))).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'metrics.jsonl']));
    const dpo = await cli('dpo', '--model', TINY_BASE_DIR, '--dataset', path('pairs.jsonl'), '--max-steps', '2', '--use-lora', '--output-dir', path('dpo'), '--backend', 'cpu');
    expect(dpo.code).toBe(0);
    expect(readdirSync(path('dpo'))).toContain('adapter_model.safetensors');
    const grpo = await cli(
      'grpo',
      '--model',
      TINY_BASE_DIR,
      '--task',
      'reversal',
      '--task-examples',
      '32',
      '--reward-funcs',
      'task',
      '--reward-model',
      path('rm'),
      '--max-steps',
      '1',
      '--num-generations',
      '2',
      '--batch-size',
      '8',
      '--max-completion-length',
      '4',
      '--use-lora',
      '--output-dir',
      path('grpo'),
      '--backend',
      'cpu',
    );
    expect(grpo.err).not.toMatch(/^error/m);
    expect(grpo.code).toBe(0);
    const rows = readFileSync(path('grpo/metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(Object.keys(rows.find((r) => r.kind === 'train'))).toEqual(expect.arrayContaining(['reward', 'rewards/reversal_exact_match/mean', 'rewards/reward_model/mean']));
    const noReward = await cli('grpo', '--model', TINY_BASE_DIR, '--task', 'reversal', '--output-dir', path('grpo-2'), '--backend', 'cpu');
    expect(noReward.code).toBe(2);
    expect(noReward.err).toContain('expected --reward-funcs task (with --task) or --reward-model <dir>; got no reward');

    // The other trainers, one or two steps each, from the files and the reward model above.
    const tiny = ['--max-steps', '1', '--batch-size', '4', '--backend', 'cpu'];
    for (const [name, args] of [
      ['kto', ['--dataset', path('kto.jsonl')]],
      ['rloo', ['--dataset', path('prompts.jsonl'), '--task', 'reversal', '--reward-funcs', 'task', '--num-generations', '2', '--max-completion-length', '4']],
      ['online-dpo', ['--dataset', path('prompts.jsonl'), '--task', 'reversal', '--reward-funcs', 'task-partial', '--max-new-tokens', '4']],
      ['ppo', ['--dataset', path('prompts.jsonl'), '--reward-model', path('rm'), '--max-completion-length', '4', '--num-ppo-epochs', '1', '--use-lora']],
      ['distill', ['--dataset', path('sft.jsonl'), '--teacher', TINY_BASE_DIR, '--lmbda', '0']],
    ] as const) {
      const r = await cli(name, '--model', TINY_BASE_DIR, ...args, ...tiny, '--output-dir', path(name));
      expect(r.err, name).not.toMatch(/^error/m);
      expect(r.code, name).toBe(0);
      const rows = readFileSync(path(`${name}/metrics.jsonl`), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(
        rows.filter((row) => row.kind === 'train').map((row) => row.step),
        name,
      ).toEqual([1]);
      expect(readdirSync(path(name)), name).toEqual(expect.arrayContaining(['summary.json', 'tokenizer.json']));
    }
  });

  it('eval: self-consistency, IFEval checks, reward-model win rate; quantize with GPTQ', async () => {
    const rm = path('rm-eval');
    expect((await cli('reward', '--model', TINY_BASE_DIR, '--dataset', path('pairs.jsonl'), '--max-steps', '1', '--output-dir', rm, '--backend', 'cpu')).code).toBe(0);
    const r = await cli(
      'eval',
      '--model',
      TINY_BASE_DIR,
      '--task',
      'reversal',
      '--eval-examples',
      '6',
      '--self-consistency',
      '3',
      '--ifeval',
      path('ifeval.jsonl'),
      '--reward-model',
      rm,
      '--compare',
      TINY_BASE_DIR,
      '--output-dir',
      path('eval-2'),
      '--backend',
      'cpu',
    );
    expect(r.err).not.toMatch(/^error/m);
    const results = JSON.parse(readFileSync(path('eval-2/eval.json'), 'utf8'));
    expect(Object.keys(results)).toEqual(['exact_match', 'ece', 'mean_confidence', 'self_consistency@3', 'sample_accuracy', 'win_rate', 'ifeval_prompt_level', 'ifeval_instruction_level']);
    expect(results.win_rate).toBe(0.5); // the same model on both sides: every pair ties
    expect(results.ifeval_prompt_level).toBe(results.ifeval_instruction_level); // one instruction per prompt
    expect(results.ifeval_instruction_level).toBeLessThanOrEqual(0.5); // nothing this short has 300 words
    const gptq = await cli(
      'quantize',
      '--model',
      TINY_BASE_DIR,
      '--scheme',
      'int4',
      '--group-size',
      '32',
      '--gptq',
      '--calibration-dataset',
      path('sft.jsonl'),
      '--output-dir',
      path('gptq'),
      '--backend',
      'cpu',
    );
    expect(gptq.err).not.toMatch(/^error/m);
    expect(gptq.out).toMatch(/GPTQ quantised 14 layers/);
    const nothing = await cli('eval', '--model', TINY_BASE_DIR, '--output-dir', path('eval-3'), '--backend', 'cpu');
    expect(nothing.code).toBe(2);
    expect(nothing.err).toContain('eval: nothing to measure');
  });
});
