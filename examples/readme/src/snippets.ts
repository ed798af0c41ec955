// The README snippets as programs: every ```ts block of README.md and packages/*/README.md is
// written to a file inside the repository (so `@posttrain/*` imports resolve to the workspace) and
// run with tsx from a scratch directory that holds the repository's `examples`, as a user in a clone
// of the repository would paste and run it.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** One ```ts block of a README. */
export interface Snippet {
  /** The README, relative to the repository root (`packages/lora/README.md`). */
  file: string;
  /** 1-based among the file's ```ts blocks. */
  index: number;
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
  /** Why it is not run: the text of a `<!-- snippet: not run (…) -->` comment on the line before the fence. */
  skip?: string;
}

/**
 * The ```ts (or ```typescript) blocks of a markdown text, in order.
 *
 * @example
 * ```ts
 * extractSnippets('# x\n```ts\nconsole.log(1);\n```\n', 'README.md'); // [{ file: 'README.md', index: 1, line: 2, code: 'console.log(1);\n' }]
 * ```
 */
export function extractSnippets(markdown: string, file: string): Snippet[] {
  const lines = markdown.split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(ts|typescript)\s*$/.exec(lines[i]);
    if (!open) {
      const other = /^\s*(`{3,})/.exec(lines[i]); // skip other fenced blocks whole, so a ``` inside them is not read as an opening
      if (other) {
        const fence = other[1];
        for (i++; i < lines.length && !lines[i].trim().startsWith(fence); i++);
      }
      continue;
    }
    const fence = open[2];
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i].trim() !== fence; i++) body.push(lines[i].startsWith(open[1]) ? lines[i].slice(open[1].length) : lines[i]);
    if (i >= lines.length) throw new Error(`${file}:${start + 1}: a \`\`\`ts block is never closed`);
    const marker = /<!--\s*snippet:\s*not run\s*\(([^)]*)\)\s*-->/.exec(lines[start - 1] ?? '');
    const snippet: Snippet = { file, index: snippets.length + 1, line: start + 1, code: `${body.join('\n')}\n` };
    if (marker) snippet.skip = marker[1];
    snippets.push(snippet);
  }
  return snippets;
}

/**
 * README.md and every packages/<name>/README.md, relative to the root, in a stable order.
 *
 * @example
 * ```ts
 * readmeFiles(); // ['README.md', 'packages/data/README.md', …]
 * ```
 */
export function readmeFiles(root = REPO_ROOT): string[] {
  const packages = readdirSync(join(root, 'packages'))
    .filter((name) => existsSync(join(root, 'packages', name, 'README.md')))
    .sort()
    .map((name) => `packages/${name}/README.md`);
  return ['README.md', ...packages];
}

/**
 * Every snippet of every README.
 *
 * @example
 * ```ts
 * for (const s of allSnippets()) console.log(`${s.file}#${s.index}`);
 * ```
 */
export function allSnippets(root = REPO_ROOT): Snippet[] {
  return readmeFiles(root).flatMap((file) => extractSnippets(readFileSync(join(root, file), 'utf8'), file));
}

/**
 * The export condition that points `@posttrain/*` at their sources, read from tensor-core's
 * package.json (the key whose target is `./src/index.ts`), so the snippets run without a build.
 */
export function sourceCondition(root = REPO_ROOT): string {
  const manifest = JSON.parse(readFileSync(join(root, 'packages/tensor-core/package.json'), 'utf8')) as { exports: Record<string, Record<string, unknown>> };
  const entry = Object.entries(manifest.exports['.']).find(([, target]) => target === './src/index.ts');
  if (!entry) throw new Error('packages/tensor-core/package.json: no export condition maps "." to ./src/index.ts');
  return entry[0];
}

/**
 * Standard error less the trainer's progress lines (`step 3/5 loss …`, `eval step …`, which go there by
 * default): anything left is a warning, a banner or an error a user would see.
 *
 * @example
 * ```ts
 * unexpectedStderr('step 1/5 loss 4.2\n'); // ''
 * ```
 */
export function unexpectedStderr(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => line.trim() !== '' && !/^(eval )?step \d+\/\d+ /.test(line))
    .join('\n');
}

/** What running a snippet gave. */
export interface SnippetRun {
  /** The exit code (null when killed by the timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/**
 * Runs a snippet as a program: written to `examples/readme/.snippets/`, run by tsx with the
 * source condition, from a fresh scratch directory holding a link to the repository's `examples`
 * (what it writes, such as `out/adapter`, lands there and is deleted after).
 *
 * @example
 * ```ts
 * const { code, stdout } = await runSnippet(allSnippets()[0]);
 * ```
 */
export async function runSnippet(snippet: Snippet, options: { root?: string; timeoutMs?: number } = {}): Promise<SnippetRun> {
  const root = options.root ?? REPO_ROOT;
  const dir = join(root, 'examples/readme/.snippets');
  mkdirSync(dir, { recursive: true });
  const name = `${snippet.file.replace(/\/README\.md$|\.md$/, '').replace(/[^A-Za-z0-9]+/g, '-')}-${snippet.index}.ts`.toLowerCase();
  const file = join(dir, name);
  writeFileSync(file, `// ${snippet.file}:${snippet.line} (written by examples/readme; edit the README, not this file)\n${snippet.code}`);
  const scratch = mkdtempSync(join(tmpdir(), 'posttrain-snippet-'));
  symlinkSync(join(root, 'examples'), join(scratch, 'examples'), 'dir'); // the checkpoints the repository ships (examples/sft/tiny-base, examples/distill/teacher, …)
  const tsx = createRequire(import.meta.url).resolve('tsx/cli');
  const t0 = performance.now();
  try {
    return await new Promise<SnippetRun>((resolve) => {
      execFile(
        process.execPath,
        [tsx, `--conditions=${sourceCondition(root)}`, file],
        { cwd: scratch, timeout: options.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, POSTTRAIN_STACK: '1' } },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
          resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 });
        },
      );
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
