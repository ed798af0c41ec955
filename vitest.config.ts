import { readdirSync, existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// One process, every package's and example's tests, resolved from source through the `@posttrain/source`
// export condition.
const dirs = (root: string) =>
  existsSync(root)
    ? readdirSync(root)
        .filter((name) => existsSync(`${root}/${name}/src`))
        .map((name) => ({ root, name }))
    : [];
const projects = [...dirs('packages'), ...dirs('examples')];

export default defineConfig({
  test: {
    reporters: ['default', './scripts/vitest-summary-reporter.ts'],
    // Vitest's default is one worker fewer than the cores: one on a 2-core CI machine. The tests are
    // single-threaded (tfjs cpu and wasm), so two workers use both cores.
    maxWorkers: 2,
    projects: projects.map(({ root, name }) => ({
      resolve: { conditions: ['@posttrain/source'] },
      ssr: { resolve: { conditions: ['@posttrain/source'] } },
      test: {
        name: root === 'examples' ? `example-${name}` : name,
        root: `${root}/${name}`,
        include: ['src/**/*.test.ts'],
        testTimeout: 120_000,
        hookTimeout: 120_000,
      },
    })),
  },
});
