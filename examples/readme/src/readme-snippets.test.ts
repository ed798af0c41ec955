import { describe, expect, it } from 'vitest';
import { allSnippets, extractSnippets, runSnippet, sourceCondition, unexpectedStderr } from './snippets.js';

describe('extractSnippets', () => {
  it('takes ```ts blocks with their line, skips other blocks and honours the not-run marker', () => {
    const markdown = [
      '# t',
      '```sh',
      'npm ci',
      '```',
      '```ts',
      'const a = 1;',
      '```',
      'text',
      '<!-- snippet: not run (needs a GPU) -->',
      '```typescript',
      '  x();',
      '```',
      '```js',
      '```ts',
      '```',
    ].join('\n');
    expect(extractSnippets(markdown, 'R.md')).toEqual([
      { file: 'R.md', index: 1, line: 5, code: 'const a = 1;\n' },
      { file: 'R.md', index: 2, line: 10, code: '  x();\n', skip: 'needs a GPU' },
    ]);
    expect(() => extractSnippets('```ts\nopen', 'R.md')).toThrow(/R\.md:1: a ```ts block is never closed/);
  });

  it('tells progress lines from other output on standard error', () => {
    expect(unexpectedStderr('step 1/5 loss 4.2 lr 5e-3\nstep 5/5 loss 3.1\n')).toBe('');
    expect(unexpectedStderr('step 1/5 loss 4.2\nHi, looks like you are running TensorFlow.js in Node.js\n')).toBe('Hi, looks like you are running TensorFlow.js in Node.js');
  });

  it('reads the source condition from tensor-core’s exports', () => {
    expect(sourceCondition()).toMatch(/source/);
  });
});

// Each snippet runs as a user would paste it, from a clone of the repository: exit code 0 and
// nothing on standard error but the trainer's progress lines (no tfjs banner, no warnings).
describe('README snippets run as written', () => {
  const snippets = allSnippets();
  it('there are snippets in README.md and in every package README that has code', () => {
    expect(snippets.filter((s) => s.file === 'README.md').length).toBeGreaterThanOrEqual(3);
  });
  for (const snippet of snippets) {
    it.skipIf(snippet.skip !== undefined)(`${snippet.file}#${snippet.index} (line ${snippet.line})`, async () => {
      const run = await runSnippet(snippet);
      expect({ code: run.code, stderr: unexpectedStderr(run.stderr) }, `stdout:\n${run.stdout}`).toEqual({ code: 0, stderr: '' });
    });
  }
});
