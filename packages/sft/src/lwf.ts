// Learning without forgetting for fine-tuning: the `lwf` option of sftTrain — the model before
// fine-tuning as a frozen teacher on the new prompts, and the softened KL that keeps the student near it.
import { PosttrainError, checkNumber, describeValue, resolveOptions, tf, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, type TokenizedExample } from '@posttrain/data';
import { forwardKl } from '@posttrain/losses';
import { createReference, generate, type Reference } from '@posttrain/policy';

/**
 * The `lwf` option of `sftTrain`: learning without forgetting (Li & Hoiem 2016, arXiv 1606.09282,
 * §3 and eq. 2), λ·T²·KL(p_old,T ‖ p_new,T) of the next-token distributions softened by T, averaged
 * over the counted positions ({@link LwfOption.on}) and added to every step's loss, where "old" is
 * the model before fine-tuning.
 *
 * @example
 * ```ts
 * const teacher = await loadModel(baseDir); // a second copy of the starting model, for full fine-tuning
 * const lwf: LwfOption = { lambda: 0.3, temperature: 2, teacher };
 * ```
 */
export interface LwfOption {
  /** λ ≥ 0, the weight of the KL term next to the new task's cross-entropy (λ = 0 trains as without it). */
  lambda: number;
  /** T > 0 of the softened distributions (default 2, Li & Hoiem's); the KL is multiplied by T² (Hinton et al. 2015). */
  temperature?: number;
  /**
   * The model before fine-tuning, a separate frozen copy with the same vocabulary, run on every
   * batch. Leave out with `lora`: the policy with its adapters disabled is the old model (one extra
   * forward pass per batch, no second copy). Left out without LoRA, the policy's own logits at the
   * counted positions are computed once before the first step, each distinct sequence once, and kept
   * in memory as float32 (distinct sequences × counted positions × vocabulary × 4 bytes: fine for
   * small vocabularies, and it saves the teacher's forward pass on every step; pass a teacher for
   * large vocabularies).
   */
  teacher?: CausalLM;
  /**
   * Where the KL is taken (default 'old-completions'):
   * - 'old-completions': on the old model's own greedy completions of the training prompts,
   *   generated once before the first step (Li & Hoiem record "the responses of the original
   *   network" on the new task's inputs; an LM's response to a prompt is its completion). This is
   *   where the old behaviour lives, so it is what keeps the old skill (docs/forgetting.md:
   *   sorting kept, where the two below kept none). Costs a second set of sequences in every
   *   forward pass. Needs prompt-completion records.
   * - 'completions': the positions the cross-entropy trains on (the new completions): the old
   *   model's next-token distribution there competes with the new targets.
   * - 'all': every position of the training records whose next token belongs to the record.
   */
  on?: 'old-completions' | 'completions' | 'all';
  /** With 'old-completions': the longest old completion in tokens, its stop token included (default 16). */
  maxNewTokens?: number;
}

/** A checked `lwf` option with its defaults. @internal */
export interface ResolvedLwf {
  lambda: number;
  temperature: number;
  teacher: CausalLM | undefined;
  on: 'old-completions' | 'completions' | 'all';
  maxNewTokens: number;
}

const ON = ['old-completions', 'completions', 'all'] as const;

/**
 * Checks an `lwf` option: λ a number ≥ 0, T > 0, `on` one of 'old-completions', 'completions',
 * 'all', `maxNewTokens` an integer ≥ 1. Throws INVALID_OPTION naming `owner`, the field, the
 * expected and the received value; unknown keys are named with the known ones. @internal
 */
export function resolveLwfOption(owner: string, lwf: unknown): ResolvedLwf {
  if (typeof lwf !== 'object' || lwf === null || Array.isArray(lwf)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lwf to be { lambda, temperature?, teacher?, on?, maxNewTokens? }; got ${describeValue(lwf)}`, {
      help: 'lwf: { lambda: 0.3, teacher: aFrozenCopyOfTheStartingModel } (or lwf: { lambda: 0.3 } with lora)',
    });
  }
  const o = resolveOptions<ResolvedLwf>(`${owner}: lwf`, lwf as Partial<ResolvedLwf>, {
    lambda: undefined as unknown as number,
    temperature: 2,
    teacher: undefined,
    on: 'old-completions',
    maxNewTokens: 16,
  });
  checkNumber(owner, 'lwf.lambda', o.lambda, 'a number ≥ 0', (v) => Number.isFinite(v) && v >= 0);
  checkNumber(owner, 'lwf.temperature', o.temperature, 'a number > 0', (v) => Number.isFinite(v) && v > 0);
  if (!ON.includes(o.on)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lwf.on to be 'old-completions', 'completions' or 'all'; got ${describeValue(o.on)}`);
  }
  checkNumber(owner, 'lwf.maxNewTokens', o.maxNewTokens, 'an integer ≥ 1', (v) => Number.isInteger(v) && v >= 1);
  if (o.teacher !== undefined && (typeof o.teacher !== 'object' || o.teacher === null || typeof o.teacher.forward !== 'function')) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lwf.teacher to be a CausalLM (a frozen copy of the model before fine-tuning); got ${describeValue(o.teacher)}`, {
      help: 'load a second copy of the starting model (loadModel(dir)), or use lora, whose adapters-disabled policy is the old model',
    });
  }
  return o;
}

/**
 * Where the old model's logits come from: the teacher, the policy with adapters disabled, or the
 * policy before training (precomputed); `createReference` refuses the policy as its own teacher and
 * another vocabulary. @internal
 */
export function lwfReference(owner: string, model: CausalLM, lwf: ResolvedLwf, hasLora: boolean): Reference {
  try {
    return createReference(model, lwf.teacher === undefined ? undefined : { model: lwf.teacher }, { owner, hasLora });
  } catch (error) {
    // createReference names its option `reference`; here it is lwf.teacher.
    if (error instanceof PosttrainError) throw new PosttrainError(error.code, error.message.replaceAll('reference.model', 'lwf.teacher'), { help: error.help, cause: error });
    throw error;
  }
}

/**
 * Throws INVALID_OPTION naming the first example without a prompt: `on: 'old-completions'`
 * continues each record's prompt. @internal
 */
export function checkOldCompletionRecords(owner: string, examples: readonly TokenizedExample[]): void {
  const i = examples.findIndex((e) => e.promptLength < 1);
  if (i >= 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected prompt-completion records for lwf.on 'old-completions'; got record ${i} without a prompt`, {
      help: "the old completions continue each record's prompt: use { prompt, completion } records, or lwf.on 'all'",
    });
  }
}

/**
 * The old model's greedy completions of each example's prompt (its first `promptLength` tokens), as
 * examples whose labels mark the completion (−100 on the prompt): generated once, by `reference`,
 * for each distinct prompt, prompts of one length together; a completion ends at `eosTokenId` (kept)
 * or after `maxNewTokens`. Throws INVALID_OPTION naming the first record without a prompt. @internal
 */
export async function oldCompletions(
  owner: string,
  reference: Reference,
  examples: readonly TokenizedExample[],
  o: { maxNewTokens: number; eosTokenId: number | null; batchSize: number },
): Promise<TokenizedExample[]> {
  checkOldCompletionRecords(owner, examples);
  const prompts = new Map<string, number[]>();
  for (const e of examples) {
    const ids = e.inputIds.slice(0, e.promptLength);
    prompts.set(ids.join(','), ids);
  }
  const byLength = new Map<number, number[][]>();
  for (const ids of prompts.values()) byLength.set(ids.length, [...(byLength.get(ids.length) ?? []), ids]);
  const completions = new Map<string, number[]>();
  const stopTokenIds = o.eosTokenId === null ? [] : [o.eosTokenId];
  await reference.run(async (model) => {
    for (const group of byLength.values()) {
      for (let start = 0; start < group.length; start += o.batchSize) {
        const chunk = group.slice(start, start + o.batchSize);
        const inputIds = tf.tensor2d(chunk, undefined, 'int32');
        try {
          const { tokens } = await generate(model, inputIds, { greedy: true, maxNewTokens: o.maxNewTokens, stopTokenIds, padTokenId: o.eosTokenId ?? 0 });
          chunk.forEach((ids, j) => completions.set(ids.join(','), tokens[j]));
        } finally {
          inputIds.dispose();
        }
      }
    }
  });
  return examples.map((e) => {
    const prompt = e.inputIds.slice(0, e.promptLength);
    const completion = completions.get(prompt.join(',')) ?? [];
    const inputIds = [...prompt, ...completion];
    return { inputIds, labels: [...prompt.map(() => -100), ...completion], attentionMask: inputIds.map(() => 1), promptLength: prompt.length };
  });
}

/** Whether position t of `example` counts for the KL: its next token is part of the example ('all') or one of its labels. */
const counts = (example: TokenizedExample, t: number, all: boolean) => t + 1 < example.inputIds.length && (all || example.labels[t + 1] !== -100);

/**
 * `[n, T]` float32 mask of the positions whose KL counts: t counts when the token at t + 1 is part
 * of the example ('all') or is one of its labels (the completion, for 'completions' and for the
 * old completions); the last position never does. @internal
 */
export function lwfMask(examples: readonly TokenizedExample[], T: number, all: boolean): tf.Tensor2D {
  const mask = new Float32Array(examples.length * T);
  examples.forEach((e, row) => {
    for (let t = 0; t < T; t++) if (counts(e, t, all)) mask[row * T + t] = 1;
  });
  return tf.tensor2d(mask, [examples.length, T]);
}

/** The old model's logits of one sequence at the positions that count (`positions.length × V`, row-major). @internal */
export interface PrecomputedLogits {
  positions: number[];
  logits: Float32Array;
}

/**
 * The reference's logits of every example at the positions that count, computed once before the
 * first step, `batchSize` sequences at a time, each distinct sequence once (records that repeat a
 * prompt share their old completion). @internal
 */
export async function precomputeLogits(reference: Reference, examples: readonly TokenizedExample[], all: boolean, batchSize: number, padTokenId: number): Promise<PrecomputedLogits[]> {
  const distinct = new Map<string, number>(); // sequence → index of its first example
  const keys = examples.map((e) => `${e.inputIds.join(',')}|${e.labels.map((l) => (l === -100 ? 0 : 1)).join('')}`);
  keys.forEach((key, i) => distinct.has(key) || distinct.set(key, i));
  const firsts = [...distinct.values()];
  const computed = new Map<number, PrecomputedLogits>();
  for (let start = 0; start < firsts.length; start += batchSize) {
    const chunk = firsts.slice(start, start + batchSize).map((i) => examples[i]);
    const batch = collateForTraining(chunk, { padTokenId });
    const logits = reference.run((m) => tf.tidy(() => m.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits)); // [B, T, V]
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
    const [, T, V] = logits.shape;
    const data = (await logits.data()) as Float32Array;
    logits.dispose();
    chunk.forEach((e, b) => {
      const positions = Array.from({ length: T }, (_, t) => t).filter((t) => counts(e, t, all));
      const rows = new Float32Array(positions.length * V);
      positions.forEach((t, k) => rows.set(data.subarray((b * T + t) * V, (b * T + t + 1) * V), k * V));
      computed.set(firsts[start + b], { positions, logits: rows });
    });
  }
  return keys.map((key) => computed.get(distinct.get(key)!)!);
}

/** `[B, T, V]` logits from each example's precomputed rows, zeros at the positions that do not count. @internal */
export function stackLogits(rows: readonly PrecomputedLogits[], T: number, V: number): tf.Tensor3D {
  const data = new Float32Array(rows.length * T * V);
  rows.forEach((r, b) => r.positions.forEach((t, k) => data.set(r.logits.subarray(k * V, (k + 1) * V), (b * T + t) * V)));
  return tf.tensor3d(data, [rows.length, T, V]);
}

/**
 * The LwF term of one micro-batch: `lossSum` = λ·(Σ_t T²·KL_t / max(Σ mask, 1))·units, so that after
 * the trainer divides by the step's units it is λ × the mean KL over the counted positions, and
 * `value` = λ × that mean, logged as `lwf_loss`. @internal
 */
export function lwfTerm(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, mask: tf.Tensor2D, units: tf.Scalar, lwf: ResolvedLwf): { lossSum: tf.Scalar; value: tf.Scalar } {
  return tf.tidy(() => {
    const { loss } = forwardKl(studentLogits, teacherLogits, mask, { temperature: lwf.temperature, scaleByTemperatureSquared: true }); // mean over the mask, T² included
    const value = tf.mul(loss, lwf.lambda) as tf.Scalar;
    return { lossSum: tf.mul(value, units) as tf.Scalar, value };
  });
}
