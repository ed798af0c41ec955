// %% [markdown]
// # Distillation: a 5× smaller student
//
// The teacher sorts strings (`examples/distill/teacher`, 90,688 parameters). The student is a
// 1-layer Llama of hidden size 32 (18,656 parameters) trained from scratch on only 64 records, two
// ways at the same budget: SFT on the records' answers, and KD on the teacher's whole next-token
// distributions (Hinton's loss at temperature 8, mixed half and half with the answers' loss).

// %%
import { initBackend } from '@posttrain/tensor-core';
import { generateSplit, loadTokenizer, sortingTask } from '@posttrain/data';
import { createModel, loadModel } from '@posttrain/models';
import { sftTrain } from '@posttrain/sft';
import { distillTrain } from '@posttrain/distill';
import { exactMatch } from '@posttrain/eval';
import { bars, lines, result, show } from './plots.ts';

await initBackend('wasm');
const teacher = await loadModel('../distill/teacher');
teacher.freeze().eval();
const tokenizer = await loadTokenizer('../distill/teacher');
const strings = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };
const { train, test } = generateSplit(sortingTask, 0, { train: 64, test: 100, taskOptions: strings });
const records = train.map((e) => sortingTask.toPromptCompletion(e));
const student = () =>
  createModel(
    { modelType: 'llama', vocabSize: 260, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 2, maxPositions: 64, tieWordEmbeddings: true, eosTokenId: 258, padTokenId: 259 },
    { seed: 0 },
  );
const common = { tokenizer, train: records, batchSize: 32, lr: 2e-3, schedule: 'cosine', warmupSteps: 20, maxSteps: 500, progress: 'none' } as const;
const teacherEm = await exactMatch(teacher, tokenizer, sortingTask, test, { maxNewTokens: 8 });
console.log(`teacher: held-out exact match ${(teacherEm.accuracy * 100).toFixed(1)}%`);

// %%
const sftStudent = student();
const sftRun = await sftTrain({ ...common, model: sftStudent });
const kdStudent = student();
const kdRun = await distillTrain({ ...common, student: kdStudent, teacher, loss: 'hinton', temperature: 8, alpha: 0.5, lmbda: 0 });
const nll = (h: readonly Record<string, unknown>[], key: string) => h.filter((r) => typeof r[key] === 'number').map((r) => ({ step: r.step as number, value: r[key] as number }));
await show(
  lines('Training loss', [
    { name: 'SFT (cross-entropy)', points: nll(sftRun.history, 'loss') },
    { name: 'KD (Hinton + CE)', points: nll(kdRun.history, 'loss') },
  ]),
);

// %%
const sft = await exactMatch(sftStudent, tokenizer, sortingTask, test, { maxNewTokens: 8 });
const kd = await exactMatch(kdStudent, tokenizer, sortingTask, test, { maxNewTokens: 8 });
await show(bars('Held-out exact match (sorting)', { 'teacher (90,688)': teacherEm.accuracy, 'student, SFT': sft.accuracy, 'student, KD': kd.accuracy }));
await result({ teacher: teacherEm.accuracy, sft: sft.accuracy, kd: kd.accuracy });
