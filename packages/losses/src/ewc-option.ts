// The `ewc` option the fine-tuning trainers share: checked against a model's named parameters and
// turned into a penalty over its trainable ones, anchored where training starts.
import { PosttrainError, checkNumber, describeValue, formatShape, resolveOptions, tf } from '@posttrain/tensor-core';
import { ewcPenalty, type fisherDiagonal } from './ewc.js';

/**
 * The `ewc` option of the fine-tuning trainers (`sftTrain`, `dpoTrain`, `ktoTrain`): elastic weight
 * consolidation (Kirkpatrick et al. 2017), the penalty (λ/2)·Σ_i F_i·(θ_i − θ*_i)² ({@link ewcPenalty})
 * added to the loss of every optimizer step.
 *
 * @example
 * ```ts
 * const fisher = await estimateFisher({ model, tokenizer, records: oldTaskRecords });
 * const ewc: EwcOption = { lambda: 1000, fisher };
 * ```
 */
export interface EwcOption {
  /** λ ≥ 0, the weight of the penalty (λ = 0 trains as without it). Its scale depends on the Fisher's reduction: see {@link fisherDiagonal}. */
  lambda: number;
  /**
   * The Fisher diagonal F by parameter name (`@posttrain/sft`'s `estimateFisher`, or
   * {@link fisherDiagonal}): every key a parameter of the model, with its shape. The trainable
   * parameters it names are penalised; the others (frozen, or left out of the map) are not.
   */
  fisher: ReadonlyMap<string, tf.Tensor>;
  /**
   * θ*, the parameters to stay near, by name (at least every penalised one). Default: the trainable
   * parameters' values when training starts (cloned, and freed when it ends).
   */
  anchors?: ReadonlyMap<string, tf.Tensor>;
}

/** A Map, described for an error message. */
function describeMap(value: unknown): string {
  return value instanceof Map ? (value.size === 0 ? 'an empty Map' : `a Map of ${value.size}`) : describeValue(value);
}

/**
 * Checks an `ewc` option against a model's named parameters (before any LoRA layer renames them):
 * λ a number ≥ 0, `fisher` a non-empty Map whose every key is one of `parameters` with the same
 * shape, `anchors` (when given) a Map, and full fine-tuning (`lora` false: LoRA freezes every weight
 * a Fisher of the base names). Throws INVALID_OPTION naming `owner`, the field, what was expected
 * and what was received.
 *
 * @example
 * ```ts
 * checkEwcOption('sftTrain', model.namedParameters(), { lambda: 1000, fisher }, false);
 * ```
 */
export function checkEwcOption(owner: string, parameters: ReadonlyMap<string, tf.Tensor>, ewc: unknown, lora: unknown): asserts ewc is EwcOption {
  if (typeof ewc !== 'object' || ewc === null || Array.isArray(ewc)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc to be { lambda, fisher, anchors? }; got ${describeValue(ewc)}`, {
      help: 'ewc: { lambda: 1000, fisher: await estimateFisher({ model, tokenizer, records: oldTaskRecords }) }',
    });
  }
  const { lambda, fisher, anchors } = resolveOptions(`${owner}: ewc`, ewc as Partial<EwcOption>, {
    lambda: undefined as unknown as number,
    fisher: undefined as unknown as EwcOption['fisher'],
    anchors: undefined,
  });
  checkNumber(owner, 'ewc.lambda', lambda, 'a number ≥ 0', (v) => Number.isFinite(v) && v >= 0);
  if (!(fisher instanceof Map) || fisher.size === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc.fisher to be a non-empty Map of parameter name → tensor; got ${describeMap(fisher)}`, {
      help: 'estimate it on the old task before fine-tuning: estimateFisher({ model, tokenizer, records: oldTaskRecords })',
    });
  }
  if (anchors !== undefined && !(anchors instanceof Map)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc.anchors to be a Map of parameter name → tensor, or left out; got ${describeValue(anchors)}`, {
      help: 'leave anchors out to anchor at the parameters as training starts',
    });
  }
  const unknown = [...fisher.keys()].filter((k) => !parameters.has(k));
  if (unknown.length > 0) {
    const known = [...parameters.keys()];
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected every key of ewc.fisher to name a parameter of the model; got ${unknown.length} that do not: ${unknown
        .slice(0, 3)
        .map((k) => JSON.stringify(k))
        .join(', ')}${unknown.length > 3 ? ', …' : ''}`,
      { help: `estimate the Fisher on this model's architecture (its parameters are named like ${JSON.stringify(known[0] ?? '')}), before LoRA is applied` },
    );
  }
  for (const [key, f] of fisher) {
    const p = parameters.get(key)!;
    if (!(f instanceof tf.Tensor) || f.isDisposed || !sameShape(f.shape, p.shape)) {
      const got = f instanceof tf.Tensor ? (f.isDisposed ? 'a disposed tensor' : formatShape(f.shape)) : describeValue(f);
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc.fisher "${key}" to be a tensor of the parameter's shape ${formatShape(p.shape)}; got ${got}`);
    }
  }
  if (lora !== false) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc with full fine-tuning (lora: false); got lora ${JSON.stringify(lora)}, which freezes every weight the Fisher names`, {
      help: 'EWC holds the trained weights near their old values; with LoRA use lwf (sftTrain: the adapters-disabled policy is the old model), or train fully with ewc',
    });
  }
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The penalty of a checked `ewc` option ({@link checkEwcOption}) over a model's trainable
 * parameters as training starts (after LoRA): `penalty` for the trainer's `penalties`, and
 * `dispose` for the anchors it cloned (a variable listed under two names is penalised once).
 * Throws INVALID_OPTION when the Fisher names no trainable parameter, or `anchors` lacks a
 * penalised one or has another shape.
 *
 * @example
 * ```ts
 * const ewc = ewcRegularizer('sftTrain', model.trainableParameters(), { lambda: 1000, fisher });
 * try { await fineTune({ ..., penalties: { ewc_penalty: ewc.penalty } }); } finally { ewc.dispose(); }
 * ```
 */
export function ewcRegularizer(owner: string, trainable: ReadonlyMap<string, tf.Variable>, ewc: EwcOption): { penalty: () => tf.Scalar; dispose: () => void } {
  const penalised = new Map<string, tf.Variable>();
  const seen = new Set<tf.Variable>();
  for (const [key, variable] of trainable) {
    if (ewc.fisher.has(key) && !seen.has(variable)) {
      penalised.set(key, variable);
      seen.add(variable);
    }
  }
  if (penalised.size === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc.fisher to name at least one trainable parameter; got ${ewc.fisher.size} keys, none trainable`, {
      help: 'EWC holds the weights that train near their old values: use it with full fine-tuning (lora: false), where the Fisher of the base model names the trained weights',
    });
  }
  if (ewc.anchors !== undefined) {
    for (const [key, variable] of penalised) {
      const anchor = ewc.anchors.get(key);
      if (!(anchor instanceof tf.Tensor) || anchor.isDisposed || !sameShape(anchor.shape, variable.shape)) {
        const got = anchor instanceof tf.Tensor ? (anchor.isDisposed ? 'a disposed tensor' : formatShape(anchor.shape)) : 'none';
        throw new PosttrainError('INVALID_OPTION', `${owner}: expected ewc.anchors to hold "${key}" with the parameter's shape ${formatShape(variable.shape)}; got ${got}`, {
          help: 'leave anchors out to anchor at the parameters as training starts',
        });
      }
    }
  }
  const anchors = ewc.anchors ?? new Map([...penalised].map(([key, variable]) => [key, tf.clone(variable)]));
  return {
    penalty: () => ewcPenalty(penalised, anchors, ewc.fisher, { lambda: ewc.lambda }).loss,
    dispose: () => {
      if (ewc.anchors === undefined) tf.dispose([...anchors.values()]);
    },
  };
}
