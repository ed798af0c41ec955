// Builds the page into a directory (esbuild bundle, the HTML, the tiny base, tfjs's wasm binaries)
// and serves a directory over HTTP: what `npm start` and the browser test both use.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join, normalize } from 'node:path';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');

/** The model directory the page loads by default (copied to `<out>/tiny-base/`). */
export const TINY_BASE_DIR = join(root, 'examples', 'sft', 'tiny-base');

/**
 * Writes the page into `out`: app.js (src/app.ts and everything it imports, bundled for browsers;
 * Node-only dynamic imports stay external and are never reached there), index.html, the tiny base
 * under tiny-base/, and the tfjs wasm binaries next to app.js.
 */
export async function buildPage(out: string): Promise<void> {
  mkdirSync(join(out, 'tiny-base'), { recursive: true });
  await build({
    entryPoints: [join(here, 'app.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['@posttrain/source'],
    external: ['node:*'],
    outfile: join(out, 'app.js'),
    logLevel: 'warning',
  });
  copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
  for (const name of readdirSync(TINY_BASE_DIR)) if (name !== 'README.md') copyFileSync(join(TINY_BASE_DIR, name), join(out, 'tiny-base', name));
  const wasmDir = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  for (const name of readdirSync(wasmDir)) if (name.endsWith('.wasm')) copyFileSync(join(wasmDir, name), join(out, name));
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
};

/** Serves the files of `dir` on `port` (0: any free port); resolves to the server and its URL. */
export function servePage(dir: string, port = 0): Promise<{ server: Server; url: string }> {
  const server = createServer(async (request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    try {
      const body = await readFile(file);
      response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end(`not found: ${path}`);
    }
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const actual = typeof address === 'object' && address ? address.port : port;
      resolve({ server, url: `http://127.0.0.1:${actual}/` });
    });
  });
}
