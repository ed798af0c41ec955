// Remakes ../tiny-base: `npm run make-base -w examples/sft` (about 30–40 s on an idle 2-core machine, wasm).
import { ByteTokenizer } from '@posttrain/data';
import { fileTarget, initBackend, runMain } from '@posttrain/tensor-core';
import { saveModel } from '@posttrain/models';
import { makeTinyBase, TINY_BASE_DIR } from './tiny-base.js';

await runMain(async () => {
  await initBackend('wasm');
  const base = await makeTinyBase({ log: console.log });
  const dir = process.argv[2] ?? TINY_BASE_DIR;
  await saveModel(base.model, dir);
  // The byte tokenizer as Hugging Face files, so loadTokenizer(dir) reads it like any model's.
  const target = fileTarget(dir);
  for (const [name, text] of Object.entries(new ByteTokenizer().toHuggingFaceFiles())) await target.write(name, `${text}\n`);
  console.log(`wrote ${dir} (loss ${base.loss.toFixed(3)}, ${base.seconds.toFixed(1)} s)`);
});
