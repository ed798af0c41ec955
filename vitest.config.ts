import { readdirSync, existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// One process, every package's tests, resolved from source through the `source` export condition.
const packages = readdirSync('packages').filter((name) => existsSync(`packages/${name}/src`));

export default defineConfig({
  test: {
    reporters: ['default', './scripts/vitest-summary-reporter.ts'],
    projects: packages.map((name) => ({
      resolve: { conditions: ['source'] },
      ssr: { resolve: { conditions: ['source'] } },
      test: {
        name,
        root: `packages/${name}`,
        include: ['src/**/*.test.ts'],
        testTimeout: 120_000,
        hookTimeout: 120_000,
      },
    })),
  },
});
