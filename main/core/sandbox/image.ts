/**
 * Builds the agent image (`clawbar image build [--base IMAGE]`) through the Docker Engine API.
 *
 * The Dockerfile in `sandbox-images/agent/` takes its base as the `BASE_IMAGE` build argument:
 * users get the registry's `node:22-bookworm-slim`, air-gapped machines and CI pass a locally
 * made base (`sandbox-images/offline-base.sh` → `clawbar-base:offline`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import type Docker from 'dockerode';
import { z } from 'zod';

import { DEFAULTS } from '../config.js';
import { dockerErrorFacts } from './docker.js';

/** The runner bundle the Dockerfile copies in; made by `npm run build`. */
export const RUNNER_BUNDLE = 'dist/runner.mjs';

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
}

export interface BuiltImage {
  tag: string;
  /** The image id (`sha256:…`). */
  id: string;
  /** Wall-clock build time, to one decimal. */
  seconds: number;
}

/** The build could not run, or a step failed. The message says which and why. */
export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';
  /** The engine's own error text, when the engine reported one. */
  readonly daemonMessage: string | undefined;
  /** The step that was running when the build failed, e.g. `Step 4/7 : RUN npm ci`. */
  readonly step: string | undefined;

  constructor(
    message: string,
    facts: { daemonMessage?: string; step?: string } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.daemonMessage = facts.daemonMessage;
    this.step = facts.step;
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
 * Builds the agent image, reporting progress as it goes.
 *
 * @throws {ImageBuildError} when the context is incomplete, the base image is missing, the
 * engine refuses the build, or any step fails (carrying the engine's message).
 */
export async function buildAgentImage(opts: BuildAgentImageOptions): Promise<BuiltImage> {
  const { docker, contextDir, baseImage } = opts;
  const tag = opts.tag ?? DEFAULTS.image;
  const startedAt = performance.now();
  const src = contextFiles(contextDir);

  if (baseImage !== undefined && !opts.allowPull) {
    await requireLocalImage(docker, baseImage);
  }

  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(
      { context: contextDir, src },
      {
        t: tag,
        ...(baseImage !== undefined ? { buildargs: { BASE_IMAGE: baseImage } } : {}),
        // Remove intermediate containers even when a step fails: a failed build must not
        // leave stopped containers behind on the user's engine.
        rm: true,
        forcerm: true,
      },
    );
  } catch (err) {
    const daemonMessage = dockerErrorFacts(err).message;
    throw new ImageBuildError(
      `could not start building ${tag}: ${daemonMessage}`,
      { daemonMessage },
      { cause: err },
    );
  }

  const outcome = await follow(docker, stream, opts.onProgress);
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

  // Confirm the tag really points at an image; also the authoritative id.
  let id: string;
  try {
    id = (await docker.getImage(tag).inspect()).Id;
  } catch (err) {
    throw new ImageBuildError(
      `the build reported success but ${tag} is not there: ${dockerErrorFacts(err).message}`,
      {},
      { cause: err },
    );
  }
  return { tag, id, seconds: Math.round((performance.now() - startedAt) / 100) / 10 };
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
