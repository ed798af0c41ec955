// distillTrain: records (or the student's / teacher's own completions of their prompts) → the
// teacher's next-token distributions, live or from a top-k cache → a divergence → the shared trainer loop.
import { PosttrainError, Rng, describeValue, tf } from '@posttrain/tensor-core';
import { collateForTraining, modelLimits, tokenizeLanguageModeling, tokenizePromptCompletion, type LabeledExample, type TokenizedExample, type TokenizerLike } from '@posttrain/data';
import { applyLora } from '@posttrain/lora';
import { forwardKl, generalizedJsd, reverseKl, tokenLogprobs, topKForwardKl, totalVariation, type DistillOutput } from '@posttrain/losses';
import { encodePrompts, inEvalMode, inProcessGenerator, padTokenIdOf, type Generator } from '@posttrain/policy';
import { fineTune, shuffledOrder, type StepOutput } from '@posttrain/trainer';
import { teacherLogits } from './teacher.js';
import { cachedBatchTargets, loadOrBuildTeacherCache, type TopKTargets } from './teacher-cache.js';
import { resolveDistillOptions, type DistillRecord, type DistillTrainOptions, type DistillTrainResult } from './distill-options.js';
interface Example {
  tokens: TokenizedExample | undefined;
  prompt: string | undefined;
}

interface DistillBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  labels: tf.Tensor2D;
  /** The teacher's logits `[B, T − 1, V]`, or its cached top-k `[B, T − 1, k]`. */
  teacher: { logits: tf.Tensor3D } | { ids: tf.Tensor3D; logprobs: tf.Tensor3D };
  onPolicy: boolean;
  inputTokens: number;
}

/** A 32-bit seed from several integers (FNV-1a over their bytes). */
function mix(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    for (let i = 0; i < 4; i++) {
      h ^= (p >>> (8 * i)) & 0xff;
      h = Math.imul(h, 0x01000193);
    }
  }
  return h | 0;
}

function tokenize(
  owner: string,
  tokenizer: TokenizerLike,
  record: DistillRecord,
  name: string,
  completionOnly: boolean,
  maxLength: number | null,
  limits: ReturnType<typeof modelLimits>,
  generated: boolean,
): Example {
  const options = { completionOnly, maxLength, name, ...limits, requireLabels: true };
  if (record && typeof record === 'object' && typeof (record as { prompt?: unknown }).prompt === 'string') {
    if ('completion' in record) return { tokens: tokenizePromptCompletion(tokenizer, record, options), prompt: record.prompt };
    if (generated) return { tokens: undefined, prompt: (record as { prompt: string }).prompt };
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `${owner}: ${name}: expected { prompt, completion } (a prompt alone needs seqKd or lmbda 1, where every completion is generated); got keys [${Object.keys(record).join(', ')}]`,
    );
  }
  if (record && typeof record === 'object' && 'text' in record) {
    if (generated) throw new PosttrainError('INVALID_ARGUMENT', `${owner}: ${name}: expected { prompt, … } records with seqKd or lmbda > 0 (completions are generated from prompts); got { text }`);
    return { tokens: tokenizeLanguageModeling(tokenizer, record, options), prompt: undefined };
  }
  throw new PosttrainError(
    'INVALID_ARGUMENT',
    `${owner}: ${name}: expected { prompt, completion }, { prompt } or { text }; got ${record && typeof record === 'object' ? `keys [${Object.keys(record).join(', ')}]` : describeValue(record)}`,
  );
}

/**
 * Knowledge distillation of a frozen teacher into a student of the same vocabulary (any width and
 * depth), full or LoRA, on TRL-style records, through `@posttrain/trainer`'s loop:
 *
 * - **offline KD** (`lmbda: 0`): each micro-batch of records is run through the teacher (eval
 *   mode, outside the gradient tape), or its top-k log-probs are read from `teacherCache`, built
 *   once on the first run and reused by later epochs and runs;
 * - **on-policy GKD** (Agarwal et al. 2024, TRL's GKDTrainer): a fraction `lmbda` of micro-batches,
 *   drawn per batch from `seed`, trains on completions the student samples from the records'
 *   prompts (temperature `generationTemperature`), scored by the teacher;
 * - **sequence-level KD** (`seqKd`, Kim & Rush 2016): the teacher's sampled completions replace the
 *   records' (on-policy batches then replace them again, as TRL does);
 * - the loss is the divergence `loss` over the completion's tokens (all tokens of `{ text }`
 *   records): Hinton KD, forward or reverse KL, generalised JSD or total variation from
 *   `@posttrain/losses`, summed over tokens and normalised by the step's tokens.
 *
 * Logged each step under TRL's keys: `loss`, `learning_rate`, `grad_norm`, `epoch`, `num_tokens`,
 * plus `mean_token_accuracy` (the student's argmax against the batch's tokens), `on_policy` (the
 * fraction of micro-batches the student generated) and, for 'hinton', `kd_loss` and `ce_loss`;
 * every `evalEvery` steps `eval_loss` and `eval_mean_token_accuracy`. Checkpoints and resume as
 * every posttrain trainer: a resumed run skips the batches it trained on without generating them.
 *
 * @example
 * ```ts
 * const teacher = (await loadModel('out/teacher')).freeze().eval();
 * const student = createModel(smallConfig, { seed: 0 });
 * await distillTrain({ student, teacher, tokenizer, train: records, loss: 'forward-kl', lmbda: 0.5, lr: 3e-3, maxSteps: 300 });
 * ```
 */
export async function distillTrain(options: DistillTrainOptions): Promise<DistillTrainResult> {
  const owner = 'distillTrain';
  const o = resolveDistillOptions(options);
  const { student, teacher, tokenizer } = o;
  const padTokenId = padTokenIdOf(tokenizer);
  const limits = modelLimits(student.config);
  const generates = o.seqKd || o.lmbda > 0;
  const everyGenerated = o.seqKd || o.lmbda === 1;
  const examples = o.train.map((r, i) => tokenize(owner, tokenizer, r, `record ${i}`, o.completionOnlyLoss, o.maxLength, limits, everyGenerated));
  if (generates) {
    const missing = examples.findIndex((e) => e.prompt === undefined);
    if (missing >= 0) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: record ${missing}: expected { prompt, … } records with seqKd or lmbda > 0 (completions are generated from prompts); got { text }`, {
        help: 'use prompt-completion records, or lmbda: 0 for offline KD on text',
      });
    }
  }
  const evalExamples = (o.eval ?? []).map((r, i) => tokenize(owner, tokenizer, r, `eval record ${i}`, o.completionOnlyLoss, o.maxLength, limits, false).tokens as TokenizedExample);
  const maxPositions = student.config.maxPositions;
  const promptIds = generates
    ? encodePrompts(
        owner,
        'train',
        tokenizer,
        examples.map((e) => ({ prompt: e.prompt as string })),
        {
          maxPromptTokens: o.maxLength === null ? null : Math.max(1, o.maxLength - o.maxNewTokens),
          newTokens: o.maxNewTokens,
          newTokensOption: 'maxNewTokens',
          cutOption: 'maxLength',
          cutLimits: 'sequence',
        },
        Math.min(maxPositions ?? Number.POSITIVE_INFINITY, teacher.config.maxPositions ?? Number.POSITIVE_INFINITY),
      )
    : [];

  // The top-k cache covers the records as tokenized (not generated completions).
  let cached: TopKTargets | undefined;
  let cacheState: DistillTrainResult['teacherCache'] = 'none';
  const recordExamples = examples.map((e) => e.tokens);
  if (o.teacherCache !== false && !everyGenerated) {
    const { targets, reused } = await loadOrBuildTeacherCache(owner, teacher, recordExamples as LabeledExample[], o.teacherCache, { batchSize: o.batchSize, padTokenId });
    cached = targets;
    cacheState = reused ? 'reused' : 'built';
  }

  const report = o.lora === false ? undefined : applyLora(student, { targetModules: 'all-linear', seed: o.seed, ...o.lora });
  const temperature = o.temperature ?? (o.loss === 'hinton' ? 2 : 1);
  const sampling = { temperature: o.generationTemperature, batchSize: Math.max(o.batchSize, 1) };
  const studentGenerator: Generator | undefined = o.lmbda > 0 ? inProcessGenerator(student, tokenizer, sampling) : undefined;
  const teacherGenerator: Generator | undefined = o.seqKd ? inProcessGenerator(teacher, tokenizer, sampling) : undefined;

  const generate = async (generator: Generator, indices: number[], seed: number): Promise<LabeledExample[]> => {
    const ids = indices.map((i) => promptIds[i]);
    const completions = await generator.generate({ prompts: indices.map((i) => examples[i].prompt as string), promptIds: ids, n: 1, maxTokens: o.maxNewTokens, seed });
    return completions.map(([c], row) => ({ inputIds: [...ids[row], ...c.ids], labels: [...ids[row].map(() => -100), ...c.ids] }));
  };

  const makeBatch = async (indices: number[], epoch: number, index: number): Promise<DistillBatch> => {
    const onPolicy = o.lmbda > 0 && new Rng(mix(o.seed, epoch, index, 1)).uniform() < o.lmbda;
    // On-policy batches replace the records' completions, seqKd's included (as TRL), so the teacher samples only when the student does not.
    const generated = onPolicy
      ? await generate(studentGenerator as Generator, indices, mix(o.seed, epoch, index, 3))
      : o.seqKd
        ? await generate(teacherGenerator as Generator, indices, mix(o.seed, epoch, index, 2))
        : undefined;
    const rows = generated ?? indices.map((i) => recordExamples[i] as TokenizedExample);
    const batch = collateForTraining(rows, { padTokenId });
    const width = batch.inputIds.shape[1] - 1;
    const targets = !generated && cached ? cachedBatchTargets(cached, recordExamples as LabeledExample[], indices, width) : { logits: teacherLogits(teacher, batch.inputIds, batch.attentionMask) };
    const inputTokens = rows.reduce((n, e) => n + e.inputIds.length, 0);
    return { ...batch, teacher: targets, onPolicy, inputTokens };
  };
  const disposeBatch = (b: DistillBatch) => tf.dispose([b.inputIds, b.attentionMask, b.labels, ...Object.values(b.teacher)]);
  const batchesPerEpoch = Math.ceil(examples.length / o.batchSize);
  const source = {
    open: async function* (epoch: number, start: number): AsyncGenerator<DistillBatch> {
      const order = shuffledOrder(o.seed, epoch, examples.length);
      for (let index = start; index < batchesPerEpoch; index++) {
        const batch = await makeBatch(order.slice(index * o.batchSize, (index + 1) * o.batchSize), epoch, index);
        try {
          yield batch;
        } finally {
          disposeBatch(batch);
        }
      }
    },
  };

  /** The divergence of a batch (shifted logits [B, T − 1, V]) and its parts, inside the tape. */
  const divergence = (logits: tf.Tensor3D, labels: tf.Tensor2D, mask: tf.Tensor2D, teacherTargets: DistillBatch['teacher']) => {
    const kd = (): DistillOutput => {
      if ('ids' in teacherTargets) return topKForwardKl(logits, teacherTargets.ids, teacherTargets.logprobs, mask, { temperature });
      const t = teacherTargets.logits;
      switch (o.loss) {
        case 'jsd':
          return generalizedJsd(logits, t, mask, { beta: o.beta, temperature });
        case 'reverse-kl':
          return reverseKl(logits, t, mask, { temperature });
        case 'tv':
          return totalVariation(logits, t, mask, { temperature });
        default:
          return forwardKl(logits, t, mask, { temperature });
      }
    };
    const { perToken } = kd();
    const kdSum = tf.sum(perToken) as tf.Scalar;
    if (o.loss !== 'hinton') return { lossSum: kdSum, parts: {} as Record<string, tf.Scalar> };
    // Hinton et al. 2015: α·T²·KL(teacher_T ‖ student_T) + (1 − α)·CE(labels), per token.
    const ceSum = tf.neg(tf.sum(tokenLogprobs(logits, labels).logps)) as tf.Scalar;
    const lossSum = tf.add(tf.mul(kdSum, o.alpha), tf.mul(ceSum, 1 - o.alpha)) as tf.Scalar;
    return { lossSum, parts: { kdSum, ceSum } };
  };

  const shifted = (logitsFull: tf.Tensor, labelsFull: tf.Tensor2D) => {
    const [B, T, V] = logitsFull.shape as [number, number, number];
    const logits = tf.slice(logitsFull, [0, 0, 0], [B, T - 1, V]) as tf.Tensor3D;
    const labels = tf.slice(labelsFull, [0, 1], [B, T - 1]) as tf.Tensor2D;
    const keep = tf.notEqual(labels, tf.scalar(-100, 'int32'));
    const mask = tf.cast(keep, 'float32') as tf.Tensor2D;
    const correct = tf.sum(tf.mul(tf.cast(tf.equal(tf.argMax(logits, -1), labels), 'float32'), mask)) as tf.Scalar;
    return { logits, labels, mask, tokens: tf.sum(mask) as tf.Scalar, correct };
  };

  const step = (batch: DistillBatch): StepOutput => {
    const { logits: full } = student.forward(batch.inputIds, { attentionMask: batch.attentionMask });
    const { logits, labels, mask, tokens, correct } = shifted(full, batch.labels);
    const { lossSum, parts } = divergence(logits, labels, mask, batch.teacher);
    const per = (x: tf.Scalar) => tf.div(x, tf.maximum(tokens, 1)) as tf.Scalar;
    const metrics: Record<string, tf.Scalar | number> = { mean_token_accuracy: per(correct), on_policy: batch.onPolicy ? 1 : 0 };
    if (parts.kdSum) metrics.kd_loss = per(parts.kdSum);
    if (parts.ceSum) metrics.ce_loss = per(parts.ceSum);
    return { lossSum, tokens, inputTokens: batch.inputTokens, metrics };
  };

  const evaluate = (): Promise<Record<string, number>> =>
    inEvalMode(student, async () => {
      let loss = 0;
      let correct = 0;
      let tokens = 0;
      for (let start = 0; start < evalExamples.length; start += o.batchSize) {
        const batch = collateForTraining(evalExamples.slice(start, start + o.batchSize), { padTokenId });
        const t = teacherLogits(teacher, batch.inputIds, batch.attentionMask);
        const sums = tf.tidy(() => {
          const s = shifted(student.forward(batch.inputIds, { attentionMask: batch.attentionMask }).logits, batch.labels);
          // The live teacher's dense distribution: a cached run's 'forward-kl'/'hinton' scored in full.
          return tf.stack([divergence(s.logits, s.labels, s.mask, { logits: t }).lossSum, s.correct, s.tokens]);
        });
        const [l, c, n] = Array.from(await sums.data());
        tf.dispose([sums, t, batch.inputIds, batch.attentionMask, batch.labels]);
        loss += l;
        correct += c;
        tokens += n;
      }
      return { loss: loss / Math.max(tokens, 1), mean_token_accuracy: correct / Math.max(tokens, 1) };
    });

  const result = await fineTune<DistillBatch>({
    model: student,
    source: { batches: source, batchesPerEpoch },
    step,
    evaluate: evalExamples.length ? evaluate : undefined,
    options: o,
  });
  return { ...result, lora: report, teacherCache: cacheState };
}
