// Lints every published package as npm would ship it: `npm pack` each one, then publint (strict:
// warnings fail) and Are the Types Wrong (every problem fails, as `attw --profile strict`) on the
// tarball. Run after `npm run build`. One process for all packages, so TypeScript loads once.
//
//   node scripts/check-packages.mjs                   # every published workspace package
//   node scripts/check-packages.mjs packages/lora     # only these
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPackage, createPackageFromTarballData } from '@arethetypeswrong/core';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';

const root = new URL('..', import.meta.url).pathname;
const published = readdirSync(join(root, 'packages'))
  .map((name) => `packages/${name}`)
  .filter((dir) => existsSync(join(root, dir, 'package.json')) && !JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')).private);
const dirs = process.argv.length > 2 ? process.argv.slice(2) : published;

const out = mkdtempSync(join(tmpdir(), 'posttrain-pack-'));
let failed = 0;
try {
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out, ...dirs.map((dir) => `--workspace=${dir}`)], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  for (const { name, filename, files } of packed) {
    const problems = [];
    if (!files.some((file) => file.path === 'dist/index.d.cts')) problems.push('no dist/index.d.cts in the tarball: run `npm run build` first');
    const bytes = readFileSync(join(out, filename));
    const tarball = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const lint = await publint({ pack: { tarball }, strict: true, level: 'warning' });
    for (const message of lint.messages) problems.push(`publint ${message.type}: ${formatMessage(message, lint.pkg) ?? message.code}`);
    const analysis = await checkPackage(createPackageFromTarballData(new Uint8Array(bytes)));
    if (!analysis.types) problems.push('attw: the package ships no types');
    for (const problem of analysis.problems ?? []) {
      const where = [problem.entrypoint, problem.resolutionKind].filter(Boolean).join(' ');
      problems.push(`attw ${problem.kind}${where ? ` (${where})` : ''}`);
    }
    if (problems.length > 0) {
      failed += 1;
      console.log(`✗ ${name}\n  ${problems.join('\n  ')}`);
    } else {
      console.log(`✓ ${name} (${files.length} files, publint --strict and attw clean)`);
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
if (failed > 0) {
  console.log(`${failed} package(s) would publish with problems; help: \`npx attw --pack packages/<name>\` and \`npx publint run packages/<name> --strict\` show the details`);
  process.exitCode = 1;
}
