// Hugging Face checkpoint layout: one `model.safetensors`, or shards
// `model-00001-of-00003.safetensors` … listed by `model.safetensors.index.json`
// (`{ "metadata": { "total_size": N }, "weight_map": { key: shard } }`).
import { tf } from './tf.js';
import { PosttrainError, isPosttrainError } from './errors.js';
import { describe, resolveOptions } from './options.js';
import type { FileSource, FileTarget } from './file-source.js';
import { decodeSafetensorsTensor, parseSafetensorsHeader, type SafetensorsDtype, type SafetensorsHeader } from './safetensors.js';
import { defaultWriteSafetensorsOptions, storedDtypes, writeSafetensorsAsync, type WriteSafetensorsOptions } from './safetensors-write.js';

/**
 * The contents of `model.safetensors.index.json`, as transformers writes it.
 *
 * @example
 * ```ts
 * const index: CheckpointIndex = JSON.parse(await source.readText('model.safetensors.index.json'));
 * new Set(Object.values(index.weight_map)); // the shard files
 * ```
 */
export interface CheckpointIndex {
  /** `total_size` is the sum of every tensor's bytes; Hugging Face may add other keys. */
  metadata: { total_size: number; [key: string]: unknown };
  /** Tensor name → the shard file holding it. */
  weight_map: Record<string, string>;
}

/**
 * Options of {@link readCheckpoint}.
 *
 * @example
 * ```ts
 * const adapter = await readCheckpoint(source, { fileName: 'adapter_model.safetensors' });
 * ```
 */
export interface ReadCheckpointOptions {
  /** The single-file name; the index is `${fileName}.index.json`. PEFT adapters use `adapter_model.safetensors`. */
  fileName?: string;
}

/**
 * Defaults of {@link readCheckpoint}.
 *
 * @example
 * ```ts
 * defaultReadCheckpointOptions.fileName; // 'model.safetensors'
 * ```
 */
export const defaultReadCheckpointOptions: Readonly<Required<ReadCheckpointOptions>> = Object.freeze({ fileName: 'model.safetensors' });

/**
 * Options of {@link writeCheckpoint}: where to split, what to name, and how to store dtypes.
 *
 * @example
 * ```ts
 * const options: WriteCheckpointOptions = { maxShardBytes: 2e9, floatDtype: 'BF16', metadata: { step: '1000' } };
 * ```
 */
export interface WriteCheckpointOptions extends WriteSafetensorsOptions {
  /** The single-file name; shards are `model-00001-of-0000N.safetensors` for `model.safetensors`. */
  fileName?: string;
  /** The most tensor bytes in one shard (Hugging Face's `max_shard_size`, default 5 GB). A larger tensor gets a shard of its own. */
  maxShardBytes?: number;
  /** Strings stored in every file's header, over `{ format: 'pt' }` (which transformers requires). */
  metadata?: Record<string, string>;
}

/**
 * Defaults of {@link writeCheckpoint}: one `model.safetensors` up to 5 GB of tensors, F32 and I32.
 *
 * @example
 * ```ts
 * defaultWriteCheckpointOptions.maxShardBytes; // 2_000_000_000
 * ```
 */
export const defaultWriteCheckpointOptions: Readonly<Required<WriteCheckpointOptions>> = Object.freeze({
  ...defaultWriteSafetensorsOptions,
  fileName: 'model.safetensors',
  // Below 2 GiB: one typed array holds a shard, and every runtime reads it back in one piece.
  maxShardBytes: 2_000_000_000,
  metadata: {},
});

/**
 * What {@link writeCheckpoint} wrote.
 *
 * @example
 * ```ts
 * const { files, totalSize } = await writeCheckpoint(tensors, fileTarget('/tmp/out'));
 * ```
 */
export interface WriteCheckpointResult {
  /** Every file written: the single file, or the shards and then the index. */
  files: string[];
  /** The sum of the tensors' stored bytes (the index's `total_size`). */
  totalSize: number;
}

const ELEMENT_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I8: 1, U8: 1, BOOL: 1 };

function checkFileName(owner: string, fileName: unknown): string {
  if (typeof fileName !== 'string' || !/^[^/\\]+\.safetensors$/.test(fileName)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected fileName to be a file name ending in .safetensors; got ${describe(fileName)}`);
  }
  return fileName;
}

/** Re-throws a safetensors error with the file and source named first. */
function inFile(error: unknown, file: string, source: FileSource): never {
  if (!isPosttrainError(error) || error.code !== 'SAFETENSORS_FORMAT') throw error;
  const message = error.help ? error.message.slice(0, -`\nhelp: ${error.help}`.length) : error.message;
  throw new PosttrainError(error.code, `${file} in ${source.describe()}: ${message}`, { help: error.help, cause: error });
}

function parseIndex(text: string, file: string, source: FileSource): CheckpointIndex {
  const fail = (detail: string) =>
    new PosttrainError('SAFETENSORS_FORMAT', `${file} in ${source.describe()}: ${detail}`, {
      help: 'expected {"metadata": {"total_size": N}, "weight_map": {"tensor name": "shard file"}}, as transformers writes',
    });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw fail(`expected JSON; got a parse error (${(error as Error).message})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw fail(`expected a "weight_map" object; got ${describe(map)}`);
  for (const [key, shard] of Object.entries(map)) {
    if (typeof shard !== 'string') throw fail(`expected weight_map["${key}"] to be a shard file name; got ${describe(shard)}`);
  }
  return json as CheckpointIndex;
}

const list = (names: string[]) => names.slice(0, 10).join(', ') + (names.length > 10 ? `, … (${names.length} in all)` : '');

/**
 * Reads a checkpoint into new tensors (the caller disposes them): `model.safetensors` if the
 * source has it, else `model.safetensors.index.json` and the shards it lists. Before decoding,
 * it checks that every listed shard exists; every key must be in the shard the index names.
 * Tensors a shard holds but the index does not list are not read.
 *
 * @example
 * ```ts
 * const tensors = await readCheckpoint(fileSource('/models/smollm2-135m'));
 * model.loadStateDict(tensors);
 * for (const t of Object.values(tensors)) t.dispose();
 * ```
 */
export async function readCheckpoint(source: FileSource, options?: ReadCheckpointOptions): Promise<Record<string, tf.Tensor>> {
  const fileName = checkFileName('readCheckpoint', resolveOptions('readCheckpoint', options, defaultReadCheckpointOptions).fileName);
  const indexName = `${fileName}.index.json`;
  if (await source.exists(fileName)) {
    const bytes = await source.read(fileName);
    const header = parseIn(bytes, fileName, source);
    return decodeAll(header, bytes, [...header.tensors.keys()], {}, fileName, source);
  }
  if (!(await source.exists(indexName))) {
    throw new PosttrainError('FILE_NOT_FOUND', `expected ${fileName} or ${indexName} in ${source.describe()}; found neither`, {
      help: 'point the source at a checkpoint directory (the one holding config.json and the weights)',
    });
  }
  const index = parseIndex(await source.readText(indexName), indexName, source);
  const keysByShard = new Map<string, string[]>();
  for (const [key, shard] of Object.entries(index.weight_map)) {
    if (!keysByShard.has(shard)) keysByShard.set(shard, []);
    keysByShard.get(shard)!.push(key);
  }
  const missing: string[] = [];
  for (const shard of keysByShard.keys()) if (!(await source.exists(shard))) missing.push(shard);
  if (missing.length) {
    throw new PosttrainError('FILE_NOT_FOUND', `${indexName} lists shards missing from ${source.describe()}: ${list(missing)}`, {
      help: 'download every shard the index names, or re-save the checkpoint',
    });
  }
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const [shard, keys] of keysByShard) {
      const bytes = await source.read(shard);
      const header = parseIn(bytes, shard, source);
      const absent = keys.filter((key) => !header.tensors.has(key));
      if (absent.length) {
        throw new PosttrainError('SAFETENSORS_FORMAT', `${indexName} maps tensors to ${shard}, but ${shard} in ${source.describe()} does not hold ${list(absent)}`, {
          help: 'the index and the shards come from different saves; re-download or re-save the checkpoint',
        });
      }
      decodeAll(header, bytes, keys, out, shard, source);
    }
  } catch (error) {
    for (const tensor of Object.values(out)) tensor.dispose();
    throw error;
  }
  return out;
}

function parseIn(bytes: Uint8Array, file: string, source: FileSource): SafetensorsHeader {
  try {
    return parseSafetensorsHeader(bytes);
  } catch (error) {
    return inFile(error, file, source);
  }
}

function decodeAll(header: SafetensorsHeader, bytes: Uint8Array, keys: string[], out: Record<string, tf.Tensor>, file: string, source: FileSource): Record<string, tf.Tensor> {
  const made: tf.Tensor[] = [];
  try {
    for (const key of keys) {
      const info = header.tensors.get(key)!;
      const tensor = decodeSafetensorsTensor(info, bytes.subarray(info.start, info.end));
      made.push(tensor);
      Object.defineProperty(out, key, { value: tensor, enumerable: true, writable: true, configurable: true });
    }
  } catch (error) {
    for (const tensor of made) tensor.dispose();
    for (const key of keys) delete out[key];
    inFile(error, file, source);
  }
  return out;
}

/**
 * Writes tensors as a Hugging Face checkpoint: one `model.safetensors` when the tensor bytes fit
 * in `maxShardBytes`, else shards `model-00001-of-0000N.safetensors` (filled in the tensors'
 * order, a new shard when the next tensor would overflow) and then `model.safetensors.index.json`,
 * so an index never names a shard that is not written yet. It removes the other layout's
 * top file (the index, or the single file) so a reader does not pick a stale one; shard files of
 * an earlier save stay, unreferenced. The tensors stay the caller's; none are created.
 *
 * @example
 * ```ts
 * const { files } = await writeCheckpoint(model.stateDict(), fileTarget('/tmp/out'), { maxShardBytes: 2e9, floatDtype: 'BF16' });
 * // ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']
 * ```
 */
export async function writeCheckpoint(tensors: Record<string, tf.Tensor>, target: FileTarget, options?: WriteCheckpointOptions): Promise<WriteCheckpointResult> {
  const { fileName, maxShardBytes, metadata, ...safetensorsOptions } = resolveOptions('writeCheckpoint', options, defaultWriteCheckpointOptions);
  checkFileName('writeCheckpoint', fileName);
  if (typeof maxShardBytes !== 'number' || !(maxShardBytes > 0)) {
    throw new PosttrainError('INVALID_OPTION', `writeCheckpoint: expected maxShardBytes to be a number of bytes > 0 (Infinity for one file); got ${describe(maxShardBytes)}`);
  }
  const fileMetadata = { format: 'pt', ...metadata };
  const dtypes = storedDtypes(tensors, safetensorsOptions);
  const shards: string[][] = [];
  let shardBytes = 0;
  let totalSize = 0;
  for (const [name, dtype] of dtypes) {
    const bytes = tensors[name].size * ELEMENT_BYTES[dtype];
    const current = shards.at(-1);
    if (current === undefined || (current.length > 0 && shardBytes + bytes > maxShardBytes)) {
      shards.push([name]);
      shardBytes = bytes;
    } else {
      current.push(name);
      shardBytes += bytes;
    }
    totalSize += bytes;
  }
  const write = (names: string[]) =>
    writeSafetensorsAsync(Object.fromEntries(names.map((n) => [n, tensors[n]])), fileMetadata, {
      dtypes: Object.fromEntries(names.map((n) => [n, dtypes.get(n)!])),
    });
  const indexName = `${fileName}.index.json`;
  if (shards.length <= 1) {
    await target.write(fileName, await write(shards[0] ?? []));
    await target.remove(indexName);
    return { files: [fileName], totalSize };
  }
  const stem = fileName.slice(0, -'.safetensors'.length);
  const pad = (i: number) => String(i).padStart(5, '0');
  const files = shards.map((_, i) => `${stem}-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap = new Map<string, string>();
  for (let i = 0; i < shards.length; i++) {
    await target.write(files[i], await write(shards[i]));
    for (const name of shards[i]) weightMap.set(name, files[i]);
  }
  const sorted = [...weightMap].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const index: CheckpointIndex = { metadata: { total_size: totalSize }, weight_map: Object.fromEntries(sorted) };
  await target.write(indexName, `${JSON.stringify(index, null, 2)}\n`);
  await target.remove(fileName);
  return { files: [...files, indexName], totalSize };
}
