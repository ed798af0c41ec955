// PEFT's on-disk adapter: `adapter_config.json` + `adapter_model.safetensors` with keys
// `base_model.model.<module path>.lora_A.weight` / `.lora_B.weight` (no adapter name in keys).
import {
  tf,
  Module,
  PosttrainError,
  formatShape,
  resolveOptions,
  fileSource,
  fileTarget,
  readCheckpoint,
  writeCheckpoint,
  type FileSource,
  type FileSourceInput,
  type FileTarget,
} from '@posttrain/tensor-core';
import { commitLora, loraAdapters, loraLayers, planLora, type LoraDispatcher, type LoraPlan, type LoraTargetModules } from './apply.js';
import type { LoraInit } from './lora-linear.js';

/** The fields of PEFT's `adapter_config.json` that posttrain writes and reads. */
export interface PeftLoraConfig {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** Module name suffixes, or one regular expression that must match a whole module path. */
  target_modules: string[] | string;
  bias: 'none';
  use_rslora: boolean;
  use_dora: boolean;
  init_lora_weights: true | 'gaussian' | 'pissa';
  base_model_name_or_path: string | null;
  fan_in_fan_out: boolean;
  inference_mode: boolean;
  [key: string]: unknown;
}

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /** `base_model_name_or_path` in the config (default null). */
  baseModelNameOrPath: string | undefined;
  /** The adapter to save (default: the active one). */
  adapterName: string | undefined;
}

export const defaultSaveAdapterOptions: Readonly<SaveAdapterOptions> = Object.freeze({ baseModelNameOrPath: undefined, adapterName: undefined });

/** Options of {@link loadAdapter}. */
export interface LoadAdapterOptions {
  /** The name the loaded adapter gets (default 'default'). */
  adapterName: string;
  /**
   * Extra LoRA dispatchers, as `applyLora` takes them: the ones the adapter was trained with when
   * its target layers are of a type a package adds (default none).
   */
  dispatchers: readonly LoraDispatcher[];
}

export const defaultLoadAdapterOptions: Readonly<LoadAdapterOptions> = Object.freeze({ adapterName: 'default', dispatchers: Object.freeze([]) });

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
const PREFIX = 'base_model.model.';

function activeAdapterName(model: Module): string | undefined {
  for (const layer of loraLayers(model).values()) if (layer.activeAdapter !== undefined) return layer.activeAdapter;
  return undefined;
}

function savedTargets(targets: LoraTargetModules, paths: string[]): string[] | string {
  if (targets instanceof RegExp) return targets.source;
  return [...new Set(paths.map((p) => p.split('.').pop()!))].sort();
}

/**
 * Writes adapter `adapterName` in PEFT's format, which `PeftModel.from_pretrained` loads: the
 * config, then the A and B weights as F32. A directory target is written atomically file by file.
 *
 * @example
 * ```ts
 * await saveAdapter(model, '/tmp/my-adapter', { baseModelNameOrPath: 'HuggingFaceTB/SmolLM2-135M' });
 * ```
 */
export async function saveAdapter(model: Module, target: FileTarget | string, options?: Partial<SaveAdapterOptions>): Promise<string[]> {
  const o = resolveOptions('saveAdapter', options, defaultSaveAdapterOptions);
  const name = o.adapterName ?? activeAdapterName(model);
  const record = name === undefined ? undefined : loraAdapters(model).get(name);
  if (name === undefined || !record) {
    const known = [...loraAdapters(model).keys()];
    throw new PosttrainError('INVALID_ARGUMENT', `saveAdapter: expected an adapter to save; the model has ${known.length ? known.join(', ') : 'none'}, got ${JSON.stringify(name)}`);
  }
  const tensors: Record<string, tf.Tensor> = {};
  const paths: string[] = [];
  let fanInFanOut = false;
  for (const [path, layer] of loraLayers(model)) {
    const a = layer.loraA.get(name);
    const b = layer.loraB.get(name);
    if (!a || !b) continue;
    paths.push(path);
    fanInFanOut ||= layer.fanInFanOut;
    tensors[`${PREFIX}${path}.lora_A.weight`] = a.weight;
    tensors[`${PREFIX}${path}.lora_B.weight`] = b.weight;
  }
  const config: PeftLoraConfig = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: record.r,
    lora_alpha: record.alpha,
    lora_dropout: record.dropout,
    target_modules: savedTargets(record.targetModules, paths),
    bias: 'none',
    use_rslora: record.rsLora,
    use_dora: record.useDora,
    init_lora_weights: record.init === 'kaiming' ? true : record.init,
    base_model_name_or_path: o.baseModelNameOrPath ?? null,
    fan_in_fan_out: fanInFanOut,
    inference_mode: true,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
  const out = typeof target === 'string' ? fileTarget(target) : target;
  const { files } = await writeCheckpoint(tensors, out, { fileName: ADAPTER_WEIGHTS_FILE, maxShardBytes: Infinity });
  await out.write(ADAPTER_CONFIG_FILE, `${JSON.stringify(config, null, 2)}\n`);
  return [...files, ADAPTER_CONFIG_FILE];
}

function parseConfig(text: string, where: string): PeftLoraConfig {
  const fail = (detail: string) => new PosttrainError('INVALID_ARGUMENT', `loadAdapter: ${ADAPTER_CONFIG_FILE} in ${where}: ${detail}`);
  let json: PeftLoraConfig;
  try {
    json = JSON.parse(text) as PeftLoraConfig;
  } catch (error) {
    throw fail(`expected JSON; got a parse error (${(error as Error).message})`);
  }
  if (json.peft_type !== 'LORA') throw fail(`expected peft_type "LORA"; got ${JSON.stringify(json.peft_type)}`);
  if (json.use_dora) throw new PosttrainError('NOT_SUPPORTED', `loadAdapter: ${where} is a DoRA adapter (use_dora true); DoRA is not supported yet`);
  if (json.bias !== undefined && json.bias !== 'none') throw new PosttrainError('NOT_SUPPORTED', `loadAdapter: expected bias "none"; got ${JSON.stringify(json.bias)}`);
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = json[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw new PosttrainError('NOT_SUPPORTED', `loadAdapter: ${key} is not supported; got ${JSON.stringify(v)}`);
  }
  if (!Number.isInteger(json.r) || json.r <= 0) throw fail(`expected r to be a positive integer; got ${JSON.stringify(json.r)}`);
  return json;
}

function targetsFromConfig(t: unknown): LoraTargetModules {
  if (t === 'all-linear') return 'all-linear';
  if (typeof t === 'string') return new RegExp(t);
  if (Array.isArray(t) && t.every((s) => typeof s === 'string')) return t as string[];
  throw new PosttrainError('INVALID_ARGUMENT', `loadAdapter: expected target_modules to be a list of names or a regular expression; got ${JSON.stringify(t)}`);
}

// PEFT runs the config's init again when it loads an adapter (LoraLayer.update_layer), then copies
// the saved A and B over it. These inits set only A and B, so the file decides everything:
const INITS_KEEPING_THE_BASE: readonly unknown[] = [true, false, 'gaussian', 'eva', 'orthogonal', 'mica'];

// PiSSA also moves the top-r singular part out of the base weight, and the saved A and B were
// trained on that residual, so it runs here too ('pissa_niter_N' is PEFT's randomized SVD of the
// same part). OLoRA, CorDA, LoftQ and LoRA-GA rewrite the base in ways posttrain lacks: refused.
function initFromConfig(v: unknown, where: string): LoraInit {
  if (v === 'gaussian') return 'gaussian';
  if (typeof v === 'string' && v.startsWith('pissa')) return 'pissa';
  if (v === undefined || INITS_KEEPING_THE_BASE.includes(v)) return 'kaiming';
  throw new PosttrainError(
    'NOT_SUPPORTED',
    `loadAdapter: ${where} has init_lora_weights ${JSON.stringify(v)}, for which PEFT rewrites the base weights when it loads the adapter; posttrain supports ${[...INITS_KEEPING_THE_BASE, 'pissa'].map((x) => JSON.stringify(x)).join(', ')}`,
    { help: 'convert the adapter to plain LoRA with PEFT first: save_pretrained(dir, path_initial_model_for_weight_conversion=...)' },
  );
}

/**
 * Loads a PEFT LoRA adapter into `model` as `adapterName`. If the model lacks that adapter, it is
 * added first from the config and made active; as in PEFT, a PiSSA adapter's init runs again, which
 * leaves the residual in the base weights the adapter was trained on.
 *
 * All or nothing: both files are read, every key and shape is checked against the layers the
 * adapter goes on, and only then does the model change. A missing or corrupt file, a key that
 * fits no layer or a shape that differs throws and leaves the model as it was (no LoRA layer
 * added, no adapter recorded, trainable flags untouched), so a retry with the right adapter works.
 *
 * @example
 * ```ts
 * const model = await loadModel('/models/smollm2-135m');
 * await loadAdapter(model, '/tmp/my-adapter');
 * ```
 */
export async function loadAdapter(model: Module, source: FileSource | FileSourceInput, options?: Partial<LoadAdapterOptions>): Promise<PeftLoraConfig> {
  const { adapterName, dispatchers } = resolveOptions('loadAdapter', options, defaultLoadAdapterOptions);
  const files = isFileSource(source) ? source : fileSource(source);
  const where = files.describe();
  const config = parseConfig(await files.readText(ADAPTER_CONFIG_FILE), where);
  const tensors = await readCheckpoint(files, { fileName: ADAPTER_WEIGHTS_FILE });
  try {
    // Synchronous from here on: nothing else can change the model between the checks and the writes.
    const plan = loraAdapters(model).has(adapterName)
      ? undefined
      : planLora(model, {
          r: config.r,
          alpha: config.lora_alpha,
          dropout: config.lora_dropout ?? 0,
          targetModules: targetsFromConfig(config.target_modules),
          rsLora: config.use_rslora ?? false,
          init: initFromConfig(config.init_lora_weights, where),
          adapterName,
          dispatchers,
        });
    const expected = expectedShapes(model, adapterName, plan);
    const problems: string[] = [];
    for (const [key, shape] of expected) {
      const t = tensors[key];
      if (!t) problems.push(`missing key ${key}`);
      else if (t.shape.join() !== shape.join()) problems.push(`${key}: the model expects ${formatShape(shape)}, the file has ${formatShape(t.shape)}`);
    }
    for (const key of Object.keys(tensors)) if (!expected.has(key)) problems.push(`unexpected key ${key}`);
    if (problems.length > 0) {
      throw new PosttrainError('STATE_DICT_MISMATCH', `loadAdapter: ${ADAPTER_WEIGHTS_FILE} in ${where} does not fit the model (the model is unchanged):\n  ${problems.join('\n  ')}`, {
        help: 'load the adapter into the base model it was trained on (same sizes and target modules)',
      });
    }
    if (plan) commitLora(model, plan);
    const variables = adapterVariables(model, adapterName);
    tf.tidy(() => {
      for (const [key, variable] of variables) variable.assign(tensors[key].cast('float32'));
    });
  } finally {
    tf.dispose(Object.values(tensors));
  }
  return config;
}

/** The adapter weights `adapterName` has, or will have once `plan` is installed, by file key → shape. */
function expectedShapes(model: Module, adapterName: string, plan: LoraPlan | undefined): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  if (plan) {
    const { r } = plan.options;
    plan.targets.forEach((path, i) => {
      shapes.set(`${PREFIX}${path}.lora_A.weight`, [r, plan.layers[i].inFeatures]);
      shapes.set(`${PREFIX}${path}.lora_B.weight`, [plan.layers[i].outFeatures, r]);
    });
    return shapes;
  }
  for (const [key, variable] of adapterVariables(model, adapterName)) shapes.set(key, variable.shape);
  return shapes;
}

/** The A and B weights of adapter `adapterName` in `model`, by file key. */
function adapterVariables(model: Module, adapterName: string): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [path, layer] of loraLayers(model)) {
    const a = layer.loraA.get(adapterName);
    const b = layer.loraB.get(adapterName);
    if (!a || !b) continue;
    out.set(`${PREFIX}${path}.lora_A.weight`, a.weight);
    out.set(`${PREFIX}${path}.lora_B.weight`, b.weight);
  }
  return out;
}

function isFileSource(value: unknown): value is FileSource {
  return typeof value === 'object' && value !== null && typeof (value as FileSource).readText === 'function' && typeof (value as FileSource).describe === 'function';
}
