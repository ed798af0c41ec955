// Each notebook executed headless on Deno's Jupyter kernel (jupyter nbconvert --execute), its
// outputs checked: no error, the charts drawn as SVG, and the figures of its RESULT line showing
// the learning it is about. The committed notebooks must hold the sources' code, so what GitHub
// shows is what CI ran.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NOTEBOOKS, NOTEBOOK_DIR, canExecute, cellsOf, executeNotebook, outputsOf, printed, resultOf, sourceCells, toNotebook, type Notebook, type NotebookName } from './notebooks.js';

const joined = (s: string | string[]) => (Array.isArray(s) ? s.join('') : s);

describe('notebook sources', () => {
  it('split into markdown and code cells at // %% lines', () => {
    const cells = cellsOf('// %% [markdown]\n// # Title\n//\n// Text.\n\n// %%\nconst a = 1;\na\n');
    expect(cells).toEqual([
      { type: 'markdown', source: '# Title\n\nText.' },
      { type: 'code', source: 'const a = 1;\na' },
    ]);
    expect(toNotebook(cells).cells.map((c) => [c.cell_type, joined(c.source)])).toEqual([
      ['markdown', '# Title\n\nText.'],
      ['code', 'const a = 1;\na'],
    ]);
  });

  it.each(NOTEBOOKS)('%s.ipynb is committed with the source’s cells and with outputs', (name) => {
    const committed = JSON.parse(readFileSync(join(NOTEBOOK_DIR, `${name}.ipynb`), 'utf8')) as Notebook;
    expect(committed.cells.map((c) => [c.cell_type, joined(c.source)])).toEqual(sourceCells(name).map((c) => [c.type, c.source]));
    expect(outputsOf(committed).filter((o) => o.data?.['image/svg+xml']).length).toBe(charts[name]);
  });
});

/** How many SVG charts each notebook draws (compression also shows a table). */
const charts: Record<NotebookName, number> = { quickstart: 2, preferences: 3, 'online-rl': 2, compression: 1, distillation: 2 };

/** What each notebook's figures must show. */
const expectations: Record<NotebookName, (r: Record<string, number | string>) => void> = {
  quickstart: (r) => {
    expect(r.before).toBe(0);
    expect(r.after as number).toBeGreaterThanOrEqual(0.3);
    expect(r.files).toBe('adapter_model.safetensors,adapter_config.json');
  },
  preferences: (r) => {
    expect(r.rmAfter as number).toBeGreaterThan((r.rmBefore as number) + 0.3);
    expect(r.rewardAccuracy as number).toBeGreaterThan(0.8);
    expect(r.dpo as number).toBeGreaterThanOrEqual(r.sft as number);
  },
  'online-rl': (r) => {
    expect(r.after as number).toBeGreaterThan((r.before as number) + 0.08); // 22% → 34% at 150 steps
    expect(r.rewardLast as number).toBeGreaterThan(r.rewardFirst as number);
  },
  compression: (r) => {
    expect(r.float32 as number).toBeGreaterThan(0.9);
    expect(r.int8 as number).toBeGreaterThanOrEqual((r.float32 as number) - 0.02);
    expect(r['sparsegpt 50%'] as number).toBeGreaterThanOrEqual(r['magnitude 50%'] as number);
  },
  distillation: (r) => {
    expect(r.teacher as number).toBeGreaterThan(0.9);
    expect(r.kd as number).toBeGreaterThan(r.sft as number);
  },
};

// Skipped where jupyter or deno is missing, except in CI (.ci/run installs them), where that fails.
describe.skipIf(!canExecute() && process.env.CI !== 'true')('the notebooks, executed on Deno’s Jupyter kernel', () => {
  it.each(NOTEBOOKS)(
    '%s runs without an error, draws its charts and shows its result',
    (name) => {
      // Deno's kernel has been seen to drop a cell's last message on a loaded machine (the chart or
      // the RESULT line is made, the message never reaches nbconvert): such a run is executed once more.
      const svgCount = (n: Notebook) => outputsOf(n).filter((o) => o.data?.['image/svg+xml']).length;
      const complete = (n: Notebook) => svgCount(n) === charts[name] && printed(n).includes('RESULT ');
      let notebook = executeNotebook(name);
      if (!complete(notebook)) {
        console.warn(`${name}: ${svgCount(notebook)} of ${charts[name]} charts and ${printed(notebook).includes('RESULT ') ? 'the' : 'no'} RESULT line arrived; executing it again`);
        notebook = executeNotebook(name);
      }
      const outputs = outputsOf(notebook);
      const errors = outputs.filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`);
      expect(errors).toEqual([]);
      const svgs = outputs.map((o) => o.data?.['image/svg+xml']).filter((s): s is string | string[] => s !== undefined);
      expect(svgs.length).toBe(charts[name]);
      for (const svg of svgs) expect(joined(svg)).toMatch(/<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*(<polyline|<rect x)/);
      const result = resultOf(notebook);
      console.log(`${name}: ${JSON.stringify(result)}`);
      expectations[name](result);
    },
    600_000,
  );
});
