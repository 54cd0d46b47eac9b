/**
 * Shared helpers for tests that need a real Docker engine (DESIGN.md §7).
 *
 * Without an engine such tests skip with the reason in their name, except under CI, where a
 * missing engine (or base image) is a failure: CI is meant to exercise the real thing.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import Docker from 'dockerode';
import { describe, it } from 'vitest';

import { TEST_BASE_IMAGE } from '../setup/test-base.js';
import { recordSkip } from './skips.js';

// The global setup (test/setup/global-docker.ts) makes this image when it is missing.
export { TEST_BASE_IMAGE };

export interface DockerProbe {
  ok: boolean;
  /** Why Docker tests cannot run; empty when they can. */
  reason: string;
}

/** Whether an engine answers and the test base image is present. Never throws. */
export async function dockerAvailable(docker: Docker = new Docker()): Promise<DockerProbe> {
  try {
    await withTimeout(docker.ping(), 5000, 'the Docker engine did not answer within 5 s');
  } catch (err) {
    return {
      ok: false,
      reason: `no Docker engine: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
  try {
    await docker.getImage(TEST_BASE_IMAGE).inspect();
  } catch {
    return {
      ok: false,
      reason: `base image ${TEST_BASE_IMAGE} is missing; run sandbox-images/offline-base.sh`,
    };
  }
  return { ok: true, reason: '' };
}

const probe = await dockerAvailable();

/**
 * `describe` for suites that need Docker: runs them when the engine is there, skips them with
 * the reason otherwise, and fails loudly instead of skipping when `CI` is set.
 */
export function requireDocker(name: string, body: () => void): void {
  if (probe.ok) {
    describe(name, body);
  } else if (process.env.CI) {
    describe(name, () => {
      it('needs a Docker engine (CI is set, so this fails instead of skipping)', () => {
        throw new Error(probe.reason);
      });
    });
  } else {
    recordSkip('docker', name, probe.reason);
    describe.skip(`${name} [skipped: ${probe.reason}]`, body);
  }
}

/**
 * Builds `clawbar-test-<name>-<random>:latest` from the given files (a `Dockerfile` among them)
 * and returns the tag. The random part keeps the tag this caller's own: another test run on the
 * same engine building the same `name` must not replace or remove the image under it. Build
 * failures reject with the engine's message.
 */
export async function buildTestImage(
  docker: Docker,
  name: string,
  files: Record<string, string>,
): Promise<string> {
  const tag = `clawbar-test-${name}-${randomBytes(4).toString('hex')}:latest`;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `clawbar-test-${name}-`));
  try {
    for (const [file, content] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(dir, file)), { recursive: true });
      await fs.writeFile(path.join(dir, file), content);
    }
    const stream = await docker.buildImage(
      { context: dir, src: await fs.readdir(dir) },
      { t: tag, rm: true, forcerm: true, buildargs: { BASE_IMAGE: TEST_BASE_IMAGE } },
    );
    const events = await new Promise<unknown[]>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, output) => (err ? reject(err) : resolve(output))),
    );
    const failure = events.find(
      (e): e is { error: string } => typeof e === 'object' && e !== null && 'error' in e,
    );
    if (failure) throw new Error(`building ${tag} failed: ${failure.error}`);
    return tag;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Removes a test image; ignores one that is already gone. */
export async function removeTestImage(docker: Docker, tag: string): Promise<void> {
  try {
    await docker.getImage(tag).remove({ force: true });
  } catch (err) {
    if ((err as { statusCode?: unknown }).statusCode !== 404) throw err;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
