import { Module, Linear, Conv1D, Rng, PosttrainError, resolveOptions, checkNumber, defaultRng } from '@posttrain/tensor-core';
import { LoraLinear, isLinearLike, type LoraAdapterSettings, type LoraInit } from './lora-linear.js';

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
   * `'all-linear'` is every `LinearLike` layer (Linear, Conv1D, or a layer type a package adds)
   * except the output head `lm_head`. Required.
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
  /**
   * Extra dispatchers, tried in order before the built-in {@link loraDispatchers}: how a package
   * makes LoRA wrap its own layer type (a quantised layer for QLoRA, say) without editing lora.
   * Not saved with the adapter; pass the same ones to `loadAdapter`. Default none.
   */
  dispatchers: readonly LoraDispatcher[];
}

export const defaultLoraOptions: Readonly<LoraOptions> = Object.freeze({
  r: 8,
  alpha: 8,
  dropout: 0,
  targetModules: Object.freeze([]) as unknown as string[],
  rsLora: false,
  init: 'kaiming',
  useDora: false,
  adapterName: 'default',
  seed: undefined,
  dispatchers: Object.freeze([]),
});

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
 * Turns a target module into a LoRA layer (a {@link LoraLinear} or a subclass) wrapping it, or
 * answers undefined to let the next dispatcher try. `path` is the module's path in the model.
 * A dispatcher builds the wrapper only: it must not change the model, the module or the options
 * (applyLora installs the wrapper once every target has one).
 *
 * @example
 * ```ts
 * // LoRA over a layer type of your own, merging into the weight it exposes:
 * const dispatchMyLayer: LoraDispatcher = (target) =>
 *   target instanceof MyLayer ? new LoraLinear(target, { denseWeight: { variable: target.kernel, fanInFanOut: false } }) : undefined;
 * applyLora(model, { targetModules: 'all-linear', dispatchers: [dispatchMyLayer] });
 * ```
 */
export type LoraDispatcher = (target: Module, path: string) => LoraLinear | undefined;

/**
 * Wraps a {@link Linear} (weight `[out, in]`).
 *
 * @example
 * ```ts
 * dispatchLinear(new Linear(4, 2), 'proj'); // a LoraLinear around it
 * ```
 */
export const dispatchLinear: LoraDispatcher = (target) => (target instanceof Linear ? new LoraLinear(target) : undefined);

/**
 * Wraps a GPT-2 {@link Conv1D} (weight `[in, out]`, PEFT's `fan_in_fan_out`).
 *
 * @example
 * ```ts
 * dispatchConv1D(new Conv1D(4, 12), 'c_attn')?.fanInFanOut; // true
 * ```
 */
export const dispatchConv1D: LoraDispatcher = (target) => (target instanceof Conv1D ? new LoraLinear(target) : undefined);

/**
 * Wraps any other `LinearLike` layer without a dense weight: the adapter trains and applies in
 * `forward`, while merging and PiSSA throw `NOT_SUPPORTED`. Tried last, so a dispatcher of the
 * layer's own package (through `applyLora`'s `dispatchers`) wins.
 *
 * @example
 * ```ts
 * dispatchLinearLike(myQuantisedLayer, 'model.layers.0.self_attn.q_proj')?.canMerge; // false
 * ```
 */
export const dispatchLinearLike: LoraDispatcher = (target) => (isLinearLike(target) && !(target instanceof LoraLinear) ? new LoraLinear(target) : undefined);

/**
 * The built-in dispatchers {@link applyLora} tries, in order, after the ones its `dispatchers` option adds.
 *
 * @example
 * ```ts
 * const layer = [...myDispatchers, ...loraDispatchers].reduce<LoraLinear | undefined>((found, d) => found ?? d(module, path), undefined);
 * ```
 */
export const loraDispatchers: readonly LoraDispatcher[] = Object.freeze([dispatchLinear, dispatchConv1D, dispatchLinearLike]);

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
  if (targetModules === 'all-linear') return isLinearLike(module) && path.split('.').pop() !== 'lm_head';
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
  if (!Array.isArray(o.dispatchers) || !o.dispatchers.every((d) => typeof d === 'function')) {
    throw new PosttrainError('INVALID_OPTION', `applyLora: expected dispatchers to be an array of functions (target, path) => LoraLinear | undefined; got ${describeLayer(o.dispatchers)}`, {
      help: 'dispatchers: [(target) => (target instanceof MyLayer ? new LoraLinear(target) : undefined)]',
    });
  }
}

/** What a dispatcher returned or was given, by its class: `a Linear`, `an array of function, string`. */
function describeLayer(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.map((x) => typeof x).join(', ') || 'nothing'}`;
  if (v === null) return 'null';
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'object'}`;
  return typeof v === 'string' ? JSON.stringify(v) : typeof v;
}

/** What {@link applyLora} will do, worked out without touching the model. */
export interface LoraPlan {
  /** The resolved options. */
  options: LoraOptions;
  /** Paths of the modules that get the adapter, in model order. */
  targets: string[];
  /** The LoRA layer of each target: the existing wrapper, or a new one not yet in the model. */
  layers: LoraLinear[];
}

/**
 * Resolves and checks `options`, finds the targets and builds their LoRA wrappers without changing
 * the model, so every error {@link applyLora} can raise is raised here. `loadAdapter` uses it to
 * check a file against the layers before it adds anything.
 */
export function planLora(model: Module, options: Partial<LoraOptions> & Pick<LoraOptions, 'targetModules'>): LoraPlan {
  const o = resolveOptions('applyLora', options, defaultLoraOptions);
  checkOptions(o);
  if (records.get(model)?.has(o.adapterName)) {
    throw new PosttrainError('INVALID_ARGUMENT', `applyLora: the model already has an adapter named "${o.adapterName}"`, { help: 'pass another adapterName' });
  }
  const wrapped = [...loraLayers(model).keys()];
  const targets: string[] = [];
  const inside = (path: string) => [...wrapped, ...targets].some((w) => path.startsWith(`${w}.`));
  for (const [path, module] of model.namedModules()) {
    if (path === '' || inside(path) || !matchesTarget(o.targetModules, path, module)) continue;
    targets.push(path);
  }
  if (targets.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `applyLora: targetModules ${describeTargets(o.targetModules)} matched no module of the model`, {
      help: `module paths look like ${[...model.namedModules().keys()]
        .filter((p) => p !== '')
        .slice(0, 6)
        .join(', ')}`,
    });
  }
  const settings = adapterSettings(o);
  const dispatchers = [...o.dispatchers, ...loraDispatchers];
  const layers = targets.map((path) => {
    const module = model.getModule(path);
    let layer = module instanceof LoraLinear ? module : undefined;
    for (const dispatch of dispatchers) {
      if (layer) break;
      layer = dispatch(module, path);
      if (layer !== undefined && !(layer instanceof LoraLinear && layer.baseLayer === module)) {
        const got = layer instanceof LoraLinear ? 'a LoraLinear around another module' : describeLayer(layer);
        throw new PosttrainError('INVALID_ARGUMENT', `applyLora: a dispatcher answered ${got} for "${path}"; expected a LoraLinear wrapping that module (its baseLayer), or undefined`, {
          help: 'return new LoraLinear(target, …) from the dispatcher, or undefined to let the next one try',
        });
      }
    }
    if (!layer) {
      throw new PosttrainError('NOT_SUPPORTED', `applyLora: target module "${path}" is a ${module.constructor.name}; LoRA wraps LinearLike layers (Linear, Conv1D, or a type a dispatcher handles)`, {
        help: 'name the linear layers inside it instead (for a Llama MLP: gate_proj, up_proj, down_proj), or pass a dispatcher for its type in dispatchers',
      });
    }
    layer.checkAdapter(o.adapterName, settings, `applyLora: target "${path}"`);
    return layer;
  });
  return { options: o, targets, layers };
}

function adapterSettings(o: LoraOptions): LoraAdapterSettings {
  return { r: o.r, alpha: o.alpha, dropout: o.dropout, rsLora: o.rsLora, init: o.init };
}

/**
 * Adds a LoRA adapter to every module `targetModules` selects (PEFT's `get_peft_model` /
 * `add_adapter`), makes it the active adapter, freezes everything but its A and B, and reports the
 * trainable parameters. Modules already wrapped get the new adapter beside their others. Each
 * target is wrapped by the first dispatcher that answers: the `dispatchers` option's, then
 * {@link loraDispatchers}. Every check runs before the model changes, so a throw leaves it as it was.
 *
 * @example
 * ```ts
 * const report = applyLora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] });
 * console.log(`${report.trainableParameters} of ${report.totalParameters} (${report.trainablePercent.toFixed(2)}%)`);
 * applyLora(quantisedModel, { targetModules: 'all-linear', dispatchers: [dispatchInt8], adapterName: 'qlora' });
 * ```
 */
export function applyLora(model: Module, options: Partial<LoraOptions> & Pick<LoraOptions, 'targetModules'>): LoraReport {
  return commitLora(model, planLora(model, options));
}

/** Installs a {@link LoraPlan}: wraps the targets, adds the adapter, records it and makes it active. */
export function commitLora(model: Module, plan: LoraPlan): LoraReport {
  const { options: o, targets, layers } = plan;
  const rng = o.seed === undefined ? defaultRng() : new Rng(o.seed);
  const settings = adapterSettings(o);
  targets.forEach((path, i) => {
    if (layers[i] !== model.getModule(path)) model.replaceModule(path, layers[i]);
    layers[i].addAdapter(o.adapterName, settings, rng);
  });
  const record = records.get(model) ?? new Map<string, LoraAdapterRecord>();
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
