import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Docker-backed suites share one engine; keep files from starving each other on 2 cores.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
