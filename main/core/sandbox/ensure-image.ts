/**
 * Makes sure the agent image exists and was built from this checkout's runner, building it
 * when it is missing or stale. `clawbar serve` calls it before it takes work, and
 * `clawbar image build` (without `--base`) is the same path run by hand.
 *
 * Freshness is decided by a label, not by age: every image {@link buildAgentImage} makes
 * carries {@link RUNNER_HASH_LABEL}, the hash of the Dockerfile and runner bundle it was built
 * from. An equal hash means nothing to do (one inspect); an absent or different one rebuilds.
 *
 * The base image comes from the first link of a chain that works (see
 * {@link provideBaseImage}): the registry's `node:22-bookworm-slim` (present, or pulled), a
 * local `clawbar-base:offline`, or that offline base built here with
 * `sandbox-images/offline-base.sh` (debootstrap, as root). When none works, the error names
 * each thing tried and the fix.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';

import type Docker from 'dockerode';
import { z } from 'zod';

import { DEFAULTS } from '../config.js';
import { agentImageContext, offlineBaseScript } from '../paths.js';
import { dockerErrorFacts, untilAborted } from './docker.js';
import {
  ImageBuildError,
  RUNNER_HASH_LABEL,
  buildAgentImage,
  runnerContentHash,
  type ImageBuildProgress,
} from './image.js';
import { RuntimeUnavailableError } from './runtime.js';

/** The base users get from a registry; also the Dockerfile's own `BASE_IMAGE` default. */
export const REGISTRY_BASE_IMAGE = 'node:22-bookworm-slim';

/** The base `sandbox-images/offline-base.sh` makes with no registry. */
export const OFFLINE_BASE_IMAGE = 'clawbar-base:offline';

/**
 * How long a pull may go without a first answer before the registry counts as unreachable. A
 * registry that answers starts streaming within a second or two; after the first event the
 * pull runs to its end, however slow the download.
 */
export const DEFAULT_PULL_TIMEOUT_MS = 15_000;

/** After SIGTERM, how long offline-base.sh gets to clean up before SIGKILL. */
const SCRIPT_KILL_GRACE_MS = 5_000;

/** Lines of the script's output kept for its failure message. */
const SCRIPT_TAIL_LINES = 5;

/** Longer lines from the script (or a mirror's text through it) are cut. */
const MAX_LINE_CHARS = 1_000;

/** Where the agent image stands against the checkout's runner. */
export type ImageFreshness =
  /** Present and labelled with the checkout's runner hash: nothing to do. */
  | { state: 'current'; tag: string; id: string; runnerHash: string }
  /** Present, but built from another runner (or by a build that did not label it). */
  | {
      state: 'stale';
      tag: string;
      id: string;
      runnerHash: string;
      /** The image's {@link RUNNER_HASH_LABEL}; undefined when it has none. */
      imageRunnerHash: string | undefined;
    }
  /** The engine has no image by that tag. */
  | { state: 'missing'; tag: string; runnerHash: string };

/** How a base image was found: already in the engine, pulled, or built by offline-base.sh. */
export type BaseSource = 'local' | 'registry' | 'offline-script';

/** Why an image is being built. */
export type BuildReason = 'missing' | 'stale' | 'forced';

/** One progress report from {@link ensureAgentImage}, in the order things happen. */
export type EnsureImageProgress =
  /** A build is needed, and why. */
  | { kind: 'start'; tag: string; reason: BuildReason }
  /** A base is being looked for in one place. */
  | { kind: 'base-trying'; image: string; via: BaseSource }
  /** That place did not have it; `reason` says what happened (no stack). */
  | { kind: 'base-unavailable'; image: string; via: BaseSource; reason: string }
  /** The build goes on this base. */
  | { kind: 'base-chosen'; image: string; via: BaseSource }
  /** One line of `offline-base.sh`'s output (stdout or stderr), as it comes. */
  | { kind: 'script'; line: string }
  /**
   * The agent image's build (`step`, `output`) and layer progress (`layer`), which also
   * reports the base's pull.
   */
  | ImageBuildProgress;

export type EnsureImageResult =
  /** The image was current: nothing was built. */
  | { action: 'none'; tag: string; id: string; runnerHash: string }
  | {
      action: 'built';
      tag: string;
      id: string;
      runnerHash: string;
      /** The base it was built on. */
      base: string;
      /** Wall-clock time, base included, to one decimal. */
      seconds: number;
      reason: BuildReason;
    };

/** Where the chain of bases looks, and how it may build one. Every field is for tests. */
export interface BaseChainOptions {
  docker: Docker;
  /** @default undefined */
  onProgress?: (event: EnsureImageProgress) => void;
  /**
   * Aborting it stops whatever runs: the pull, offline-base.sh (its process group is killed)
   * or the build. The call then rejects with the signal's reason. @default undefined
   */
  signal?: AbortSignal;
  /** @default REGISTRY_BASE_IMAGE (`node:22-bookworm-slim`) */
  registryBase?: string;
  /** The tag offline-base.sh's image gets, and is looked for under. @default OFFLINE_BASE_IMAGE */
  offlineBase?: string;
  /** @default offlineBaseScript() (`sandbox-images/offline-base.sh` in the package) */
  offlineBaseScript?: string;
  /**
   * Where `debootstrap` and `docker` are looked for; also the script's `PATH`.
   * @default process.env.PATH
   */
  searchPath?: string;
  /** Whether this process may run debootstrap. @default process.getuid?.() === 0 */
  isRoot?: boolean;
  /** @default DEFAULT_PULL_TIMEOUT_MS (15 s without a first answer) */
  pullTimeoutMs?: number;
}

export interface EnsureAgentImageOptions extends BaseChainOptions {
  /** @default DEFAULTS.image (`clawbar-agent:latest`) */
  tag?: string;
  /** The build context (Dockerfile and runner bundle). @default agentImageContext() */
  contextDir?: string;
  /** Build even when the image is current. @default false */
  force?: boolean;
}

/**
 * Compares the image `tag` with the runner in `contextDir`. One inspect; nothing is built.
 *
 * @throws {ImageBuildError} when the context lacks its Dockerfile or runner bundle, or the
 * engine answers the inspect with an error.
 * @throws {RuntimeUnavailableError} when the engine cannot be reached.
 */
export async function agentImageFreshness(
  docker: Docker,
  tag: string,
  contextDir: string,
): Promise<ImageFreshness> {
  const runnerHash = await runnerContentHash(contextDir);
  const info = await inspectIfPresent(docker, tag);
  if (!info) return { state: 'missing', tag, runnerHash };
  const imageRunnerHash = info.Config?.Labels?.[RUNNER_HASH_LABEL];
  if (imageRunnerHash === runnerHash) return { state: 'current', tag, id: info.Id, runnerHash };
  return { state: 'stale', tag, id: info.Id, runnerHash, imageRunnerHash };
}

interface Flight {
  promise: Promise<EnsureImageResult>;
  signal: AbortSignal | undefined;
}

/** Builds in progress in this process, by tag: a second caller waits for the first. */
const flights = new Map<string, Flight>();

/**
 * Returns at once when the image is current; otherwise finds a base (see
 * {@link provideBaseImage}) and builds the image on it, reporting progress.
 *
 * One build per tag runs at a time in this process: a caller that arrives while one runs
 * waits for it and shares its result (progress goes to the first caller only). Its own
 * `signal` ends its wait, not the build; if the first caller aborts, a waiting caller that did
 * not abort starts over.
 *
 * @throws {ImageBuildError} when no base can be had (the message names each thing tried, and
 * `fix` the commands that help), or the build fails.
 * @throws {RuntimeUnavailableError} when the engine cannot be reached.
 * @throws the signal's reason when `opts.signal` aborts.
 */
export async function ensureAgentImage(opts: EnsureAgentImageOptions): Promise<EnsureImageResult> {
  const tag = opts.tag ?? DEFAULTS.image;
  for (;;) {
    opts.signal?.throwIfAborted();
    const running = flights.get(tag);
    if (!running) break;
    try {
      return await (opts.signal ? untilAborted(running.promise, opts.signal) : running.promise);
    } catch (err) {
      if (running.signal?.aborted && !opts.signal?.aborted) continue;
      throw err;
    }
  }
  // Cleared before anyone awaiting the promise resumes, so a waiter that starts over does not
  // find this finished flight again.
  const promise: Promise<EnsureImageResult> = ensureNow(opts, tag).finally(() => {
    if (flights.get(tag)?.promise === promise) flights.delete(tag);
  });
  flights.set(tag, { promise, signal: opts.signal });
  return promise;
}

async function ensureNow(opts: EnsureAgentImageOptions, tag: string): Promise<EnsureImageResult> {
  const { docker, signal } = opts;
  const startedAt = performance.now();
  const contextDir = opts.contextDir ?? agentImageContext();
  const freshness = await agentImageFreshness(docker, tag, contextDir);
  if (freshness.state === 'current' && !opts.force) {
    return { action: 'none', tag, id: freshness.id, runnerHash: freshness.runnerHash };
  }
  signal?.throwIfAborted();
  const reason: BuildReason = freshness.state === 'current' ? 'forced' : freshness.state;
  const report = guardedReporter(opts.onProgress);
  report.send({ kind: 'start', tag, reason });
  report.check();

  // Each of these guards the progress callback itself, and raises its throw as an error.
  const base = await provideBaseImage(opts);
  const built = await buildAgentImage({
    docker,
    contextDir,
    tag,
    baseImage: base.image,
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(signal ? { signal } : {}),
  });
  // The image it replaced, if any, stays as an untagged image: it may still be another tag's
  // or a running agent's, and `docker image prune` removes it once it is neither.
  return {
    action: 'built',
    tag,
    id: built.id,
    runnerHash: built.runnerHash,
    base: base.image,
    seconds: Math.round((performance.now() - startedAt) / 100) / 10,
    reason,
  };
}

/**
 * Finds a base image, in this order, and stops at the first that works:
 *
 * 1. `registryBase` present in the engine;
 * 2. `registryBase` pulled, when a registry answers within `pullTimeoutMs` (a failure here
 *    means "no registry" and is reported as progress, never thrown);
 * 3. `offlineBase` present in the engine;
 * 4. `offlineBase` built by offline-base.sh, when this process is root and `debootstrap` and
 *    `docker` are on `searchPath`. Its lines come as `script` progress; it takes minutes.
 *
 * @throws {ImageBuildError} when none works: the message names each thing tried, `fix` says
 * how to get a base; or when offline-base.sh fails (with its last lines).
 * @throws {RuntimeUnavailableError} when the engine cannot be reached.
 * @throws the signal's reason when `opts.signal` aborts.
 */
export async function provideBaseImage(
  opts: BaseChainOptions,
): Promise<{ image: string; via: BaseSource }> {
  const { docker, signal } = opts;
  const registryBase = opts.registryBase ?? REGISTRY_BASE_IMAGE;
  const offlineBase = opts.offlineBase ?? OFFLINE_BASE_IMAGE;
  const script = opts.offlineBaseScript ?? offlineBaseScript();
  const searchPath = opts.searchPath ?? process.env.PATH ?? '';
  const isRoot = opts.isRoot ?? process.getuid?.() === 0;
  const pullTimeoutMs = opts.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
  const report = guardedReporter(opts.onProgress);
  const checkpoint = (): void => {
    signal?.throwIfAborted();
    report.check();
  };
  const chosen = (image: string, via: BaseSource): { image: string; via: BaseSource } => {
    report.send({ kind: 'base-chosen', image, via });
    return { image, via };
  };

  checkpoint();
  report.send({ kind: 'base-trying', image: registryBase, via: 'local' });
  if (await inspectIfPresent(docker, registryBase)) return chosen(registryBase, 'local');
  report.send({
    kind: 'base-unavailable',
    image: registryBase,
    via: 'local',
    reason: 'not present in the engine',
  });

  checkpoint();
  report.send({ kind: 'base-trying', image: registryBase, via: 'registry' });
  const pullFailure = await pullImage(docker, registryBase, pullTimeoutMs, signal, report.send);
  checkpoint();
  if (pullFailure === undefined && (await inspectIfPresent(docker, registryBase))) {
    return chosen(registryBase, 'registry');
  }
  const noRegistry = pullFailure ?? 'the pull ended but the image is not there';
  report.send({
    kind: 'base-unavailable',
    image: registryBase,
    via: 'registry',
    reason: noRegistry,
  });

  checkpoint();
  report.send({ kind: 'base-trying', image: offlineBase, via: 'local' });
  if (await inspectIfPresent(docker, offlineBase)) return chosen(offlineBase, 'local');
  report.send({
    kind: 'base-unavailable',
    image: offlineBase,
    via: 'local',
    reason: 'not present in the engine',
  });

  checkpoint();
  const fix =
    `where a registry is reachable, \`docker pull ${registryBase}\`; with no registry, ` +
    `\`sudo apt-get install -y debootstrap\` and \`sudo ${script} ${offlineBase}\`; ` +
    'then run `clawbar image build` (or restart `clawbar serve`)';
  const tried =
    `${registryBase} is not present and could not be pulled (${noRegistry}); ` +
    `${offlineBase} is not present`;
  const blockers = await scriptBlockers(script, searchPath, isRoot);
  if (blockers.length > 0) {
    const cannot = blockers.join(', ');
    report.send({
      kind: 'base-unavailable',
      image: offlineBase,
      via: 'offline-script',
      reason: cannot,
    });
    throw new ImageBuildError(
      `no base image to build on: ${tried}; and it cannot be built with ` +
        `${path.basename(script)}: ${cannot}. Fix: ${fix}`,
      { fix },
    );
  }

  report.send({ kind: 'base-trying', image: offlineBase, via: 'offline-script' });
  try {
    await runOfflineBaseScript({
      script,
      tag: offlineBase,
      searchPath,
      onLine: (line) => report.send({ kind: 'script', line }),
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (signal?.aborted || !(err instanceof ImageBuildError)) throw err;
    // Its own lines say why (often: the Debian mirror cannot be reached).
    throw new ImageBuildError(
      `no base image to build on: ${tried}; and building it failed: ${err.message}. Fix: ${fix}`,
      { fix },
      { cause: err },
    );
  }
  checkpoint();
  if (!(await inspectIfPresent(docker, offlineBase))) {
    throw new ImageBuildError(
      `no base image to build on: ${tried}; and ${path.basename(script)} finished without ` +
        `making it. Fix: ${fix}`,
      { fix },
    );
  }
  return chosen(offlineBase, 'offline-script');
}

const START_TEXT: Record<BuildReason, (tag: string) => string> = {
  missing: (tag) => `agent image ${tag} is missing; building it`,
  stale: (tag) => `agent image ${tag} was built from another runner; rebuilding it`,
  forced: (tag) => `rebuilding agent image ${tag}`,
};

const TRYING_TEXT: Record<BaseSource, string> = {
  local: 'looking for it in the engine',
  registry: 'pulling it from the registry',
  'offline-script': 'building it with offline-base.sh (debootstrap; a few minutes)',
};

const UNAVAILABLE_TEXT: Record<BaseSource, string> = {
  local: '',
  registry: 'cannot be pulled: ',
  'offline-script': 'cannot be built here: ',
};

const CHOSEN_TEXT: Record<BaseSource, string> = {
  local: 'present',
  registry: 'pulled',
  'offline-script': 'built here',
};

/**
 * One line of text for a progress event, for a log or a terminal; undefined for the events
 * too chatty to log (a layer's download ticks, which come several times a second).
 */
export function formatImageProgress(event: EnsureImageProgress): string | undefined {
  switch (event.kind) {
    case 'start':
      return START_TEXT[event.reason](event.tag);
    case 'base-trying':
      return `base ${event.image}: ${TRYING_TEXT[event.via]}`;
    case 'base-unavailable':
      return `base ${event.image}: ${UNAVAILABLE_TEXT[event.via]}${event.reason}`;
    case 'base-chosen':
      return `building on ${event.image} (${CHOSEN_TEXT[event.via]})`;
    case 'script':
      return `  ${event.line}`;
    case 'step':
      return event.text; // "Step 3/9 : COPY …" already says where it is
    case 'output':
      return `    ${event.text}`;
    case 'layer':
      if (event.progress !== undefined) return undefined;
      return `    ${event.id ? `${event.id}: ` : ''}${event.status}`;
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

/**
 * Runs offline-base.sh to make `tag`, reporting each output line. It runs in a process group
 * of its own, so an abort reaches debootstrap and `docker import` under it: SIGTERM (the
 * script's trap removes its root filesystem), then SIGKILL after a grace period. The promise
 * settles once the script has exited.
 *
 * @throws {ImageBuildError} when it cannot start or exits non-zero (with its last lines).
 * @throws the signal's reason when `opts.signal` aborts.
 */
export function runOfflineBaseScript(opts: {
  script: string;
  tag: string;
  /** The script's `PATH`. */
  searchPath: string;
  onLine: (line: string) => void;
  signal?: AbortSignal;
}): Promise<void> {
  const { script, tag, signal } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason as Error);
  const name = path.basename(script);
  return new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [script, tag], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: opts.searchPath },
    });
    const tail: string[] = [];
    const onLine = (raw: string): void => {
      // Printable text only: the lines reach terminals and logs, and part of them comes from
      // outside (a Debian mirror's answers, through debootstrap).
      // eslint-disable-next-line no-control-regex
      const text = raw.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' ');
      const line = text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}…` : text;
      tail.push(line);
      if (tail.length > SCRIPT_TAIL_LINES) tail.shift();
      opts.onLine(line);
    };
    const lineReaders = [child.stdout, child.stderr].map((input) =>
      readline.createInterface({ input, crlfDelay: Infinity }).on('line', onLine),
    );

    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // The group is already gone (ESRCH): nothing left to stop.
      }
    };
    const onAbort = (): void => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), SCRIPT_KILL_GRACE_MS);
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    let settled = false;
    const settle = (err: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      signal?.removeEventListener('abort', onAbort);
      for (const reader of lineReaders) reader.close();
      if (signal?.aborted) reject(signal.reason);
      else if (err === undefined) resolve();
      else reject(err);
    };
    child.once('error', (err) => {
      settle(new ImageBuildError(`could not run ${script}: ${err.message}`, {}, { cause: err }));
    });
    child.once('close', (code, sig) => {
      if (code === 0) {
        settle(undefined);
        return;
      }
      const how = code !== null ? `exit ${code}` : `killed by ${sig ?? 'a signal'}`;
      const last = tail.length > 0 ? `: ${tail.join(' | ')}` : '';
      settle(new ImageBuildError(`${name} ${tag} failed (${how})${last}`));
    });
  });
}

/** What keeps offline-base.sh from running here; empty when it can run. */
async function scriptBlockers(
  script: string,
  searchPath: string,
  isRoot: boolean,
): Promise<string[]> {
  const blockers: string[] = [];
  if (!(await isFile(script))) blockers.push(`${script} is missing`);
  for (const tool of ['debootstrap', 'docker']) {
    if (!(await findExecutable(tool, searchPath))) blockers.push(`${tool} is not installed`);
  }
  if (!isRoot) blockers.push('debootstrap needs root and this process is not root');
  return blockers;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await fs.promises.stat(file)).isFile();
  } catch {
    return false;
  }
}

/** The first executable `name` in the `PATH`-style list, like `command -v`. */
async function findExecutable(name: string, searchPath: string): Promise<string | undefined> {
  for (const dir of searchPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      await fs.promises.access(candidate, fs.constants.X_OK);
      if (await isFile(candidate)) return candidate;
    } catch {
      // Not here; try the next directory.
    }
  }
  return undefined;
}

/** The image's inspect data, or undefined when the engine has no such image. */
async function inspectIfPresent(
  docker: Docker,
  image: string,
): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await docker.getImage(image).inspect();
  } catch (err) {
    const facts = dockerErrorFacts(err);
    if (facts.statusCode === 404) return undefined;
    if (facts.statusCode === undefined) {
      throw new RuntimeUnavailableError(
        `the Docker engine is not reachable: ${facts.message}`,
        'start Docker Desktop (macOS) or run dockerd (Linux: sudo systemctl start docker)',
        { cause: err },
      );
    }
    throw new ImageBuildError(
      `could not inspect image ${image}: ${facts.message}`,
      { daemonMessage: facts.message },
      { cause: err },
    );
  }
}

/** A pull's JSON event: progress, or an error inside the HTTP 200 stream. */
const PullEventSchema = z.looseObject({
  status: z.string().optional(),
  id: z.string().optional(),
  progress: z.string().optional(),
  error: z.string().optional(),
  errorDetail: z.looseObject({ message: z.string().optional() }).optional(),
});

/**
 * Pulls `image`. Returns undefined when it worked, else why not, in one line: a failure is
 * the expected answer where no registry is reachable, not an error.
 *
 * @throws the signal's reason when `signal` aborts.
 */
async function pullImage(
  docker: Docker,
  image: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  report: (event: EnsureImageProgress) => void,
): Promise<string | undefined> {
  const pull = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    pull.abort();
  }, timeoutMs);
  const onAbort = (): void => pull.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const stream = (await docker.pull(image, {
      abortSignal: pull.signal,
    })) as NodeJS.ReadableStream;
    return await new Promise<string | undefined>((resolve, reject) => {
      let failure: string | undefined;
      docker.modem.followProgress(
        stream,
        (err) => (err ? reject(err) : resolve(failure)),
        (raw: unknown) => {
          // The registry answered: from here the download may take as long as it takes.
          clearTimeout(timer);
          const parsed = PullEventSchema.safeParse(raw);
          if (!parsed.success) return;
          const event = parsed.data;
          const error = event.errorDetail?.message ?? event.error;
          if (error !== undefined) {
            failure ??= oneLine(error);
          } else if (event.status !== undefined) {
            report({ kind: 'layer', id: event.id, status: event.status, progress: event.progress });
          }
        },
      );
    });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (timedOut) return `no answer from the registry within ${timeoutMs / 1000} s`;
    // dockerode words a streamed endpoint's failure as "(HTTP code 500) server error - <the
    // engine's message>"; the engine's message is the part that says what happened.
    return oneLine(dockerErrorFacts(err).message.replace(/^\(HTTP code \d+\) [^-]*- /, ''));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/**
 * A progress callback that cannot break the work: a throw from it is kept, and `check()`
 * raises it at the next safe point (a throw inside a stream or child-process handler would
 * otherwise be uncaught).
 */
function guardedReporter(onProgress: ((event: EnsureImageProgress) => void) | undefined): {
  send: (event: EnsureImageProgress) => void;
  check: () => void;
} {
  let failure: { err: unknown } | undefined;
  return {
    send(event) {
      if (!onProgress || failure) return;
      try {
        onProgress(event);
      } catch (err) {
        failure = { err };
      }
    },
    check() {
      if (failure) {
        throw new ImageBuildError('the progress handler threw', {}, { cause: failure.err });
      }
    },
  };
}
