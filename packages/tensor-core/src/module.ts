import { tf } from './tf.js';
import { PosttrainError, formatShape } from './errors.js';

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /**
   * When true (the default), a key the module lacks or a parameter the tensors lack is an error.
   * Mis-shaped tensors are always an error.
   */
  strict?: boolean;
}

/** What {@link Module.loadStateDict} did not match, when `strict` is false. */
export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

interface BufferEntry {
  tensor: tf.Tensor;
  persistent: boolean;
}

/**
 * A tree of named sub-modules, parameters and buffers, like `torch.nn.Module`.
 *
 * Paths join names with dots (`model.layers.0.self_attn.q_proj.weight`), so the shipped
 * architectures use Hugging Face checkpoint keys as parameter paths. Parameters are
 * `tf.Variable`s; buffers are non-trained tensors (a quantised weight, a scale) that still belong
 * in the state dict unless registered as non-persistent.
 *
 * @example
 * ```ts
 * class Mlp extends Module {
 *   readonly up = this.registerModule('up', new Linear(8, 32));
 *   readonly down = this.registerModule('down', new Linear(32, 8));
 *   forward(x: tf.Tensor): tf.Tensor { return this.down.forward(tf.relu(this.up.forward(x))); }
 * }
 * const mlp = new Mlp();
 * [...mlp.namedParameters().keys()]; // ['up.weight', 'up.bias', 'down.weight', 'down.bias']
 * ```
 */
export class Module {
  private readonly ownParameters = new Map<string, tf.Variable>();
  private readonly ownBuffers = new Map<string, BufferEntry>();
  private readonly children = new Map<string, Module>();
  private isTraining = true;

  /** True in training mode (dropout active), false after `train(false)` or `eval()`. */
  get training(): boolean {
    return this.isTraining;
  }

  /** Registers `value` as a trainable parameter named `name` and returns its variable. */
  protected registerParameter(name: string, value: tf.Tensor, options: { trainable?: boolean } = {}): tf.Variable {
    this.checkName(name);
    const variable = tf.variable(value, options.trainable ?? true);
    if (variable !== value) value.dispose();
    this.ownParameters.set(name, variable);
    return variable;
  }

  /**
   * Registers a tensor that is state but not a parameter. Persistent buffers (the default) are part
   * of {@link stateDict}. The module takes ownership and disposes it.
   */
  protected registerBuffer(name: string, value: tf.Tensor, options: { persistent?: boolean } = {}): tf.Tensor {
    this.checkName(name);
    this.ownBuffers.set(name, { tensor: tf.keep(value), persistent: options.persistent ?? true });
    return value;
  }

  /** Replaces a buffer's tensor, disposing the old one. */
  protected setBuffer(name: string, value: tf.Tensor): tf.Tensor {
    const entry = this.ownBuffers.get(name);
    if (!entry) throw new PosttrainError('INVALID_ARGUMENT', `no buffer named "${name}" on ${this.constructor.name}`);
    if (entry.tensor !== value) entry.tensor.dispose();
    entry.tensor = tf.keep(value);
    return value;
  }

  /** Registers a child module under `name` and returns it. */
  protected registerModule<M extends Module>(name: string, module: M): M {
    this.checkName(name);
    this.children.set(name, module);
    return module;
  }

  private checkName(name: string): void {
    if (name === '' || name.includes('.')) {
      throw new PosttrainError('INVALID_ARGUMENT', `expected a non-empty name without dots; got "${name}"`);
    }
    if (this.ownParameters.has(name) || this.ownBuffers.has(name) || this.children.has(name)) {
      throw new PosttrainError('INVALID_ARGUMENT', `"${name}" is already registered on ${this.constructor.name}`);
    }
  }

  /** Every module of the tree by path, this one first under `''`, in registration order. */
  namedModules(prefix = ''): Map<string, Module> {
    const out = new Map<string, Module>([[prefix, this]]);
    for (const [name, child] of this.children) {
      for (const [path, m] of child.namedModules(join(prefix, name))) out.set(path, m);
    }
    return out;
  }

  /** The direct child named `name`, if any. */
  protected child(name: string): Module | undefined {
    return this.children.get(name);
  }

  /** The direct children by name. */
  namedChildren(): Map<string, Module> {
    return new Map(this.children);
  }

  /** Every parameter of the tree by path, in registration order. */
  namedParameters(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [path, m] of this.namedModules()) {
      for (const [name, p] of m.ownParameters) out.set(join(path, name), p);
    }
    return out;
  }

  /** Every buffer of the tree by path (persistent or not). */
  namedBuffers(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [path, m] of this.namedModules()) {
      for (const [name, b] of m.ownBuffers) out.set(join(path, name), b.tensor);
    }
    return out;
  }

  /** The parameters that receive gradients (`trainable` true). */
  trainableParameters(): Map<string, tf.Variable> {
    return new Map([...this.namedParameters()].filter(([, p]) => p.trainable));
  }

  /** Number of scalars in the parameters, or only the trainable ones. */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    const params = options.trainableOnly ? this.trainableParameters() : this.namedParameters();
    let n = 0;
    for (const p of params.values()) n += p.size;
    return n;
  }

  /**
   * Parameters and persistent buffers by path. The tensors are the module's own: read or save
   * them, do not dispose them.
   */
  stateDict(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [path, m] of this.namedModules()) {
      for (const [name, p] of m.ownParameters) out[join(path, name)] = p;
      for (const [name, b] of m.ownBuffers) if (b.persistent) out[join(path, name)] = b.tensor;
    }
    return out;
  }

  /**
   * Copies `tensors` into the parameters and persistent buffers with the same paths. Values are
   * cast to the parameter's dtype; the caller keeps ownership of `tensors`. Mis-shaped tensors are
   * always an error; with `strict` (the default) missing and unexpected keys are too. The error
   * lists every offending key, and nothing is assigned unless everything matches.
   */
  loadStateDict(tensors: Record<string, tf.Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = options.strict ?? true;
    const targets = new Map<string, { module: Module; name: string; kind: 'parameter' | 'buffer'; current: tf.Tensor }>();
    for (const [path, m] of this.namedModules()) {
      for (const [name, p] of m.ownParameters) targets.set(join(path, name), { module: m, name, kind: 'parameter', current: p });
      for (const [name, b] of m.ownBuffers) {
        if (b.persistent) targets.set(join(path, name), { module: m, name, kind: 'buffer', current: b.tensor });
      }
    }
    const missingKeys = [...targets.keys()].filter((k) => !(k in tensors));
    const unexpectedKeys = Object.keys(tensors).filter((k) => !targets.has(k));
    const misShaped: string[] = [];
    for (const [key, target] of targets) {
      const t = tensors[key];
      if (t && !sameShape(t.shape, target.current.shape)) {
        misShaped.push(`${key}: expected ${formatShape(target.current.shape)}, got ${formatShape(t.shape)}`);
      }
    }
    if (misShaped.length > 0 || (strict && (missingKeys.length > 0 || unexpectedKeys.length > 0))) {
      const lines = ['state dict does not match the module:'];
      if (missingKeys.length > 0) lines.push(`  missing keys (${missingKeys.length}): ${missingKeys.join(', ')}`);
      if (unexpectedKeys.length > 0) lines.push(`  unexpected keys (${unexpectedKeys.length}): ${unexpectedKeys.join(', ')}`);
      if (misShaped.length > 0) lines.push(`  mis-shaped keys (${misShaped.length}): ${misShaped.join('; ')}`);
      throw new PosttrainError('STATE_DICT_MISMATCH', lines.join('\n'), {
        help:
          misShaped.length > 0
            ? 'check that the checkpoint was made for this configuration'
            : 'loadStateDict(tensors, { strict: false }) loads a partial state dict and returns the missing and unexpected keys',
      });
    }
    for (const [key, target] of targets) {
      const t = tensors[key];
      if (!t) continue;
      // Loading a tensor into itself (`m.loadStateDict(m.stateDict())`) must be a no-op:
      // `Variable.assign` disposes its old data before taking the new, which here is the same.
      if (t.dataId === target.current.dataId) continue;
      const value = t.dtype === target.current.dtype ? t : tf.cast(t, target.current.dtype);
      if (target.kind === 'parameter') {
        (target.current as tf.Variable).assign(value);
      } else {
        target.module.setBuffer(target.name, value === t ? t.clone() : value);
      }
      if (value !== t && target.kind === 'parameter') value.dispose();
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Sets training mode on this module and every descendant; returns `this`. */
  train(on = true): this {
    for (const m of this.namedModules().values()) m.isTraining = on;
    return this;
  }

  /** Same as `train(false)`. */
  eval(): this {
    return this.train(false);
  }

  /** Stops gradients to every parameter of the tree; returns `this`. */
  freeze(): this {
    for (const p of this.namedParameters().values()) p.trainable = false;
    return this;
  }

  /** Makes every parameter of the tree trainable again; returns `this`. */
  unfreeze(): this {
    for (const p of this.namedParameters().values()) p.trainable = true;
    return this;
  }

  /** The module at `path` (`''` is this one). Throws naming the path when there is none. */
  getModule(path: string): Module {
    const found = this.namedModules().get(path);
    if (!found) {
      throw new PosttrainError('INVALID_ARGUMENT', `no module at path "${path}"`, {
        help: 'list the paths with [...model.namedModules().keys()]',
      });
    }
    return found;
  }

  /**
   * Puts `module` where the module at `path` was (LoRA wrappers, quantised or sparse layers) and
   * returns the old one, which the caller owns. Fields of the parent that referred to the old
   * module are pointed at the new one, so `forward` code uses it without change.
   */
  replaceModule(path: string, module: Module): Module {
    const dot = path.lastIndexOf('.');
    const parent = this.getModule(dot < 0 ? '' : path.slice(0, dot));
    const name = dot < 0 ? path : path.slice(dot + 1);
    const old = parent.children.get(name);
    if (!old) throw new PosttrainError('INVALID_ARGUMENT', `no module at path "${path}"`);
    parent.children.set(name, module);
    const fields = parent as unknown as Record<string, unknown>;
    for (const key of Object.keys(fields)) {
      if (fields[key] === old) fields[key] = module;
    }
    return old;
  }

  /** Disposes every parameter and buffer of the tree. */
  dispose(): void {
    for (const m of this.namedModules().values()) {
      for (const p of m.ownParameters.values()) p.dispose();
      for (const b of m.ownBuffers.values()) b.tensor.dispose();
      m.ownParameters.clear();
      m.ownBuffers.clear();
    }
  }
}

/**
 * An ordered list of modules registered as `0`, `1`, …, like `torch.nn.ModuleList`; the stacked
 * transformer blocks of a model live in one so their paths read `layers.3.mlp`.
 *
 * @example
 * ```ts
 * const layers = new ModuleList([new Linear(4, 4), new Linear(4, 4)]);
 * for (const layer of layers) x = layer.forward(x);
 * ```
 */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(modules: Iterable<M> = []) {
    super();
    let i = 0;
    for (const m of modules) this.registerModule(String(i++), m);
  }

  get length(): number {
    let n = 0;
    while (this.child(String(n))) n++;
    return n;
  }

  /** The module at `index`, read at call time so {@link Module.replaceModule} is seen. */
  at(index: number): M {
    const m = this.child(String(index));
    if (!m) throw new PosttrainError('INVALID_ARGUMENT', `index ${index} out of range for a ModuleList of length ${this.length}`);
    return m as M;
  }

  *[Symbol.iterator](): Iterator<M> {
    for (const m of this.namedChildren().values()) yield m as M;
  }
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
