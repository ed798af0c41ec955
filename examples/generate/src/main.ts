// npm start -- <model directory>   (default: the tiny Llama checkpoint the models package tests with)
import { fileURLToPath } from 'node:url';
import { generateFromDirectory } from './generate-from-directory.js';

const directory = process.argv[2] ?? fileURLToPath(new URL('../../../packages/models/fixtures/llama/', import.meta.url));
const continuations = await generateFromDirectory(directory, [[5, 17, 33], [8, 9, 10, 11, 12]]);
for (const c of continuations) console.log(`[${c.prompt.join(' ')}] → [${c.tokens.join(' ')}] (${c.finishReason})`);
