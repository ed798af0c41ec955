// The teacher's top-k log-probs over a dataset, computed once and kept on disk as safetensors
// shards with a manifest, so later epochs and later runs train without running the teacher.
// Shards and manifest are each written to a temporary file and renamed; the manifest, written last,
// names every shard with its SHA-256, so a crash leaves either no cache or a whole one.
import { PosttrainError, describeValue, fileSource, fileTarget, readSafetensors, tf, writeSafetensors, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, type LabeledExample } from '@posttrain/data';
import { teacherFingerprint, teacherTopK } from './teacher.js';

/**
 * Where and how the teacher's top-k log-probs are cached (`distillTrain`'s `teacherCache`).
 *
 * @example
 * ```ts
 * const cache: TeacherCacheOptions = { dir: 'out/teacher-top16', topK: 16 };
 * ```
 */
export interface TeacherCacheOptions {
  /** Directory of the manifest (`teacher-cache.json`) and the shards (`topk-00000.safetensors`, …). */
  dir: string;
  /** Log-probs kept per position: the teacher's k most likely next tokens, 1 ≤ k ≤ vocabulary size. */
  topK: number;
  /** Records per shard (default 4096). */
  shardRecords?: number;
}

/**
 * The cached targets in memory: for record r, its scored positions are `offsets[r] … offsets[r + 1] − 1`
 * (in the order of its label tokens), each with `k` ids and log-probs at `p·k … p·k + k − 1`.
 *
 * @example
 * ```ts
 * const { ids, logprobs, offsets, k } = targets; // ids.length === offsets[offsets.length − 1] · k
 * ```
 */
export interface TopKTargets {
  k: number;
  offsets: Int32Array;
  ids: Int32Array;
  logprobs: Float32Array;
}

/** The manifest's format name and version: a reader refuses any other. */
const FORMAT = 'posttrain-teacher-topk';
const VERSION = 1;
const MANIFEST = 'teacher-cache.json';

interface Manifest {
  format: string;
  version: number;
  teacher: string;
  data: string;
  topK: number;
  vocabSize: number;
  records: number;
  shards: { file: string; first: number; count: number; positions: number; sha256: string }[];
}

/**
 * The positions t of an example whose logits are scored: those whose next token t + 1 has a label
 * (not −100). The cache stores these, in this order.
 *
 * @example
 * ```ts
 * scoredPositions({ inputIds: [1, 2, 3, 4], labels: [-100, -100, 3, 4] }); // [1, 2]
 * ```
 */
export function scoredPositions(example: LabeledExample): number[] {
  const out: number[] = [];
  for (let t = 0; t + 1 < example.labels.length; t++) if (example.labels[t + 1] !== -100) out.push(t);
  return out;
}

async function sha256(bytes: Uint8Array | string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(bytes).digest('hex');
}

/** A SHA-256 of the tokenized examples (ids and labels): what a cache's positions belong to. */
async function dataFingerprint(examples: readonly LabeledExample[]): Promise<string> {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  for (const e of examples) hash.update(`${e.inputIds.join(',')}|${e.labels.join(',')};`);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Checks `teacherCache` options against the model's vocabulary; throws INVALID_OPTION naming the field.
 *
 * @example
 * ```ts
 * checkTeacherCache('distillTrain', { dir: 'out/cache', topK: 300 }, 260); // throws: topK larger than the vocabulary
 * ```
 */
export function checkTeacherCache(owner: string, cache: TeacherCacheOptions, vocabSize: number): void {
  if (!cache || typeof cache !== 'object' || typeof cache.dir !== 'string' || cache.dir === '') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacherCache to be false or { dir, topK }; got ${describeValue(cache)}`, {
      help: "for example teacherCache: { dir: 'out/teacher-top16', topK: 16 }",
    });
  }
  if (!Number.isInteger(cache.topK) || cache.topK < 1 || cache.topK > vocabSize) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacherCache.topK to be an integer in [1, ${vocabSize}] (the vocabulary size); got ${describeValue(cache.topK)}`, {
      help: 'a few dozen log-probs per position keep nearly all of the teacher’s mass; topK equal to the vocabulary size keeps all of it',
    });
  }
  if (cache.shardRecords !== undefined && (!Number.isInteger(cache.shardRecords) || cache.shardRecords < 1)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacherCache.shardRecords to be a positive integer; got ${describeValue(cache.shardRecords)}`);
  }
}

/**
 * The teacher's top-k log-probs at every scored position of `examples` ({@link scoredPositions}):
 * loaded from `cache.dir` when a cache written by this teacher for these examples with this k is
 * there, else computed batch by batch (no gradient, teacher in eval mode) and written there first.
 * A cache of another teacher (fingerprint), other data or another k is an error, not overwritten;
 * a shard whose SHA-256 differs from the manifest's is an error naming it.
 *
 * @example
 * ```ts
 * const { targets, reused } = await loadOrBuildTeacherCache('distillTrain', teacher, examples, { dir: 'out/cache', topK: 16 }, { batchSize: 32, padTokenId });
 * ```
 */
export async function loadOrBuildTeacherCache(
  owner: string,
  teacher: CausalLM,
  examples: readonly LabeledExample[],
  cache: TeacherCacheOptions,
  o: { batchSize: number; padTokenId: number },
): Promise<{ targets: TopKTargets; reused: boolean }> {
  const [teacherId, dataId] = await Promise.all([teacherFingerprint(teacher), dataFingerprint(examples)]);
  const source = fileSource(cache.dir);
  if (await source.exists(MANIFEST)) {
    const manifest = parseManifest(owner, cache.dir, await source.readText(MANIFEST));
    const fix = `pass another teacherCache.dir, or delete ${cache.dir} to rebuild it`;
    if (manifest.teacher !== teacherId) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: teacherCache ${cache.dir} was written for another teacher (fingerprint ${manifest.teacher.slice(0, 19)}…); this teacher is ${teacherId.slice(0, 19)}…`,
        { help: fix },
      );
    }
    if (manifest.data !== dataId || manifest.records !== examples.length) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: teacherCache ${cache.dir} was written for other training data (${manifest.records} records, fingerprint ${manifest.data.slice(0, 19)}…); this run has ${examples.length} records, ${dataId.slice(0, 19)}…`,
        {
          help: `the cache holds positions of the tokenized records it was made from (same records, order, maxLength, completionOnlyLoss); ${fix}`,
        },
      );
    }
    if (manifest.topK !== cache.topK) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: teacherCache ${cache.dir} holds top-${manifest.topK} log-probs; got topK ${cache.topK}`, { help: `set topK: ${manifest.topK}, or ${fix}` });
    }
    return { targets: await readShards(owner, cache.dir, manifest, examples), reused: true };
  }
  const targets = await computeTargets(teacher, examples, cache.topK, o);
  await writeShards(cache, targets, { teacher: teacherId, data: dataId, vocabSize: teacher.config.vocabSize, records: examples.length });
  return { targets, reused: false };
}

function parseManifest(owner: string, dir: string, text: string): Manifest {
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (error) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: teacherCache ${dir}/${MANIFEST} is not JSON (${(error as Error).message})`, { help: `delete ${dir} to rebuild the cache` });
  }
  if (m?.format !== FORMAT || m.version !== VERSION || !Array.isArray(m.shards)) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: teacherCache ${dir}/${MANIFEST}: expected format "${FORMAT}" version ${VERSION}; got ${describeValue(m?.format)} version ${describeValue(m?.version)}`,
      {
        help: `delete ${dir} to rebuild the cache`,
      },
    );
  }
  return m;
}

async function computeTargets(teacher: CausalLM, examples: readonly LabeledExample[], k: number, o: { batchSize: number; padTokenId: number }): Promise<TopKTargets> {
  const positions = examples.map(scoredPositions);
  const offsets = new Int32Array(examples.length + 1);
  positions.forEach((p, i) => {
    offsets[i + 1] = offsets[i] + p.length;
  });
  const total = offsets[examples.length];
  const ids = new Int32Array(total * k);
  const logprobs = new Float32Array(total * k);
  for (let start = 0; start < examples.length; start += o.batchSize) {
    const rows = examples.slice(start, start + o.batchSize);
    const batch = collateForTraining(rows, { padTokenId: o.padTokenId });
    const top = teacherTopK(teacher, batch.inputIds, batch.attentionMask, k);
    const [topIds, topLogprobs] = await Promise.all([top.ids.data(), top.logprobs.data()]);
    const width = top.ids.shape[1]; // T − 1
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels, top.ids, top.logprobs]);
    rows.forEach((_, row) => {
      const r = start + row;
      positions[r].forEach((t, j) => {
        const from = (row * width + t) * k;
        const to = (offsets[r] + j) * k;
        ids.set(topIds.subarray(from, from + k), to);
        logprobs.set(topLogprobs.subarray(from, from + k) as Float32Array, to);
      });
    });
  }
  return { k, offsets, ids, logprobs };
}

async function writeShards(cache: TeacherCacheOptions, targets: TopKTargets, about: { teacher: string; data: string; vocabSize: number; records: number }): Promise<void> {
  const target = fileTarget(cache.dir);
  const per = cache.shardRecords ?? 4096;
  const { k, offsets } = targets;
  const shards: Manifest['shards'] = [];
  for (let first = 0, s = 0; first < about.records; first += per, s++) {
    const count = Math.min(per, about.records - first);
    const [p0, p1] = [offsets[first], offsets[first + count]];
    const local = offsets.slice(first, first + count + 1).map((v) => v - p0);
    const tensors = {
      ids: tf.tensor2d(targets.ids.subarray(p0 * k, p1 * k), [p1 - p0, k], 'int32'),
      logprobs: tf.tensor2d(targets.logprobs.subarray(p0 * k, p1 * k), [p1 - p0, k], 'float32'),
      offsets: tf.tensor1d(local, 'int32'),
    };
    let bytes: Uint8Array;
    try {
      bytes = writeSafetensors(tensors, { format: FORMAT, teacher: about.teacher, first: String(first), count: String(count) });
    } finally {
      tf.dispose(Object.values(tensors));
    }
    const file = `topk-${String(s).padStart(5, '0')}.safetensors`;
    await target.write(file, bytes);
    shards.push({ file, first, count, positions: p1 - p0, sha256: await sha256(bytes) });
  }
  const manifest: Manifest = { format: FORMAT, version: VERSION, teacher: about.teacher, data: about.data, topK: k, vocabSize: about.vocabSize, records: about.records, shards };
  await target.write(MANIFEST, `${JSON.stringify(manifest, null, 2)}\n`);
}

async function readShards(owner: string, dir: string, manifest: Manifest, examples: readonly LabeledExample[]): Promise<TopKTargets> {
  const source = fileSource(dir);
  const k = manifest.topK;
  const offsets = new Int32Array(examples.length + 1);
  examples.forEach((e, i) => {
    offsets[i + 1] = offsets[i] + scoredPositions(e).length;
  });
  const ids = new Int32Array(offsets[examples.length] * k);
  const logprobs = new Float32Array(offsets[examples.length] * k);
  for (const shard of manifest.shards) {
    const damaged = (why: string) => new PosttrainError('INVALID_OPTION', `${owner}: teacherCache ${dir}/${shard.file} is damaged: ${why}`, { help: `delete ${dir} to rebuild the cache` });
    if (!(await source.exists(shard.file))) throw damaged('the file is missing');
    const bytes = await source.read(shard.file);
    const digest = await sha256(bytes);
    if (digest !== shard.sha256) throw damaged(`its SHA-256 is ${digest.slice(0, 12)}…, the manifest says ${shard.sha256.slice(0, 12)}…`);
    const tensors = readSafetensors(bytes);
    try {
      const p0 = offsets[shard.first];
      const p1 = offsets[shard.first + shard.count];
      if (tensors.ids?.shape[0] !== p1 - p0 || tensors.ids.shape[1] !== k) throw damaged(`expected ids [${p1 - p0}, ${k}]; got [${tensors.ids?.shape.join(', ')}]`);
      ids.set(tensors.ids.dataSync() as Int32Array, p0 * k);
      logprobs.set(tensors.logprobs.dataSync() as Float32Array, p0 * k);
    } finally {
      tf.dispose(Object.values(tensors));
    }
  }
  return { k, offsets, ids, logprobs };
}

/**
 * The cached targets of a right-padded batch of `records` (indices into the cached examples),
 * aligned as the teacher's logits would be: ids int32 and log-probs float32 `[B, width, k]`, zeros
 * at positions that are not scored (the loss mask hides them). The caller disposes them.
 *
 * @example
 * ```ts
 * const { ids, logprobs } = cachedBatchTargets(targets, examples, [4, 9], batch.inputIds.shape[1] - 1);
 * ```
 */
export function cachedBatchTargets(targets: TopKTargets, examples: readonly LabeledExample[], records: readonly number[], width: number): { ids: tf.Tensor3D; logprobs: tf.Tensor3D } {
  const { k, offsets } = targets;
  const ids = new Int32Array(records.length * width * k);
  const logprobs = new Float32Array(records.length * width * k);
  records.forEach((r, row) => {
    scoredPositions(examples[r]).forEach((t, j) => {
      const from = (offsets[r] + j) * k;
      const to = (row * width + t) * k;
      ids.set(targets.ids.subarray(from, from + k), to);
      logprobs.set(targets.logprobs.subarray(from, from + k), to);
    });
  });
  return { ids: tf.tensor3d(ids, [records.length, width, k], 'int32'), logprobs: tf.tensor3d(logprobs, [records.length, width, k], 'float32') };
}
