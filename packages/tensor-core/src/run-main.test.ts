import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PosttrainError } from './errors.js';
import { formatError, runMain } from './run-main.js';

const wasmNoise = 'var Module=typeof WasmBackendModule';

describe('formatError', () => {
  it('prints the code, the message and the help line, then each cause, without frames', () => {
    const cause = new RangeError('index 504 is not in [0, 259]');
    const error = new PosttrainError('INVALID_ARGUMENT', 'expected token ids below 260; got 504', { help: 'use the model’s tokenizer', cause });
    expect(formatError(error)).toBe(
      ['error [INVALID_ARGUMENT]: expected token ids below 260; got 504', 'help: use the model’s tokenizer', 'caused by (RangeError): index 504 is not in [0, 259]'].join('\n'),
    );
  });

  it('adds stack frames only when asked', () => {
    const error = new Error('boom');
    expect(formatError(error)).toBe('error (Error): boom');
    const withStack = formatError(error, { stack: true }).split('\n');
    expect(withStack[0]).toBe('error (Error): boom');
    expect(withStack.length).toBeGreaterThan(1);
    expect(withStack.slice(1).every((line) => /^\s+at /.test(line))).toBe(true);
  });

  it('prints thrown non-errors, cuts very long lines and stops at cause cycles', () => {
    expect(formatError('plain string')).toBe('error: plain string');
    const long = formatError(new Error('x'.repeat(5000)));
    expect(long.length).toBeLessThan(2100);
    expect(long).toMatch(/… \(3000 more characters\)$/);
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    Object.assign(a, { cause: b });
    expect(formatError(a)).toBe('error (Error): a\ncaused by (Error): b');
  });
});

describe('runMain', () => {
  it('resolves with main’s result and does not exit', async () => {
    const exits: number[] = [];
    await expect(runMain(async () => 42, { exit: (code) => exits.push(code) })).resolves.toBe(42);
    expect(exits).toEqual([]);
  });

  it('reports a failure with the hint for the stack and exits 1', async () => {
    const written: string[] = [];
    const exits: number[] = [];
    const result = await runMain(
      () => {
        throw new PosttrainError('INVALID_OPTION', 'expected lr > 0; got -1', { help: 'pass lr: 1e-3' });
      },
      { stack: false, write: (text) => written.push(text), exit: (code) => exits.push(code) },
    );
    expect(result).toBeUndefined();
    expect(exits).toEqual([1]);
    expect(written).toEqual(['error [INVALID_OPTION]: expected lr > 0; got -1\nhelp: pass lr: 1e-3\n(for the stack trace, run again with --stack or POSTTRAIN_STACK=1)']);
  });

  it('takes --stack out of process.argv and prints frames', async () => {
    const argv = process.argv;
    process.argv = [argv[0], 'script.ts', '--steps', '3', '--stack'];
    const written: string[] = [];
    try {
      await runMain(
        () => {
          expect(process.argv).toEqual([argv[0], 'script.ts', '--steps', '3']);
          throw new Error('boom');
        },
        { write: (text) => written.push(text), exit: () => {} },
      );
    } finally {
      process.argv = argv;
    }
    expect(written[0].split('\n')[0]).toBe('error (Error): boom');
    expect(written[0]).toMatch(/\n\s+at /);
    expect(written[0]).not.toMatch(/run again with/);
  });

  // The wasm backend's glue rethrows uncaught errors from a process handler (exit code 7, 40 KB of
  // minified source on the terminal); initBackend drops those handlers. In a real process, with tsx.
  it('in a script on wasm: runMain prints the message and help and exits 1; an uncaught error exits 1 without minified source', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'posttrain-run-main-'));
    const index = fileURLToPath(new URL('./index.ts', import.meta.url));
    const tsx = createRequire(import.meta.url).resolve('tsx/cli');
    const run = (body: string) => {
      const file = join(dir, `script-${Math.random().toString(36).slice(2)}.mts`);
      writeFileSync(file, `import { PosttrainError, initBackend, runMain, tf } from ${JSON.stringify(index)};\n${body}\n`);
      return new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, [tsx, file], { env: { ...process.env, POSTTRAIN_STACK: '' } }, (error, _stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stderr }));
      });
    };
    const fail = `await initBackend('wasm'); tf.tensor([1]); throw new PosttrainError('INVALID_OPTION', 'expected steps ≥ 1; got 0', { help: 'pass --steps 1 or more' });`;
    try {
      const [managed, uncaught] = await Promise.all([run(`await runMain(async () => { ${fail} });`), run(fail)]);
      expect(managed.code).toBe(1);
      expect(managed.stderr).toBe('error [INVALID_OPTION]: expected steps ≥ 1; got 0\nhelp: pass --steps 1 or more\n(for the stack trace, run again with --stack or POSTTRAIN_STACK=1)\n');
      expect(uncaught.code).toBe(1);
      expect(uncaught.stderr).toContain('help: pass --steps 1 or more');
      expect(uncaught.stderr).not.toContain(wasmNoise);
      expect(uncaught.stderr.length).toBeLessThan(2000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
