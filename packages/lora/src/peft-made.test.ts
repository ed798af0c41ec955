import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend, isPosttrainError, readSafetensors, tf } from '@posttrain/tensor-core';
import { loadModel, type PretrainedModel } from '@posttrain/models';
import { loadAdapter, loraAdapters, loraLayers, saveAdapter, withAdaptersDisabled } from './index.js';

// PEFT → posttrain: an adapter that Hugging Face PEFT itself made and saved on the demo's tiny
// base, with PEFT's logits on four prompts (scripts/reference/peft_roundtrip.py make-fixture:
// r 4, lora_alpha 8, q_proj/v_proj/up_proj, init_lora_weights=False so that B ≠ 0; versions in
// the fixture). Tolerance: max |ours − PEFT| ≤ 1e-4 absolute over every position and vocabulary
// entry, with |logits| ≤ 9.1 (float32 sums in another order; measured 4.5e-6 on cpu and 4.3e-6
// on wasm). Disabling the adapter moves the logits by up to 2.9, a scale of alpha/√r (4) instead of
// alpha/r (2) by 4.1, a scale 1% off by 0.05: all far outside the tolerance.
const TOL = 1e-4;
const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const ADAPTER = join(FIXTURES, 'peft-made-adapter');
const PISSA_ADAPTER = join(FIXTURES, 'peft-made-pissa-adapter');
const TINY_BASE = fileURLToPath(new URL('../../../examples/sft/tiny-base/', import.meta.url));

interface PeftFixture {
  versions: Record<string, string>;
  lora_config: { r: number; lora_alpha: number; target_modules: string[] };
  adapter_effect: number;
  prompts: { text: string; ids: number[]; logits: number[][] }[]; // logits [T][V]
  pissa: {
    lora_config: { r: number; lora_alpha: number; target_modules: string[]; init_lora_weights: string };
    /** How far the logits move when the base keeps W instead of PiSSA's residual. */
    base_left_alone_effect: number;
    prompts: { text: string; ids: number[]; last_logits: number[] }[]; // [V]
  };
}
const reference = JSON.parse(readFileSync(join(FIXTURES, 'peft_made_logits.json'), 'utf8')) as PeftFixture;
const TARGETS = [0, 1].flatMap((l) => [`model.layers.${l}.self_attn.q_proj`, `model.layers.${l}.self_attn.v_proj`, `model.layers.${l}.mlp.up_proj`]).sort();

/** Logits of each prompt run alone, each flattened [T·V]; no tensor outlives the call. */
function readLogits(model: PretrainedModel): Float32Array[] {
  return reference.prompts.map(({ ids }) => {
    const logits = tf.tidy(() => model.forward(tf.tensor2d([ids], [1, ids.length], 'int32')).logits); // [1, T, V]
    const values = logits.dataSync() as Float32Array;
    logits.dispose();
    return values;
  });
}

/** The safetensors header without data offsets: `__metadata__` and each tensor's dtype and shape. */
function header(file: string): Record<string, unknown> {
  const bytes = readFileSync(file);
  const json = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')) as Record<string, { data_offsets?: number[] }>;
  return Object.fromEntries(Object.entries(json).map(([key, { data_offsets: _, ...rest }]) => [key, rest]));
}

function worst(actual: Float32Array[]): number {
  let error = 0;
  reference.prompts.forEach(({ logits }, p) => {
    const vocab = logits[0].length;
    expect(actual[p].length, reference.prompts[p].text).toBe(logits.length * vocab);
    logits.forEach((row, t) => row.forEach((value, v) => (error = Math.max(error, Math.abs(actual[p][t * vocab + v] - value)))));
  });
  return error;
}

const dir = mkdtempSync(join(tmpdir(), 'posttrain-peft-made-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('the fixture is what the tests assume: byte ids, PEFT and torch versions, an adapter that matters', () => {
  for (const { text, ids } of reference.prompts) expect(ids).toEqual([...Buffer.from(text, 'utf8')]);
  expect(Object.keys(reference.versions).sort()).toEqual(['peft', 'safetensors', 'torch', 'transformers']);
  expect(reference.adapter_effect).toBeGreaterThan(1000 * TOL);
});

describe.each(['cpu', 'wasm'] as const)('an adapter made by PEFT, loaded on %s', (backend) => {
  let model: PretrainedModel | undefined;
  const loadedModel = () => model ?? expect.unreachable('the first test loads the model');
  let before = 0;
  let loaded = 0;

  afterAll(() => model?.dispose());

  it("parses PEFT's adapter_config.json: r 4, lora_alpha 8, q_proj, v_proj and up_proj of both layers, scale 2", async () => {
    await initBackend(backend);
    before = tf.memory().numTensors;
    const m = (model = await loadModel(TINY_BASE));
    const config = await loadAdapter(m, ADAPTER);
    loaded = tf.memory().numTensors;
    m.eval();
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0, use_rslora: false, init_lora_weights: false });
    expect([...(config.target_modules as string[])].sort()).toEqual(reference.lora_config.target_modules);
    expect(reference.lora_config).toMatchObject({ r: 4, lora_alpha: 8 });
    const layers = loraLayers(m);
    expect([...layers.keys()].sort()).toEqual(TARGETS);
    for (const layer of layers.values()) expect(layer.scaling('default')).toBe(2);
    expect(loraAdapters(m).get('default')).toMatchObject({ r: 4, alpha: 8, rsLora: false });
  });

  it(`gives PEFT's logits within ${TOL} on every prompt and position, leaving no tensor behind`, () => {
    const error = worst(readLogits(loadedModel()));
    expect(error).toBeLessThanOrEqual(TOL);
    expect(tf.memory().numTensors).toBe(loaded);
  });

  it('differs from PEFT by far more than the tolerance with the adapter disabled (the comparison has teeth)', () => {
    const m = loadedModel();
    const error = withAdaptersDisabled(m, () => worst(readLogits(m)));
    expect(error).toBeGreaterThan(0.5 * reference.adapter_effect);
    expect(tf.memory().numTensors).toBe(loaded);
  });

  it('saves it back as PEFT wrote it: the same header (format pt, keys, F32, shapes) and values, bit for bit', async () => {
    const out = join(dir, backend);
    await saveAdapter(loadedModel(), out);
    const theirsHeader = header(join(ADAPTER, 'adapter_model.safetensors'));
    expect(theirsHeader.__metadata__).toEqual({ format: 'pt' });
    expect(header(join(out, 'adapter_model.safetensors'))).toEqual(theirsHeader);
    const theirs = readSafetensors(readFileSync(join(ADAPTER, 'adapter_model.safetensors')));
    const ours = readSafetensors(readFileSync(join(out, 'adapter_model.safetensors')));
    for (const [key, t] of Object.entries(theirs)) expect(Array.from(ours[key].dataSync()), key).toEqual(Array.from(t.dataSync()));
    tf.dispose([...Object.values(theirs), ...Object.values(ours)]);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, target_modules: reference.lora_config.target_modules });
    expect(tf.memory().numTensors).toBe(loaded);
  });

  it('frees every tensor with the model', () => {
    loadedModel().dispose();
    model = undefined;
    expect(tf.memory().numTensors).toBe(before);
  });
});

// PiSSA (init_lora_weights "pissa"): PEFT saves only A and B, and when it loads the adapter it runs
// PiSSA on the fresh base again, leaving the residual W − scale·B₀A₀ the adapter was trained on. The
// fixture's B was moved after init, as training would; its logits are from PEFT's own reload.
// Measured 6.6e-6 on cpu and wasm; a loader that leaves W in the base misses by 0.89.
describe.each(['cpu', 'wasm'] as const)('a PiSSA adapter made by PEFT, loaded on %s', (backend) => {
  it(`puts PiSSA's residual in the base as PEFT does: last-position logits within ${TOL}`, async () => {
    await initBackend(backend);
    const { pissa } = reference;
    expect(pissa.base_left_alone_effect).toBeGreaterThan(1000 * TOL);
    const before = tf.memory().numTensors;
    const model = await loadModel(TINY_BASE);
    const config = await loadAdapter(model, PISSA_ADAPTER);
    model.eval();
    expect(config).toMatchObject({ r: 4, lora_alpha: 8, init_lora_weights: 'pissa' });
    expect(loraAdapters(model).get('default')).toMatchObject({ init: 'pissa' });
    let error = 0;
    for (const { ids, last_logits: expected } of pissa.prompts) {
      const last = tf.tidy(() => model.forward(tf.tensor2d([ids], [1, ids.length], 'int32')).logits.slice([0, ids.length - 1, 0], [1, 1, -1]));
      const values = last.dataSync();
      last.dispose();
      expected.forEach((value, v) => (error = Math.max(error, Math.abs(values[v] - value))));
    }
    expect(error).toBeLessThanOrEqual(TOL);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

it.each(['olora', 'corda', 'loftq', 'lora_ga'])('refuses an adapter with init_lora_weights %j, for which PEFT rewrites the base on load', async (init) => {
  await initBackend('cpu');
  const copy = join(dir, `init-${init}`);
  mkdirSync(copy, { recursive: true });
  copyFileSync(join(ADAPTER, 'adapter_model.safetensors'), join(copy, 'adapter_model.safetensors'));
  const config = JSON.parse(readFileSync(join(ADAPTER, 'adapter_config.json'), 'utf8'));
  writeFileSync(join(copy, 'adapter_config.json'), JSON.stringify({ ...config, init_lora_weights: init }));
  const model = await loadModel(TINY_BASE);
  const error = await loadAdapter(model, copy).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isPosttrainError(error) && error.code).toBe('NOT_SUPPORTED');
  expect((error as Error).message).toContain(`init_lora_weights "${init}"`);
  expect(loraLayers(model).size).toBe(0); // refused before any layer was wrapped
  model.dispose();
});
