// %% [markdown]
// # Quickstart: load, generate, LoRA SFT, save a PEFT adapter
//
// The tiny base this repository ships is a 90,688-parameter Llama pretrained on sorting strings
// (`dbca|` → `abcd`). Here it learns a task it has never seen — reversing strings, `abc>` → `cba` —
// with LoRA adapters, and the adapter is saved in PEFT's format.

// %%
import { initBackend } from '@posttrain/tensor-core';
import { generateSplit, loadTokenizer, reversalTask } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { saveAdapter } from '@posttrain/lora';
import { sftTrain } from '@posttrain/sft';
import { exactMatch } from '@posttrain/eval';
import { bars, curves, result, show } from './plots.ts';

const backend = await initBackend('wasm');
const model = await loadModel('../sft/tiny-base');
const tokenizer = await loadTokenizer('../sft/tiny-base');
console.log(`backend ${backend.name}; ${model.numParameters().toLocaleString('en')} parameters`);

// %% [markdown]
// The base sorts; asked to reverse, it does what it knows. 20,000 training examples and 100
// held-out prompts the training never sees:

// %%
const strings = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };
const { train, test } = generateSplit(reversalTask, 0, { train: 20_000, test: 100, taskOptions: strings, uniqueTrain: false });
const before = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
console.log(
  before.samples
    .slice(0, 4)
    .map((s) => `${s.prompt}${s.completion}`)
    .join('\n'),
);
console.log(`held-out exact match before: ${(before.accuracy * 100).toFixed(1)}%`);

// %% [markdown]
// LoRA (r 16 on every linear layer) for 300 steps; only the adapters train.

// %%
const run = await sftTrain({
  model,
  tokenizer,
  train: train.map((e) => reversalTask.toPromptCompletion(e)),
  lora: { r: 16, alpha: 32, targetModules: 'all-linear' },
  lr: 5e-3,
  schedule: 'cosine',
  warmupSteps: 20,
  batchSize: 32,
  maxSteps: 300,
  progress: 'none',
});
console.log(`${run.lora?.trainableParameters.toLocaleString('en')} trainable parameters; final loss ${run.history.at(-1)?.loss?.toFixed(3)}`);
await show(curves(run.history, 'SFT loss', ['loss']));

// %%
const after = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
console.log(
  after.samples
    .slice(0, 4)
    .map((s) => `${s.prompt}${s.completion}`)
    .join('\n'),
);
await show(bars('Held-out exact match (reversal)', { base: before.accuracy, 'after LoRA SFT': after.accuracy }));

// %% [markdown]
// The adapter in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`, loadable by
// `loadAdapter` here or by PEFT in Python.

// %%
const dir = await Deno.makeTempDir({ prefix: 'quickstart-adapter-' });
const files = await saveAdapter(model, dir);
console.log(files.join(', '));
await result({ before: before.accuracy, after: after.accuracy, files: files.join(',') });
