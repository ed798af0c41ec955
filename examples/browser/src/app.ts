// The page: loads the tiny base served beside it, shows its answers, fine-tunes a LoRA adapter on
// WebGPU (wasm when WebGPU is missing, said on the page) with a live loss chart, shows the answers
// after, and offers the adapter in PEFT's format. URL parameters: backend (auto | webgpu | wasm),
// steps, heldout, snapshot (steps between adapter snapshots), model (directory URL), autostart.
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { fileTarget, initBackend, tf, type BackendInfo, type CausalLM } from '@posttrain/tensor-core';
import { collateForTraining, generateSplit, loadTokenizer, reversalTask, tokenizePromptCompletion, type Tokenizer } from '@posttrain/data';
import { loadModel } from '@posttrain/models';
import { saveAdapter } from '@posttrain/lora';
import { sftTrain } from '@posttrain/sft';
import { exactMatch } from '@posttrain/eval';

/** What the page exposes as `window.posttrain`, for people in the console and for the test. */
export interface PageState {
  state: 'loading' | 'ready' | 'training' | 'done' | 'error';
  backend?: BackendInfo['name'];
  adapter?: string;
  /** Why the page is not on WebGPU, when it is not. */
  fallback?: string;
  before?: Scores;
  after?: Scores;
  losses: number[];
  snapshots: number[];
  error?: string;
}

/** Held-out figures: greedy exact match, and the teacher-forced accuracy of the answers' tokens. */
export interface Scores {
  exactMatch: number;
  tokenAccuracy: number;
}

const params = new URLSearchParams(location.search);
const number = (name: string, fallback: number) => {
  const value = Number(params.get(name) ?? fallback);
  return Number.isFinite(value) && value >= 0 ? Math.floor(value) : fallback;
};
const settings = {
  backend: params.get('backend') ?? 'auto',
  steps: Math.max(1, number('steps', 300)),
  heldOut: Math.max(1, number('heldout', 50)),
  snapshotEvery: number('snapshot', 100),
  model: new URL(params.get('model') ?? './tiny-base/', location.href).href,
  autostart: params.get('autostart') === '1',
};
const STRINGS = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };
const page: PageState = { state: 'loading', losses: [], snapshots: [] };
(window as unknown as { posttrain: PageState }).posttrain = page;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const percent = (x: number) => `${(x * 100).toFixed(1)}%`;

function status(text: string): void {
  $('status').textContent = text;
}

function fail(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  page.state = 'error';
  page.error = message;
  const box = $('error');
  box.textContent = `Something went wrong: ${message}`;
  box.style.display = 'block';
  status('stopped');
}

/** WebGPU when it starts (any adapter when asked for by name; a hardware one for auto), else wasm with the reason on the page. */
async function startBackend(): Promise<BackendInfo> {
  setWasmPaths(new URL('./', location.href).href);
  let reason: string | undefined;
  if (settings.backend !== 'wasm') {
    if (!('gpu' in navigator)) reason = 'this browser has no WebGPU (navigator.gpu is missing)';
    else {
      try {
        const info = await initBackend(settings.backend === 'webgpu' ? 'webgpu' : 'auto');
        if (info.name === 'webgpu') return info;
        reason = 'no hardware WebGPU adapter was found';
      } catch (error) {
        reason = `WebGPU did not start: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
      }
    }
  }
  const info = await initBackend('wasm');
  if (reason) {
    page.fallback = reason;
    $('backend-note').textContent = `— ${reason}; training on WebAssembly instead (slower).`;
  }
  return info;
}

/** Fraction of answer tokens (and EOS) the model predicts right with the true prefix fed in. */
async function tokenAccuracy(model: CausalLM, tokenizer: Tokenizer, records: { prompt: string; completion: string }[]): Promise<number> {
  const examples = records.map((r) => tokenizePromptCompletion(tokenizer, r));
  const batch = collateForTraining(examples, { padTokenId: tokenizer.eosTokenId ?? 0 });
  const counts = tf.tidy(() => {
    const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
    const T = batch.labels.shape[1];
    const predicted = tf.argMax(tf.slice(logits, [0, 0, 0], [-1, T - 1, -1]), -1); // predicts position t + 1
    const target = tf.slice(batch.labels, [0, 1], [-1, T - 1]);
    const scored = tf.notEqual(target, tf.scalar(-100, 'int32'));
    const right = tf.logicalAnd(scored, tf.equal(predicted, target));
    return tf.stack([tf.sum(tf.cast(right, 'float32')), tf.sum(tf.cast(scored, 'float32'))]);
  });
  const [right, total] = await counts.data();
  tf.dispose([counts, batch.inputIds, batch.attentionMask, batch.labels]);
  return right / total;
}

/** Draws the loss curve so far. */
function drawChart(losses: number[], steps: number): void {
  const svg = $('chart') as unknown as SVGSVGElement;
  const [W, H, left, bottom, top] = [420, 220, 40, 24, 10];
  const max = Math.max(...losses, 1e-6);
  const x = (i: number) => left + ((W - left - 10) * i) / Math.max(1, steps - 1);
  const y = (v: number) => top + (H - top - bottom) * (1 - v / max);
  const points = losses.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  svg.innerHTML =
    `<line x1="${left}" y1="${H - bottom}" x2="${W - 10}" y2="${H - bottom}" stroke="#8a94a3"/>` +
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="#8a94a3"/>` +
    `<text x="${left - 4}" y="${top + 8}" font-size="11" text-anchor="end" fill="#5b6675">${max.toFixed(2)}</text>` +
    `<text x="${left - 4}" y="${H - bottom}" font-size="11" text-anchor="end" fill="#5b6675">0</text>` +
    `<text x="${W - 10}" y="${H - 6}" font-size="11" text-anchor="end" fill="#5b6675">step ${steps}</text>` +
    `<polyline id="loss-line" fill="none" stroke="#1f6feb" stroke-width="2" points="${points}"/>`;
}

/** The adapter's files as download links (blob URLs made from complete files, so a link is never half a file). */
async function adapterLinks(model: CausalLM, label: string, idPrefix?: string): Promise<HTMLElement> {
  const files = new Map<string, Uint8Array>();
  await saveAdapter(model as never, fileTarget(files), { baseModelNameOrPath: 'tiny-base' });
  const span = document.createElement('span');
  span.append(`${label}: `);
  for (const [name, bytes] of files) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([bytes as BlobPart]));
    a.download = name;
    a.textContent = name;
    if (idPrefix) a.id = `${idPrefix}-${name.replace(/\W+/g, '-')}`;
    span.append(a);
  }
  return span;
}

async function main(): Promise<void> {
  const info = await startBackend();
  page.backend = info.name;
  page.adapter = info.adapter;
  $('backend').textContent = info.name === 'webgpu' ? `WebGPU${info.adapter ? ` (${info.adapter})` : ''}` : info.name === 'wasm' ? 'WebAssembly' : info.name;

  status(`loading the model from ${settings.model}…`);
  const model = await loadModel(settings.model);
  const tokenizer = await loadTokenizer(settings.model);
  const { train, test } = generateSplit(reversalTask, 0, { train: 20_000, test: settings.heldOut, taskOptions: STRINGS, uniqueTrain: false });
  const heldOut = test.map((e) => reversalTask.toPromptCompletion(e));

  const measure = async (): Promise<{ scores: Scores; answers: string[] }> => {
    const em = await exactMatch(model, tokenizer, reversalTask, test, { maxNewTokens: 8 });
    return { scores: { exactMatch: em.accuracy, tokenAccuracy: await tokenAccuracy(model, tokenizer, heldOut) }, answers: em.samples.map((s) => s.completion) };
  };
  status('answering the held-out prompts…');
  const before = await measure();
  page.before = before.scores;
  const rows = test.slice(0, 8).map((e, i) => {
    const tr = document.createElement('tr');
    tr.innerHTML = `<td></td><td class="wrong"></td><td></td>`;
    tr.cells[0].textContent = e.prompt;
    tr.cells[1].textContent = before.answers[i] || '∅';
    $('answers').querySelector('tbody')?.append(tr);
    return tr;
  });
  $('scores').textContent = `Before: exact match ${percent(before.scores.exactMatch)}, answer-token accuracy ${percent(before.scores.tokenAccuracy)} on ${test.length} held-out prompts.`;

  page.state = 'ready';
  status(`ready: ${settings.steps} LoRA steps on ${train.length.toLocaleString('en')} reversal examples`);
  const button = $<HTMLButtonElement>('train');
  button.disabled = false;
  await new Promise<void>((resolve) => {
    button.addEventListener('click', () => resolve(), { once: true });
    if (settings.autostart) resolve();
  });
  button.disabled = true;

  page.state = 'training';
  const progress = $<HTMLProgressElement>('progress');
  progress.max = settings.steps;
  const started = performance.now();
  $('snapshots').textContent = '';
  await sftTrain({
    model,
    tokenizer,
    train: train.map((e) => reversalTask.toPromptCompletion(e)),
    lora: { r: 16, alpha: 32, targetModules: 'all-linear' },
    lr: 5e-3,
    schedule: 'cosine',
    warmupSteps: Math.min(20, Math.floor(settings.steps / 5)),
    batchSize: 32,
    maxSteps: settings.steps,
    seed: 0,
    progress: 'none',
    logEvery: 1,
    callbacks: {
      onStep: async (record) => {
        page.losses.push(Number(record.loss));
        drawChart(page.losses, settings.steps);
        progress.value = record.step;
        const seconds = (performance.now() - started) / 1000;
        $('step').textContent = `step ${record.step}/${settings.steps} · loss ${Number(record.loss).toFixed(3)} · ${seconds.toFixed(1)} s`;
        if (settings.snapshotEvery > 0 && record.step % settings.snapshotEvery === 0 && record.step < settings.steps) {
          $('snapshots').append(await adapterLinks(model, `step ${record.step}`), document.createElement('br'));
          page.snapshots.push(record.step);
        }
      },
    },
  });

  status('answering the held-out prompts again…');
  const after = await measure();
  page.after = after.scores;
  rows.forEach((tr, i) => {
    tr.cells[2].textContent = after.answers[i] || '∅';
    tr.cells[2].className = reversalTask.verify(test[i], after.answers[i]).correct ? 'right' : 'wrong';
  });
  $('scores').textContent += ` After: exact match ${percent(after.scores.exactMatch)}, answer-token accuracy ${percent(after.scores.tokenAccuracy)}.`;
  $('downloads').textContent = '';
  $('downloads').append(await adapterLinks(model, 'trained adapter', 'download'));
  status(`done: ${settings.steps} steps in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  page.state = 'done';
}

main().catch(fail);
