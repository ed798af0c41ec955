// The three ways to get a reference model's log-probs: a frozen copy, the policy with its LoRA
// adapters disabled, or log-probs computed once before training and cached per record. DPO and KTO
// (their reference), PPO and GRPO (the KL penalty) and distillation (a frozen teacher) share them.
import { PosttrainError, describeValue, type CausalLM } from '@posttrain/tensor-core';
import { loraLayers, withAdaptersDisabled } from '@posttrain/lora';

/**
 * Where the reference log-probs come from (option `reference` of `dpoTrain`, `ktoTrain` and the
 * online-RL trainers):
 *
 * - `{ model }`: a separate frozen `CausalLM` (a second copy of the weights in memory), run on
 *   every batch. With `precompute: true` it is run once over the data before training instead.
 * - `'adapters-disabled'`: the policy itself with its LoRA adapters switched off
 *   (`withAdaptersDisabled`): the base model without a second copy of the weights, one extra
 *   forward pass per batch. Needs LoRA (the `lora` option, or adapters already on the model).
 * - `'precomputed'`: computed once before the first step and cached per record, so steps run no
 *   reference forward: by the policy with its adapters disabled when it has LoRA adapters, else by
 *   the policy itself as it is before training (TRL's `precompute_ref_log_probs` without a
 *   `ref_model`).
 *
 * When the option is left out, the default is `'adapters-disabled'` for a policy with LoRA and
 * `'precomputed'` for one without. Reference forwards run in eval mode (no dropout) and outside the
 * gradient tape.
 *
 * @example
 * ```ts
 * const copy = await loadModel('out/sft');                      // a second copy, frozen
 * await dpoTrain({ model, tokenizer, train, reference: { model: copy } });
 * await dpoTrain({ model, tokenizer, train, lora: { r: 8 }, reference: 'adapters-disabled' });
 * await dpoTrain({ model, tokenizer, train, reference: 'precomputed' });
 * ```
 */
export type ReferenceOption = 'adapters-disabled' | 'precomputed' | { model: CausalLM; precompute?: boolean };

/**
 * A resolved reference: how it is run, and whether its log-probs are cached before training.
 *
 * @example
 * ```ts
 * const reference = createReference(model, 'adapters-disabled');
 * const { logps } = reference.run((m) => sequenceLogps(m, batch)); // the base model's, no gradient
 * ```
 */
export interface Reference {
  /** The mode in words, for logs: 'frozen copy', 'adapters disabled', 'policy before training'. */
  readonly source: 'frozen copy' | 'adapters disabled' | 'policy before training';
  /** Log-probs computed once before training and cached per record. */
  readonly precomputed: boolean;
  /** Runs `fn` with the reference model in eval mode (adapters disabled where that is the mode), then restores the mode. */
  run<T>(fn: (model: CausalLM) => T): T;
}

const MODES = `{ model: frozenCopy }, 'adapters-disabled' or 'precomputed'`;

/**
 * Runs `fn` (sync or async) with `model` in eval mode (no dropout), restoring its mode when `fn`
 * returns, throws, or its promise settles.
 *
 * @example
 * ```ts
 * const metrics = await inEvalMode(model, async () => evaluateOn(heldOut)); // the model's mode is as before
 * ```
 */
export function inEvalMode<T>(model: { readonly training: boolean; eval(): unknown; train(on?: boolean): unknown }, fn: () => T): T {
  const training = model.training;
  model.eval();
  let result: T;
  try {
    result = fn();
  } catch (error) {
    model.train(training);
    throw error;
  }
  if (result instanceof Promise) {
    return result.finally(() => model.train(training)) as T;
  }
  model.train(training);
  return result;
}

/**
 * How {@link createReference} reads its `option`.
 *
 * @example
 * ```ts
 * const context: ReferenceContext = { owner: 'dpoTrain', hasLora: true };
 * ```
 */
export interface ReferenceContext {
  /** Names the caller in error messages (default 'createReference'). */
  owner?: string;
  /** Whether the policy has, or is about to get, LoRA adapters (default: it has LoRA layers now). */
  hasLora?: boolean;
}

/**
 * Checks `option` against the policy and returns how to run the reference; undefined `option`
 * picks 'adapters-disabled' for a policy with LoRA, else 'precomputed'. Allocates no tensor: the
 * adapters-disabled reference is the policy's own weights. Every misuse (adapters disabled
 * without LoRA, the policy as its own frozen copy, another vocabulary) is an `INVALID_OPTION` with
 * the fix.
 *
 * @example
 * ```ts
 * const reference = createReference(policy, { model: await loadModel('out/sft') });
 * reference.source; // 'frozen copy'
 * ```
 */
export function createReference(policy: CausalLM, option: ReferenceOption | undefined, context: ReferenceContext = {}): Reference {
  const owner = context.owner ?? 'createReference';
  const hasLora = context.hasLora ?? loraLayers(policy).size > 0;
  const mode = option ?? (hasLora ? 'adapters-disabled' : 'precomputed');
  if (mode === 'adapters-disabled') {
    if (!hasLora) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected a model with LoRA adapters for reference 'adapters-disabled'; got a model without LoRA layers`, {
        help: "pass lora: { r: 8 } (or load an adapter first), or use reference: 'precomputed' or { model: frozenCopy }",
      });
    }
    return { source: 'adapters disabled', precomputed: false, run: (fn) => inEvalMode(policy, () => withAdaptersDisabled(policy, () => fn(policy))) };
  }
  if (mode === 'precomputed') {
    return hasLora
      ? { source: 'adapters disabled', precomputed: true, run: (fn) => inEvalMode(policy, () => withAdaptersDisabled(policy, () => fn(policy))) }
      : { source: 'policy before training', precomputed: true, run: (fn) => inEvalMode(policy, () => fn(policy)) };
  }
  if (typeof mode === 'object' && mode !== null && !Array.isArray(mode)) {
    const unknown = Object.keys(mode).filter((k) => k !== 'model' && k !== 'precompute');
    if (unknown.length > 0) throw new PosttrainError('INVALID_OPTION', `${owner}: unknown key "${unknown[0]}" in reference; known keys are model, precompute`);
    const { model, precompute = false } = mode as { model?: CausalLM; precompute?: boolean };
    if (!model || typeof model.forward !== 'function') {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected reference.model to be a CausalLM (an object with forward); got ${describeValue(model)}`, {
        help: 'load a second copy of the starting model, e.g. { model: await loadModel(dir) }',
      });
    }
    if (model === policy) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected reference.model to be a separate frozen copy; got the policy itself, which changes as it trains`, {
        help: "load a second copy, or use reference: 'adapters-disabled' (LoRA) or 'precomputed'",
      });
    }
    if (model.config?.vocabSize !== policy.config?.vocabSize) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected reference.model to share the policy's vocabulary of ${policy.config?.vocabSize}; got vocabSize ${model.config?.vocabSize}`);
    }
    if (typeof precompute !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected reference.precompute to be true or false; got ${describeValue(precompute)}`);
    return { source: 'frozen copy', precomputed: precompute, run: (fn) => inEvalMode(model, () => fn(model)) };
  }
  throw new PosttrainError('INVALID_OPTION', `${owner}: expected reference to be ${MODES}; got ${describeValue(option)}`, {
    help: "'adapters-disabled' needs no second copy of the weights (LoRA only); 'precomputed' runs the reference once before training",
  });
}
