/**
 * What the global Docker setup (global-docker.ts) and the Docker and Chromium test helpers share. No vitest
 * runtime here: the global setup runs outside the test workers.
 */

/**
 * The base every test image builds FROM: made offline by sandbox-images/offline-base.sh, or
 * a copy of a local `node:22-bookworm-slim` (see global-docker.ts).
 * @default 'clawbar-base:offline' (override with CLAWBAR_TEST_BASE_IMAGE)
 */
export const TEST_BASE_IMAGE = process.env.CLAWBAR_TEST_BASE_IMAGE ?? 'clawbar-base:offline';

/**
 * The `provide`/`inject` key naming the file where skipped suites are written down, one line
 * each (`part<TAB>suite<TAB>reason`), so the global teardown can say at the end of the run,
 * loudly, that they were skipped.
 */
export const DOCKER_SKIP_LOG_KEY = 'clawbarDockerSkipLog';

/** What a skipped suite lacked: a Docker engine (or base image), or a Chromium to drive. */
export type SkippedPart = 'docker' | 'chromium';

declare module 'vitest' {
  export interface ProvidedContext {
    [DOCKER_SKIP_LOG_KEY]: string;
  }
}
