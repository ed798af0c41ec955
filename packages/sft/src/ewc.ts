// Elastic weight consolidation for fine-tuning: the Fisher of a causal LM on the old task's records,
// for sftTrain's `ewc` option (which `@posttrain/losses`' checkEwcOption and ewcRegularizer handle).
import { PosttrainError, checkNumber, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, modelLimits, type TokenizerLike } from '@posttrain/data';
import { causalLmLoss, fisherDiagonal } from '@posttrain/losses';
import { inEvalMode, padTokenIdOf } from '@posttrain/policy';
import { tokenizeSftRecord, type SftRecord } from './sft-records.js';

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
