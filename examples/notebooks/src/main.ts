// npm start -w @posttrain/example-notebooks [-- quickstart …] — executes the notebooks (all, or the
// ones named) with Deno's Jupyter kernel and writes them, outputs included, as <name>.ipynb. Needs
// Debian's jupyter-nbconvert (apt-get install jupyter-nbconvert python3-nbclient) and a build
// (`npm run build`): Deno imports the packages' dist/.
import { runMain } from '@posttrain/tensor-core';
import { NOTEBOOKS, canExecute, executeNotebook, resultOf, saveNotebook, type NotebookName } from './notebooks.js';

await runMain(async () => {
  if (!canExecute()) throw new Error('jupyter nbconvert or deno is missing: apt-get install jupyter-nbconvert python3-nbclient, then npm ci');
  const names = process.argv.slice(2);
  for (const name of names) if (!NOTEBOOKS.includes(name as NotebookName)) throw new Error(`expected a notebook name (${NOTEBOOKS.join(', ')}); got ${JSON.stringify(name)}`);
  for (const name of names.length ? (names as NotebookName[]) : NOTEBOOKS) {
    const started = performance.now();
    const notebook = executeNotebook(name);
    console.log(`${saveNotebook(name, notebook)}: ${JSON.stringify(resultOf(notebook))} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
});
