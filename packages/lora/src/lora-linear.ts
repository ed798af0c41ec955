import { tf, Module, Linear, Conv1D, Dropout, Rng, PosttrainError, formatShape, defaultRng, resolveOptions, type LinearLike } from '@posttrain/tensor-core';
import { topSingularTriplets } from './svd.js';

/** How an adapter's weights start (PEFT's `init_lora_weights`). */
export type LoraInit = 'kaiming' | 'gaussian' | 'pissa';

/** The settings of one adapter on one layer. */
export interface LoraAdapterSettings {
  /** Rank r of the update `B·A`. */
  r: number;
  /** The numerator of the scale: `alpha / r`, or `alpha / √r` with `rsLora`. */
  alpha: number;
  /** Dropout probability on the adapter's input (training mode only). */
  dropout: number;
  /** Rank-stabilised scale `alpha / √r` (Kalajdzievski 2023). */
  rsLora: boolean;
  /** Initialisation of A and B. */
  init: LoraInit;
}

/**
 * A module holding one sub-module per adapter name (PEFT's `nn.ModuleDict`), so parameter paths
 * read `lora_A.default.weight`.
 *
 * @example
 * ```ts
 * const dict = new AdapterDict<Linear>();
 * dict.add('default', new Linear(4, 2, { bias: false }));
 * dict.get('default')?.weight.shape; // [2, 4]
 * ```
 */
export class AdapterDict<M extends Module = Module> extends Module {
  /** Registers `module` under `name` and returns it. */
  add(name: string, module: M): M {
    return this.registerModule(name, module);
  }

  /** The module registered under `name`, if any. */
  get(name: string): M | undefined {
    return this.child(name) as M | undefined;
  }

  /** The adapter names, in the order they were added. */
  names(): string[] {
    return [...this.namedChildren().keys()];
  }
}

/**
 * The layers a {@link LoraLinear} can wrap: any {@link LinearLike} (the dense `Linear`, GPT-2's
 * `Conv1D`, or a quantised or sparse layer a later package defines).
 */
export type LoraBaseLayer = LinearLike;

/**
 * A base layer's dense weight, which {@link LoraLinear} reads and writes in place to merge, unmerge
 * and initialise PiSSA. A layer without one (quantised, sparse) can still train an adapter; only
 * those three refuse.
 *
 * @example
 * ```ts
 * const dense: LoraDenseWeight = { variable: conv1d.weight, fanInFanOut: true }; // stored [in, out]
 * ```
 */
export interface LoraDenseWeight {
  /** The weight variable the base layer's `forward` uses. */
  variable: tf.Variable;
  /** True when it is stored `[in, out]` (GPT-2's Conv1D, PEFT's `fan_in_fan_out`); false for `[out, in]` (Linear). */
  fanInFanOut: boolean;
}

/**
 * Options of {@link LoraLinear}.
 *
 * @example
 * ```ts
 * const options: Partial<LoraLinearOptions> = { denseWeight: { variable: layer.kernel, fanInFanOut: false } };
 * new LoraLinear(layer, options);
 * ```
 */
export interface LoraLinearOptions {
  /**
   * The base layer's dense weight, for merge, unmerge and PiSSA. Default: `weight` of a
   * {@link Linear} (`[out, in]`) or a {@link Conv1D} (`[in, out]`), and none for any other layer
   * type, whose merge, unmerge and PiSSA then throw `NOT_SUPPORTED`.
   */
  denseWeight: LoraDenseWeight | undefined;
}

/** The defaults of {@link LoraLinearOptions}: the dense weight found from the layer's type. */
export const defaultLoraLinearOptions: Readonly<LoraLinearOptions> = Object.freeze({ denseWeight: undefined });

/**
 * True when `module` has the shape of a {@link LinearLike}: a `Module` with integer `inFeatures`
 * and `outFeatures` and a `forward`. This is what `'all-linear'` selects and what
 * {@link LoraLinear} accepts.
 *
 * @example
 * ```ts
 * isLinearLike(new Linear(4, 2)); // true
 * isLinearLike(new RMSNorm(4));   // false
 * ```
 */
export function isLinearLike(module: unknown): module is LinearLike {
  const m = module as Partial<LinearLike> | null;
  return module instanceof Module && typeof m?.forward === 'function' && Number.isInteger(m.inFeatures) && Number.isInteger(m.outFeatures);
}

function defaultDenseWeight(layer: LinearLike): LoraDenseWeight | undefined {
  if (layer instanceof Linear) return { variable: layer.weight, fanInFanOut: false };
  if (layer instanceof Conv1D) return { variable: layer.weight, fanInFanOut: true };
  return undefined;
}

/**
 * A LoRA wrapper around any {@link LinearLike} layer (Hu et al. 2021, eq. 3):
 * `y = base(x) + scale · B(A(dropout(x)))` with `A` `[r, in]`, `B` `[out, r]` and
 * `scale = alpha / r` (or `alpha / √r` with rsLora). The base layer is kept, not copied, under
 * `base_layer`; adapters live under `lora_A.<name>` and `lora_B.<name>` as bias-free
 * {@link Linear}s, as in PEFT's `tuners/lora/layer.py`. Merging, unmerging and PiSSA need the
 * base's dense weight ({@link LoraLinearOptions.denseWeight}): a Linear's and a Conv1D's are
 * found by themselves (a Conv1D's `[in, out]` is PEFT's `fan_in_fan_out`: only merging
 * transposes); for another layer type they throw `NOT_SUPPORTED` unless the weight is given.
 *
 * @example
 * ```ts
 * const layer = new LoraLinear(new Linear(16, 32));
 * layer.addAdapter('default', { r: 4, alpha: 8, dropout: 0, rsLora: false, init: 'kaiming' });
 * const y = layer.forward(tf.ones([2, 16])); // [2, 32], equal to the base's output until B is trained
 * // a layer type of your own, merging into the weight it exposes:
 * const custom = new LoraLinear(myLayer, { denseWeight: { variable: myLayer.kernel, fanInFanOut: false } });
 * ```
 */
export class LoraLinear extends Module implements LinearLike {
  readonly baseLayer: LoraBaseLayer;
  readonly loraA: AdapterDict<Linear>;
  readonly loraB: AdapterDict<Linear>;
  readonly loraDropout: AdapterDict<Dropout>;
  /** True when the base weight is stored `[in, out]` (a {@link Conv1D}). */
  readonly fanInFanOut: boolean;
  /** The base layer's dense weight, or undefined when it has none to merge into. */
  readonly denseWeight: LoraDenseWeight | undefined;
  /** Settings of each adapter by name. */
  readonly adapters = new Map<string, LoraAdapterSettings>();
  /** The adapter `forward` applies; undefined when none is active. */
  activeAdapter: string | undefined;
  /** When true, `forward` is the base layer's (see `withAdaptersDisabled`). */
  disabled = false;
  private readonly mergedNames: string[] = [];
  /** The adapters merged with `keepSparsity`. */
  private readonly keptSparsity = new Set<string>();

  constructor(baseLayer: LoraBaseLayer, options: Partial<LoraLinearOptions> = {}) {
    super();
    const o = resolveOptions('LoraLinear', options, defaultLoraLinearOptions);
    if (!isLinearLike(baseLayer)) {
      throw new PosttrainError('NOT_SUPPORTED', `LoraLinear: expected a LinearLike base layer (a Module with integer inFeatures and outFeatures and a forward); got ${describeLayer(baseLayer)}`, {
        help: 'wrap a Linear, a Conv1D, or a layer that implements LinearLike from @posttrain/tensor-core',
      });
    }
    const dense = o.denseWeight ?? defaultDenseWeight(baseLayer);
    if (dense) checkDenseWeight(dense, baseLayer);
    this.baseLayer = this.registerModule('base_layer', baseLayer);
    this.denseWeight = dense;
    this.fanInFanOut = dense?.fanInFanOut ?? false;
    this.loraA = this.registerModule('lora_A', new AdapterDict<Linear>());
    this.loraB = this.registerModule('lora_B', new AdapterDict<Linear>());
    this.loraDropout = this.registerModule('lora_dropout', new AdapterDict<Dropout>());
    this.train(baseLayer.training);
  }

  get inFeatures(): number {
    return this.baseLayer.inFeatures;
  }

  get outFeatures(): number {
    return this.baseLayer.outFeatures;
  }

  /** The adapters merged into the base weight, in merge order. */
  get merged(): readonly string[] {
    return this.mergedNames;
  }

  /** The scale of adapter `name`: `alpha / r`, or `alpha / √r` with rsLora. */
  scaling(name: string): number {
    const s = this.settings(name);
    return s.rsLora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
  }

  /**
   * Adds adapter `name` (PEFT's `update_layer`) and makes it the active one. `pissa` moves the
   * top-r singular directions of the base weight into the adapter and leaves the residual in the base.
   */
  addAdapter(name: string, settings: LoraAdapterSettings, rng: Rng = defaultRng()): void {
    this.checkAdapter(name, settings);
    const { r, init } = settings;
    const a = new Linear(this.inFeatures, r, { bias: false, rng, std: init === 'gaussian' ? 1 / r : undefined });
    const b = new Linear(r, this.outFeatures, { bias: false, rng, std: 0 });
    this.adapters.set(name, { ...settings });
    this.loraA.add(name, a);
    this.loraB.add(name, b);
    this.loraDropout.add(name, new Dropout(settings.dropout, rng));
    if (init === 'pissa') this.pissaInit(name);
    this.train(this.training);
    this.activeAdapter = name;
  }

  /**
   * Throws what {@link addAdapter} would throw for `name` and `settings`, changing nothing: a name
   * in use, or PiSSA on a layer without a dense weight or with r above min(in, out). `owner`
   * starts the messages (applyLora names the target's path there).
   */
  checkAdapter(name: string, settings: LoraAdapterSettings, owner = 'LoraLinear'): void {
    if (this.adapters.has(name)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: an adapter named "${name}" already exists`, { help: 'pick another adapterName' });
    }
    if (settings.init !== 'pissa') return;
    this.requireDenseWeight('pissa initialisation', owner);
    if (settings.r > Math.min(this.inFeatures, this.outFeatures)) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: pissa needs r ≤ min(in, out) = ${Math.min(this.inFeatures, this.outFeatures)}; got r ${settings.r}`);
    }
  }

  /** True when merge, unmerge and PiSSA can run: the base layer exposes a dense weight. */
  get canMerge(): boolean {
    return this.denseWeight !== undefined;
  }

  private requireDenseWeight(what: string, owner = 'LoraLinear'): tf.Variable {
    if (this.denseWeight) return this.denseWeight.variable;
    throw new PosttrainError('NOT_SUPPORTED', `${owner}: ${what} needs the base layer's dense weight; the base layer is a ${describeLayer(this.baseLayer)}, which exposes none`, {
      help: "keep the adapter unmerged (forward applies it) and use init 'kaiming' or 'gaussian', or register a dispatcher that passes the layer's weight as new LoraLinear(layer, { denseWeight })",
    });
  }

  private settings(name: string): LoraAdapterSettings {
    const s = this.adapters.get(name);
    if (!s) {
      throw new PosttrainError('INVALID_ARGUMENT', `LoraLinear: no adapter named "${name}"; adapters are ${[...this.adapters.keys()].join(', ') || '(none)'}`);
    }
    return s;
  }

  /** The base weight as `[out, in]` float64 rows, whatever its stored layout. */
  private baseWeightRows(): Float64Array[] {
    const data = this.requireDenseWeight('pissa initialisation').dataSync();
    const [out, inF] = [this.outFeatures, this.inFeatures];
    return Array.from({ length: out }, (_, o) => {
      const row = new Float64Array(inF);
      for (let i = 0; i < inF; i++) row[i] = this.fanInFanOut ? data[i * out + o] : data[o * inF + i];
      return row;
    });
  }

  // PEFT `pissa_init`: W = U S Vᵀ; A = √(S_r/scale) V_rᵀ, B = U_r √(S_r/scale), base ← W − scale·B·A.
  private pissaInit(name: string): void {
    const rows = this.baseWeightRows();
    const { r } = this.settings(name);
    const scale = this.scaling(name);
    const { u, s, v } = topSingularTriplets(rows, this.inFeatures, r);
    const [out, inF] = [this.outFeatures, this.inFeatures];
    const aValues = new Float32Array(r * inF);
    const bValues = new Float32Array(out * r);
    const residual = rows.map((row) => Float64Array.from(row));
    for (let k = 0; k < r; k++) {
      const root = Math.sqrt(s[k] / scale);
      for (let i = 0; i < inF; i++) aValues[k * inF + i] = root * v[k][i];
      for (let o = 0; o < out; o++) bValues[o * r + k] = root * u[k][o];
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) residual[o][i] -= s[k] * u[k][o] * v[k][i];
    }
    const stored = new Float32Array(out * inF);
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) stored[this.fanInFanOut ? i * out + o : o * inF + i] = residual[o][i];
    tf.tidy(() => {
      this.loraA.get(name)!.weight.assign(tf.tensor2d(aValues, [r, inF]));
      this.loraB.get(name)!.weight.assign(tf.tensor2d(bValues, [out, r]));
      const weight = this.requireDenseWeight('pissa initialisation');
      weight.assign(tf.tensor(stored, weight.shape));
    });
  }

  /**
   * `scale · B·A` in the base weight's stored layout (`[out, in]`, or `[in, out]` for Conv1D;
   * `[out, in]` when there is no dense weight), zero where `sparsityOf` (a tensor of that layout)
   * is zero when it is given.
   */
  deltaWeight(name: string, sparsityOf?: tf.Tensor): tf.Tensor2D {
    const scale = this.scaling(name);
    return tf.tidy(() => {
      const product = tf.matMul(this.loraB.get(name)!.weight as tf.Tensor2D, this.loraA.get(name)!.weight as tf.Tensor2D).mul(scale) as tf.Tensor2D;
      const delta: tf.Tensor2D = this.fanInFanOut ? product.transpose() : product;
      return sparsityOf ? delta.mul<tf.Tensor2D>(sparsityOf.notEqual(0).cast('float32')) : delta;
    });
  }

  /**
   * Adds adapter `name` (default: the active one) into the base weight; merging a merged adapter
   * does nothing. With `keepSparsity`, the update is added only where the base weight is non-zero
   * (`W ← W + ΔW ⊙ [W ≠ 0]`), so a pruned base keeps its zeros; unmerging subtracts the same masked
   * update (the zeros are the same before and after). Throws `NOT_SUPPORTED` when the base layer
   * has no dense weight ({@link canMerge}).
   */
  merge(name = this.activeAdapter, options: { keepSparsity?: boolean } = {}): void {
    if (name === undefined || this.mergedNames.includes(name)) return;
    const weight = this.requireDenseWeight('merging an adapter');
    tf.tidy(() => weight.assign(weight.add(this.deltaWeight(name, options.keepSparsity ? weight : undefined))));
    if (options.keepSparsity) this.keptSparsity.add(name);
    this.mergedNames.push(name);
  }

  /** True when adapter `name` is merged with `keepSparsity` (see {@link merge}). */
  mergedKeepingSparsity(name: string): boolean {
    return this.keptSparsity.has(name);
  }

  /** Subtracts every merged adapter from the base weight, last merged first. */
  unmerge(): void {
    while (this.mergedNames.length > 0) {
      const name = this.mergedNames[this.mergedNames.length - 1];
      const weight = this.requireDenseWeight('unmerging an adapter');
      const kept = this.keptSparsity.delete(name);
      tf.tidy(() => weight.assign(weight.sub(this.deltaWeight(name, kept ? weight : undefined))));
      this.mergedNames.pop();
    }
  }

  /** `[..., in]` → `[..., out]`: `base(x) + scale · B(A(dropout(x)))` for the active adapter. */
  forward(x: tf.Tensor): tf.Tensor {
    if (x.shape[x.shape.length - 1] !== this.inFeatures) {
      throw new PosttrainError('SHAPE_MISMATCH', `LoraLinear: expected input [..., ${this.inFeatures}]; got ${formatShape(x.shape)}`);
    }
    return tf.tidy(() => {
      const y = this.baseLayer.forward(x);
      const name = this.activeAdapter;
      if (this.disabled || name === undefined || this.mergedNames.length > 0) return y;
      const a = this.loraA.get(name)!;
      const b = this.loraB.get(name)!;
      return y.add(b.forward(a.forward(this.loraDropout.get(name)!.forward(x))).mul(this.scaling(name)));
    });
  }
}

function describeLayer(layer: unknown): string {
  if (layer === null || layer === undefined) return String(layer);
  const name = (layer as object).constructor?.name;
  return typeof layer === 'object' && name ? name : typeof layer;
}

function checkDenseWeight(dense: LoraDenseWeight, layer: LinearLike): void {
  const { variable, fanInFanOut } = dense as Partial<LoraDenseWeight>;
  const expected = fanInFanOut ? [layer.inFeatures, layer.outFeatures] : [layer.outFeatures, layer.inFeatures];
  if (!(variable instanceof tf.Variable) || typeof fanInFanOut !== 'boolean' || variable.shape.join() !== expected.join() || variable.dtype !== 'float32') {
    const got = variable instanceof tf.Variable ? `a ${variable.dtype} variable ${formatShape(variable.shape)} with fanInFanOut ${String(fanInFanOut)}` : describeLayer(variable);
    throw new PosttrainError(
      'INVALID_OPTION',
      `LoraLinear: expected denseWeight to be { variable: a float32 tf.Variable ${formatShape(expected)}, fanInFanOut: ${String(fanInFanOut ?? false)} }; got ${got}`,
      {
        help: 'pass the variable the base layer multiplies by, [out, in] with fanInFanOut false or [in, out] with fanInFanOut true, or leave denseWeight out',
      },
    );
  }
}
