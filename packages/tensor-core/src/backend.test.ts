import { afterAll, describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { initBackend, linuxHasGpuDevice } from './backend.js';
import { isPosttrainError } from './errors.js';

describe('initBackend', () => {
  afterAll(async () => {
    await initBackend('cpu');
  });

  it('cpu: the plain JavaScript backend', async () => {
    expect(await initBackend('cpu')).toEqual({ name: 'cpu', threads: 1, float16: false });
    expect(tf.getBackend()).toBe('cpu');
  });

  it('wasm: single-threaded SIMD in Node, with the training kernels registered', async () => {
    const info = await initBackend('wasm');
    expect(info).toEqual({ name: 'wasm', threads: 1, float16: false });
    expect(tf.getBackend()).toBe('wasm');
    expect(tf.getKernel('UnsortedSegmentSum', 'wasm')).toBeDefined();
  });

  it('auto: WebGPU only on a hardware adapter, otherwise wasm (Node default)', async () => {
    const info = await initBackend('auto');
    if (info.name === 'webgpu') expect(info.softwareAdapter).toBe(false);
    else expect(info.name).toBe('wasm');
  });

  it('auto skips the WebGPU probe on Linux only when no device node says there is a GPU', () => {
    const none = () => false;
    expect(linuxHasGpuDevice([], none)).toBe(false);
    expect(linuxHasGpuDevice(['card0', 'by-path'], none)).toBe(false); // a display-only card
    expect(linuxHasGpuDevice(['card0', 'renderD128'], none)).toBe(true);
    expect(linuxHasGpuDevice([], (p) => p === '/dev/nvidia0')).toBe(true);
    expect(linuxHasGpuDevice([], (p) => p === '/dev/dxg')).toBe(true); // WSL
  });

  it('switching back and forth keeps tensors usable on the new backend', async () => {
    await initBackend('wasm');
    const a = tf.tensor([1, 2, 3]);
    await initBackend('cpu');
    expect(Array.from(a.add(1).dataSync())).toEqual([2, 3, 4]);
    a.dispose();
  });

  it('rejects an unknown name, naming the valid ones', async () => {
    const error = await initBackend('tpu' as 'cpu').catch((e: unknown) => e);
    expect(isPosttrainError(error)).toBe(true);
    expect((error as Error).message).toBe(`initBackend: expected 'auto', 'webgpu', 'wasm' or 'cpu'; got "tpu"`);
  });
});
