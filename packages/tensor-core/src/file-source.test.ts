import { createServer, type Server } from 'node:http';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileSource, fileTarget, type FileSource } from './file-source.js';
import { expectRejection } from './testing/assert.js';
import { useTempDir } from './testing/temp-dir.js';

/** The directory of the four files that checkSource reads, made before the tests and removed after. */
const dir = useTempDir('posttrain-files-', async (path) => {
  await writeFile(join(path, 'weights.bin'), new Uint8Array([0, 1, 2, 255]));
  await writeFile(join(path, 'config.json'), '{"name": "héllo ✓"}');
  await writeFile(join(path, 'my file.txt'), 'spaced');
  await mkdir(join(path, 'sub'));
  await writeFile(join(path, 'sub', 'inner.txt'), 'inner');
});

/** The checks every kind of source passes over the same four files. */
async function checkSource(source: FileSource, where: string): Promise<void> {
  expect(source.describe()).toBe(where);
  expect(Array.from(await source.read('weights.bin'))).toEqual([0, 1, 2, 255]);
  expect(await source.readText('config.json')).toBe('{"name": "héllo ✓"}');
  expect(await source.readText('my file.txt')).toBe('spaced');
  expect(await source.readText('sub/inner.txt')).toBe('inner');
  expect(await source.exists('config.json')).toBe(true);
  expect(await source.exists('missing.json')).toBe(false);
  await expectRejection(source.read('missing.json'), 'FILE_NOT_FOUND', `expected a file "missing.json" in ${where}`);
  for (const bad of ['../secret', '/etc/passwd', 'a//b', '', 'sub/./x', 'a\\b', 'C:/x']) {
    await expectRejection(source.read(bad), 'INVALID_ARGUMENT', `expected a relative file name like "model.safetensors" or "sub/config.json" in ${where}; got ${JSON.stringify(bad)}`);
  }
}

describe('fileSource over a Node directory', () => {
  it('reads bytes and text, answers exists, and names the file, the directory and its contents when one is missing', async () => {
    await checkSource(fileSource(dir()), `directory ${dir()}`);
    await checkSource(fileSource(`${dir()}/`), `directory ${dir()}/`);
    expect(await fileSource(dir()).exists('sub')).toBe(false); // a directory is not a file
    await expectRejection(fileSource(dir()).read('missing.json'), 'FILE_NOT_FOUND', 'it does not exist (the directory holds ');
  });

  it('reads a file: URL through the file system', async () => {
    const url = pathToFileURL(dir());
    await checkSource(fileSource(url), `directory ${url.href}`);
    await checkSource(fileSource(url.href), `directory ${url.href}`);
  });

  it('says when the directory itself does not exist', async () => {
    const source = fileSource(join(dir(), 'nope'));
    expect(await source.exists('a.json')).toBe(false);
    await expectRejection(source.read('a.json'), 'FILE_NOT_FOUND', `expected a file "a.json" in directory ${join(dir(), 'nope')}; the directory does not exist`);
  });
});

describe('fileSource over an in-memory map', () => {
  const files = () => ({
    'weights.bin': new Uint8Array([0, 1, 2, 255]),
    'config.json': '{"name": "héllo ✓"}',
    'my file.txt': 'spaced',
    'sub/inner.txt': 'inner',
  });

  it('reads a Map and a record of bytes or text', async () => {
    await checkSource(fileSource(new Map(Object.entries(files()))), 'in-memory files');
    await checkSource(fileSource(files()), 'in-memory files');
    await expectRejection(fileSource(files()).read('nope.bin'), 'FILE_NOT_FOUND', 'it does not exist (the map holds weights.bin, config.json, my file.txt, sub/inner.txt)');
  });

  it('rejects values that are not bytes or text, and inputs that are no source', () => {
    expect(() => fileSource({ 'a.bin': [1, 2] as unknown as Uint8Array })).toThrow('fileSource: expected file "a.bin" to be a Uint8Array or a string; got an array of length 2');
    expect(() => fileSource(42 as unknown as string)).toThrow('fileSource: expected a directory path, a URL, a Map or a record of name → bytes; got 42');
    expect(() => fileSource(new URL('ftp://example.com/x/'))).toThrow('fileSource: expected an http:, https: or file: URL; got ftp:');
  });
});

describe('fileSource over HTTP', () => {
  let server: Server;
  let base = '';
  beforeAll(async () => {
    server = createServer(async (request, response) => {
      const path = decodeURIComponent(new URL(request.url!, 'http://x').pathname);
      if (path.startsWith('/nohead/') && request.method === 'HEAD') return response.writeHead(405).end();
      if (path === '/models/broken.bin') return response.writeHead(500, 'Internal Server Error').end('boom');
      const file = path.replace(/^\/(models|nohead)\//, '');
      const body = await readFile(join(dir(), file)).catch(() => undefined);
      if (body === undefined) return response.writeHead(404, 'Not Found').end();
      response.writeHead(200, { 'content-length': body.length });
      response.end(request.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('reads from a base URL with fetch, with or without the trailing slash, and encodes names', async () => {
    await checkSource(fileSource(`${base}/models/`), `URL ${base}/models/`);
    await checkSource(fileSource(new URL(`${base}/models?token=x`)), `URL ${base}/models/`);
    await expectRejection(fileSource(`${base}/models`).read('missing.json'), 'FILE_NOT_FOUND', `GET ${base}/models/missing.json answered HTTP 404 Not Found`);
  });

  it('falls back to GET when the server refuses HEAD, and reports HTTP and network failures', async () => {
    const source = fileSource(`${base}/nohead/`);
    expect(await source.exists('config.json')).toBe(true);
    expect(await source.exists('missing.json')).toBe(false);
    await expectRejection(fileSource(`${base}/models/`).read('broken.bin'), 'FILE_NOT_FOUND', `GET ${base}/models/broken.bin answered HTTP 500 Internal Server Error`);
    await expectRejection(fileSource(`${base}/models/`).exists('broken.bin'), 'FILE_NOT_FOUND', `${base}/models/broken.bin answered HTTP 500`);
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expectRejection(fileSource(`http://127.0.0.1:${port}/`).read('a.json'), 'FILE_NOT_FOUND', `fetching http://127.0.0.1:${port}/a.json failed`);
  });
});

describe('fileTarget', () => {
  it('writes into a new nested directory by temporary file and rename, leaving only the finished files', async () => {
    const out = join(dir(), 'out', 'deep');
    const target = fileTarget(out);
    expect(target.describe()).toBe(`directory ${out}`);
    await target.write('model.safetensors', new Uint8Array([1, 2, 3]));
    await target.write('sub/config.json', '{"a": "é"}');
    await target.write('model.safetensors', new Uint8Array([4, 5])); // replaces
    expect(Array.from(await readFile(join(out, 'model.safetensors')))).toEqual([4, 5]);
    expect(await readFile(join(out, 'sub', 'config.json'), 'utf8')).toBe('{"a": "é"}');
    expect((await readdir(out)).sort()).toEqual(['model.safetensors', 'sub']);
    await target.remove('model.safetensors');
    await target.remove('model.safetensors'); // already gone: not an error
    expect(await readdir(out)).toEqual(['sub']);
    await expectRejection(target.write('../escape.bin', new Uint8Array(1)), 'INVALID_ARGUMENT', 'got "../escape.bin"');
  });

  it('leaves no temporary file and the old contents when the final rename fails', async () => {
    const out = join(dir(), 'out-fail');
    await mkdir(join(out, 'taken', 'child'), { recursive: true }); // renaming a file over a non-empty directory fails
    const error = await fileTarget(out)
      .write('taken', new Uint8Array([1]))
      .catch((e: unknown) => e);
    expect((error as { code?: string }).code).toMatch(/^(EISDIR|ENOTEMPTY|EEXIST|EPERM)$/);
    expect(await readdir(out)).toEqual(['taken']);
    expect(await readdir(join(out, 'taken'))).toEqual(['child']);
  });

  it('writes through a file: URL', async () => {
    const out = join(dir(), 'out-url');
    await fileTarget(pathToFileURL(out)).write('a.txt', 'via url');
    expect(await readFile(join(out, 'a.txt'), 'utf8')).toBe('via url');
  });

  it('writes copies into a Map that a fileSource over the same Map reads', async () => {
    const files = new Map<string, Uint8Array | string>();
    const target = fileTarget(files);
    const bytes = new Uint8Array([9, 8, 7]);
    await target.write('w.bin', bytes);
    await target.write('c.json', '{"é": 1}');
    bytes[0] = 0; // the map holds a copy
    const source = fileSource(files);
    expect(Array.from(await source.read('w.bin'))).toEqual([9, 8, 7]);
    expect(JSON.parse(await source.readText('c.json'))).toEqual({ é: 1 });
    await target.remove('w.bin');
    expect(await source.exists('w.bin')).toBe(false);
    expect(target.describe()).toBe('in-memory files');
  });

  it('rejects targets it cannot write to', () => {
    expect(() => fileTarget(new URL('https://example.com/out/'))).toThrow('fileTarget: expected a directory path, a file: URL or a Map; got "https://example.com/out/"');
  });
});
