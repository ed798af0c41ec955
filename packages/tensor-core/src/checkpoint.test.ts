import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { fileSource, fileTarget } from './file-source.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { parseSafetensorsHeader } from './safetensors.js';
import { writeSafetensors } from './safetensors-write.js';
import { expectRejection } from './testing/assert.js';
import { withTempDir } from './testing/temp-dir.js';
import { disposeAll, expectNoTensorLeaks } from './testing/tensors.js';

expectNoTensorLeaks(); // nothing leaks, on success or on error

const range = (n: number, dtype: 'float32' | 'int32' = 'float32') =>
  tf.tensor1d(
    Array.from({ length: n }, (_, i) => i * (dtype === 'float32' ? 0.5 : 1) - 3),
    dtype,
  );

/** Four tensors of 64, 40, 120 and 16 bytes: with maxShardBytes 100 they make four shards. */
function makeTensors(): Record<string, tf.Tensor> {
  return { 'model.embed.weight': range(16), 'model.ids': range(10, 'int32'), 'lm_head.weight': range(30), 'model.norm.weight': range(4) };
}

async function expectSame(actual: Record<string, tf.Tensor>, expected: Record<string, tf.Tensor>): Promise<void> {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, t] of Object.entries(expected)) {
    expect(actual[name].dtype, name).toBe(t.dtype);
    expect(actual[name].shape, name).toEqual(t.shape);
    expect(Array.from(await actual[name].data()), name).toEqual(Array.from(await t.data()));
  }
}

describe('writeCheckpoint and readCheckpoint', () => {
  it('write one model.safetensors when the tensors fit, with format "pt" metadata, and read it back', async () => {
    const tensors = makeTensors();
    const files = new Map<string, Uint8Array | string>();
    expect(await writeCheckpoint(tensors, fileTarget(files), { metadata: { step: '10' } })).toEqual({ files: ['model.safetensors'], totalSize: 240 });
    expect([...files.keys()]).toEqual(['model.safetensors']);
    expect(parseSafetensorsHeader(files.get('model.safetensors') as Uint8Array).metadata).toEqual({ format: 'pt', step: '10' });
    const back = await readCheckpoint(fileSource(files));
    await expectSame(back, tensors);
    disposeAll(tensors);
    disposeAll(back);
  });

  it('shard like Hugging Face (a new shard when the next tensor overflows, a big tensor alone) with a sorted index', async () => {
    const tensors = makeTensors();
    const files = new Map<string, Uint8Array | string>();
    const result = await writeCheckpoint(tensors, fileTarget(files), { maxShardBytes: 100 });
    const shards = [1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`);
    expect(result).toEqual({ files: [...shards, 'model.safetensors.index.json'], totalSize: 240 });
    const index = await fileSource(files).readText('model.safetensors.index.json');
    const weightMap = { 'lm_head.weight': shards[2], 'model.embed.weight': shards[0], 'model.ids': shards[1], 'model.norm.weight': shards[3] };
    expect(index).toBe(`${JSON.stringify({ metadata: { total_size: 240 }, weight_map: weightMap }, null, 2)}\n`);
    expect(shards.map((s) => [...parseSafetensorsHeader(files.get(s) as Uint8Array).tensors.keys()])).toEqual([['model.embed.weight'], ['model.ids'], ['lm_head.weight'], ['model.norm.weight']]);
    const back = await readCheckpoint(fileSource(files));
    await expectSame(back, tensors);
    disposeAll(back);

    // Two tensors that fit together share a shard; total_size counts stored (BF16) bytes.
    const packed = new Map<string, Uint8Array | string>();
    const result2 = await writeCheckpoint(tensors, fileTarget(packed), { maxShardBytes: 80, floatDtype: 'BF16' });
    expect(result2).toEqual({
      files: ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'],
      totalSize: 32 + 40 + 60 + 8,
    });
    const header = parseSafetensorsHeader(packed.get('model-00001-of-00002.safetensors') as Uint8Array);
    expect([...header.tensors.values()].map((t) => `${t.name}:${t.dtype}`)).toEqual(['model.ids:I32', 'model.embed.weight:BF16']);
    disposeAll(tensors);
  });

  it('round-trip sharded files through a real directory, leaving no temporary files', async () => {
    await withTempDir('posttrain-checkpoint-', async (dir) => {
      const tensors = makeTensors();
      try {
        await writeCheckpoint(tensors, fileTarget(dir), { maxShardBytes: 150, fileName: 'adapter_model.safetensors', dtypes: { 'model.ids': 'I64' } });
        expect((await readdir(dir)).sort()).toEqual(['adapter_model-00001-of-00002.safetensors', 'adapter_model-00002-of-00002.safetensors', 'adapter_model.safetensors.index.json']);
        const back = await readCheckpoint(fileSource(dir), { fileName: 'adapter_model.safetensors' });
        await expectSame(back, tensors);
        disposeAll(back);
        await expectRejection(readCheckpoint(fileSource(dir)), 'FILE_NOT_FOUND', `expected model.safetensors or model.safetensors.index.json in directory ${dir}; found neither`);
      } finally {
        disposeAll(tensors);
      }
    });
  });

  it('remove the other layout when it changes, so a reader never picks a stale file', async () => {
    const tensors = makeTensors();
    const files = new Map<string, Uint8Array | string>();
    await writeCheckpoint(tensors, fileTarget(files));
    await writeCheckpoint(tensors, fileTarget(files), { maxShardBytes: 100 });
    expect(files.has('model.safetensors')).toBe(false);
    const small = { only: range(2) };
    await writeCheckpoint(small, fileTarget(files));
    expect(files.has('model.safetensors.index.json')).toBe(false);
    const back = await readCheckpoint(fileSource(files));
    expect(Object.keys(back)).toEqual(['only']);
    [tensors, small, back].forEach(disposeAll);
  });

  it('read only the tensors the index lists, from the shard it names', async () => {
    const a = range(3);
    const b = range(2, 'int32');
    const extra = range(1);
    const files = {
      'model-00001-of-00002.safetensors': writeSafetensors({ a, extra }),
      'model-00002-of-00002.safetensors': writeSafetensors({ b, a: extra }),
      'model.safetensors.index.json': JSON.stringify({
        metadata: { total_size: 20 },
        weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
      }),
    };
    const back = await readCheckpoint(fileSource(files));
    await expectSame(back, { a, b });
    [a, b, extra].forEach((t) => t.dispose());
    disposeAll(back);
  });
});

describe('readCheckpoint on broken checkpoints', () => {
  const shard1 = 'model-00001-of-00002.safetensors';
  const shard2 = 'model-00002-of-00002.safetensors';
  const index = (weightMap: unknown) => JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });

  it('names every missing shard before reading any', async () => {
    const source = fileSource({ 'model.safetensors.index.json': index({ a: shard1, b: shard2, c: 'model-extra.safetensors' }) });
    await expectRejection(readCheckpoint(source), 'FILE_NOT_FOUND', `model.safetensors.index.json lists shards missing from in-memory files: ${shard1}, ${shard2}, model-extra.safetensors`);
  });

  it('names keys absent from their shard, and disposes what it already decoded', async () => {
    const a = range(3);
    const files = {
      [shard1]: writeSafetensors({ a }),
      [shard2]: writeSafetensors({ c: a }),
      'model.safetensors.index.json': index({ a: shard1, b: shard2, d: shard2 }),
    };
    await expectRejection(readCheckpoint(fileSource(files)), 'SAFETENSORS_FORMAT', `model.safetensors.index.json maps tensors to ${shard2}, but ${shard2} in in-memory files does not hold b, d`);
    a.dispose();
  });

  it('names the shard when a shard is not valid safetensors, or decodes badly', async () => {
    const a = range(3);
    const big = new Uint8Array(8);
    new DataView(big.buffer).setBigInt64(0, 2n ** 33n, true);
    const header = new TextEncoder().encode('{"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}');
    const i64File = new Uint8Array([...new Uint8Array(new BigUint64Array([BigInt(header.length)]).buffer), ...header, ...big]);
    const files = { [shard1]: writeSafetensors({ a }), [shard2]: i64File, 'model.safetensors.index.json': index({ a: shard1, b: shard2 }) };
    await expectRejection(readCheckpoint(fileSource(files)), 'SAFETENSORS_FORMAT', `${shard2} in in-memory files: tensor "b" (I64): expected values in the int32 range`);
    await expectRejection(
      readCheckpoint(fileSource({ 'model.safetensors': new Uint8Array(3) })),
      'SAFETENSORS_FORMAT',
      'model.safetensors in in-memory files: invalid safetensors file: expected at least 8 bytes',
    );
    a.dispose();
  });

  it('rejects an index that is not JSON or has no proper weight_map, and shard names that climb out', async () => {
    const read = (text: string) => readCheckpoint(fileSource({ 'model.safetensors.index.json': text }));
    await expectRejection(read('{"weight_map": '), 'SAFETENSORS_FORMAT', 'model.safetensors.index.json in in-memory files: expected JSON; got a parse error');
    await expectRejection(read('{"metadata": {}}'), 'SAFETENSORS_FORMAT', 'model.safetensors.index.json in in-memory files: expected a "weight_map" object; got undefined');
    await expectRejection(read(index({ a: 3 })), 'SAFETENSORS_FORMAT', 'expected weight_map["a"] to be a shard file name; got 3');
    await expectRejection(read(index({ a: '../model.safetensors' })), 'INVALID_ARGUMENT', 'got "../model.safetensors"');
  });
});

describe('checkpoint options', () => {
  it('reject bad options by name', async () => {
    const t = { a: range(1) };
    const target = fileTarget(new Map());
    await expectRejection(writeCheckpoint(t, target, { maxShardBytes: 0 }), 'INVALID_OPTION', 'writeCheckpoint: expected maxShardBytes to be a number of bytes > 0 (Infinity for one file); got 0');
    await expectRejection(writeCheckpoint(t, target, { fileName: 'model.bin' }), 'INVALID_OPTION', 'writeCheckpoint: expected fileName to be a file name ending in .safetensors; got "model.bin"');
    await expectRejection(
      writeCheckpoint(t, target, { shardSize: 5 } as object),
      'INVALID_OPTION',
      'writeCheckpoint: unknown option "shardSize"; known options are floatDtype, intDtype, dtypes, fileName, maxShardBytes, metadata',
    );
    await expectRejection(writeCheckpoint(t, target, { dtypes: { a: 'I8' } }), 'DTYPE_MISMATCH', 'cannot store tensor "a" (float32) as "I8"');
    await expectRejection(
      readCheckpoint(fileSource({}), { fileName: 'sub/model.safetensors' }),
      'INVALID_OPTION',
      'readCheckpoint: expected fileName to be a file name ending in .safetensors; got "sub/model.safetensors"',
    );
    disposeAll(t);
  });
});
