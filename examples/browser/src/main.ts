// npm start -w @posttrain/example-browser [-- --port 8080 --out out/browser] — builds the page and
// serves it; open the printed address in a browser with WebGPU (Chrome, Edge) or any other (wasm).
// `npm run build-page -w @posttrain/example-browser` only builds (not part of `npm run build`).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runMain } from '@posttrain/tensor-core';
import { buildPage, servePage } from './page.js';

await runMain(async () => {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' }, out: { type: 'string', default: 'out/browser' }, 'build-only': { type: 'boolean', default: false } } });
  const out = resolve(process.env.INIT_CWD ?? process.cwd(), values.out);
  await buildPage(out);
  console.log(`built the page into ${out}`);
  if (values['build-only']) return;
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected an integer in [0, 65535]; got ${values.port}`);
  const { url } = await servePage(out, port);
  console.log(`serving at ${url} (Ctrl-C to stop); add ?backend=wasm to skip WebGPU, ?steps=600 for more training`);
});
