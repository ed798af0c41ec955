import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import * as core from './index.js';

const run = promisify(execFile);
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const dist = join(packageDir, 'dist', 'index.js');

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(core).sort()).toEqual([
      'AdamW',
      'Conv1D',
      'Dropout',
      'Embedding',
      'LayerNorm',
      'Linear',
      'MAX_SAFETENSORS_HEADER_BYTES',
      'Module',
      'ModuleList',
      'PosttrainError',
      'RMSNorm',
      'Rng',
      'SGD',
      'checkNumber',
      'checkpointQuantizer',
      'checkpointQuantizers',
      'clipGradNorm',
      'clipGradNormAsync',
      'configFromHf',
      'configToHf',
      'constantSchedule',
      'cosineSchedule',
      'decodeSafetensorsTensor',
      'defaultAdamWOptions',
      'defaultConstantScheduleOptions',
      'defaultConv1DOptions',
      'defaultCosineScheduleOptions',
      'defaultEmbeddingOptions',
      'defaultLayerNormOptions',
      'defaultLinearOptions',
      'defaultLinearScheduleOptions',
      'defaultRMSNormOptions',
      'defaultReadCheckpointOptions',
      'defaultRng',
      'defaultSGDOptions',
      'defaultWriteCheckpointOptions',
      'defaultWriteSafetensorsOptions',
      'describeValue',
      'fileSource',
      'fileTarget',
      'formatError',
      'formatShape',
      'geluTanh',
      'initBackend',
      'isPosttrainError',
      'linearSchedule',
      'manualSeed',
      'parseSafetensorsHeader',
      'readCheckpoint',
      'readSafetensors',
      'registerCheckpointQuantizer',
      'resolveOptions',
      'runMain',
      'silu',
      'stopGradient',
      'supportedModelTypes',
      'tf',
      'unregisterCheckpointQuantizer',
      'valueAndGrads',
      'withDropoutRng',
      'writeCheckpoint',
      'writeSafetensors',
      'writeSafetensorsAsync',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(core)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});

// The built package, loaded the ways users load it. Needs `npm run build` (CI builds first).
const probe = (call: string) => `
const info = await initBackend('cpu');
const g = tf.grad((x) => x.square().sum())(tf.tensor([1, 2, 3]));
const layer = new Linear(3, 2);
console.log(JSON.stringify({ backend: info.name, grad: Array.from(await g.data()), params: [...layer.namedParameters().keys()], ${call} }));`;

function parse(stdout: string): { backend: string; grad: number[]; params: string[] } {
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
}

function expectWorking(result: { backend: string; grad: number[]; params: string[] }): void {
  expect(result.backend).toBe('cpu');
  expect(result.grad).toEqual([2, 4, 6]); // gradients registered
  expect(result.params).toEqual(['weight', 'bias']);
}

describe.skipIf(!existsSync(dist))('the built package loads', () => {
  it('with declarations that bring the chained-op methods (x.add(y)) to users', () => {
    const declarations = readFileSync(join(packageDir, 'dist', 'index.d.ts'), 'utf8');
    expect(declarations.split('\n')[0]).toBe("import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';");
  });

  it('in Node ESM', async () => {
    const code = `import { tf, initBackend, Linear } from '@posttrain/tensor-core';${probe('esm: true')}`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: packageDir });
    expectWorking(parse(stdout));
  });

  it('in Node CJS, with chained ops', async () => {
    const code = `(async () => { const { tf, initBackend, Linear } = require('@posttrain/tensor-core');${probe('chained: typeof tf.ones([1]).add')} })();`;
    const { stdout } = await run(process.execPath, ['-e', code], { cwd: packageDir });
    const result = parse(stdout) as ReturnType<typeof parse> & { chained: string };
    expectWorking(result);
    expect(result.chained).toBe('function');
  });

  it('under tsx', async () => {
    const dir = mkdtempSync(join(packageDir, '.tsx-probe-'));
    try {
      const file = join(dir, 'probe.mts');
      writeFileSync(file, `import { tf, initBackend, Linear } from '@posttrain/tensor-core';${probe('tsx: true')}`);
      const tsx = fileURLToPath(new URL('../../../node_modules/tsx/dist/cli.mjs', import.meta.url));
      const { stdout } = await run(process.execPath, [tsx, file], { cwd: packageDir });
      expectWorking(parse(stdout));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!existsSync('/usr/bin/chromium'))(
    'in a browser bundle (esbuild, headless chromium)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'posttrain-browser-'));
      try {
        const entry = join(dir, 'entry.js');
        writeFileSync(
          entry,
          `import { tf, initBackend, Linear } from '@posttrain/tensor-core';
         window.result = (async () => {${probe('browser: true')
           .replace('console.log(JSON.stringify(', 'return (')
           .replace(/\)\);$/, ');')} })();`,
        );
        const bundle = await build({
          entryPoints: [entry],
          bundle: true,
          write: false,
          format: 'iife',
          platform: 'browser',
          nodePaths: [join(packageDir, 'node_modules'), join(packageDir, '..', '..', 'node_modules')],
          logLevel: 'silent',
        });
        const { chromium } = await import('playwright-core');
        const browser = await chromium.launch({
          executablePath: '/usr/bin/chromium',
          args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
        });
        try {
          const page = await browser.newPage();
          await page.addScriptTag({ content: bundle.outputFiles[0].text });
          expectWorking(await page.evaluate(() => (window as unknown as { result: Promise<ReturnType<typeof parse>> }).result));
        } finally {
          await browser.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
