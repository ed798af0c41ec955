// The notebooks: written as TypeScript in sources/ (cells split by `// %%` lines), turned into
// .ipynb for Deno's Jupyter kernel, executed headless by `jupyter nbconvert --execute`, and read
// back. `npm start` refreshes the committed notebooks (with their outputs); the test executes
// each one and checks what it printed and drew.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** examples/notebooks: the notebooks' working directory (they load ../sft/tiny-base and ./plots.ts). */
export const NOTEBOOK_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const DENO = join(NOTEBOOK_DIR, '..', '..', 'node_modules', '.bin', 'deno');

/** The notebooks, in reading order. */
export const NOTEBOOKS = ['quickstart', 'preferences', 'online-rl', 'compression', 'distillation'] as const;
export type NotebookName = (typeof NOTEBOOKS)[number];

/** One cell of a notebook source. */
export interface SourceCell {
  type: 'code' | 'markdown';
  source: string;
}

/** An nbformat 4 notebook, as much of it as is read here. */
export interface Notebook {
  cells: { cell_type: string; id?: string; source: string | string[]; outputs?: NotebookOutput[]; metadata: object; execution_count?: number | null }[];
  metadata: object;
  nbformat: number;
  nbformat_minor: number;
}

/** A code cell's output. */
export interface NotebookOutput {
  output_type: 'stream' | 'display_data' | 'execute_result' | 'error';
  text?: string | string[];
  data?: Record<string, string | string[]>;
  ename?: string;
  evalue?: string;
}

/** Splits a source at `// %%` lines; a `// %% [markdown]` cell's lines lose their `// `. */
export function cellsOf(text: string): SourceCell[] {
  const cells: SourceCell[] = [];
  for (const chunk of text.split(/^\/\/ %%/m).slice(1)) {
    const [head, ...rest] = chunk.split('\n');
    const markdown = head.trim() === '[markdown]';
    const body = rest.join('\n').trim();
    cells.push({ type: markdown ? 'markdown' : 'code', source: markdown ? body.replace(/^\/\/ ?/gm, '') : body });
  }
  return cells;
}

/** The cells of sources/<name>.ts. */
export function sourceCells(name: NotebookName): SourceCell[] {
  return cellsOf(readFileSync(join(NOTEBOOK_DIR, 'sources', `${name}.ts`), 'utf8'));
}

/** An unexecuted notebook for Deno's kernel. */
export function toNotebook(cells: readonly SourceCell[]): Notebook {
  const lines = (s: string) => s.split('\n').map((line, i, all) => (i < all.length - 1 ? `${line}\n` : line));
  return {
    cells: cells.map((c, i) =>
      c.type === 'markdown'
        ? { cell_type: 'markdown', id: `cell-${i}`, metadata: {}, source: lines(c.source) }
        : { cell_type: 'code', id: `cell-${i}`, metadata: {}, source: lines(c.source), outputs: [], execution_count: null },
    ),
    metadata: { kernelspec: { display_name: 'Deno', language: 'typescript', name: 'deno' }, language_info: { name: 'typescript', file_extension: '.ts' } },
    nbformat: 4,
    nbformat_minor: 5,
  };
}

/** Whether this machine can execute the notebooks (Debian's jupyter-nbconvert and the npm deno). */
export function canExecute(): boolean {
  try {
    execFileSync('jupyter', ['nbconvert', '--version'], { stdio: 'ignore' });
    return existsSync(DENO);
  } catch {
    return false;
  }
}

/**
 * Executes notebook `name` headless with Deno's kernel (registered first) and returns it with its
 * outputs. It runs from examples/notebooks, so its relative paths resolve as in the committed one.
 */
export function executeNotebook(name: NotebookName, timeoutSeconds = 600): Notebook {
  execFileSync(DENO, ['jupyter', '--install', '--force'], { stdio: 'ignore' });
  const input = join(NOTEBOOK_DIR, `.run-${name}.ipynb`);
  const output = join(NOTEBOOK_DIR, `.run-${name}.out.ipynb`);
  writeFileSync(input, JSON.stringify(toNotebook(sourceCells(name)), null, 1));
  try {
    execFileSync('jupyter', ['nbconvert', '--to', 'notebook', '--execute', `--ExecutePreprocessor.timeout=${timeoutSeconds}`, '--output', output, input], { stdio: 'pipe', cwd: NOTEBOOK_DIR });
    return JSON.parse(readFileSync(output, 'utf8')) as Notebook;
  } finally {
    rmSync(input, { force: true });
    rmSync(output, { force: true });
  }
}

/** Every output of the notebook's code cells, in order. */
export function outputsOf(notebook: Notebook): NotebookOutput[] {
  return notebook.cells.flatMap((c) => c.outputs ?? []);
}

/** The text a notebook printed (its stream outputs). */
export function printed(notebook: Notebook): string {
  return outputsOf(notebook)
    .filter((o) => o.output_type === 'stream')
    .map((o) => (Array.isArray(o.text) ? o.text.join('') : (o.text ?? '')))
    .join('');
}

/** The figures of the notebook's `RESULT {…}` line. */
export function resultOf(notebook: Notebook): Record<string, number | string> {
  const line = printed(notebook)
    .split('\n')
    .find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error('the notebook printed no RESULT line');
  return JSON.parse(line.slice('RESULT '.length));
}

/** Writes the executed notebook as examples/notebooks/<name>.ipynb (committed with its outputs). */
export function saveNotebook(name: NotebookName, notebook: Notebook): string {
  const path = join(NOTEBOOK_DIR, `${name}.ipynb`);
  writeFileSync(path, `${JSON.stringify(notebook, null, 1)}\n`);
  return path;
}
