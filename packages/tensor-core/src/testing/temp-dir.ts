// Real directories for tests that read and write files. Test support only: not exported from src/index.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/**
 * Runs `fn` with a fresh directory under the OS temp dir, named `prefix` + random characters, and
 * removes the directory afterwards, whether `fn` resolves or throws.
 *
 * @example
 * await withTempDir('posttrain-checkpoint-', async (dir) => {
 *   await writeCheckpoint(tensors, fileTarget(dir));
 * });
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Registers a beforeAll that makes one directory for the tests of the calling file (or describe
 * block) and fills it with `fill`, and an afterAll that removes it. Returns the directory's path,
 * to call from tests and hooks that run after the beforeAll.
 *
 * @example
 * const dir = useTempDir('posttrain-files-', (path) => writeFile(join(path, 'a.txt'), 'a'));
 * it('reads a.txt', async () => expect(await readFile(join(dir(), 'a.txt'), 'utf8')).toBe('a'));
 */
export function useTempDir(prefix: string, fill?: (dir: string) => Promise<void>): () => string {
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    await fill?.(dir);
  });
  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });
  return () => {
    if (dir === undefined) throw new Error('useTempDir: the directory exists only from its beforeAll to its afterAll');
    return dir;
  };
}
