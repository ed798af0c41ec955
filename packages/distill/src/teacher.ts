// The teacher of a distillation run: the checks that it can teach this student (same vocabulary and
// tokenizer, frozen, in eval mode), its fingerprint (what a top-k cache was written for), and its
// next-token distributions on a batch, dense or as top-k log-probs, computed outside any gradient tape.
import { PosttrainError, describeValue, tf, type CausalLM } from '@posttrain/tensor-core';
import type { TokenizerLike } from '@posttrain/data';

/** What the checks read of a teacher: a causal LM that may also be a `Module` (trainable parameters, a training flag). */
type TeacherLike = CausalLM & { trainableParameters?: () => Map<string, tf.Variable>; namedParameters?: () => Map<string, tf.Variable> };

const count = (n: number) => n.toLocaleString('en-US');

/**
 * Throws a clear error unless `teacher` can teach `student`: both causal LMs, not the same object,
 * the same vocabulary size, the teacher in eval mode (no dropout while it labels) and frozen (no
 * trainable parameters: its weights must not move, and a frozen teacher keeps the optimizer off
 * them). With `teacherTokenizer`, it must encode the probe texts to the same ids as `tokenizer`.
 *
 * @example
 * ```ts
 * teacher.freeze().eval();
 * checkTeacher('distillTrain', student, teacher, tokenizer); // passes
 * ```
 */
export function checkTeacher(owner: string, student: CausalLM, teacher: CausalLM, tokenizer: TokenizerLike, teacherTokenizer?: TokenizerLike, probes: readonly string[] = []): void {
  if (!teacher || typeof (teacher as CausalLM).forward !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacher to be a CausalLM (an object with forward); got ${describeValue(teacher)}`, {
      help: "load it like the student: const teacher = (await loadModel('out/teacher')).freeze().eval()",
    });
  }
  if (teacher === student) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacher and student to be two models; got the same object for both`, {
      help: 'load a second copy for the teacher (it stays frozen while the student trains)',
    });
  }
  const sv = student.config?.vocabSize;
  const tv = teacher.config?.vocabSize;
  if (sv !== tv) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacher and student to share one vocabulary; got teacher vocabSize ${tv}, student vocabSize ${sv}`, {
      help: 'distillation compares next-token distributions id by id: use a teacher and a student of the same tokenizer (and the same vocab_size in config.json)',
    });
  }
  if (teacherTokenizer !== undefined) {
    if (!teacherTokenizer || typeof teacherTokenizer.encode !== 'function') {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected teacherTokenizer to be a tokenizer (with encode); got ${describeValue(teacherTokenizer)}`);
    }
    for (const text of probes) {
      const a = tokenizer.encode(text);
      const b = teacherTokenizer.encode(text);
      if (a.length !== b.length || a.some((id, i) => id !== b[i])) {
        throw new PosttrainError(
          'INVALID_OPTION',
          `${owner}: expected the teacher's tokenizer to encode like the student's; ${JSON.stringify(text)} gives student ids [${a.join(', ')}], teacher ids [${b.join(', ')}]`,
          {
            help: 'distillation needs one tokenizer for both models; cross-tokenizer distillation is not supported',
          },
        );
      }
    }
    if (teacherTokenizer.eosTokenId !== tokenizer.eosTokenId) {
      throw new PosttrainError(
        'INVALID_OPTION',
        `${owner}: expected the teacher's tokenizer to share the student's EOS; got teacher eosTokenId ${teacherTokenizer.eosTokenId}, student ${tokenizer.eosTokenId}`,
      );
    }
  }
  const t = teacher as TeacherLike;
  if ((t as { training?: boolean }).training === true) {
    throw new PosttrainError('INVALID_OPTION', `${owner}: expected the teacher in eval mode; got teacher.training true (dropout would make its targets noisy)`, {
      help: 'call teacher.eval() (and teacher.freeze()) before distilling',
    });
  }
  if (typeof t.trainableParameters === 'function') {
    const trainable = t.trainableParameters();
    if (trainable.size > 0) {
      const n = [...trainable.values()].reduce((s, v) => s + v.size, 0);
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected a frozen teacher; got ${count(n)} trainable parameters in ${trainable.size} tensors (e.g. ${[...trainable.keys()][0]})`, {
        help: 'call teacher.freeze() (and teacher.eval()): the teacher labels, it does not learn',
      });
    }
  }
}

/**
 * A SHA-256 fingerprint of a teacher: its config and every parameter's name, shape and float32
 * values, in name order. Two teachers with the same fingerprint give the same logits; a top-k cache
 * records the fingerprint of the teacher that wrote it. Reads every weight from the device once.
 *
 * @example
 * ```ts
 * const id = await teacherFingerprint(teacher); // 'sha256:3f1c…'
 * ```
 */
export async function teacherFingerprint(teacher: CausalLM): Promise<string> {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  hash.update(JSON.stringify(teacher.config ?? {}));
  const named = (teacher as TeacherLike).namedParameters?.() ?? new Map<string, tf.Variable>();
  for (const name of [...named.keys()].sort()) {
    const p = named.get(name)!;
    hash.update(`${name}:${p.shape.join('x')};`);
    const values = (await p.data()) as Float32Array;
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return `sha256:${hash.digest('hex')}`;
}

/**
 * The teacher's logits for next-token prediction over a right-padded batch: `[B, T − 1, V]` (the
 * logits at positions 0 … T − 2, which predict tokens 1 … T − 1), outside any gradient tape.
 * The caller disposes the result.
 *
 * @example
 * ```ts
 * const logits = teacherLogits(teacher, batch.inputIds, batch.attentionMask); // [B, T − 1, V]
 * ```
 */
export function teacherLogits(teacher: CausalLM, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    const { logits } = teacher.forward(inputIds, { attentionMask });
    const [B, T, V] = logits.shape as [number, number, number];
    return tf.keep(tf.slice(logits, [0, 0, 0], [B, T - 1, V]) as tf.Tensor3D);
  });
}

/**
 * The teacher's `k` most likely next tokens and their log-probs (temperature 1) at each position of
 * a batch: `ids` int32 and `logprobs` float32, `[B, T − 1, k]`, as {@link teacherLogits} aligns them.
 *
 * @example
 * ```ts
 * const { ids, logprobs } = teacherTopK(teacher, batch.inputIds, batch.attentionMask, 16);
 * ```
 */
export function teacherTopK(teacher: CausalLM, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, k: number): { ids: tf.Tensor3D; logprobs: tf.Tensor3D } {
  return tf.tidy(() => {
    const logits = teacherLogits(teacher, inputIds, attentionMask);
    const { values, indices } = tf.topk(tf.logSoftmax(logits), k);
    return { ids: indices as tf.Tensor3D, logprobs: values as tf.Tensor3D };
  });
}
