// Remakes ../teacher, the teacher of the distillation example:
// `npm run make-teacher -w examples/distill [-- --out DIR]` (wasm, fixed seed: the same bytes every run).
import { parseArgs } from 'node:util';
import { ByteTokenizer, sortingTask } from '@posttrain/data';
import { fileTarget, initBackend, runMain } from '@posttrain/tensor-core';
import { loadModel, saveModel } from '@posttrain/models';
import { sftTrain } from '@posttrain/sft';
import { measureSorting } from './measure.js';
import { HELD_OUT, TEACHER_DIR, TEACHER_FIGURES, TINY_BASE_DIR, sortingSplit } from './teacher.js';

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

await runMain(async () => {
  const { values } = parseArgs({ options: { out: { type: 'string', default: TEACHER_DIR } } });
  const out = values.out as string;
  await initBackend('wasm');
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const { train, test } = sortingSplit(TEACHER_FIGURES.trainExamples);
  const model = await loadModel(TINY_BASE_DIR);
  const base = await measureSorting(model, tokenizer, test);
  const result = await sftTrain({
    model,
    tokenizer,
    train: train.map((e) => sortingTask.toPromptCompletion(e)),
    lr: 1e-3,
    schedule: 'cosine',
    warmupSteps: 20,
    batchSize: 32,
    maxSteps: TEACHER_FIGURES.steps,
    seed: 0,
    progress: 'none',
  });
  const after = await measureSorting(model, tokenizer, test);
  const parameters = [...model.namedParameters().values()].reduce((n, p) => n + p.size, 0);
  console.log(
    `teacher: ${result.steps} full fine-tuning steps (last loss ${result.loss.toFixed(4)}); ${parameters.toLocaleString('en')} parameters; ` +
      `held-out exact match ${pct(base.accuracy)} → ${pct(after.accuracy)} (${after.correct}/${after.total}), cross-entropy of the right answers ${base.crossEntropy.toFixed(4)} → ${after.crossEntropy.toFixed(4)} nats/token`,
  );
  await saveModel(model, out);
  const target = fileTarget(out);
  for (const [name, text] of Object.entries(tokenizer.toHuggingFaceFiles())) await target.write(name, `${text}\n`);
  await target.write(
    'README.md',
    `# teacher: the teacher of the distillation example

examples/sft's tiny base (a ${parameters.toLocaleString('en')}-parameter Llama: hidden 64, 2 layers, 4 query heads over 2
key/value heads, SwiGLU 128, RoPE, tied embeddings; the byte tokenizer, 260 tokens), pretrained here on
sorting text such as \`dbca|abcd\\n\`, then fine-tuned here to answer sorting prompts in TRL's
prompt-completion form: \`dbca|\` → \`abcd\` followed by EOS, where the pretrained base wrote a newline
and ran on. Made by \`npm run make-teacher -w examples/distill\` (src/make-teacher.ts): ${result.steps} steps of
\`sftTrain\`, every weight trained, AdamW lr 1e-3, cosine after 20 warm-up steps, batch 32, seed 0,
completion-only loss, on the ${train.length.toLocaleString('en')} training prompts of \`sortingSplit(${train.length})\` (src/teacher.ts:
\`generateSplit(sortingTask, 0, …)\`, strings of 3–4 of the letters a–h, repeats allowed).

On the ${HELD_OUT} held-out prompts (the ones examples/sft held out of the base's pretraining; no model of
this example trains on them):

| measure | tiny base | teacher |
| --- | --- | --- |
| greedy exact match (\`exactMatch\`, maxNewTokens 8) | ${pct(base.accuracy)} (${base.correct}/${base.total}) | ${pct(after.accuracy)} (${after.correct}/${after.total}) |
| cross-entropy of the right answers + EOS, nats/token | ${base.crossEntropy.toFixed(4)} | ${after.crossEntropy.toFixed(4)} |

The base's exact match counts its answers right because \`exactMatch\` trims the trailing newline; its
cross-entropy shows it does not end them with EOS.

## What the students learn from it

The example (src/example.ts, \`npm start -w examples/distill\`) trains a Llama of 1 layer and hidden
size 32 (2 heads, SwiGLU 64; 18,656 parameters), created from a seed, on the 64 training records
of \`sortingSplit(64)\`, 1,000 steps of batch 32 at AdamW lr 2e-3 (cosine, 20 warm-up steps)
for every method, and measures it on the same ${HELD_OUT} held-out prompts (wasm, two cores):

| seed | SFT on the answers | offline KD (Hinton, T 8, α 0.5) | on-policy GKD (λ 0.75, sampling T 1.2) |
| --- | --- | --- | --- |
| 0 | 49.0% (CE 0.80) | 56.0% (CE 0.60) | 65.5% (CE 0.30) |
| 1 | 41.0% (CE 1.02) | 38.0% (CE 1.15) | 59.0% (CE 0.40) |
| 2 | 43.0% (CE 0.77) | 55.0% (CE 0.61) | 54.5% (CE 0.44) |

(held-out greedy exact match; CE: cross-entropy of the right answers, nats/token). Training takes
~14 s for SFT, ~27 s for KD and ~33 s for GKD. On the records' own tokens this teacher is all but
one-hot, so offline KD at T 1 gets SFT's labels back (47% on seed 0); at T 8 its ranking of the
letters it did not pick shows through and KD gains on two seeds of three. On the student's own
samples of the same 64 prompts it labels states the records never show, which is where
distillation gains on every seed.

Files, in Hugging Face layout: \`config.json\`,
\`model.safetensors\` (F32), and the byte tokenizer's \`tokenizer.json\` + \`tokenizer_config.json\`;
\`loadTeacher()\` in src/teacher.ts loads them frozen and in eval mode. Remaking gives the same bytes on wasm.
`,
  );
  model.dispose();
  console.log(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
