// The one tsup configuration of every published package: ESM + CJS + declarations from
// src/index.ts (dist/index.d.ts for `import`, dist/index.d.cts for `require`: each package.json's
// `exports` names both, and scripts/check-packages.mjs checks the packed result). tsup leaves a
// package's dependencies and peer dependencies external by itself.
import { defineConfig, type Options } from 'tsup';

export function packageConfig(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'es2022',
    // Keep `node:` specifiers: without the prefix a browser bundler mistakes them for npm packages.
    removeNodeProtocol: false,
    ...overrides,
  });
}
