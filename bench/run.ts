// Benchmarks per backend: training steps (forward + backward + AdamW) of a tiny GPT, and, through
// @posttrain/models, the forward pass of a ~30M-parameter Llama and decoding with and without the
// KV cache; and (suite dpo) an SFT step beside DPO steps on one tiny Llama, with their peak memory.
//
//   npm run bench                                   # every backend this machine has
//   npm run bench -- --backends wasm --shapes tiny  # a subset
//   npm run bench -- --webgpu-software              # include a software WebGPU adapter (slow)
//   npm run bench -- --backends wasm --wasm-stock-matmul  # baseline: tfjs-wasm's own matmul kernels
//   npm run bench -- --backends cpu --merge         # keep the other runs already in the output file
//   npm run bench -- --suites decode,forward        # only these suites (default: train everywhere;
//                                                   # decode, forward and dpo except on cpu and software GPUs)
//   npm run bench -- --backends wasm --suites dpo   # LoRA SFT vs DPO steps (adapters-disabled, frozen
//                                                   # copy, precomputed): ms/step and peak numBytes
//   npm run bench -- --backends wasm --suites rl    # a GRPO step split into generation, reward, scoring
//                                                   # and update ms; rollout tokens/s; peak numBytes
//   npm run bench -- --backends wasm --suites quantize --merge  # the Shakespeare LM per scheme (bytes,
//                                                   # ppl, forward, KV decode); LoRA vs QLoRA steps
//   npm run bench -- --backends wasm --suites prune --merge  # the Shakespeare LM pruned per criterion and
//                                                   # pattern (time, ppl); 25% of MLP channels (time, forward)
//   npm run bench -- --backends wasm --suites real --merge   # SmolLM2-135M's shapes (random weights): LoRA step
//                                                   # 4x256 with peak memory, forward 1x512, KV decode at batch
//                                                   # 1 and 8, each beside PyTorch's in the same run (--no-torch: ours only)
//
// Writes bench/results/latest.json: { machine, runs: [{ name, backend, shape, msPerStep, tokensPerSec, ... }] }.
// Timings are medians over the measured steps, after warm-up steps that are not counted.
import { cpus, totalmem } from 'node:os';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdamW, Rng, initBackend, runMain, tf, valueAndGrads, type BackendInfo } from '@posttrain/tensor-core';
import { TinyGpt, type TinyGptConfig } from '../packages/tensor-core/src/testing/tiny-gpt.js';
import { installWasmKernels } from '../packages/tensor-core/src/wasm-kernels.js';
import { benchDecode, benchForward } from './models.js';
import { benchPreference } from './preference.js';
import { benchPrune } from './prune.js';
import { benchQuantize } from './quantize.js';
import { benchReal } from './real.js';
import { benchRl } from './rl.js';
import { median, timeSteps, type Run } from './timing.js';

interface Shape extends TinyGptConfig {
  batch: number;
  seq: number;
}

const shapes: Record<string, Shape> = {
  tiny: { vocabSize: 256, hiddenSize: 128, numHeads: 4, numLayers: 2, maxPositions: 64, seq: 64, batch: 8 },
  vocab32k: { vocabSize: 32000, hiddenSize: 256, numHeads: 4, numLayers: 2, maxPositions: 128, seq: 128, batch: 4 },
};

function parseArgs(argv: string[]): {
  backends: string[];
  shapes: string[];
  suites: string[] | undefined;
  webgpuSoftware: boolean;
  stockMatMul: boolean;
  merge: boolean;
  noTorch: boolean;
  out: string;
  seconds: number;
} {
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const here = dirname(fileURLToPath(import.meta.url));
  return {
    backends: (get('--backends') ?? 'wasm,cpu,webgpu').split(','),
    shapes: (get('--shapes') ?? 'tiny,vocab32k').split(','),
    suites: get('--suites')?.split(','),
    webgpuSoftware: argv.includes('--webgpu-software'),
    stockMatMul: argv.includes('--wasm-stock-matmul'),
    merge: argv.includes('--merge'),
    noTorch: argv.includes('--no-torch'),
    out: get('--out') ?? join(here, 'results', 'latest.json'),
    seconds: Number(get('--seconds') ?? 20),
  };
}

/** Steps to warm up and measure: slow backends get fewer, bounded by a time budget. */
async function measure(shapeName: string, shape: Shape, budgetSeconds: number): Promise<{ ms: number[]; loss: number; warmup: number }> {
  const model = new TinyGpt(shape, 0);
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-3 });
  const rng = new Rng(1);
  const ids = tf.tensor(
    Array.from({ length: shape.batch * shape.seq }, () => rng.int(shape.vocabSize)),
    [shape.batch, shape.seq],
    'int32',
  );
  let loss = NaN;
  const step = async (): Promise<number> => {
    const t0 = performance.now();
    const { value, grads } = valueAndGrads(() => model.loss(ids), optimizer.params);
    optimizer.step(grads);
    loss = (await value.data())[0]; // waits for the device (dataSync is unavailable on WebGPU in Node)
    value.dispose();
    tf.dispose([...grads.values()]);
    return performance.now() - t0;
  };
  const { ms, warmup } = await timeSteps(step, budgetSeconds);
  optimizer.dispose();
  model.dispose();
  ids.dispose();
  void shapeName;
  return { ms, loss, warmup };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  // Without a GPU, Dawn can use SwiftShader's Vulkan driver (Debian's chromium package ships it);
  // Vulkan reads this variable at the first adapter search.
  const swiftShader = '/usr/lib/chromium/vk_swiftshader_icd.json';
  if (args.stockMatMul) {
    await import('@tensorflow/tfjs-backend-wasm');
    installWasmKernels({ fastMatMul: false }); // initBackend's own call is then a no-op
  }
  if (args.webgpuSoftware && process.env.VK_ICD_FILENAMES === undefined && existsSync(swiftShader)) process.env.VK_ICD_FILENAMES = swiftShader;
  const runs: Run[] = [];
  const backendsSeen: Record<string, BackendInfo> = {};
  for (const backend of args.backends) {
    let info: BackendInfo;
    try {
      info = await initBackend(backend as 'wasm' | 'cpu' | 'webgpu');
    } catch (e) {
      console.log(`skip ${backend}: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    if (info.name === 'webgpu' && info.softwareAdapter && !args.webgpuSoftware) {
      console.log(`skip webgpu: adapter "${info.adapter}" is software; pass --webgpu-software to measure it`);
      continue;
    }
    backendsSeen[backend] = info;
    const report = (run: Run): void => {
      const rounded = { ...run, msPerStep: round(run.msPerStep), tokensPerSec: round(run.tokensPerSec), ...(info.adapter ? { adapter: info.adapter } : {}) };
      runs.push(rounded);
      const memory =
        run.peakBytes === undefined
          ? ''
          : `  peak ${(run.peakBytes / 2 ** 20).toFixed(2)} MiB${run.peakOverSft === undefined ? '' : ` (${run.peakOverSft.toFixed(2)}× SFT)`}, weights ${((run.weightBytes ?? 0) / 2 ** 20).toFixed(2)} MiB`;
      const parts = run.generationMs === undefined ? '' : `  generation ${run.generationMs} ms, rewards ${run.rewardMs} ms, scoring ${run.scoringMs} ms, update ${run.updateMs} ms`;
      const scored = run.perplexity === undefined ? '' : `  ppl ${run.perplexity}`;
      const versus = run.vsTorch === undefined ? '' : `  PyTorch ${run.torchMsPerStep?.toFixed(1)} ms (${run.vsTorch.toFixed(2)}×)`;
      console.log(
        `${rounded.name.padEnd(40)} ${rounded.msPerStep.toFixed(1).padStart(9)} ms/step ${rounded.tokensPerSec.toFixed(0).padStart(8)} tokens/s  (${rounded.steps} steps)${memory}${parts}${scored}${versus}`,
      );
    };
    // The slow backends (plain JS, software GPUs) run the model suites only when asked by name.
    const slow = info.name === 'cpu' || info.softwareAdapter === true;
    const suites = args.suites ?? (slow ? ['train'] : ['train', 'decode', 'forward', 'dpo']);
    if (suites.includes('forward')) report(await benchForward(info.name, args.seconds));
    if (suites.includes('decode')) {
      report(await benchDecode(info.name, args.seconds, true));
      report(await benchDecode(info.name, args.seconds, false));
    }
    if (suites.includes('dpo')) for (const run of await benchPreference(info.name, args.seconds)) report(run);
    if (suites.includes('rl')) for (const run of await benchRl(info.name, args.seconds)) report(run);
    if (suites.includes('quantize')) for (const run of await benchQuantize(info.name, args.seconds)) report(run);
    if (suites.includes('prune')) for (const run of await benchPrune(info.name, args.seconds)) report(run);
    if (suites.includes('real')) for (const run of await benchReal(info.name, args.seconds, !args.noTorch)) report(run);
    if (!suites.includes('train')) continue;
    for (const shapeName of args.shapes) {
      const shape = shapes[shapeName];
      if (!shape) throw new Error(`unknown shape ${shapeName}; known: ${Object.keys(shapes).join(', ')}`);
      const { ms, loss, warmup } = await measure(shapeName, shape, args.seconds);
      const msPerStep = median(ms);
      report({
        name: `train-step/${shapeName}/${info.name}${info.name === 'wasm' && args.stockMatMul ? '-stock-matmul' : ''}`,
        backend: info.name,
        shape: shapeName,
        msPerStep,
        tokensPerSec: (shape.batch * (shape.seq - 1) * 1000) / msPerStep,
        steps: ms.length,
        warmupSteps: warmup,
        finalLoss: round(loss, 5),
      });
    }
  }
  if (args.merge && existsSync(args.out)) {
    const previous = JSON.parse(readFileSync(args.out, 'utf8')) as { runs: Run[]; machine: { backends: Record<string, BackendInfo> } };
    const fresh = new Set(runs.map((r) => r.name));
    runs.unshift(...previous.runs.filter((r) => !fresh.has(r.name)));
    for (const [name, info] of Object.entries(previous.machine.backends ?? {})) backendsSeen[name] ??= info;
  }
  const torchPath = join(dirname(args.out), 'torch.json');
  const torch = existsSync(torchPath) ? (JSON.parse(readFileSync(torchPath, 'utf8')) as { runs: Run[] }) : undefined;
  const result = {
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memoryGiB: round(totalmem() / 2 ** 30, 1),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      tfjs: tf.version_core,
      date: new Date().toISOString(),
      backends: backendsSeen,
    },
    runs,
    ...(torch ? { reference: { source: 'scripts/reference/bench_torch.py (bench/results/torch.json)', runs: torch.runs } } : {}),
  };
  mkdirSync(dirname(args.out), { recursive: true });
  const tmp = `${args.out}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(tmp, args.out);
  console.log(`wrote ${args.out}`);
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

await runMain(main);
