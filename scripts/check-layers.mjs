// The layers of docs/architecture.md, checked: every import of a @posttrain package from a
// published package's source (tests and src/testing/ excepted) follows an allowed arrow, and is
// declared in that package's dependencies. Exits 1 naming each violation.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const base = ['tensor-core'];
const below = ['tensor-core', 'models', 'data', 'lora', 'losses', 'trainer'];
const algorithm = ['tensor-core', 'data', 'lora', 'losses', 'trainer', 'policy'];
/** package → the @posttrain packages its source may import (models only from tests and examples). */
export const allowed = {
  'tensor-core': [],
  models: base,
  data: base,
  lora: base,
  losses: base,
  trainer: base,
  policy: ['tensor-core', 'data', 'lora', 'losses'],
  sft: algorithm,
  reward: algorithm,
  dpo: algorithm,
  'rl-ppo': [...algorithm, 'reward'],
  distill: algorithm,
  eval: ['tensor-core', 'data', 'losses', 'policy'],
  quantize: ['tensor-core', 'data', 'lora', 'policy'],
  prune: ['tensor-core', 'data', 'policy'],
  cli: [...below, 'policy', 'sft', 'reward', 'dpo', 'rl-ppo', 'distill', 'eval', 'quantize', 'prune'],
};

function sources(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'testing' ? [] : sources(path);
    return /\.(ts|js|mjs)$/.test(name) && !/\.test\.ts$/.test(name) ? [path] : [];
  });
}

const problems = [];
for (const name of readdirSync('packages')) {
  const dir = join('packages', name);
  if (!existsSync(join(dir, 'package.json'))) continue;
  if (!(name in allowed)) {
    problems.push(`packages/${name}: not in the layer table of scripts/check-layers.mjs (add it, following docs/architecture.md)`);
    continue;
  }
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const declared = new Set(Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies }));
  for (const file of sources(join(dir, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const [, target] of text.matchAll(/(?:from|import)\s*\(?\s*'@posttrain\/([a-z-]+)'/g)) {
      if (target === name) continue;
      if (!allowed[name].includes(target))
        problems.push(`${file}: imports @posttrain/${target}; ${name} may import ${allowed[name].map((p) => `@posttrain/${p}`).join(', ') || 'no other @posttrain package'}`);
      else if (!declared.has(`@posttrain/${target}`)) problems.push(`${file}: imports @posttrain/${target}, which packages/${name}/package.json does not list in dependencies`);
    }
  }
}
if (problems.length > 0) {
  console.error(`Layer violations (docs/architecture.md):\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`layers: ${Object.keys(allowed).filter((p) => existsSync(join('packages', p))).length} packages follow docs/architecture.md`);
