// Elastic weight consolidation for fine-tuning: the Fisher of a causal LM on the old task's records,
// and the `ewc` option of sftTrain (checked against the model, anchored, turned into a penalty).
import { PosttrainError, checkNumber, describeValue, formatShape, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, modelLimits, type TokenizerLike } from '@posttrain/data';
import { causalLmLoss, ewcPenalty, fisherDiagonal } from '@posttrain/losses';
import { inEvalMode, padTokenIdOf } from '@posttrain/policy';
import { tokenizeSftRecord, type SftRecord } from './sft-records.js';

/**
 * The `ewc` option of `sftTrain`: elastic weight consolidation (Kirkpatrick et al. 2017), the
 * penalty (λ/2)·Σ_i F_i·(θ_i − θ*_i)² added to the loss of every optimizer step.
 *
 * @example
 * ```ts
 * const fisher = await estimateFisher({ model, tokenizer, records: oldTaskRecords });
 * const ewc: EwcOption = { lambda: 1000, fisher };
 * ```
 */
export interface EwcOption {
  /** λ ≥ 0, the weight of the penalty (λ = 0 trains as without it). Its scale depends on the Fisher's reduction: see {@link estimateFisher}. */
  lambda: number;
  /**
   * The Fisher diagonal F by parameter name ({@link estimateFisher}, or `fisherDiagonal` of
   * `@posttrain/losses`): every key a parameter of the model, with its shape. The trainable
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
  return value instanceof Map ? `a Map of ${value.size}` : describeValue(value);
}

/**
 * Checks the shape of an `ewc` option against `model` (before any LoRA layer renames parameters):
 * λ a number ≥ 0, `fisher` a non-empty Map whose every key is a parameter of the model with the
 * same shape, `anchors` (when given) a Map. Throws INVALID_OPTION naming `owner`, the field, what
 * was expected and what was received. @internal
 */
export function checkEwcOption(owner: string, model: CausalLM, ewc: unknown): asserts ewc is EwcOption {
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
  const parameters = namedParameters(model);
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
}

/** The model's named parameters, when it is a Module (`CausalLM` does not promise them). */
function namedParameters(model: CausalLM): Map<string, tf.Variable> {
  const named = (model as Partial<{ namedParameters(): Map<string, tf.Variable> }>).namedParameters;
  if (typeof named !== 'function') {
    throw new PosttrainError('INVALID_OPTION', 'ewc: expected the model to list its parameters (namedParameters(), a tensor-core Module); got a model without them');
  }
  return named.call(model);
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The penalty of a checked `ewc` option over the trainable parameters of `model` as training
 * starts (after LoRA): `penalty` for `fineTune`'s `penalties`, and `dispose` for the anchors it
 * cloned. Throws INVALID_OPTION when the Fisher names no trainable parameter, or `anchors` lacks a
 * penalised one or has another shape. @internal
 */
export function ewcPenaltyOf(owner: string, model: { trainableParameters(): Map<string, tf.Variable> }, ewc: EwcOption): { penalty: () => tf.Scalar; dispose: () => void } {
  const penalised = new Map<string, tf.Variable>();
  const seen = new Set<tf.Variable>();
  for (const [key, variable] of model.trainableParameters()) {
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

/**
 * Options of {@link estimateFisher}.
 *
 * @example
 * ```ts
 * const options: EstimateFisherOptions = { model, tokenizer, records: oldTask, batchSize: 1 };
 * ```
 */
export interface EstimateFisherOptions {
  /** The model after the old task (a tensor-core Module, as `@posttrain/models` makes). */
  model: CausalLM;
  tokenizer: TokenizerLike;
  /** The old task's records, as `sftTrain` takes them; a few hundred are typical. */
  records: readonly SftRecord[];
  /** Records per gradient (default 1: the per-example empirical Fisher). */
  batchSize?: number;
  /** The loss on completion tokens only, as `sftTrain`'s default (default true). */
  completionOnlyLoss?: boolean;
  /** Longest example in tokens, as `sftTrain`'s `maxLength` (default null: no limit). */
  maxLength?: number | null;
}

/**
 * The diagonal empirical Fisher of a causal LM on the old task's `records`, for `sftTrain`'s `ewc`
 * option: `fisherDiagonal` of `@posttrain/losses` over the model's trainable parameters, with the
 * loss of each batch of `batchSize` records (tokenized as `sftTrain` does, EOS appended, labels on
 * the completion with `completionOnlyLoss`) being the causal-LM cross-entropy **averaged over the
 * batch's label tokens** (the reduction `sftTrain`'s loss uses). So
 * F_i = (1/K) Σ_k (∂ mean-token-loss_k / ∂θ_i)² over the K batches, and with `batchSize` 1 it is the
 * per-example Fisher of the per-token loss; a batch of n records gives about 1/n of it near a
 * minimum (the gradient is averaged before squaring), so keep `batchSize` fixed when comparing λ.
 * The data's labels are used (not labels sampled from the model), in eval mode (no dropout).
 *
 * Returns a new Map keyed by the trainable parameters' names, each a float32 tensor of the
 * parameter's shape, which the caller disposes. Takes one forward and backward pass per batch.
 *
 * @example
 * ```ts
 * const fisher = await estimateFisher({ model, tokenizer, records: sortingRecords.slice(0, 256) });
 * await sftTrain({ model, tokenizer, train: reversalRecords, ewc: { lambda: 1000, fisher } });
 * tf.dispose([...fisher.values()]);
 * ```
 */
export async function estimateFisher(options: EstimateFisherOptions): Promise<Map<string, tf.Tensor>> {
  const owner = 'estimateFisher';
  const o = resolveOptions(owner, options, {
    model: undefined as unknown as CausalLM,
    tokenizer: undefined as unknown as TokenizerLike,
    records: undefined as unknown as readonly SftRecord[],
    batchSize: 1,
    completionOnlyLoss: true,
    maxLength: null as number | null,
  });
  if (!o.model || typeof o.model.forward !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to be a CausalLM (an object with forward); got ${describeValue(o.model)}`);
  }
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode; got ${describeValue(o.tokenizer)}`);
  if (!Array.isArray(o.records) || o.records.length === 0) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `${owner}: expected records to be a non-empty array of the old task's records; got ${Array.isArray(o.records) ? 'an empty array' : describeValue(o.records)}`,
      {
        help: "for example [{ prompt: 'bca|', completion: 'abc' }] or [{ text: 'bca|abc' }]",
      },
    );
  }
  checkNumber(owner, 'batchSize', o.batchSize, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (typeof o.completionOnlyLoss !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected completionOnlyLoss to be true or false; got ${describeValue(o.completionOnlyLoss)}`);
  if (o.maxLength !== null) checkNumber(owner, 'maxLength', o.maxLength, 'an integer ≥ 2 or null', (v) => Number.isInteger(v) && v >= 2);
  const model = o.model as CausalLM & { trainableParameters(): Map<string, tf.Variable>; training: boolean; eval(): unknown; train(on?: boolean): unknown };
  if (typeof model.trainableParameters !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected model to list its parameters (trainableParameters(), a tensor-core Module); got a model without them`);
  }
  const limits = modelLimits(model.config);
  const examples = o.records.map((r, i) => tokenizeSftRecord(owner, o.tokenizer, r, `record ${i}`, o.completionOnlyLoss, o.maxLength, limits));
  const padTokenId = padTokenIdOf(o.tokenizer);
  function* batches() {
    for (let start = 0; start < examples.length; start += o.batchSize) {
      const batch = collateForTraining(examples.slice(start, start + o.batchSize), { padTokenId });
      try {
        yield batch;
      } finally {
        tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
      }
    }
  }
  return inEvalMode(model, () =>
    fisherDiagonal(model.trainableParameters(), batches(), (batch) => {
      const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask }); // [B, T, V]
      return causalLmLoss(logits, batch.labels).loss; // mean over the batch's label tokens
    }),
  );
}
