// npm start -w @posttrain/example-readme [-- <filter>]   runs the README snippets whose
// "file#index" starts with the filter (all by default) and prints each one's result and time.
import { runMain } from '@posttrain/tensor-core';
import { allSnippets, runSnippet, unexpectedStderr } from './snippets.js';

await runMain(async () => {
  const filter = process.argv[2] ?? '';
  const chosen = allSnippets().filter((s) => `${s.file}#${s.index}`.startsWith(filter));
  if (chosen.length === 0) throw new Error(`no README snippet matches ${JSON.stringify(filter)}; names look like packages/lora/README.md#1`);
  let failed = 0;
  for (const snippet of chosen) {
    const name = `${snippet.file}#${snippet.index} (line ${snippet.line})`;
    if (snippet.skip !== undefined) {
      console.log(`skip  ${name}: ${snippet.skip}`);
      continue;
    }
    const run = await runSnippet(snippet);
    const ok = run.code === 0 && unexpectedStderr(run.stderr) === '';
    if (!ok) failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'}  ${name}  ${run.seconds.toFixed(1)} s`);
    for (const line of run.stdout.trimEnd().split('\n').filter(Boolean)) console.log(`      │ ${line}`);
    if (!ok) for (const line of run.stderr.trimEnd().split('\n').slice(0, 40)) console.log(`      ! ${line}`);
  }
  if (failed > 0) throw new Error(`${failed} of ${chosen.length} snippets failed`);
});
