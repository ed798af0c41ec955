// npm start -w @posttrain/example-generate [-- <model directory> [--temperature 0.8] [prompt …]]
// Default: the tiny Llama the repository ships (examples/sft/tiny-base), which sorts letters.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runMain } from '@posttrain/tensor-core';
import { generateFromDirectory } from './generate-from-directory.js';

await runMain(async () => {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { temperature: { type: 'string', default: '0' }, 'max-new-tokens': { type: 'string', default: '12' } } });
  const temperature = Number(values.temperature);
  const maxNewTokens = Number(values['max-new-tokens']);
  if (!(temperature >= 0)) throw new Error(`--temperature: expected a number ≥ 0; got ${values.temperature}`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new Error(`--max-new-tokens: expected an integer ≥ 1; got ${values['max-new-tokens']}`);
  const [directory = fileURLToPath(new URL('../../sft/tiny-base/', import.meta.url)), ...given] = positionals;
  const prompts = given.length > 0 ? given : ['dbca|', 'hgfe|', 'cab|'];
  const continuations = await generateFromDirectory(directory, prompts, { temperature, maxNewTokens });
  for (const c of continuations) console.log(`${JSON.stringify(c.prompt)} → ${JSON.stringify(c.text)} (${c.finishReason}, ${c.tokens.length} tokens)`);
});
