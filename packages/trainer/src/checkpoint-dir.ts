// The checkpoint directory of a run: checked and locked before any step runs (one live run per
// directory), and rotated after each save (`saveTotalLimit`).
import { PosttrainError } from '@posttrain/tensor-core';

/** The lock file a live run holds in its `checkpointDir`. */
export const LOCK_FILE = 'train.lock';

/** What a lock file records: who holds it. */
interface LockOwner {
  pid: number;
  hostname: string;
  started: string;
}

/**
 * A held lock on a checkpoint directory; {@link CheckpointDirLock.release} removes it (once).
 *
 * @example
 * ```ts
 * const lock = await lockCheckpointDir('runs/a');
 * try { … } finally { await lock.release(); }
 * ```
 */
export interface CheckpointDirLock {
  /** The lock file's path. */
  readonly path: string;
  release(): Promise<void>;
}

type NodeError = Error & { code?: string };

const errorCode = (error: unknown): string | undefined => (error as NodeError)?.code;

/** True when a process with this id runs on this machine (EPERM: it runs as another user). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/**
 * Makes `dir` (and its parents) and takes its lock: `train.lock`, created atomically with the
 * `wx` flag and holding this process's id and host name. Throws `INVALID_OPTION` naming
 * `checkpointDir` when the path is a file (or under one), cannot be written, or is locked by a live
 * run (this process included). A lock left by a process of this machine that no longer runs (a
 * killed run) is taken over, with a warning through `warn`.
 *
 * @example
 * ```ts
 * const lock = await lockCheckpointDir('runs/a'); // runs/a/train.lock = {"pid":1234,…}
 * await lock.release();
 * ```
 */
export async function lockCheckpointDir(dir: string, warn: (message: string) => void = (m) => console.warn(m)): Promise<CheckpointDirLock> {
  const fs = await import('node:fs/promises');
  const os = await import('node:os');
  const root = dir.replace(/[/\\]+$/, '') || dir;
  try {
    await fs.mkdir(root, { recursive: true });
    const stat = await fs.stat(root);
    if (!stat.isDirectory()) throw Object.assign(new Error(`${root} is not a directory`), { code: 'ENOTDIR' });
  } catch (error) {
    const code = errorCode(error);
    const isFile = code === 'EEXIST' || code === 'ENOTDIR';
    throw new PosttrainError(
      'INVALID_OPTION',
      `train: expected checkpointDir to be a directory that can be created and written; ${isFile ? `${root} is a file, or lies under one` : `creating ${root} failed (${(error as Error).message})`}`,
      { cause: error, help: isFile ? 'pass a directory path for checkpointDir (step-<N>/ sub-directories are written into it), or move the file away' : 'check the path and its permissions' },
    );
  }
  const path = `${root}/${LOCK_FILE}`;
  const hostname = os.hostname();
  const owner: LockOwner = { pid: process.pid, hostname, started: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(path, `${JSON.stringify(owner)}\n`, { flag: 'wx' });
      break;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') {
        throw new PosttrainError('INVALID_OPTION', `train: expected checkpointDir ${root} to be writable; creating ${path} failed (${(error as Error).message})`, {
          cause: error,
          help: 'check the permissions of checkpointDir',
        });
      }
    }
    const held = await readLock(path);
    if (held === undefined || held.hostname !== hostname || held.pid === process.pid || isAlive(held.pid) || attempt > 0) {
      const who =
        held === undefined
          ? 'a run whose lock file cannot be read yet'
          : `process ${held.pid} on ${held.hostname}${held.pid === process.pid && held.hostname === hostname ? ' (this process)' : ''}, since ${held.started}`;
      throw new PosttrainError('INVALID_OPTION', `train: expected checkpointDir ${root} to be free; a live run holds it: ${who} (${path})`, {
        help: `wait for that run to end or pass another checkpointDir; if no run is using it (one on another machine that crashed), delete ${path}`,
      });
    }
    warn(`train: taking over ${path}, left by process ${held.pid} on ${hostname} (started ${held.started}), which no longer runs`);
    await fs.rm(path, { force: true });
  }
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      const held = await readLock(path);
      if (held?.pid === process.pid && held.hostname === hostname && held.started === owner.started) await fs.rm(path, { force: true });
    },
  };
}

/** The owner recorded in a lock file; undefined when it is unreadable or half-written. */
async function readLock(path: string): Promise<LockOwner | undefined> {
  const fs = await import('node:fs/promises');
  try {
    const value = JSON.parse(await fs.readFile(path, 'utf8')) as Partial<LockOwner>;
    if (Number.isInteger(value.pid) && typeof value.hostname === 'string') return { pid: value.pid!, hostname: value.hostname, started: String(value.started) };
  } catch {
    // unreadable or half-written: treated as held
  }
  return undefined;
}

/**
 * Deletes the oldest `step-<N>` directories under `root` until `keep` remain, as Hugging Face's
 * `save_total_limit` does; the directory `saved` (the one just written) is always kept. Returns
 * the deleted paths.
 *
 * @example
 * ```ts
 * await rotateCheckpoints('runs/a', 2, 'runs/a/step-30'); // ['runs/a/step-10'] when step-10, step-20 and step-30 existed
 * ```
 */
export async function rotateCheckpoints(root: string, keep: number, saved: string): Promise<string[]> {
  const fs = await import('node:fs/promises');
  const dir = root.replace(/[/\\]+$/, '') || root;
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const savedName = saved
    .replace(/[/\\]+$/, '')
    .split(/[/\\]/)
    .pop();
  const steps = entries
    .filter((e) => e.isDirectory() && /^step-\d+$/.test(e.name))
    .map((e) => e.name)
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  const others = steps.filter((name) => name !== savedName);
  const excess = others.length + (steps.length > others.length ? 1 : 0) - keep;
  const removed = others.slice(0, Math.max(0, excess)).map((name) => `${dir}/${name}`);
  for (const path of removed) await fs.rm(path, { recursive: true, force: true });
  return removed;
}
