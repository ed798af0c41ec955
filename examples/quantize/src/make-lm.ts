// Remakes ../lm, the language model of the quantisation example:
// `npm run make-lm -w examples/quantize [-- --steps N --out DIR]` (wasm, fixed seed; ~15 minutes on two cores).
import { parseArgs } from 'node:util';
import { ByteTokenizer } from '@posttrain/data';
import { causalLmLoss } from '@posttrain/losses';
import { createModel, saveModel } from '@posttrain/models';
import { perplexity } from '@posttrain/policy';
import { AdamW, Rng, cosineSchedule, fileTarget, initBackend, runMain, tf } from '@posttrain/tensor-core';
import { train } from '@posttrain/trainer';
import { CONTEXT, LM_DIR, SLICE, corpusSplit, lmConfig, unigramBitsPerByte } from './lm.js';

const BATCH = 16;
const LR = 3e-3;
const WARMUP = 50;
const SEED = 0;

await runMain(async () => {
  const { values } = parseArgs({ options: { out: { type: 'string', default: LM_DIR }, steps: { type: 'string', default: '800' } } });
  const out = values.out as string;
  const steps = Number(values.steps);
  await initBackend('wasm');
  const t0 = performance.now();
  const tokenizer = new ByteTokenizer();
  const split = corpusSplit();
  const model = createModel(lmConfig(tokenizer), { seed: SEED });
  const parameters = [...model.namedParameters().values()].reduce((n, p) => n + p.size, 0);
  console.log(`${parameters.toLocaleString('en')} parameters; ${split.train.length.toLocaleString('en')} training bytes, ${split.heldOut.length.toLocaleString('en')} held out`);

  // Each micro-batch: BATCH windows of CONTEXT training bytes at uniformly drawn offsets.
  const rng = new Rng(SEED);
  function* windows(): Generator<tf.Tensor2D> {
    for (let s = 0; s < steps; s++) {
      const ids = new Int32Array(BATCH * CONTEXT);
      for (let b = 0; b < BATCH; b++) {
        const start = rng.int(split.train.length - CONTEXT + 1);
        ids.set(split.train.subarray(start, start + CONTEXT), b * CONTEXT);
      }
      const batch = tf.tensor2d(ids, [BATCH, CONTEXT], 'int32');
      yield batch;
      batch.dispose();
    }
  }

  const trainable = model.trainableParameters();
  const result = await train({
    model,
    parameters: trainable,
    optimizer: new AdamW(trainable, { lr: LR, weightDecay: 0.01 }),
    schedule: cosineSchedule({ lr: LR, warmupSteps: Math.min(WARMUP, steps - 1), totalSteps: steps }),
    batches: windows(),
    maxSteps: steps,
    maxGradNorm: 1,
    seed: SEED,
    progress: 'none',
    step: (inputIds) => {
      const { logits } = model.forward(inputIds);
      const { lossSum, tokens } = causalLmLoss(logits, inputIds, { reduction: 'sum' });
      return { lossSum, tokens };
    },
    callbacks: {
      onStep: (r) => {
        if (r.step % 50 === 0 || r.step === steps || r.step <= 3) console.log(`step ${r.step}: loss ${r.loss?.toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      },
    },
  });
  const trainSeconds = (performance.now() - t0) / 1000;

  const full = await perplexity(model, split.heldOut, { contextLength: CONTEXT, stride: CONTEXT, batchSize: 16 });
  const slice = await perplexity(model, split.heldOut.subarray(0, SLICE), { contextLength: CONTEXT, stride: CONTEXT, batchSize: 16 });
  const bpb = full.nll / Math.LN2;
  const unigram = unigramBitsPerByte(split);
  console.log(
    `held out: perplexity ${full.perplexity.toFixed(4)} (${bpb.toFixed(4)} bits/byte over ${full.tokens} bytes; unigram ${unigram.toFixed(4)} bits/byte); ` +
      `first ${SLICE} bytes: perplexity ${slice.perplexity.toFixed(6)}`,
  );
  console.log(
    `figures: steps ${result.steps}, parameters ${parameters}, heldOutPerplexity ${full.perplexity}, heldOutBitsPerByte ${bpb}, unigramBitsPerByte ${unigram}, slicePerplexity ${slice.perplexity}, trainSeconds ${trainSeconds.toFixed(0)}`,
  );

  await saveModel(model, out);
  const target = fileTarget(out);
  for (const [name, text] of Object.entries(tokenizer.toHuggingFaceFiles())) await target.write(name, `${text}\n`);
  await target.write(
    'README.md',
    `# lm: the language model of the quantisation example

A ${parameters.toLocaleString('en')}-parameter byte-level Llama (hidden 128, 4 layers, 4 query heads over 2
key/value heads, SwiGLU 384, RoPE, tied embeddings; the byte tokenizer, 260 tokens; context ${CONTEXT}),
pretrained here from a random initialisation (seed ${SEED}) on the first 90% of ../corpus/tinyshakespeare.txt
(Shakespeare, public domain; see ../corpus/README.md). Made by \`npm run make-lm -w examples/quantize\`
(src/make-lm.ts) on wasm, two CPU cores: ${result.steps} steps of the posttrain trainer, each a batch of
${BATCH} windows of ${CONTEXT} bytes drawn uniformly from the training bytes (${(result.steps * BATCH * CONTEXT).toLocaleString('en')} bytes seen,
${((result.steps * BATCH * CONTEXT) / split.train.length).toFixed(2)} passes), next-byte cross-entropy, AdamW lr ${LR} (weight decay 0.01), cosine after
${WARMUP} warm-up steps, gradient norm clipped at 1; last training loss ${result.loss.toFixed(4)} nats/byte; ${trainSeconds.toFixed(0)} s.

Measured by \`perplexity\` (@posttrain/policy; disjoint windows of ${CONTEXT}, stride ${CONTEXT}) on the last 10%
of the corpus (${split.heldOut.length.toLocaleString('en')} bytes), which no model here trains on:

| model | held-out perplexity (per byte) | bits per byte |
| --- | --- | --- |
| unigram (byte frequencies of the training split, add-one) | ${(2 ** unigram).toFixed(2)} | ${unigram.toFixed(4)} |
| this model | ${full.perplexity.toFixed(4)} | ${bpb.toFixed(4)} |

(${full.tokens.toLocaleString('en')} bytes scored: a window's first byte has no context and is not.) On the first
${SLICE} held-out bytes, which the example's test measures, its perplexity is ${slice.perplexity.toFixed(6)}.

Files, in Hugging Face layout: \`config.json\`, \`model.safetensors\` (F32), and the byte tokenizer's
\`tokenizer.json\` + \`tokenizer_config.json\`; \`loadLm()\` in src/lm.ts loads them frozen and in eval mode.
`,
  );
  model.dispose();
  console.log(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
