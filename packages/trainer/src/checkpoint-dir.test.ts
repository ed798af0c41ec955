import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AdamW, Linear, initBackend, manualSeed, tf } from '@posttrain/tensor-core';
import { train, type StepOutput } from './index.js';
import { LOCK_FILE, lockCheckpointDir, rotateCheckpoints } from './checkpoint-dir.js';

interface Batch {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
}

const made: tf.Tensor[] = [];
let dir: string;

beforeAll(async () => {
  await initBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'trainer-dir-'));
});
afterAll(() => {
  tf.dispose(made);
  rmSync(dir, { recursive: true, force: true });
});

function setup(n = 4) {
  manualSeed(3);
  const model = new Linear(2, 1);
  const parameters = model.trainableParameters();
  const optimizer = new AdamW(parameters, { lr: 0.05, weightDecay: 0 });
  const batches = Array.from({ length: n }, (_, i) => {
    const x = tf.tensor2d([
      [i, 1],
      [1, -i],
    ]);
    const y = tf.tensor2d([[1], [2]]);
    made.push(x, y);
    return { x, y };
  });
  let steps = 0;
  const step = ({ x, y }: Batch): StepOutput => {
    steps += 1;
    return { lossSum: tf.sum(tf.square(tf.sub(model.forward(x), y))) as tf.Scalar, tokens: 2 };
  };
  const steps_ = () => steps;
  return Object.defineProperties({ parameters, optimizer, batches, step, progress: 'none' as const }, { steps: { value: steps_, enumerable: false } }) as {
    parameters: typeof parameters;
    optimizer: AdamW;
    batches: Batch[];
    step: typeof step;
    progress: 'none';
    steps: () => number;
  };
}

/** The id of a process that ran on this machine and has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '0']);
  return child.pid!;
}

describe('checkpointDir', () => {
  it('is refused by name before any step when it is a file (not ENOTDIR after training)', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'not a directory');
    const run = setup();
    for (const checkpointDir of [file, join(file, 'under')]) {
      const error = await train({ ...run, checkpointDir }).catch((e) => e);
      expect(error.code).toBe('INVALID_OPTION');
      expect(error.message).toMatch(/checkpointDir/);
      expect(error.message).toContain(file);
      expect(error.message).toMatch(/is a file/);
    }
    expect(run.steps()).toBe(0);
  });

  it('keeps only the last saveTotalLimit checkpoints, and checks the option', async () => {
    const root = join(dir, 'limit');
    const run = setup(7);
    const result = await train({ ...run, checkpointDir: root, checkpointEvery: 1, saveTotalLimit: 2 });
    expect(result.steps).toBe(7);
    expect(readdirSync(root).sort()).toEqual(['step-6', 'step-7']);
    await expect(train({ ...setup(), saveTotalLimit: 2 })).rejects.toThrow(/saveTotalLimit is set but checkpointDir is not/);
    await expect(train({ ...setup(), checkpointDir: root, saveTotalLimit: 0 })).rejects.toThrow(/expected saveTotalLimit to be an integer > 0; got 0/);
  });

  it('rotateCheckpoints never deletes the checkpoint just written, even below older higher steps', async () => {
    const root = join(dir, 'rotate');
    for (const n of [3, 10, 20, 30]) mkdirSync(join(root, `step-${n}`), { recursive: true });
    mkdirSync(join(root, 'other'));
    expect(await rotateCheckpoints(root, 2, join(root, 'step-3'))).toEqual([join(root, 'step-10'), join(root, 'step-20')].map((p) => p.replaceAll('\\', '/')));
    expect(readdirSync(root).sort()).toEqual(['other', 'step-3', 'step-30']);
  });

  it('refuses a second run on the same checkpointDir while one is live, and frees it at the end', async () => {
    const root = join(dir, 'locked');
    const first = setup(3);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* slow() {
      yield first.batches[0];
      await gate; // the first run is live here
      yield first.batches[1];
    }
    const running = train({ ...first, batches: slow(), checkpointDir: root });
    await vi.waitFor(() => expect(existsSync(join(root, LOCK_FILE))).toBe(true));
    expect(JSON.parse(readFileSync(join(root, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, hostname: hostname() });
    const second = setup();
    const error = await train({ ...second, checkpointDir: root }).catch((e) => e);
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toMatch(new RegExp(`a live run holds it: process ${process.pid} .*\\(this process\\)`));
    expect(second.steps()).toBe(0);
    release();
    expect((await running).steps).toBe(2);
    expect(existsSync(join(root, LOCK_FILE))).toBe(false);
    expect((await train({ ...second, checkpointDir: root, maxSteps: 1 })).steps).toBe(1); // free again
  });

  it('frees the lock when the run throws', async () => {
    const root = join(dir, 'throws');
    const run = setup();
    const error = await train({ ...run, step: (b: Batch) => ({ lossSum: tf.mul(run.step(b).lossSum, Number.NaN) as tf.Scalar, tokens: 2 }), checkpointDir: root }).catch((e) => e);
    expect(error.code).toBe('NON_FINITE');
    expect(existsSync(join(root, LOCK_FILE))).toBe(false);
  });

  it('takes over a stale lock whose process no longer runs, with a warning', async () => {
    const root = join(dir, 'stale');
    mkdirSync(root);
    const pid = deadPid();
    writeFileSync(join(root, LOCK_FILE), JSON.stringify({ pid, hostname: hostname(), started: '2026-01-01T00:00:00.000Z' }));
    const warnings: string[] = [];
    const lock = await lockCheckpointDir(root, (m) => warnings.push(m));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`taking over .*${LOCK_FILE}, left by process ${pid} .* which no longer runs`));
    expect(JSON.parse(readFileSync(lock.path, 'utf8')).pid).toBe(process.pid);
    await lock.release();
    expect(existsSync(lock.path)).toBe(false);

    // train warns through console.warn and runs.
    writeFileSync(join(root, LOCK_FILE), JSON.stringify({ pid, hostname: hostname(), started: '2026-01-01T00:00:00.000Z' }));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      expect((await train({ ...setup(), checkpointDir: root })).steps).toBe(4);
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/which no longer runs/));
    } finally {
      warn.mockRestore();
    }
  });

  it('treats a lock from another machine as live, and says how to clear it', async () => {
    const root = join(dir, 'remote');
    mkdirSync(root);
    writeFileSync(join(root, LOCK_FILE), JSON.stringify({ pid: 1, hostname: `not-${hostname()}`, started: '2026-01-01T00:00:00.000Z' }));
    const error = await lockCheckpointDir(root).catch((e) => e);
    expect(error.code).toBe('INVALID_OPTION');
    expect(error.message).toMatch(/process 1 on not-/);
    expect(error.message).toMatch(/help: .*delete .*train\.lock/);
  });
});
