// %% [markdown]
// # Compression: quantisation and pruning
//
// The sorting teacher of the distillation example (`examples/distill/teacher`) answers `dbca|` with
// `abcd`. Each compressed copy is measured on 100 held-out prompts: exact match, and the perplexity
// of the right answers.

// %%
import { initBackend, type CausalLM } from '@posttrain/tensor-core';
import { generateSplit, loadTokenizer, sortingTask } from '@posttrain/data';
import { loadModel, saveModel } from '@posttrain/models';
import { quantizeModel } from '@posttrain/quantize';
import { pruneModel, sparsityReport } from '@posttrain/prune';
import { exactMatch, recordsPerplexity } from '@posttrain/eval';
import { bars, result, show, table } from './plots.ts';

await initBackend('wasm');
const dir = '../distill/teacher';
const tokenizer = await loadTokenizer(dir);
const strings = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };
const { train, test } = generateSplit(sortingTask, 0, { train: 64, test: 100, taskOptions: strings });
const records = test.map((e) => sortingTask.toPromptCompletion(e));
const calibration = [train.slice(0, 32), train.slice(32)].map((part) => part.map((e) => [...tokenizer.encode(e.prompt + e.answer), tokenizer.eosTokenId as number]));

async function measure(name: string, model: CausalLM, bytes: string) {
  const em = await exactMatch(model, tokenizer, sortingTask, test, { maxNewTokens: 8 });
  const { perplexity } = await recordsPerplexity(model, tokenizer, records);
  return { name, bytes, exactMatch: em.accuracy, perplexity };
}

// %%
const rows = [await measure('float32', await loadModel(dir), '294,912')];
for (const scheme of ['int8', 'int4', 'nf4'] as const) {
  const model = await loadModel(dir);
  const summary = await quantizeModel(model, scheme === 'int4' ? { scheme, groupSize: 32 } : { scheme });
  rows.push(await measure(scheme === 'int4' ? 'int4 (groups of 32)' : scheme, model, summary.quantizedBytes.toLocaleString('en')));
}
for (const method of ['magnitude', 'wanda', 'sparsegpt'] as const) {
  const model = await loadModel(dir);
  await pruneModel(model, method === 'magnitude' ? undefined : calibration, { method, sparsity: 0.5 });
  const files = new Map<string, Uint8Array>();
  await saveModel(model, files);
  rows.push(await measure(`${method} 50%`, model, `${(sparsityReport(model).layerSparsity * 100).toFixed(0)}% zeros`));
}
await show(
  table(
    ['model', 'linear-layer bytes', 'exact match', 'answer perplexity'],
    rows.map((r) => [r.name, r.bytes, r.exactMatch, r.perplexity]),
  ),
);

// %%
await show(bars('Held-out exact match', Object.fromEntries(rows.map((r) => [r.name, r.exactMatch]))));
await result(Object.fromEntries(rows.map((r) => [r.name, r.exactMatch])));
