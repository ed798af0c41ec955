import { Module, PosttrainError, resolveOptions } from '@posttrain/tensor-core';
import { forgetLoraAdapters, loraLayers } from './apply.js';

function layersOf(owner: string, model: Module) {
  const layers = [...loraLayers(model).values()];
  if (layers.length === 0) {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected a model with LoRA layers; found none`, { help: 'call applyLora(model, …) or loadAdapter first' });
  }
  return layers;
}

/** Options of {@link mergeAdapter} and {@link mergeAndUnload}. */
export interface MergeAdapterOptions {
  /**
   * Keep the base weight's zeros (a pruned base): the update is added only where the base weight
   * is non-zero, `W ← W + scale · B·A ⊙ [W ≠ 0]`, so the merged model is as sparse as the base.
   * The merged forward then differs from the unmerged one by the update at the pruned places.
   * Default false: PEFT's dense merge, which fills the pruned entries in.
   */
  keepSparsity: boolean;
}

/**
 * The defaults of {@link MergeAdapterOptions}: a dense merge, as PEFT does.
 *
 * @example
 * ```ts
 * mergeAndUnload(prunedModel, { ...defaultMergeAdapterOptions, keepSparsity: true });
 * ```
 */
export const defaultMergeAdapterOptions: Readonly<MergeAdapterOptions> = Object.freeze({ keepSparsity: false });

/**
 * Adds each layer's active adapter into its base weight (`W += scale · B·A`), so `forward` costs
 * what the base model costs (PEFT's `merge_adapter`). Undo with {@link unmergeAdapter}. With
 * `keepSparsity` a pruned base keeps its zeros ({@link MergeAdapterOptions}). When a
 * layer's base has no dense weight to merge into (a layer type added through a dispatcher without
 * `denseWeight`, such as a quantised one), it throws `NOT_SUPPORTED` naming that layer and merges
 * nothing.
 *
 * @example
 * ```ts
 * mergeAdapter(model);
 * const { logits } = model.forward(ids); // same as before merging, one matmul per layer
 * unmergeAdapter(model);
 * mergeAdapter(prunedModel, { keepSparsity: true }); // the base's zeros stay zero
 * ```
 */
export function mergeAdapter(model: Module, options: Partial<MergeAdapterOptions> = {}): void {
  const { keepSparsity } = resolveOptions('mergeAdapter', options, defaultMergeAdapterOptions);
  checkMergeable('mergeAdapter', model);
  for (const layer of layersOf('mergeAdapter', model)) layer.merge(layer.activeAdapter, { keepSparsity });
}

function checkMergeable(owner: string, model: Module): void {
  const refused = [...loraLayers(model)].filter(([, layer]) => {
    const name = layer.activeAdapter;
    return name !== undefined && !layer.merged.includes(name) && !layer.canMerge;
  });
  if (refused.length === 0) return;
  const [path, layer] = refused[0];
  throw new PosttrainError(
    'NOT_SUPPORTED',
    `${owner}: the LoRA layer at "${path}" wraps a ${layer.baseLayer.constructor.name}, which exposes no dense weight to merge into${refused.length > 1 ? ` (and ${refused.length - 1} more such layers)` : ''}; nothing was merged`,
    { help: 'keep the adapters unmerged (forward applies them), or give the layer type a dispatcher that passes new LoraLinear(layer, { denseWeight })' },
  );
}

/**
 * Subtracts every merged adapter from the base weights (PEFT's `unmerge_adapter`); merge then
 * unmerge restores the base to float32 rounding.
 *
 * @example
 * ```ts
 * mergeAdapter(model); unmergeAdapter(model);
 * ```
 */
export function unmergeAdapter(model: Module): void {
  for (const layer of layersOf('unmergeAdapter', model)) layer.unmerge();
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * Runs `fn` with every adapter switched off, so the model computes the base model (the reference
 * policy of DPO and PPO), then switches them back, also when `fn` throws or its promise rejects.
 * Merged adapters are unmerged for the call and merged again after.
 *
 * @example
 * ```ts
 * const refLogits = withAdaptersDisabled(model, () => model.forward(ids).logits);
 * const refAsync = await withAdaptersDisabled(model, async () => scoreBatches(model, batches));
 * ```
 */
export function withAdaptersDisabled<T>(model: Module, fn: () => T): T {
  const layers = layersOf('withAdaptersDisabled', model);
  const saved = layers.map((layer) => ({ disabled: layer.disabled, merged: layer.merged.map((name) => ({ name, keepSparsity: layer.mergedKeepingSparsity(name) })) }));
  for (const layer of layers) {
    layer.unmerge();
    layer.disabled = true;
  }
  const restore = () => {
    layers.forEach((layer, i) => {
      layer.disabled = saved[i].disabled;
      for (const { name, keepSparsity } of saved[i].merged) layer.merge(name, { keepSparsity });
    });
  };
  let result: T;
  try {
    result = fn();
  } catch (error) {
    restore();
    throw error;
  }
  if (isPromiseLike(result)) {
    return Promise.resolve(result).then(
      (value) => {
        restore();
        return value;
      },
      (error: unknown) => {
        restore();
        throw error;
      },
    ) as T;
  }
  restore();
  return result;
}

/**
 * Folds every LoRA layer's active adapter into its base weight, puts the base layer back where the
 * wrapper was and frees the adapter weights (PEFT's `merge_and_unload`): the model is a plain
 * checkpoint again, e.g. the SFT checkpoint that DPO starts from and uses as its reference through
 * `withAdaptersDisabled` on a fresh adapter. Adapter names are freed. With `keepSparsity` a pruned
 * base keeps its zeros ({@link MergeAdapterOptions}). A model without LoRA layers is left as it is;
 * one whose layers cannot merge (see {@link mergeAdapter}) throws and is left as it is.
 *
 * @example
 * ```ts
 * await sftTrain({ model, tokenizer, train, lora: { r: 16, alpha: 32 } });
 * mergeAndUnload(model); // the SFT checkpoint, no LoRA layer left
 * applyLora(model, { targetModules: 'all-linear', r: 16 }); // a fresh 'default' adapter for DPO
 * mergeAndUnload(prunedModel, { keepSparsity: true }); // recovery LoRA folded in, zeros kept
 * ```
 */
export function mergeAndUnload(model: Module, options: Partial<MergeAdapterOptions> = {}): void {
  const { keepSparsity } = resolveOptions('mergeAndUnload', options, defaultMergeAdapterOptions);
  const layers = loraLayers(model);
  if (layers.size > 0) {
    checkMergeable('mergeAndUnload', model);
    mergeAdapter(model, { keepSparsity });
    for (const [path, layer] of layers) {
      model.replaceModule(path, layer.baseLayer);
      layer.loraA.dispose();
      layer.loraB.dispose();
    }
  }
  forgetLoraAdapters(model);
}
