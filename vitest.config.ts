import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Docker-backed suites share one engine; keep files from starving each other on 2 cores.
    fileParallelism: true,
    maxWorkers: 2,
    // Makes the Docker suites' base image when it is missing, and ends a run that skipped
    // Docker suites with a loud warning (test/setup/global-docker.ts).
    globalSetup: ['test/setup/global-docker.ts'],
  },
});
