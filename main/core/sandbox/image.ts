/**
 * Builds the agent image (`clawbar image build [--base IMAGE]`) through the Docker Engine API.
 *
 * The Dockerfile in `sandbox-images/agent/` takes its base as the `BASE_IMAGE` build argument:
 * users get the registry's `node:22-bookworm-slim`, air-gapped machines and CI pass a locally
 * made base (`sandbox-images/offline-base.sh` → `clawbar-base:offline`).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import type Docker from 'dockerode';
import { z } from 'zod';

import { DEFAULTS } from '../config.js';
import { dockerErrorFacts } from './docker.js';

/** The runner bundle the Dockerfile copies in; made by `npm run build`. */
export const RUNNER_BUNDLE = 'dist/runner.mjs';

/**
 * The image label holding {@link runnerContentHash} of the context it was built from. Every
 * agent image {@link buildAgentImage} makes carries it; an image whose label is absent or
 * differs from the checkout's hash is stale (see ensure-image.ts).
 */
export const RUNNER_HASH_LABEL = 'dev.clawbar.runner-hash';

/**
 * The build-context files whose bytes decide what the image contains, in hashing order:
 *
 * - `Dockerfile`: the user, the directories, the entrypoint. Its CRLF line ends are read as LF,
 *   so a Windows checkout (git autocrlf) hashes like a Linux one; the engine reads both alike.
 * - {@link RUNNER_BUNDLE}: the code the container runs. It is hashed rather than the runner's
 *   sources because it is what the image holds, and it also carries the bundled dependencies
 *   (zod, the shared protocol) that a hash of `runner/` would miss. esbuild's output is
 *   deterministic, so equal sources give equal bytes on every machine.
 *
 * Left out on purpose: `.dockerignore` (it filters the context; the COPY names its one file),
 * the runner's sources (see above), and the base image. The base differs by machine (a
 * registry's `node:22-bookworm-slim` or a local `clawbar-base:offline`) without changing what
 * Clawbar needs from the image, so hashing it would rebuild images that are fine.
 */
const HASHED_FILES = ['Dockerfile', RUNNER_BUNDLE] as const;

/**
 * A sha256 (64 hex digits) over the build context's {@link HASHED_FILES}: equal for equal
 * runners on any machine, different as soon as the runner bundle or the Dockerfile changes.
 * Each file is framed by its name and length, so bytes cannot shift from one file to the next
 * and give the same digest.
 *
 * @throws {ImageBuildError} when the Dockerfile or the runner bundle is missing (see
 * {@link contextFiles}).
 */
export async function runnerContentHash(contextDir: string): Promise<string> {
  contextFiles(contextDir);
  const hash = createHash('sha256').update('clawbar-runner-hash v1\n');
  for (const name of HASHED_FILES) {
    let bytes = await fs.promises.readFile(path.join(contextDir, name));
    if (name === 'Dockerfile') bytes = Buffer.from(bytes.toString('utf8').replace(/\r\n/g, '\n'));
    hash.update(`${name}\n${bytes.length}\n`).update(bytes).update('\n');
  }
  return hash.digest('hex');
}

/** One progress report from a running build. */
export type ImageBuildProgress =
  /** A Dockerfile instruction starts, e.g. `Step 3/7 : COPY dist/runner.mjs /opt/runner/`. */
  | { kind: 'step'; step: number; total: number; text: string }
  /** A line of build output: a RUN command's output, layer ids, warnings. */
  | { kind: 'output'; text: string }
  /** Pull progress for a base layer, e.g. `Downloading [==>   ] 12MB/40MB`. */
  | { kind: 'layer'; id: string | undefined; status: string; progress: string | undefined };

export interface BuildAgentImageOptions {
  docker: Docker;
  /** The build context: holds the Dockerfile and the runner bundle (see {@link contextFiles}). */
  contextDir: string;
  /** The tag to give the image. @default DEFAULTS.image (`clawbar-agent:latest`) */
  tag?: string;
  /**
   * Replaces the Dockerfile's `BASE_IMAGE` build argument. It must already be present locally
   * unless `allowPull` is set. @default undefined (the Dockerfile's own default)
   */
  baseImage?: string;
  /** Let the engine pull a `baseImage` that is not present locally. @default false */
  allowPull?: boolean;
  /** Called for every step, output line and layer progress event. @default undefined */
  onProgress?: (event: ImageBuildProgress) => void;
  /**
   * Aborting it ends the build: the request to the engine is cancelled (the engine stops the
   * build and removes its intermediate container) and the build rejects with the signal's
   * reason. @default undefined
   */
  signal?: AbortSignal;
}

export interface BuiltImage {
  tag: string;
  /** The image id (`sha256:…`). */
  id: string;
  /** Wall-clock build time, to one decimal. */
  seconds: number;
  /** The {@link RUNNER_HASH_LABEL} the image carries. */
  runnerHash: string;
}

/** The build could not run, or a step failed. The message says which and why. */
export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';
  /** The engine's own error text, when the engine reported one. */
  readonly daemonMessage: string | undefined;
  /** The step that was running when the build failed, e.g. `Step 4/7 : RUN npm ci`. */
  readonly step: string | undefined;
  /** What the user can do about it, when there is one thing to do (also in the message). */
  readonly fix: string | undefined;

  constructor(
    message: string,
    facts: { daemonMessage?: string; step?: string; fix?: string } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.daemonMessage = facts.daemonMessage;
    this.step = facts.step;
    this.fix = facts.fix;
  }
}

/**
 * One JSON object of the engine's build stream. The legacy builder sends `stream` text,
 * `status`/`progress` for pulls, `aux.ID` when done, and `error`/`errorDetail` for a failure —
 * inside an HTTP 200 stream, so the HTTP status alone never shows a failed build.
 */
const BuildEventSchema = z.looseObject({
  stream: z.string().optional(),
  status: z.string().optional(),
  id: z.string().optional(),
  progress: z.string().optional(),
  error: z.string().optional(),
  errorDetail: z.looseObject({ message: z.string().optional() }).optional(),
  aux: z.looseObject({ ID: z.string().optional() }).optional(),
});

const STEP_LINE = /^Step (\d+)\/(\d+) : (.*)$/;

/**
 * Lists the top-level entries of the build context, after checking that the Dockerfile and the
 * runner bundle are there. A `.dockerignore` in the context still applies (dockerode reads it).
 *
 * @throws {ImageBuildError} naming the missing file and how to make it.
 */
export function contextFiles(contextDir: string): string[] {
  if (!fs.existsSync(path.join(contextDir, 'Dockerfile'))) {
    throw new ImageBuildError(
      `no Dockerfile in ${contextDir}; is this the sandbox-images/agent directory?`,
    );
  }
  if (!fs.existsSync(path.join(contextDir, RUNNER_BUNDLE))) {
    throw new ImageBuildError(
      `the runner bundle ${path.join(contextDir, RUNNER_BUNDLE)} is missing; run \`npm run build\` first`,
    );
  }
  // dockerode packs only the entries listed in `src` (tar-fs walks directories among them).
  return fs.readdirSync(contextDir);
}

/**
 * Builds the agent image, reporting progress as it goes. The image carries
 * {@link RUNNER_HASH_LABEL}, so a later check can tell whether it matches the checkout.
 *
 * @throws {ImageBuildError} when the context is incomplete, the base image is missing, the
 * engine refuses the build, or any step fails (carrying the engine's message).
 * @throws the signal's reason when `opts.signal` aborts.
 */
export async function buildAgentImage(opts: BuildAgentImageOptions): Promise<BuiltImage> {
  const { docker, contextDir, baseImage, signal } = opts;
  const tag = opts.tag ?? DEFAULTS.image;
  const startedAt = performance.now();
  signal?.throwIfAborted();
  const src = contextFiles(contextDir);
  const runnerHash = await runnerContentHash(contextDir);

  if (baseImage !== undefined && !opts.allowPull) {
    await requireLocalImage(docker, baseImage);
  }
  signal?.throwIfAborted();

  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(
      { context: contextDir, src },
      {
        t: tag,
        ...(baseImage !== undefined ? { buildargs: { BASE_IMAGE: baseImage } } : {}),
        // The engine adds it as a last LABEL layer: the layers above stay cached.
        labels: { [RUNNER_HASH_LABEL]: runnerHash },
        // Remove intermediate containers even when a step fails: a failed build must not
        // leave stopped containers behind on the user's engine.
        rm: true,
        forcerm: true,
        ...(signal ? { abortSignal: signal } : {}),
      },
    );
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    const daemonMessage = dockerErrorFacts(err).message;
    throw new ImageBuildError(
      `could not start building ${tag}: ${daemonMessage}`,
      { daemonMessage },
      { cause: err },
    );
  }

  let outcome: BuildOutcome;
  try {
    outcome = await follow(docker, stream, opts.onProgress);
  } catch (err) {
    // An abort breaks the stream; say so with the caller's reason, not "lost the stream".
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
  if (outcome.error !== undefined) {
    const hint = outcome.step?.includes(' : FROM ')
      ? '; no registry reachable? build a local base with sandbox-images/offline-base.sh and pass --base clawbar-base:offline'
      : '';
    const at = outcome.step ? ` at ${outcome.step}` : '';
    throw new ImageBuildError(`building ${tag} failed${at}: ${outcome.error}${hint}`, {
      daemonMessage: outcome.error,
      step: outcome.step,
    });
  }

  // Confirm the tag really points at an image carrying our label; also the authoritative id.
  let info: Docker.ImageInspectInfo;
  try {
    info = await docker.getImage(tag).inspect();
  } catch (err) {
    throw new ImageBuildError(
      `the build reported success but ${tag} is not there: ${dockerErrorFacts(err).message}`,
      {},
      { cause: err },
    );
  }
  const labelled = info.Config?.Labels?.[RUNNER_HASH_LABEL];
  if (labelled !== runnerHash) {
    // Without it every later check would call the image stale and rebuild it, start after start.
    throw new ImageBuildError(
      `the engine built ${tag} without the ${RUNNER_HASH_LABEL} label (found ${JSON.stringify(labelled ?? null)}); it may be too old to label builds: update Docker`,
      { fix: 'update Docker' },
    );
  }
  return {
    tag,
    id: info.Id,
    seconds: Math.round((performance.now() - startedAt) / 100) / 10,
    runnerHash,
  };
}

async function requireLocalImage(docker: Docker, image: string): Promise<void> {
  try {
    await docker.getImage(image).inspect();
  } catch (err) {
    if (dockerErrorFacts(err).statusCode === 404) {
      throw new ImageBuildError(
        `base image ${image} is not present; build it with sandbox-images/offline-base.sh or pull it (docker pull ${image})`,
        {},
        { cause: err },
      );
    }
    throw new ImageBuildError(
      `could not check base image ${image}: ${dockerErrorFacts(err).message}`,
      {},
      { cause: err },
    );
  }
}

interface BuildOutcome {
  /** The engine's error, when a step failed. */
  error: string | undefined;
  /** The last `Step n/m : …` line seen. */
  step: string | undefined;
}

/** Follows the build stream to its end, turning engine events into progress reports. */
function follow(
  docker: Docker,
  stream: NodeJS.ReadableStream,
  onProgress: BuildAgentImageOptions['onProgress'],
): Promise<BuildOutcome> {
  const outcome: BuildOutcome = { error: undefined, step: undefined };
  let progressError: unknown;

  const report = (event: ImageBuildProgress): void => {
    if (!onProgress || progressError !== undefined) return;
    // A throwing callback would otherwise surface inside a stream 'data' handler, uncaught.
    try {
      onProgress(event);
    } catch (err) {
      progressError = err;
    }
  };

  const onEvent = (raw: unknown): void => {
    const parsed = BuildEventSchema.safeParse(raw);
    if (!parsed.success) return;
    const event = parsed.data;
    if (event.error !== undefined || event.errorDetail?.message !== undefined) {
      outcome.error ??= (event.errorDetail?.message ?? event.error ?? 'unknown error').trim();
      return;
    }
    if (event.stream !== undefined) {
      for (const line of event.stream.split('\n')) {
        const text = line.trimEnd();
        if (text.length === 0) continue;
        const step = STEP_LINE.exec(text);
        if (step) {
          outcome.step = text;
          report({ kind: 'step', step: Number(step[1]), total: Number(step[2]), text });
        } else {
          report({ kind: 'output', text });
        }
      }
      return;
    }
    if (event.status !== undefined) {
      report({ kind: 'layer', id: event.id, status: event.status, progress: event.progress });
    }
  };

  return new Promise((resolve, reject) => {
    // followProgress parses the newline-delimited JSON and calls back once the stream ends.
    // It does not treat `{error}` events as failures (it only sees bytes), hence outcome.error.
    docker.modem.followProgress(
      stream,
      (err) => {
        if (err) {
          reject(new ImageBuildError(`lost the build stream: ${err.message}`, {}, { cause: err }));
        } else if (progressError !== undefined) {
          reject(new ImageBuildError('the progress handler threw', {}, { cause: progressError }));
        } else {
          resolve(outcome);
        }
      },
      onEvent,
    );
  });
}
