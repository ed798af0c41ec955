// Where checkpoint files come from and go to: a Node directory, a base URL, or an in-memory map.
// Node modules are imported dynamically, inside the methods that need them, so a browser bundle
// that only reads URLs or maps never loads `node:fs`.
import { PosttrainError } from './errors.js';
import { describe as describeValue } from './options.js';

/**
 * A read-only set of named files: a checkpoint directory, a model URL, an in-memory map. Make one
 * with {@link fileSource}, or implement it (IndexedDB, a zip archive) and pass it anywhere.
 *
 * @example
 * ```ts
 * const source: FileSource = fileSource('/models/gpt2');
 * if (await source.exists('config.json')) console.log(JSON.parse(await source.readText('config.json')));
 * ```
 */
export interface FileSource {
  /** Where the files are, for messages: `directory /models/gpt2`, `URL https://…/`, `in-memory files`. */
  describe(): string;
  /** True if the file exists. */
  exists(name: string): Promise<boolean>;
  /** The file's bytes; a missing file throws `FILE_NOT_FOUND` naming the file and the source. */
  read(name: string): Promise<Uint8Array>;
  /** The file decoded as UTF-8. */
  readText(name: string): Promise<string>;
}

/**
 * A place files are written to: a Node directory (atomically) or an in-memory map. Make one with
 * {@link fileTarget}, or implement it.
 *
 * @example
 * ```ts
 * const target: FileTarget = fileTarget('/tmp/out');
 * await target.write('config.json', JSON.stringify({ vocab_size: 256 }));
 * ```
 */
export interface FileTarget {
  /** Where the files go, for messages. */
  describe(): string;
  /** Writes (or replaces) a file; a string is written as UTF-8. */
  write(name: string, data: Uint8Array | string): Promise<void>;
  /** Removes a file if it exists; removing a missing file is not an error. */
  remove(name: string): Promise<void>;
}

/**
 * What {@link fileSource} reads from: a directory path (Node) or URL string, a URL, a Map, or a
 * record of name → bytes or text.
 *
 * @example
 * ```ts
 * const input: FileSourceInput = { 'model.safetensors': bytes, 'config.json': '{}' };
 * ```
 */
export type FileSourceInput = string | URL | Map<string, Uint8Array | string> | Record<string, Uint8Array | string>;

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
const encoder = new TextEncoder();

/** Rejects names that are empty, absolute, or climb out of the source with `..`. */
function checkName(name: unknown, where: string): string {
  const bad =
    typeof name !== 'string' ||
    name === '' ||
    name.startsWith('/') ||
    name.includes('\\') ||
    name.includes('\0') ||
    /^[a-zA-Z]:/.test(name) ||
    name.split('/').some((part) => part === '' || part === '.' || part === '..');
  if (bad) {
    const expected = 'a relative file name like "model.safetensors" or "sub/config.json"';
    throw new PosttrainError('INVALID_ARGUMENT', `expected ${expected} in ${where}; got ${describeValue(name)}`, {
      help: 'use forward slashes, and no absolute paths, empty segments, "." or ".."',
    });
  }
  return name;
}

function notFound(name: string, where: string, detail?: string, cause?: unknown): PosttrainError {
  return new PosttrainError('FILE_NOT_FOUND', `expected a file "${name}" in ${where}; ${detail ?? 'it does not exist'}`, {
    cause,
    help: 'check the name and the location, or pass the directory/URL that holds the checkpoint',
  });
}

/** Up to ten names, for messages. */
const someOf = (names: string[]) => (names.length ? names.slice(0, 10).join(', ') + (names.length > 10 ? ', …' : '') : 'no files');

/**
 * Imports a Node built-in at run time. The name goes through a variable so that browser bundlers
 * (esbuild, Vite, webpack) leave the import alone instead of failing to resolve `node:fs`.
 */
function nodeModule<T>(name: string): Promise<T> {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name) as Promise<T>;
}

function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

/** The directory a path or `file:` URL names, without trailing slashes; resolved lazily so browsers never load `node:url`. */
function directoryOf(at: string | URL): () => Promise<string> {
  return async () => {
    const path = typeof at === 'string' ? at : (await nodeModule<typeof import('node:url')>('node:url')).fileURLToPath(at);
    return path.replace(/\/+$/, '') || '/';
  };
}

/**
 * Reads a file into one byte array. `fs.readFile` refuses files over 2 GiB (a single-file
 * Llama-3.2-1B checkpoint is 2.47 GB), so larger ones are read in 1 GiB pieces, up to the 4 GiB a
 * typed array can hold.
 */
async function readWhole(fs: typeof import('node:fs/promises'), path: string, what: string): Promise<Uint8Array> {
  const handle = await fs.open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size < 2 ** 31) {
      const buffer = await handle.readFile();
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    }
    if (size >= 2 ** 32) {
      throw new PosttrainError('NOT_SUPPORTED', `${what} is ${size} bytes; files of 4 GiB or more cannot be read into memory in one piece`, {
        help: 'save the checkpoint in shards (model.safetensors.index.json) of under 2 GB each',
      });
    }
    const bytes = new Uint8Array(size);
    for (let offset = 0; offset < size; ) {
      const { bytesRead } = await handle.read(bytes, offset, Math.min(2 ** 30, size - offset), offset);
      if (bytesRead === 0) throw new PosttrainError('FILE_NOT_FOUND', `${what} ended after ${offset} of ${size} bytes`);
      offset += bytesRead;
    }
    return bytes;
  } finally {
    await handle.close();
  }
}

function directorySource(dir: () => Promise<string>, label: string): FileSource {
  const where = `directory ${label}`;
  const read = async (name: string): Promise<Uint8Array> => {
    checkName(name, where);
    const fs = await nodeModule<typeof import('node:fs/promises')>('node:fs/promises');
    const path = `${await dir()}/${name}`;
    try {
      return await readWhole(fs, path, `${name} in ${where}`);
    } catch (error) {
      if (!isMissing(error)) throw error;
      const listing = await fs.readdir(await dir()).catch(() => undefined);
      const detail = listing === undefined ? 'the directory does not exist' : `it does not exist (the directory holds ${someOf(listing)})`;
      throw notFound(name, where, detail, error);
    }
  };
  return {
    describe: () => where,
    async exists(name) {
      checkName(name, where);
      const fs = await nodeModule<typeof import('node:fs/promises')>('node:fs/promises');
      const stat = await fs.stat(`${await dir()}/${name}`).catch((error: unknown) => {
        if (isMissing(error)) return undefined;
        throw error;
      });
      return stat?.isFile() ?? false;
    },
    read,
    readText: async (name) => new TextDecoder().decode(await read(name)),
  };
}

function urlSource(base: URL): FileSource {
  const root = new URL(base.href);
  root.search = '';
  root.hash = '';
  if (!root.pathname.endsWith('/')) root.pathname += '/';
  const where = `URL ${root.href}`;
  const urlOf = (name: string) => new URL(checkName(name, where).split('/').map(encodeURIComponent).join('/'), root);
  const request = async (name: string, method: 'GET' | 'HEAD'): Promise<Response> => {
    const url = urlOf(name);
    try {
      return await fetch(url, { method });
    } catch (error) {
      throw notFound(name, where, `fetching ${url.href} failed (${(error as Error).message})`, error);
    }
  };
  const read = async (name: string): Promise<Uint8Array> => {
    const response = await request(name, 'GET');
    if (!response.ok) {
      await response.body?.cancel();
      throw notFound(name, where, `GET ${urlOf(name).href} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
    }
    return new Uint8Array(await response.arrayBuffer());
  };
  return {
    describe: () => where,
    async exists(name) {
      let response = await request(name, 'HEAD');
      if (response.status === 405 || response.status === 501) response = await request(name, 'GET'); // servers without HEAD
      await response.body?.cancel();
      if (response.ok) return true;
      if (response.status === 404 || response.status === 410) return false;
      throw notFound(name, where, `${urlOf(name).href} answered HTTP ${response.status}`);
    },
    read,
    readText: async (name) => new TextDecoder().decode(await read(name)),
  };
}

function memorySource(files: Map<string, Uint8Array | string>): FileSource {
  const where = 'in-memory files';
  const read = async (name: string): Promise<Uint8Array> => {
    checkName(name, where);
    const value = files.get(name);
    if (value === undefined) throw notFound(name, where, `it does not exist (the map holds ${someOf([...files.keys()])})`);
    return typeof value === 'string' ? encoder.encode(value) : value;
  };
  return {
    describe: () => where,
    exists: async (name) => files.has(checkName(name, where)),
    read,
    readText: async (name) => new TextDecoder().decode(await read(name)),
  };
}

/**
 * A {@link FileSource} over a Node directory path, a base URL (`http:`, `https:`; `file:` reads
 * the file system in Node), or an in-memory map of name → bytes or text. In a browser a string is
 * a URL relative to the page. A Map is read live, so a {@link fileTarget} over the same Map writes
 * into it.
 *
 * @example
 * ```ts
 * const local = fileSource('/models/smollm2-135m');
 * const remote = fileSource(new URL('https://example.com/models/gpt2/'));
 * const memory = fileSource({ 'config.json': '{"vocab_size": 256}' });
 * const config = JSON.parse(await memory.readText('config.json'));
 * ```
 */
export function fileSource(from: FileSourceInput): FileSource {
  if (from instanceof Map) return memorySource(from);
  if (typeof from === 'string') {
    if (/^(https?|file):/i.test(from)) return fileSource(new URL(from));
    if (isNode) return directorySource(directoryOf(from), from);
    const page = (globalThis as { location?: { href: string } }).location?.href;
    return urlSource(new URL(from, page));
  }
  if (from instanceof URL) {
    if (from.protocol === 'http:' || from.protocol === 'https:') return urlSource(from);
    if (from.protocol === 'file:' && isNode) return directorySource(directoryOf(from), from.href);
    if (from.protocol === 'file:') return urlSource(from);
    throw new PosttrainError('NOT_SUPPORTED', `fileSource: expected an http:, https: or file: URL; got ${from.protocol} (${from.href})`);
  }
  if (typeof from === 'object' && from !== null && !Array.isArray(from) && !(from instanceof Uint8Array)) {
    const files = new Map<string, Uint8Array | string>();
    for (const [name, value] of Object.entries(from)) {
      if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
        const got = describeValue(value);
        throw new PosttrainError('INVALID_ARGUMENT', `fileSource: expected file "${name}" to be a Uint8Array or a string; got ${got}`);
      }
      files.set(name, value);
    }
    return memorySource(files);
  }
  const expected = 'a directory path, a URL, a Map or a record of name → bytes';
  throw new PosttrainError('INVALID_ARGUMENT', `fileSource: expected ${expected}; got ${describeValue(from)}`);
}

function directoryTarget(dir: () => Promise<string>, label: string): FileTarget {
  const where = `directory ${label}`;
  return {
    describe: () => where,
    async write(name, data) {
      checkName(name, where);
      const fs = await nodeModule<typeof import('node:fs/promises')>('node:fs/promises');
      const path = `${await dir()}/${name}`;
      const parent = path.slice(0, path.lastIndexOf('/')) || '/';
      await fs.mkdir(parent, { recursive: true });
      // Write a temporary file beside the target, flush it, then rename over the target: a crash
      // leaves the old file or the new one, never half of one.
      const temporary = `${path}.${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`;
      let handle: Awaited<ReturnType<typeof fs.open>> | undefined;
      try {
        handle = await fs.open(temporary, 'wx');
        await handle.writeFile(typeof data === 'string' ? encoder.encode(data) : data);
        await handle.sync();
        await handle.close();
        handle = undefined;
        await fs.rename(temporary, path);
      } catch (error) {
        await handle?.close().catch(() => undefined);
        await fs.rm(temporary, { force: true }).catch(() => undefined);
        throw error;
      }
      const parentHandle = await fs.open(parent, 'r').catch(() => undefined); // persist the rename (not possible on Windows)
      await parentHandle?.sync().catch(() => undefined);
      await parentHandle?.close().catch(() => undefined);
    },
    async remove(name) {
      checkName(name, where);
      const fs = await nodeModule<typeof import('node:fs/promises')>('node:fs/promises');
      await fs.rm(`${await dir()}/${name}`, { force: true });
    },
  };
}

/**
 * A {@link FileTarget} writing into a Node directory (a path or a `file:` URL; created if needed,
 * each file written to a temporary beside it and renamed into place, so a crash never leaves a
 * half-written file) or into a Map (bytes are copied, text encoded as UTF-8).
 *
 * @example
 * ```ts
 * await writeCheckpoint(model.stateDict(), fileTarget('/tmp/my-model'));
 * const files = new Map<string, Uint8Array>();
 * await fileTarget(files).write('config.json', JSON.stringify(config));
 * ```
 */
export function fileTarget(to: string | URL | Map<string, Uint8Array | string>): FileTarget {
  if (to instanceof Map) {
    const where = 'in-memory files';
    return {
      describe: () => where,
      async write(name, data) {
        to.set(checkName(name, where), typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data));
      },
      async remove(name) {
        to.delete(checkName(name, where));
      },
    };
  }
  const got = describeValue(to instanceof URL ? to.href : to);
  if (!isNode) {
    throw new PosttrainError('NOT_SUPPORTED', `fileTarget: expected a Map outside Node, where there is no file system to write to; got ${got}`, {
      help: 'write into a Map, then offer the bytes as downloads or store them in IndexedDB',
    });
  }
  if (typeof to === 'string' && !/^file:/i.test(to)) return directoryTarget(directoryOf(to), to);
  const url = typeof to === 'string' ? new URL(to) : to;
  if (url instanceof URL && url.protocol === 'file:') return directoryTarget(directoryOf(url), url.href);
  throw new PosttrainError('NOT_SUPPORTED', `fileTarget: expected a directory path, a file: URL or a Map; got ${got}`);
}
