import { tf, Module, Linear, Conv1D, Dropout, Rng, PosttrainError, formatShape, defaultRng, type LinearLike } from '@posttrain/tensor-core';
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

/** The layers a {@link LoraLinear} can wrap. */
export type LoraBaseLayer = Linear | Conv1D;

/**
 * A LoRA wrapper around a dense layer (Hu et al. 2021, eq. 3): `y = base(x) + scale · B(A(dropout(x)))`
 * with `A` `[r, in]`, `B` `[out, r]` and `scale = alpha / r` (or `alpha / √r` with rsLora). The base
 * layer is kept, not copied, under `base_layer`; adapters live under `lora_A.<name>` and
 * `lora_B.<name>` as bias-free {@link Linear}s, as in PEFT's `tuners/lora/layer.py`. A GPT-2
 * {@link Conv1D} base (weight `[in, out]`) is PEFT's `fan_in_fan_out`: only merging transposes.
 *
 * @example
 * ```ts
 * const layer = new LoraLinear(new Linear(16, 32));
 * layer.addAdapter('default', { r: 4, alpha: 8, dropout: 0, rsLora: false, init: 'kaiming' });
 * const y = layer.forward(tf.ones([2, 16])); // [2, 32], equal to the base's output until B is trained
 * ```
 */
export class LoraLinear extends Module implements LinearLike {
  readonly baseLayer: LoraBaseLayer;
  readonly loraA: AdapterDict<Linear>;
  readonly loraB: AdapterDict<Linear>;
  readonly loraDropout: AdapterDict<Dropout>;
  /** True when the base weight is stored `[in, out]` (a {@link Conv1D}). */
  readonly fanInFanOut: boolean;
  /** Settings of each adapter by name. */
  readonly adapters = new Map<string, LoraAdapterSettings>();
  /** The adapter `forward` applies; undefined when none is active. */
  activeAdapter: string | undefined;
  /** When true, `forward` is the base layer's (see `withAdaptersDisabled`). */
  disabled = false;
  private readonly mergedNames: string[] = [];

  constructor(baseLayer: LoraBaseLayer) {
    super();
    if (!(baseLayer instanceof Linear) && !(baseLayer instanceof Conv1D)) {
      throw new PosttrainError('NOT_SUPPORTED', `LoraLinear: expected a Linear or Conv1D base layer; got ${(baseLayer as object)?.constructor?.name}`);
    }
    this.baseLayer = this.registerModule('base_layer', baseLayer);
    this.fanInFanOut = baseLayer instanceof Conv1D;
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
    if (this.adapters.has(name)) {
      throw new PosttrainError('INVALID_ARGUMENT', `LoraLinear: an adapter named "${name}" already exists`, { help: 'pick another adapterName' });
    }
    const { r, init } = settings;
    if (r > Math.min(this.inFeatures, this.outFeatures) && init === 'pissa') {
      throw new PosttrainError('INVALID_OPTION', `LoraLinear: pissa needs r ≤ min(in, out) = ${Math.min(this.inFeatures, this.outFeatures)}; got r ${r}`);
    }
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

  private settings(name: string): LoraAdapterSettings {
    const s = this.adapters.get(name);
    if (!s) {
      throw new PosttrainError('INVALID_ARGUMENT', `LoraLinear: no adapter named "${name}"; adapters are ${[...this.adapters.keys()].join(', ') || '(none)'}`);
    }
    return s;
  }

  /** The base weight as `[out, in]` float64 rows, whatever its stored layout. */
  private baseWeightRows(): Float64Array[] {
    const w = this.baseLayer.weight;
    const data = w.dataSync();
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
      this.baseLayer.weight.assign(tf.tensor(stored, this.baseLayer.weight.shape));
    });
  }

  /** `scale · B·A` in the base weight's stored layout (`[out, in]`, or `[in, out]` for Conv1D). */
  deltaWeight(name: string): tf.Tensor2D {
    const scale = this.scaling(name);
    return tf.tidy(() => {
      const delta = tf.matMul(this.loraB.get(name)!.weight as tf.Tensor2D, this.loraA.get(name)!.weight as tf.Tensor2D).mul(scale) as tf.Tensor2D;
      return this.fanInFanOut ? delta.transpose() : delta;
    });
  }

  /** Adds adapter `name` (default: the active one) into the base weight; merging a merged adapter does nothing. */
  merge(name = this.activeAdapter): void {
    if (name === undefined || this.mergedNames.includes(name)) return;
    tf.tidy(() => this.baseLayer.weight.assign(this.baseLayer.weight.add(this.deltaWeight(name))));
    this.mergedNames.push(name);
  }

  /** Subtracts every merged adapter from the base weight, last merged first. */
  unmerge(): void {
    while (this.mergedNames.length > 0) {
      const name = this.mergedNames.pop()!;
      tf.tidy(() => this.baseLayer.weight.assign(this.baseLayer.weight.sub(this.deltaWeight(name))));
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
