// Files of a command: the model directory it reads, the records, and the output directory it
// writes (refused when another run's files are there, unless --overwrite).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PosttrainError, type CausalLM } from '@posttrain/tensor-core';
import { loadTokenizer, readJsonl, type DatasetFormat, type RecordOf, type Tokenizer } from '@posttrain/data';
import { loadModel, saveModel } from '@posttrain/models';
import { loadAdapter, loraLayers, saveAdapter } from '@posttrain/lora';
import { UsageError } from './options.js';

/** The tokenizer files copied next to a saved model, when the source has them. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt'] as const;

/** Copies the tokenizer files of model directory `from` (those it has) into `to`. */
export function copyTokenizerFiles(from: string, to: string): void {
  for (const name of TOKENIZER_FILES) if (existsSync(join(from, name))) copyFileSync(join(from, name), join(to, name));
}

/** Throws a {@link UsageError} naming `flag` unless `dir` is a model directory (it has config.json). */
export function checkModelDir(flag: string, dir: string): string {
  const path = resolve(dir);
  if (!existsSync(path))
    throw new UsageError(`${flag}: model directory ${path} does not exist`, 'give a directory with config.json, model.safetensors and tokenizer.json (e.g. one written by `posttrain sft`)');
  if (!statSync(path).isDirectory()) throw new UsageError(`${flag}: expected a model directory; got the file ${path}`);
  if (!existsSync(join(path, 'config.json')) && !existsSync(join(path, 'adapter_config.json'))) {
    throw new UsageError(`${flag}: ${path} has no config.json (nor adapter_config.json); it is not a model directory`);
  }
  return path;
}

/** A model and its tokenizer, loaded from a directory; with `adapter`, a PEFT LoRA adapter is put on it. */
export async function loadPolicy(dir: string, adapter?: string, flag = '--model'): Promise<{ model: CausalLM; tokenizer: Tokenizer; dir: string }> {
  const path = checkModelDir(flag, dir);
  if (!existsSync(join(path, 'tokenizer.json'))) throw new UsageError(`${flag}: ${path} has no tokenizer.json`, 'copy the tokenizer files of the base model into it');
  const model = await loadModel(path);
  const tokenizer = await loadTokenizer(path);
  if (adapter) await loadAdapter(model, checkModelDir('--adapter', adapter));
  return { model, tokenizer, dir: path };
}

/** Every record of a JSONL file (format checked by `@posttrain/data`: a bad line names its number). */
export async function readRecordsFile<F extends DatasetFormat>(flag: string, path: string, format?: F): Promise<RecordOf[F][]> {
  const file = resolve(path);
  if (!existsSync(file)) throw new UsageError(`${flag}: file ${file} does not exist`, 'give a JSONL file, one record per line');
  const records: RecordOf[F][] = [];
  for await (const { record } of readJsonl<F>(file, format ? { format } : {})) records.push(record);
  if (records.length === 0) throw new UsageError(`${flag}: ${file} holds no records`);
  return records;
}

/**
 * Makes `dir` ready for a run: created when missing; when it already holds files of another run, the
 * command stops (nothing is written) unless `overwrite` is set.
 */
export function prepareOutputDir(dir: string, overwrite: boolean): string {
  const path = resolve(dir);
  if (existsSync(path)) {
    if (!statSync(path).isDirectory()) throw new UsageError(`--output-dir: ${path} is a file, not a directory`);
    const files = readdirSync(path);
    if (files.length > 0 && !overwrite) {
      const shown = files.slice(0, 4).join(', ') + (files.length > 4 ? `, … (${files.length} in all)` : '');
      throw new UsageError(`--output-dir: ${path} already holds another run's files (${shown}); nothing was written`, 'pass --overwrite to replace them, or choose another --output-dir');
    }
  }
  mkdirSync(path, { recursive: true });
  return path;
}

/** Writes `text` to `path` through a temporary file and a rename, so a crash never leaves half a file. */
export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}

/**
 * Saves a trained policy into `dir`: its LoRA adapter in PEFT's format when it has LoRA layers
 * (with the base model's directory recorded in adapter_config.json), else the whole model
 * (safetensors + config.json); the tokenizer files of `from` are copied either way.
 */
export async function savePolicy(model: CausalLM, dir: string, from: string): Promise<'adapter' | 'model'> {
  const kind = loraLayers(model as never).size > 0 ? 'adapter' : 'model';
  if (kind === 'adapter') await saveAdapter(model as never, dir, { baseModelNameOrPath: from });
  else await saveModel(model, dir);
  copyTokenizerFiles(from, dir);
  return kind;
}

/** Writes a whole model (config.json, safetensors) and the tokenizer files of model directory `from` into `dir`. */
export async function saveModelDir(model: CausalLM, dir: string, from: string): Promise<void> {
  await saveModel(model, dir);
  copyTokenizerFiles(from, dir);
}

/** A copy of a model, through a safetensors round trip in memory. */
export async function copyModel(model: CausalLM): Promise<CausalLM> {
  const files = new Map<string, Uint8Array>();
  await saveModel(model, files);
  return loadModel(files);
}

/** Frees a model's weights (every posttrain model is a `Module`). */
export function disposeModel(model: unknown): void {
  (model as { dispose?(): void } | undefined)?.dispose?.();
}

/** The rows of a metrics JSONL file (empty when it does not exist). */
export function readMetrics(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch (error) {
        throw new PosttrainError('INVALID_ARGUMENT', `${path}:${i + 1}: invalid JSON in the metrics file (${(error as Error).message})`);
      }
    });
}
