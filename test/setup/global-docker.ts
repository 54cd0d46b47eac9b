/**
 * Vitest global setup for the Docker-backed suites (DESIGN.md §7).
 *
 * Before the run: when the engine answers and the test base image (TEST_BASE_IMAGE) is
 * missing, it makes it, so `npm test` on a fresh machine runs the Docker suites instead of
 * skipping them. It takes the same chain as `clawbar serve` (ensure-image.ts): a
 * `node:22-bookworm-slim` that is present or can be pulled is tagged as the test base (the
 * suites need a Debian with Node and bash, which it is; it is also what users run on);
 * otherwise offline-base.sh builds it with debootstrap, as root, with its lines shown. When
 * the image is already there, this costs one inspect.
 *
 * After the run: if any Docker or Chromium suite was skipped (requireDocker and requireChromium
 * write each skip down in a file this setup provides), it ends the output with a loud warning
 * saying why and how to fix it. With `CI` set, those suites fail instead of skipping.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import Docker from 'dockerode';
import type { TestProject } from 'vitest/node';

import { DOCKER_SKIP_LOG_KEY, TEST_BASE_IMAGE, type SkippedPart } from './test-base.js';

/** Why the Docker suites cannot run, and what fixes it. */
interface Trouble {
  reason: string;
  fix: string;
}

const ENGINE_FIX =
  'start the engine (Linux: sudo systemctl start docker, or run dockerd; macOS: Docker Desktop)';

export default async function setup(project: TestProject): Promise<() => void> {
  const skipLog = path.join(
    os.tmpdir(),
    `clawbar-docker-skips-${process.pid}-${randomBytes(4).toString('hex')}.log`,
  );
  project.provide(DOCKER_SKIP_LOG_KEY, skipLog);
  const trouble = await prepareTestBase(new Docker());
  return () => {
    const skipped = readSkips(skipLog);
    fs.rmSync(skipLog, { force: true });
    const docker = skipped.filter((skip) => skip.part === 'docker');
    const chromium = skipped.filter((skip) => skip.part === 'chromium');
    if (docker.length > 0) warnDockerSkipped(docker, trouble);
    if (chromium.length > 0)
      warn([
        `CHROMIUM SUITES WERE SKIPPED: ${suitesDidNotRun(chromium)},`,
        'so this run did not test the tray window in a browser.',
        `Why and fix: ${chromium[0]!.reason}`,
        `Skipped: ${suiteList(chromium)}`,
        '(With CI set, these suites fail instead of skipping.)',
      ]);
  };
}

/** Makes sure TEST_BASE_IMAGE is there; says why not when it cannot be. */
async function prepareTestBase(docker: Docker): Promise<Trouble | undefined> {
  try {
    await withTimeout(docker.getImage(TEST_BASE_IMAGE).inspect(), 5_000);
    return undefined;
  } catch (err) {
    if ((err as { statusCode?: unknown }).statusCode !== 404) {
      const message = err instanceof Error ? err.message : String(err);
      const trouble = { reason: `no Docker engine (${message})`, fix: ENGINE_FIX };
      say(`the Docker suites cannot run: ${trouble.reason}; ${trouble.fix}`);
      return trouble;
    }
  }

  // Loaded only when there is something to build: a normal run pays for one inspect.
  const { formatImageProgress, provideBaseImage } =
    await import('../../main/core/sandbox/ensure-image.js');
  const { ImageBuildError } = await import('../../main/core/sandbox/image.js');

  say(`${TEST_BASE_IMAGE} is missing: making it (the Docker suites build their images on it)`);
  const startedAt = performance.now();
  // offline-base.sh runs in a process group of its own, which Ctrl-C does not reach: stop it
  // through the abort, then let the signal do what it would have done.
  const interrupted = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => interrupted.abort(signal);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const base = await provideBaseImage({
      docker,
      signal: interrupted.signal,
      offlineBase: TEST_BASE_IMAGE,
      onProgress: (event) => {
        const line = formatImageProgress(event);
        if (line !== undefined) say(line);
      },
    });
    if (base.image !== TEST_BASE_IMAGE) {
      const { repo, tag } = splitTag(TEST_BASE_IMAGE);
      await docker.getImage(base.image).tag({ repo, tag });
    }
    const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
    say(`${TEST_BASE_IMAGE} is ready (from ${base.image}, ${seconds} s)`);
    return undefined;
  } catch (err) {
    let reason = err instanceof Error ? err.message : String(err);
    let fix = `sudo sandbox-images/offline-base.sh ${TEST_BASE_IMAGE}, then run the tests again`;
    if (err instanceof ImageBuildError && err.fix) {
      // The message ends with the fix for `clawbar serve` users; the tests want their own.
      reason = reason.replace(` Fix: ${err.fix}`, '');
      fix = err.fix.replace(/then run .*$/, 'then run the tests again');
    }
    say(`could not make ${TEST_BASE_IMAGE}, so the Docker suites will not run: ${reason}`);
    say(`fix: ${fix}`);
    return { reason: `could not make ${TEST_BASE_IMAGE}: ${reason}`, fix };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (interrupted.signal.aborted) {
      process.kill(process.pid, interrupted.signal.reason as NodeJS.Signals);
    }
  }
}

/** `name:tag` (the registry part may carry a port) → the repository and tag for a tag call. */
function splitTag(image: string): { repo: string; tag: string } {
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) {
    return { repo: image.slice(0, colon), tag: image.slice(colon + 1) };
  }
  return { repo: image, tag: 'latest' };
}

interface Skip {
  part: SkippedPart;
  suite: string;
  reason: string;
}

function readSkips(file: string): Skip[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const [part, suite = '', reason = ''] = line.split('\t');
      return { part: part === 'chromium' ? 'chromium' : 'docker', suite, reason };
    });
}

function suitesDidNotRun(skipped: Skip[]): string {
  return `${skipped.length} suite${skipped.length === 1 ? '' : 's'} did not run`;
}

function suiteList(skipped: Skip[]): string {
  const suites = skipped.map((skip) => skip.suite);
  return `${suites.slice(0, 5).join('; ')}${suites.length > 5 ? `; and ${suites.length - 5} more` : ''}`;
}

/** The last thing on the screen: a green run that skipped Docker suites did not test them. */
function warnDockerSkipped(skipped: Skip[], trouble: Trouble | undefined): void {
  const why = trouble?.reason ?? skipped[0]?.reason ?? 'the Docker probe failed';
  const fix =
    trouble?.fix ??
    `${ENGINE_FIX}; build the base with sudo sandbox-images/offline-base.sh ${TEST_BASE_IMAGE}`;
  warn([
    `DOCKER SUITES WERE SKIPPED: ${suitesDidNotRun(skipped)},`,
    'so this run did not test containers at all.',
    `Why: ${why}`,
    `Fix: ${fix}`,
    `Skipped: ${suiteList(skipped)}`,
    '(With CI set, these suites fail instead of skipping.)',
  ]);
}

/** A banner of `!!` lines on stderr, red on a terminal. */
function warn(lines: string[]): void {
  const bar = '!'.repeat(78);
  const text = ['', bar, ...lines.map((line) => `!! ${line}`), bar, ''].join('\n');
  process.stderr.write(process.stderr.isTTY ? `\x1b[1;31m${text}\x1b[0m\n` : `${text}\n`);
}

function say(line: string): void {
  process.stderr.write(`[clawbar test setup] ${line}\n`);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the Docker engine did not answer within ${ms / 1000} s`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
