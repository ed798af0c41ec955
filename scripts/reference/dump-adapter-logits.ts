// Logits of the tiny base with a PEFT adapter, computed by posttrain, for peft_roundtrip.py to
// compare with PEFT's. Run from the repository root:
//
//   npx tsx --conditions=@posttrain/source scripts/reference/dump-adapter-logits.ts ADAPTER_DIR OUT.json [--backend cpu|wasm] [--base DIR]
//
// Writes { backend, base, adapter, config, prompts: [{ text, ids, logits [T][V] }] }: each prompt
// run alone (no padding) through loadModel(base) + loadAdapter(adapter), in eval mode.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ByteTokenizer } from '@posttrain/data';
import { loadAdapter } from '@posttrain/lora';
import { loadModel } from '@posttrain/models';
import { initBackend, tf } from '@posttrain/tensor-core';

/** The prompts both sides run: byte ids of reversal prompts as the demo writes them. */
const PROMPTS = ['abc>', 'hgfe>', 'dcba>', 'aab>'];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { backend: { type: 'string', default: 'cpu' }, base: { type: 'string', default: 'examples/sft/tiny-base' } },
});
if (positionals.length !== 2) {
  throw new Error(`dump-adapter-logits: expected ADAPTER_DIR OUT.json; got ${positionals.length} positional arguments (${positionals.join(' ')})`);
}
const [adapter, out] = positionals;
const backend = values.backend;
if (backend !== 'cpu' && backend !== 'wasm') throw new Error(`--backend: expected cpu or wasm; got ${backend}`);

await initBackend(backend);
const tokenizer = new ByteTokenizer();
const model = await loadModel(values.base);
const config = await loadAdapter(model, adapter);
model.eval();
const prompts = PROMPTS.map((text) => {
  const ids = tokenizer.encode(text);
  const logits = tf.tidy(() => tf.squeeze(model.forward(tf.tensor2d([ids], [1, ids.length], 'int32')).logits, [0]));
  const rows = logits.arraySync() as number[][]; // [T, V]
  logits.dispose();
  return { text, ids, logits: rows };
});
writeFileSync(out, `${JSON.stringify({ backend, base: values.base, adapter, config, prompts })}\n`);
model.dispose();
console.log(`wrote ${out}: ${prompts.length} prompts, vocab ${prompts[0].logits[0].length}, backend ${backend}`);
