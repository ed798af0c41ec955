// The options of distillTrain: records, losses, tunables and their TRL defaults, and the checks
// that run before anything is computed (the teacher against the student, the loss against the cache).
import { PosttrainError, describeValue, resolveOptions, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';
import type { LoraOptions, LoraReport } from '@posttrain/lora';
import { checkEvalRecords, checkFineTuneOptions, defaultFineTuneTrainerOptions, type FineTuneTrainerOptions, type OptimizerTunables, type TrainResult } from '@posttrain/trainer';
import { checkTeacher } from './teacher.js';
import { checkTeacherCache, type TeacherCacheOptions } from './teacher-cache.js';

/**
 * A distillation record: TRL prompt-completion (`{ prompt, completion }`), language modeling
 * (`{ text }`), or prompt-only (`{ prompt }`, when every batch's completion is generated: `seqKd`,
 * or `lmbda: 1`).
 *
 * @example
 * ```ts
 * const records: DistillRecord[] = [{ prompt: 'abc>', completion: 'cba' }, { prompt: 'hello>' }];
 * ```
 */
export type DistillRecord = { prompt: string; completion: string } | { text: string } | { prompt: string };

/**
 * The divergence between the teacher's and the student's next-token distributions (`@posttrain/losses`):
 * `'jsd'` generalised Jensen–Shannon with `beta` (TRL's GKD), `'forward-kl'` KL(teacher ‖ student),
 * `'reverse-kl'` KL(student ‖ teacher), `'tv'` total variation, `'hinton'` Hinton et al.'s
 * α·T²·KL(teacher_T ‖ student_T) + (1 − α)·cross-entropy with the labels.
 *
 * @example
 * ```ts
 * const loss: DistillLoss = 'hinton';
 * ```
 */
export type DistillLoss = 'jsd' | 'forward-kl' | 'reverse-kl' | 'tv' | 'hinton';

const LOSSES: readonly DistillLoss[] = ['jsd', 'forward-kl', 'reverse-kl', 'tv', 'hinton'];

/**
 * The tunable options of {@link distillTrain}, each with its default in {@link defaultDistillOptions};
 * TRL's GKDConfig names in camelCase where it has them.
 *
 * @example
 * ```ts
 * const tunables: Partial<DistillTunables> = { loss: 'hinton', temperature: 2, alpha: 0.5, lmbda: 0, lr: 3e-3, maxSteps: 300 };
 * ```
 */
export interface DistillTunables extends FineTuneTrainerOptions, OptimizerTunables {
  /** The divergence (default 'jsd', TRL's GKD). */
  loss: DistillLoss;
  /** β ∈ [0, 1] of 'jsd': 0 is forward KL, 1 reverse KL (TRL's `beta`, default 0.5). */
  beta: number;
  /** Softmax temperature of both distributions in the divergence, > 0; null: 2 for 'hinton' (DistilBERT's), 1 otherwise (TRL's GKD loss). Multiplied in as T². */
  temperature: number | null;
  /** α ∈ [0, 1] of 'hinton': the weight of the soft-target term; 1 − α weighs the labels' cross-entropy (default 0.5). */
  alpha: number;
  /** Fraction of micro-batches whose completions the student samples itself, scored by the teacher: on-policy GKD (TRL's `lmbda`, default 0.5). 0: offline KD on the records. */
  lmbda: number;
  /** Sequence-level KD (Kim & Rush 2016): the teacher samples each batch's completions, which replace the records' (TRL's `seq_kd`, default false). */
  seqKd: boolean;
  /** New tokens per generated completion at most, the EOS included (TRL's `max_new_tokens`, default 128). */
  maxNewTokens: number;
  /** Sampling temperature of generated completions, > 0 (TRL's GKD `temperature`, default 0.9). */
  generationTemperature: number;
  /** Cache the teacher's top-k log-probs of the records on disk and train from them (`{ dir, topK }`); false: run the teacher on every batch. Works with 'forward-kl' and 'hinton'; generated batches still run the teacher. */
  teacherCache: TeacherCacheOptions | false;
  /** The teacher's tokenizer, when it has its own: checked to encode the records as the student's does. */
  teacherTokenizer: TokenizerLike | undefined;
  /** Held-out records: `eval_loss` (the divergence, the teacher run live, no generation) and `eval_mean_token_accuracy` every `evalEvery` steps (default: at the end). */
  eval: readonly DistillRecord[] | undefined;
  /** LoRA options for the student (`applyLora`; `targetModules` defaults to 'all-linear'); false: full fine-tuning. */
  lora: Partial<LoraOptions> | false;
  /** Records (or prompts) per micro-batch (default 8). */
  batchSize: number;
  /** Divergence only on completion tokens of prompt-completion records (default true, as TRL's GKD scores completions). */
  completionOnlyLoss: boolean;
  /** Longest example in tokens (TRL's `max_length`): longer records lose their end; generated batches cut prompts to leave room for `maxNewTokens`. null: the model's context. */
  maxLength: number | null;
  /** Seed of the shuffling, of which batches are on-policy, of sampling, dropout and LoRA's initialisation unless `lora.seed` (default 0). */
  seed: number;
}

/**
 * Options of {@link distillTrain}: student, teacher, tokenizer and records, then the tunables.
 *
 * @example
 * ```ts
 * const options: DistillTrainOptions = { student, teacher: teacher.freeze().eval(), tokenizer, train: records, loss: 'forward-kl', lmbda: 0 };
 * ```
 */
export interface DistillTrainOptions extends Partial<DistillTunables> {
  /** The causal LM that learns (any width and depth), trained in place. */
  student: CausalLM;
  /** The frozen causal LM it learns from, of the same vocabulary: call `teacher.freeze().eval()` first. */
  teacher: CausalLM;
  tokenizer: TokenizerLike;
  train: readonly DistillRecord[];
}

/**
 * The defaults of {@link distillTrain}'s tunable options: TRL's GKDConfig (generalised JSD with
 * β 0.5, λ 0.5, 128 new tokens at temperature 0.9, lr 5e-7 — tiny models want ~1e-3), 8 records
 * per micro-batch, completion-only loss.
 *
 * @example
 * ```ts
 * await distillTrain({ ...defaultDistillOptions, student, teacher, tokenizer, train, lmbda: 0, lr: 3e-3 });
 * ```
 */
export const defaultDistillOptions: Readonly<DistillTunables> = Object.freeze({
  ...defaultFineTuneTrainerOptions,
  loss: 'jsd',
  beta: 0.5,
  temperature: null,
  alpha: 0.5,
  lmbda: 0.5,
  seqKd: false,
  maxNewTokens: 128,
  generationTemperature: 0.9,
  teacherCache: false,
  teacherTokenizer: undefined,
  eval: undefined,
  lora: false,
  batchSize: 8,
  lr: 5e-7,
  weightDecay: 0,
  schedule: 'linear',
  warmupSteps: 0,
  completionOnlyLoss: true,
  maxLength: null,
  seed: 0,
});

/**
 * What {@link distillTrain} returns: the trainer's result, the LoRA report when adapters were
 * added, and whether the teacher cache was reused.
 *
 * @example
 * ```ts
 * const { history, teacherCache }: DistillTrainResult = await distillTrain(options); // teacherCache: 'built' | 'reused' | 'none'
 * ```
 */
export interface DistillTrainResult extends TrainResult {
  lora: LoraReport | undefined;
  /** 'built' when this run wrote the top-k cache, 'reused' when it read one, 'none' without one. */
  teacherCache: 'built' | 'reused' | 'none';
}

export type Resolved = DistillTunables & Pick<DistillTrainOptions, 'student' | 'teacher' | 'tokenizer' | 'train'>;

/**
 * Validates `options` against {@link defaultDistillOptions}: unknown keys are named with the known
 * ones, numbers are range-checked, the teacher is checked against the student (same vocabulary,
 * frozen, eval mode) and the loss against the cache.
 *
 * @example
 * ```ts
 * const o = resolveDistillOptions({ student, teacher, tokenizer, train: records, loss: 'hinton' });
 * ```
 */
export function resolveDistillOptions(options: DistillTrainOptions): Resolved {
  const owner = 'distillTrain';
  const { student, teacher, tokenizer, train: records, ...rest } = (options ?? {}) as DistillTrainOptions;
  const o = resolveOptions<Resolved>(
    owner,
    { student, teacher, tokenizer, train: records, ...rest },
    {
      student: undefined as unknown as CausalLM,
      teacher: undefined as unknown as CausalLM,
      tokenizer: undefined as unknown as TokenizerLike,
      train: undefined as unknown as DistillRecord[],
      ...defaultDistillOptions,
    },
  );
  if (!o.student || typeof o.student.forward !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected student to be a CausalLM (an object with forward); got ${describeValue(o.student)}`);
  }
  if (!o.tokenizer || typeof o.tokenizer.encode !== 'function') throw new PosttrainError('INVALID_OPTION', `${owner}: expected tokenizer to have encode and decode; got ${describeValue(o.tokenizer)}`);
  if (!Array.isArray(o.train) || o.train.length === 0) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected train to be a non-empty array of records; got ${Array.isArray(o.train) ? 'an empty array' : describeValue(o.train)}`, {
      help: "for example [{ prompt: 'ab>', completion: 'ba' }] or [{ text: 'ab>ba' }]",
    });
  }
  checkEvalRecords(owner, o.eval, { shape: '{ prompt, completion } or { text }' });
  checkFineTuneOptions(owner, o);
  const probes = o.train.slice(0, 8).map((r) => ('text' in r ? r.text : 'completion' in r ? `${r.prompt}${r.completion}` : r.prompt));
  checkTeacher(owner, o.student, o.teacher, o.tokenizer, o.teacherTokenizer, probes);
  if (!LOSSES.includes(o.loss)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected loss to be one of ${LOSSES.map((l) => `'${l}'`).join(', ')}; got ${describeValue(o.loss)}`);
  }
  const unit = (name: 'beta' | 'alpha' | 'lmbda') => {
    if (typeof o[name] !== 'number' || !(o[name] >= 0 && o[name] <= 1))
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be a number in [0, 1]; got ${describeValue(o[name])}`);
  };
  unit('beta');
  unit('alpha');
  unit('lmbda');
  if (o.temperature !== null && !(typeof o.temperature === 'number' && o.temperature > 0 && Number.isFinite(o.temperature))) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected temperature to be a number > 0 or null (the loss's default); got ${describeValue(o.temperature)}`);
  }
  if (!(typeof o.generationTemperature === 'number' && o.generationTemperature > 0 && Number.isFinite(o.generationTemperature))) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected generationTemperature to be a number > 0; got ${describeValue(o.generationTemperature)}`);
  }
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1)
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected maxNewTokens to be a positive integer; got ${describeValue(o.maxNewTokens)}`);
  if (typeof o.seqKd !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected seqKd to be true or false; got ${describeValue(o.seqKd)}`);
  if (o.lora !== false && (typeof o.lora !== 'object' || o.lora === null)) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected lora to be LoRA options or false; got ${describeValue(o.lora)}`, {
      help: "for example lora: { r: 8, alpha: 16, targetModules: 'all-linear' }",
    });
  }
  if (o.teacherCache !== false) {
    checkTeacherCache(owner, o.teacherCache, o.teacher.config.vocabSize);
    if (o.loss !== 'forward-kl' && o.loss !== 'hinton') {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected loss 'forward-kl' or 'hinton' with teacherCache; got '${o.loss}'`, {
        help: "top-k log-probs leave the teacher's tail unknown, which reverse KL, JSD and TV need: use loss 'forward-kl' or 'hinton', or teacherCache: false",
      });
    }
  }
  return o;
}
