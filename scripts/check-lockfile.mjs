// Fails when package-lock.json lacks an optional dependency that `npm ci` will look for.
//
// The registry reachable from some machines lacks non-Linux optional binaries at their newest
// versions; `npm install` then writes a lock file without them and `npm ci` refuses it
// ("Missing: @turbo/darwin-64 from lock file"). This check names every missing entry first.
import { readFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8'));
const packages = lock.packages ?? {};
const missing = [];
for (const [path, entry] of Object.entries(packages)) {
  for (const name of Object.keys(entry.optionalDependencies ?? {})) {
    // npm resolves a dependency from the nearest node_modules up the tree.
    let dir = path;
    let found = false;
    for (;;) {
      const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (packages[candidate]) {
        found = true;
        break;
      }
      if (!dir) break;
      const i = dir.lastIndexOf('/node_modules/');
      dir = i >= 0 ? dir.slice(0, i) : '';
    }
    if (!found) missing.push(`${name} (optional dependency of ${path || 'the root'})`);
  }
}
if (missing.length > 0) {
  console.error(`package-lock.json lacks ${missing.length} optional dependencies that npm ci needs:\n  ${missing.join('\n  ')}`);
  console.error('help: pin versions whose optional binaries the registry has, then run npm install again');
  process.exit(1);
}
console.log(`package-lock.json: ${Object.keys(packages).length} entries, every optional dependency present`);
