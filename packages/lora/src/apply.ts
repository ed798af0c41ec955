import { Module, Linear, Conv1D, Rng, PosttrainError, resolveOptions, checkNumber, defaultRng } from '@posttrain/tensor-core';
import { LoraLinear, type LoraAdapterSettings, type LoraInit } from './lora-linear.js';

/** Which modules get an adapter: suffix names (PEFT's rule), a full-match RegExp, or every linear layer but the output one. */
export type LoraTargetModules = string[] | RegExp | 'all-linear';

/** Options of {@link applyLora}, named after PEFT's `LoraConfig` fields in camelCase. */
export interface LoraOptions {
  /** Rank of the update (default 8). */
  r: number;
  /** `lora_alpha` (default 8): the scale is `alpha / r`, or `alpha / √r` with rsLora. */
  alpha: number;
  /** `lora_dropout` on the adapter input, training mode only (default 0). */
  dropout: number;
  /**
   * Module paths to wrap. A string matches a path equal to it or ending in `.<string>`
   * (`'q_proj'` matches `model.layers.0.self_attn.q_proj`); a RegExp must match the whole path;
   * `'all-linear'` is every Linear and Conv1D except `lm_head`. Required.
   */
  targetModules: LoraTargetModules;
  /** Rank-stabilised scale `alpha / √r` (`use_rslora`, default false). */
  rsLora: boolean;
  /** `init_lora_weights`: 'kaiming' (PEFT's default: output unchanged), 'gaussian', or 'pissa'. */
  init: LoraInit;
  /** Weight-decomposed LoRA (DoRA); not supported yet, and rejected when true. */
  useDora: boolean;
  /** Name of the adapter to add (default 'default'). */
  adapterName: string;
  /** Seed of A's initialisation and the dropout masks (default: tensor-core's shared generator, see `manualSeed`). */
  seed: number | undefined;
}

export const defaultLoraOptions: LoraOptions = {
  r: 8,
  alpha: 8,
  dropout: 0,
  targetModules: [],
  rsLora: false,
  init: 'kaiming',
  useDora: false,
  adapterName: 'default',
  seed: undefined,
};

/** PEFT's `print_trainable_parameters`, as numbers, with the wrapped module paths. */
export interface LoraReport {
  /** Paths of the wrapped modules, in model order. */
  targets: string[];
  trainableParameters: number;
  totalParameters: number;
  /** `100 · trainable / total`. */
  trainablePercent: number;
}

/**
 * Turns a target module into a LoRA layer, or answers undefined to let the next dispatcher try.
 * Dispatchers never change the options they are given.
 */
export type LoraDispatcher = (target: Module) => LoraLinear | undefined;

/** Wraps a {@link Linear} (weight `[out, in]`). */
export const dispatchLinear: LoraDispatcher = (target) => (target instanceof Linear ? new LoraLinear(target) : undefined);

/** Wraps a GPT-2 {@link Conv1D} (weight `[in, out]`, PEFT's `fan_in_fan_out`). */
export const dispatchConv1D: LoraDispatcher = (target) => (target instanceof Conv1D ? new LoraLinear(target) : undefined);

/** The dispatchers {@link applyLora} tries, in order. */
export const loraDispatchers: readonly LoraDispatcher[] = [dispatchLinear, dispatchConv1D];

/** What {@link applyLora} remembers about each adapter of a model, for saving. */
export interface LoraAdapterRecord extends LoraAdapterSettings {
  targetModules: LoraTargetModules;
  useDora: boolean;
}

const records = new WeakMap<Module, Map<string, LoraAdapterRecord>>();

/** The adapters {@link applyLora} added to `model`, by name. */
export function loraAdapters(model: Module): ReadonlyMap<string, LoraAdapterRecord> {
  return records.get(model) ?? new Map();
}

/** Forgets every adapter record of `model` (after its LoRA layers are unloaded). */
export function forgetLoraAdapters(model: Module): void {
  records.delete(model);
}

/** Every LoRA layer of `model` by path. */
export function loraLayers(model: Module): Map<string, LoraLinear> {
  const out = new Map<string, LoraLinear>();
  for (const [path, m] of model.namedModules()) if (m instanceof LoraLinear) out.set(path, m);
  return out;
}

function fullMatch(pattern: RegExp, path: string): boolean {
  return new RegExp(`^(?:${pattern.source})$`, pattern.flags.replace(/[gy]/g, '')).test(path);
}

/** True when `targetModules` selects the module at `path` (PEFT's `check_target_module_exists`). */
export function matchesTarget(targetModules: LoraTargetModules, path: string, module: Module): boolean {
  if (targetModules === 'all-linear') {
    return (module instanceof Linear || module instanceof Conv1D || module instanceof LoraLinear) && path.split('.').pop() !== 'lm_head';
  }
  if (targetModules instanceof RegExp) return fullMatch(targetModules, path);
  return targetModules.some((name) => path === name || path.endsWith(`.${name}`));
}

function checkOptions(o: LoraOptions): void {
  checkNumber('applyLora', 'r', o.r, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
  checkNumber('applyLora', 'alpha', o.alpha, 'a finite number', () => true);
  checkNumber('applyLora', 'dropout', o.dropout, 'in [0, 1)', (v) => v >= 0 && v < 1);
  const t = o.targetModules;
  if (!(t === 'all-linear' || t instanceof RegExp || (Array.isArray(t) && t.length > 0 && t.every((s) => typeof s === 'string' && s !== '')))) {
    throw new PosttrainError('INVALID_OPTION', `applyLora: expected targetModules to be a non-empty array of module names, a RegExp or 'all-linear'; got ${JSON.stringify(t)}`, {
      help: "for a Llama model: targetModules: ['q_proj', 'v_proj']",
    });
  }
  if (!['kaiming', 'gaussian', 'pissa'].includes(o.init)) {
    throw new PosttrainError('INVALID_OPTION', `applyLora: expected init to be 'kaiming', 'gaussian' or 'pissa'; got ${JSON.stringify(o.init)}`);
  }
  if (typeof o.adapterName !== 'string' || o.adapterName === '' || o.adapterName.includes('.')) {
    throw new PosttrainError('INVALID_OPTION', `applyLora: expected adapterName to be a non-empty name without dots; got ${JSON.stringify(o.adapterName)}`);
  }
  if (o.useDora) {
    throw new PosttrainError('NOT_SUPPORTED', 'applyLora: useDora (DoRA) is not supported yet; expected useDora false', { help: 'drop useDora, or train plain LoRA' });
  }
}

/**
 * Adds a LoRA adapter to every module `targetModules` selects (PEFT's `get_peft_model` /
 * `add_adapter`), makes it the active adapter, freezes everything but its A and B, and reports the
 * trainable parameters. Modules already wrapped get the new adapter beside their others.
 *
 * @example
 * ```ts
 * const report = applyLora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] });
 * console.log(`${report.trainableParameters} of ${report.totalParameters} (${report.trainablePercent.toFixed(2)}%)`);
 * ```
 */
export function applyLora(model: Module, options: Partial<LoraOptions> & Pick<LoraOptions, 'targetModules'>): LoraReport {
  const o = resolveOptions('applyLora', options, defaultLoraOptions);
  checkOptions(o);
  const existing = records.get(model);
  if (existing?.has(o.adapterName)) {
    throw new PosttrainError('INVALID_ARGUMENT', `applyLora: the model already has an adapter named "${o.adapterName}"`, { help: 'pass another adapterName' });
  }
  const wrapped = loraLayers(model);
  const inside = (path: string) => [...wrapped.keys()].some((w) => path.startsWith(`${w}.`));
  const targets: string[] = [];
  for (const [path, module] of model.namedModules()) {
    if (path === '' || inside(path) || !matchesTarget(o.targetModules, path, module)) continue;
    targets.push(path);
  }
  if (targets.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `applyLora: targetModules ${describeTargets(o.targetModules)} matched no module of the model`, {
      help: `module paths look like ${[...model.namedModules().keys()].filter((p) => p !== '').slice(0, 6).join(', ')}`,
    });
  }
  const rng = o.seed === undefined ? defaultRng() : new Rng(o.seed);
  const settings: LoraAdapterSettings = { r: o.r, alpha: o.alpha, dropout: o.dropout, rsLora: o.rsLora, init: o.init };
  const layers: LoraLinear[] = [];
  for (const path of targets) {
    const module = model.getModule(path);
    let layer = module instanceof LoraLinear ? module : undefined;
    for (const dispatch of loraDispatchers) {
      if (layer) break;
      layer = dispatch(module);
    }
    if (!layer) {
      throw new PosttrainError('NOT_SUPPORTED', `applyLora: target module "${path}" is a ${module.constructor.name}; LoRA supports Linear and Conv1D`, {
        help: 'name the linear layers inside it instead (for a Llama MLP: gate_proj, up_proj, down_proj)',
      });
    }
    layers.push(layer);
  }
  targets.forEach((path, i) => {
    if (layers[i] !== model.getModule(path)) model.replaceModule(path, layers[i]);
    layers[i].addAdapter(o.adapterName, settings, rng);
  });
  const record = existing ?? new Map<string, LoraAdapterRecord>();
  record.set(o.adapterName, { ...settings, targetModules: o.targetModules, useDora: o.useDora });
  records.set(model, record);
  setAdapter(model, o.adapterName);
  return trainableReport(model, targets);
}

function describeTargets(t: LoraTargetModules): string {
  return t instanceof RegExp ? String(t) : JSON.stringify(t);
}

/** The trainable-parameter report of `model`, as {@link applyLora} returns it. */
export function trainableReport(model: Module, targets: string[] = [...loraLayers(model).keys()]): LoraReport {
  const trainableParameters = model.numParameters({ trainableOnly: true });
  const totalParameters = model.numParameters();
  return { targets, trainableParameters, totalParameters, trainablePercent: totalParameters === 0 ? 0 : (100 * trainableParameters) / totalParameters };
}

/**
 * Makes adapter `name` the one every LoRA layer applies, and the only trainable weights of the
 * model (PEFT's `set_adapter`).
 *
 * @example
 * ```ts
 * applyLora(model, { targetModules: ['q_proj'], adapterName: 'math' });
 * applyLora(model, { targetModules: ['q_proj'], adapterName: 'code' });
 * setAdapter(model, 'math');
 * ```
 */
export function setAdapter(model: Module, name: string): void {
  const known = [...loraAdapters(model).keys()];
  if (!known.includes(name)) {
    throw new PosttrainError('INVALID_ARGUMENT', `setAdapter: no adapter named "${name}"; the model has ${known.length > 0 ? known.join(', ') : 'no adapters'}`, {
      help: 'add it with applyLora(model, { adapterName, targetModules }) or loadAdapter',
    });
  }
  model.freeze();
  for (const layer of loraLayers(model).values()) {
    if (!layer.adapters.has(name)) {
      layer.activeAdapter = undefined;
      continue;
    }
    layer.activeAdapter = name;
    layer.loraA.get(name)!.unfreeze();
    layer.loraB.get(name)!.unfreeze();
  }
}
