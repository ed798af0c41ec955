// Saving and loading reward models: Hugging Face's `*ForSequenceClassification` layout (config.json +
// model.safetensors with `score.weight`), or a PEFT adapter whose head is saved as PEFT's modules_to_save.
import {
  PosttrainError,
  configToHf,
  fileSource,
  fileTarget,
  formatShape,
  isPosttrainError,
  readCheckpoint,
  readSafetensors,
  resolveOptions,
  tf,
  writeCheckpoint,
  writeSafetensors,
  type CausalLM,
  type CausalLMConfig,
  type FileSource,
  type FileSourceInput,
  type FileTarget,
} from '@posttrain/tensor-core';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapter, loraLayers, saveAdapter } from '@posttrain/lora';
import { RewardModel } from './reward-model.js';

/** The config file of a full save. */
const CONFIG_FILE = 'config.json';
/** PEFT's key prefix; the head of a SEQ_CLS adapter is `base_model.model.score.weight` (modules_to_save, adapter name removed). */
const HEAD_PREFIX = 'base_model.model.score.';

type Json = Record<string, unknown>;

/**
 * Options of {@link saveRewardModel}.
 *
 * @example
 * ```ts
 * const options: Partial<SaveRewardModelOptions> = { adapterOnly: true, baseModelNameOrPath: 'HuggingFaceTB/SmolLM2-135M' };
 * ```
 */
export interface SaveRewardModelOptions {
  /**
   * Save only the LoRA adapter and the head, in PEFT's format (`adapter_config.json` with
   * `task_type: 'SEQ_CLS'`, `modules_to_save: ['score']`; `adapter_model.safetensors` with the
   * adapter and `base_model.model.score.weight`). `false`: a full checkpoint, adapters merged into
   * the weights. Default (undefined): adapter-only when the model has LoRA adapters, as PEFT's
   * `save_pretrained`.
   */
  adapterOnly: boolean | undefined;
  /** Fields written over the derived `config.json` of a full save (e.g. `configToHf(backbone.config)` of `@posttrain/tensor-core`, `id2label`). */
  config: Json | undefined;
  /** Store float weights of a full save as F32 (default), F16 or BF16. */
  floatDtype: 'F32' | 'F16' | 'BF16';
  /** `base_model_name_or_path` of an adapter save (default null). */
  baseModelNameOrPath: string | undefined;
}

/**
 * The defaults of {@link saveRewardModel}.
 *
 * @example
 * ```ts
 * await saveRewardModel(rm, 'out/rm', { ...defaultSaveRewardModelOptions, floatDtype: 'BF16' });
 * ```
 */
export const defaultSaveRewardModelOptions: Readonly<SaveRewardModelOptions> = Object.freeze({ adapterOnly: undefined, config: undefined, floatDtype: 'F32', baseModelNameOrPath: undefined });

/**
 * Options of {@link loadRewardModel}.
 *
 * @example
 * ```ts
 * const options: LoadRewardModelOptions = { backbone: (config) => createModel(configFromHf(config)) };
 * ```
 */
export interface LoadRewardModelOptions {
  /**
   * The language model to put under the head. A full save overwrites its weights (any model of the
   * checkpoint's shapes will do, e.g. `createModel(configFromHf(config))`); an adapter save is
   * loaded onto it, so pass the base model the adapter was trained on. A function receives the
   * directory's `config.json` (of an adapter save: `adapter_config.json`) and returns one.
   * `@posttrain/reward` does not import `@posttrain/models`, so it cannot build one itself.
   */
  backbone: CausalLM | ((config: Json) => CausalLM | Promise<CausalLM>);
}

/**
 * The reward model's state dict in Hugging Face layout: LoRA layers folded back into plain
 * `….weight` / `….bias` keys, the active adapter merged into the weight (PEFT's
 * `merge_and_unload`, out of place: the model is not changed). Returns the tensors and those it made.
 */
function mergedStateDict(model: RewardModel): { tensors: Record<string, tf.Tensor>; made: tf.Tensor[] } {
  const layers = [...loraLayers(model)];
  const tensors: Record<string, tf.Tensor> = {};
  const made: tf.Tensor[] = [];
  for (const [key, tensor] of Object.entries(model.stateDict())) {
    const owner = layers.find(([path]) => key.startsWith(`${path}.`));
    if (!owner) {
      tensors[key] = tensor;
      continue;
    }
    const [path, layer] = owner;
    const rest = key.slice(path.length + 1);
    if (!rest.startsWith('base_layer.')) continue; // lora_A, lora_B
    const name = `${path}.${rest.slice('base_layer.'.length)}`;
    const active = layer.activeAdapter;
    if (rest === 'base_layer.weight' && active !== undefined && !layer.disabled && layer.merged.length === 0) {
      const merged = tf.tidy(() => tf.add(tensor, layer.deltaWeight(active)));
      made.push(merged);
      tensors[name] = merged;
    } else tensors[name] = tensor;
  }
  return { tensors, made };
}

function toTarget(to: string | FileTarget | Map<string, Uint8Array | string>): FileTarget {
  if (typeof to === 'string' || to instanceof Map) return fileTarget(to);
  if (to && typeof (to as FileTarget).write === 'function') return to as FileTarget;
  throw new PosttrainError('INVALID_ARGUMENT', `saveRewardModel: expected a directory path, a Map or a FileTarget; got ${to === null ? 'null' : typeof to}`);
}

function toSource(from: FileSource | FileSourceInput): FileSource {
  if (from !== null && typeof from === 'object' && typeof (from as FileSource).read === 'function' && typeof (from as FileSource).describe === 'function') return from as FileSource;
  if (from === null || (typeof from !== 'object' && typeof from !== 'string')) {
    throw new PosttrainError('INVALID_ARGUMENT', `loadRewardModel: expected a directory path, a URL, a map of file names to bytes or a FileSource; got ${from === null ? 'null' : typeof from}`);
  }
  return fileSource(from as FileSourceInput);
}

/**
 * Saves a {@link RewardModel}. A full save writes `config.json` (the backbone's fields,
 * `architectures: ['LlamaForSequenceClassification']` or the class of its `model_type`,
 * `num_labels: 1`) and `model.safetensors` (sharded when large) with the backbone's weights under
 * their Hugging Face keys and the head as `score.weight`: the layout
 * `AutoModelForSequenceClassification.from_pretrained` loads. LoRA adapters are merged into the
 * saved weights (the model itself is unchanged), and an earlier adapter save's two files are
 * removed from the directory, since `adapter_config.json` makes {@link loadRewardModel} read an
 * adapter save. An adapter save (`adapterOnly`, the default for a model with adapters) writes
 * PEFT's files: the adapter, and the head as
 * `base_model.model.score.weight` with `modules_to_save: ['score']`, `task_type: 'SEQ_CLS'`.
 * Returns the names of the files written.
 *
 * @example
 * ```ts
 * await saveRewardModel(rm, 'out/reward');                       // full, Hugging Face layout
 * await saveRewardModel(rm, 'out/reward-lora', { adapterOnly: true }); // PEFT adapter + head
 * ```
 */
export async function saveRewardModel(model: RewardModel, to: string | FileTarget | Map<string, Uint8Array | string>, options?: Partial<SaveRewardModelOptions>): Promise<string[]> {
  const owner = 'saveRewardModel';
  const o = resolveOptions(owner, options, defaultSaveRewardModelOptions);
  if (!(model instanceof RewardModel)) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a RewardModel; got ${(model as object)?.constructor?.name ?? typeof model}`);
  if (o.adapterOnly !== undefined && typeof o.adapterOnly !== 'boolean')
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected adapterOnly to be a boolean or undefined; got ${JSON.stringify(o.adapterOnly)}`);
  if (!['F32', 'F16', 'BF16'].includes(o.floatDtype)) throw new PosttrainError('INVALID_OPTION', `${owner}: expected floatDtype to be 'F32', 'F16' or 'BF16'; got ${JSON.stringify(o.floatDtype)}`);
  if (o.config !== undefined && (typeof o.config !== 'object' || o.config === null || Array.isArray(o.config)))
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected config to be an object of config.json fields; got ${JSON.stringify(o.config)}`);
  const hasAdapters = loraLayers(model).size > 0;
  const adapterOnly = o.adapterOnly ?? hasAdapters;
  const target = toTarget(to);
  if (!adapterOnly) {
    const { tensors, made } = mergedStateDict(model);
    try {
      // loadRewardModel reads a directory with adapter_config.json as an adapter save: remove an
      // earlier adapter save's files first, or the stale adapter would be loaded instead of these weights.
      await target.remove(ADAPTER_CONFIG_FILE);
      await target.remove(ADAPTER_WEIGHTS_FILE);
      await target.write(CONFIG_FILE, `${JSON.stringify(rewardConfig(model, o.config), null, 2)}\n`);
      const { files } = await writeCheckpoint(tensors, target, { floatDtype: o.floatDtype });
      return [CONFIG_FILE, ...files];
    } finally {
      tf.dispose(made);
    }
  }
  if (!hasAdapters) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: adapterOnly is true, but the reward model has no LoRA adapters`, {
      help: 'save the full model (adapterOnly: false), or train with lora options',
    });
  }
  // saveAdapter writes PEFT's files into memory; the head joins the weights as modules_to_save.
  const files = new Map<string, Uint8Array>();
  await saveAdapter(model, fileTarget(files), { baseModelNameOrPath: o.baseModelNameOrPath });
  const adapter = readSafetensors(files.get(ADAPTER_WEIGHTS_FILE)!);
  try {
    const head = Object.fromEntries(Object.entries(model.score.stateDict()).map(([name, t]) => [`${HEAD_PREFIX}${name}`, t]));
    const { files: written } = await writeCheckpoint({ ...adapter, ...head }, target, { fileName: ADAPTER_WEIGHTS_FILE, maxShardBytes: Infinity });
    const config = JSON.parse(new TextDecoder().decode(files.get(ADAPTER_CONFIG_FILE)!)) as Json;
    await target.write(ADAPTER_CONFIG_FILE, `${JSON.stringify({ ...config, task_type: 'SEQ_CLS', modules_to_save: ['score'] }, null, 2)}\n`);
    return [...written, ADAPTER_CONFIG_FILE];
  } finally {
    tf.dispose(Object.values(adapter));
  }
}

async function readJson(source: FileSource, name: string): Promise<Json> {
  const text = await source.readText(name);
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new SyntaxError('not an object');
    return json as Json;
  } catch (cause) {
    throw new PosttrainError('INVALID_ARGUMENT', `loadRewardModel: ${name} in ${source.describe()} is not a JSON object: ${(cause as Error).message}`, { cause });
  }
}

/** Re-throws a posttrain error with `prefix` before its message, keeping code and help. */
function withPrefix(error: unknown, prefix: string, replace?: [string, string]): never {
  if (!isPosttrainError(error)) throw error;
  let message = error.help ? error.message.slice(0, -`\nhelp: ${error.help}`.length) : error.message;
  if (replace) message = message.split(replace[0]).join(replace[1]);
  throw new PosttrainError(error.code, `${prefix}${message}`, { help: error.help, cause: error });
}

/** Checks a full save's config.json describes a one-label sequence classifier. */
function checkRewardConfig(config: Json, where: string): void {
  const architectures = config.architectures;
  const architecture = Array.isArray(architectures) ? String(architectures[0]) : undefined;
  if (architecture !== undefined && !architecture.endsWith('ForSequenceClassification')) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `loadRewardModel: expected ${CONFIG_FILE} in ${where} to describe a *ForSequenceClassification model; got architectures ${JSON.stringify(architectures)}`,
      {
        help: 'to start a reward model from a causal LM, wrap it: new RewardModel(await loadModel(dir))',
      },
    );
  }
  const labels = config.num_labels ?? (config.id2label && typeof config.id2label === 'object' ? Object.keys(config.id2label as object).length : undefined);
  if (labels !== undefined && labels !== 1) {
    throw new PosttrainError('INVALID_ARGUMENT', `loadRewardModel: expected ${CONFIG_FILE} in ${where} to have one label (a scalar reward); got ${labels}`, {
      help: 'a reward model is a sequence classifier with num_labels 1',
    });
  }
}

/**
 * Loads a reward model written by {@link saveRewardModel}, or any Hugging Face one-label
 * `*ForSequenceClassification` checkpoint of an architecture the backbone implements. A directory
 * with `adapter_config.json` is an adapter save: the adapter is loaded onto `backbone` (the base
 * model) with PEFT's rules and the head from `base_model.model.score.weight`; the head stays
 * trainable beside the adapter. Otherwise `config.json` and `model.safetensors` are read and
 * every weight of the backbone (its `lm_head` excepted) and the head is overwritten. Keys are
 * matched strictly: a missing, unexpected or mis-shaped tensor fails naming the key and, for a
 * shape, both shapes; no weight is loaded then (an adapter that does not fit may leave its empty
 * LoRA layers on the backbone it was handed).
 *
 * @example
 * ```ts
 * const rm = await loadRewardModel('out/reward', { backbone: (config) => createModel(configFromHf(config)) });
 * const lora = await loadRewardModel('out/reward-lora', { backbone: await loadModel('examples/sft/tiny-base') });
 * ```
 */
export async function loadRewardModel(from: string | FileSource | FileSourceInput, options: LoadRewardModelOptions): Promise<RewardModel> {
  const owner = 'loadRewardModel';
  const o = resolveOptions<LoadRewardModelOptions>(owner, options, { backbone: undefined as unknown as CausalLM });
  if (o.backbone === undefined || (typeof o.backbone !== 'function' && typeof (o.backbone as CausalLM).forward !== 'function')) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected backbone to be a CausalLM or a function (config) → CausalLM; got ${o.backbone === undefined ? 'undefined' : typeof o.backbone}`, {
      help: '@posttrain/reward does not build models: pass backbone: (config) => createModel(configFromHf(config)) (createModel from @posttrain/models, configFromHf from @posttrain/tensor-core), or the base model of an adapter save',
    });
  }
  const source = toSource(from);
  const where = source.describe();
  const adapterSave = await source.exists(ADAPTER_CONFIG_FILE);
  const config = await readJson(source, adapterSave ? ADAPTER_CONFIG_FILE : CONFIG_FILE);
  if (!adapterSave) checkRewardConfig(config, where);
  const made = typeof o.backbone === 'function';
  const backbone = typeof o.backbone === 'function' ? await o.backbone(config) : o.backbone;
  let tensors: Record<string, tf.Tensor> = {};
  let model: RewardModel | undefined;
  try {
    tensors = await readCheckpoint(source, adapterSave ? { fileName: ADAPTER_WEIGHTS_FILE } : {});
    if (adapterSave) {
      const head: Record<string, tf.Tensor> = {};
      const rest: Record<string, tf.Tensor> = {};
      for (const [key, t] of Object.entries(tensors)) {
        if (key.startsWith(HEAD_PREFIX)) head[key.slice(HEAD_PREFIX.length)] = t;
        else rest[key] = t;
      }
      if (!head.weight) {
        throw new PosttrainError('STATE_DICT_MISMATCH', `${owner}: ${ADAPTER_WEIGHTS_FILE} in ${where} has no head (${HEAD_PREFIX}weight)`, {
          help: "save it with saveRewardModel, or with PEFT's modules_to_save: ['score']",
        });
      }
      model = new RewardModel(backbone, { bias: head.bias !== undefined });
      checkShapes(model, Object.fromEntries(Object.entries(head).map(([k, t]) => [`score.${k}`, t])), `${ADAPTER_WEIGHTS_FILE} in ${where}`, 'base_model.model.');
      const files = new Map<string, Uint8Array | string>([
        [ADAPTER_CONFIG_FILE, JSON.stringify(config)],
        [ADAPTER_WEIGHTS_FILE, writeSafetensors(rest)],
      ]);
      try {
        await loadAdapter(model, fileSource(files));
      } catch (error) {
        withPrefix(error, `${owner}: `, ['in-memory files', where]);
      }
      model.score.loadStateDict(head);
      model.score.unfreeze();
    } else {
      model = new RewardModel(backbone, { bias: tensors['score.bias'] !== undefined });
      const state = Object.fromEntries(Object.entries(tensors).filter(([key]) => !/\.rotary_emb\.inv_freq$/.test(key)));
      checkShapes(model, state, `model.safetensors in ${where}`, '');
      try {
        model.loadStateDict(state);
      } catch (error) {
        withPrefix(error, `${owner}: model.safetensors in ${where}: `);
      }
    }
    return model;
  } catch (error) {
    if (made)
      (model ?? backbone).dispose(); // a backbone we were handed stays the caller's
    else model?.score.dispose();
    throw error;
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

/** Fails naming every key whose shape differs from the model's, with both shapes, before anything is assigned. */
function checkShapes(model: RewardModel, tensors: Record<string, tf.Tensor>, where: string, keyPrefix: string): void {
  const params = model.stateDict();
  const problems: string[] = [];
  for (const [key, t] of Object.entries(tensors)) {
    const own = params[key];
    if (own && formatShape(own.shape) !== formatShape(t.shape)) problems.push(`${keyPrefix}${key}: the model has ${formatShape(own.shape)}, the file ${formatShape(t.shape)}`);
  }
  if (problems.length > 0) {
    throw new PosttrainError('STATE_DICT_MISMATCH', `loadRewardModel: ${where} does not fit the reward model: ${problems.join('; ')}`, {
      help: 'load it onto a backbone of the configuration it was saved from (hidden size, layers, vocabulary)',
    });
  }
}

/**
 * The `config.json` of a full save: the backbone's Hugging Face fields (`configToHf`), the
 * sequence-classification class of its architecture and one label (a scalar reward), then `overrides`.
 */
function rewardConfig(model: RewardModel, overrides: Record<string, unknown> | undefined): Record<string, unknown> {
  const { architectures, ...backbone } = configToHf(model.config as CausalLMConfig);
  const causal = (architectures as string[])[0]; // LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, …
  return {
    architectures: [causal.replace(/(ForCausalLM|LMHeadModel)$/, 'ForSequenceClassification')],
    ...backbone,
    num_labels: 1,
    id2label: { '0': 'LABEL_0' },
    label2id: { LABEL_0: 0 },
    ...overrides,
  };
}
