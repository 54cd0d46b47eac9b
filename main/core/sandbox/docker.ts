/**
 * The Docker runtime: runs agent containers through the Docker Engine API (dockerode).
 *
 * Every container is locked down the same way: no network unless the group allows it, all
 * capabilities dropped, `no-new-privileges`, a read-only root filesystem with a small tmpfs at
 * `/tmp`, memory/CPU/pid ceilings, tini as PID 1, no engine-side log, and automatic removal on
 * exit. The host talks to the agent over the container's stdin/stdout (JSON lines, see
 * agent/protocol.ts); stderr carries the runner's logs.
 */
import { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { PassThrough, Writable, type Duplex } from 'node:stream';

import Docker from 'dockerode';
import { z } from 'zod';

import type { Logger } from '../logger.js';
import {
  OURS_LABEL,
  ImageMissingError,
  RuntimeUnavailableError,
  SCOPE_LABEL,
  type ContainerRuntime,
  type ContainerSpec,
  type ImageState,
  type Mount,
  type RunningContainer,
  type RuntimeState,
  type StartOptions,
} from './runtime.js';

/** What {@link DockerRuntime} needs. */
export interface DockerRuntimeDeps {
  log: Logger;
  /**
   * A ready client; tests inject one. Do not give it a modem `timeout`: docker-modem applies it
   * to the hijacked attach socket too, and would cut a quiet agent's stdio.
   * @default new Docker({ socketPath }) — or docker-modem's own default (DOCKER_HOST, else
   * /var/run/docker.sock) when no socketPath is given
   */
  docker?: Docker;
  /** The engine's Unix socket. Ignored when `docker` is given. @default undefined */
  socketPath?: string;
  /**
   * This Clawbar instance's {@link SCOPE_LABEL} value (see `scopeForHome`). When set, new
   * containers carry it, and `listOurs`/`removeOrphans` only see containers with the same
   * scope. @default undefined (every Clawbar container on the engine)
   */
  scope?: string;
  /** How long `check()` waits for the engine to answer. @default 5000 */
  checkTimeoutMs?: number;
  /**
   * How long `start()` may take in all (create, attach, exit-wait registration, start) before
   * it gives up with {@link RuntimeUnavailableError}. @default 30000
   */
  startTimeoutMs?: number;
  /** How long a running container's `kill()` waits for the engine. @default 10000 */
  killTimeoutMs?: number;
}

/**
 * A container could not be created, attached or started, and the engine said why (an engine
 * that cannot be reached is a {@link RuntimeUnavailableError} instead). Nothing is left behind.
 */
export class ContainerStartError extends Error {
  override readonly name = 'ContainerStartError';
  readonly containerName: string;
  readonly image: string;

  constructor(
    message: string,
    facts: { containerName: string; image: string },
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.containerName = facts.containerName;
    this.image = facts.image;
  }
}

/** The engine stopped reporting on a running container (e.g. dockerd restarted). */
export class ContainerWaitError extends Error {
  override readonly name = 'ContainerWaitError';
}

/** An engine call other than starting a container failed. */
export class DockerEngineError extends Error {
  override readonly name = 'DockerEngineError';
}

/** What `/containers/{id}/wait` answers once the container is gone. */
const WaitResponseSchema = z.object({
  StatusCode: z.number().int(),
  Error: z.object({ Message: z.string() }).nullish(),
});

/** docker.sock errors that mean "the engine is not there", as opposed to "it said no". */
const UNREACHABLE_CODES = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EACCES',
  'ABORT_ERR',
]);

/** Socket errors raised while connecting, before any byte of the request was sent. */
const NEVER_CONNECTED_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES']);

/** How every "cannot reach the engine" message starts, so users and logs can spot it. */
const NOT_REACHABLE = 'Docker engine not reachable';

const DEFAULT_CHECK_TIMEOUT_MS = 5000;
const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_KILL_TIMEOUT_MS = 10_000;
/**
 * How long clean-up after a failed start may take: removing the container, and waiting for the
 * answer to a create that was still in flight when the start gave up.
 */
const CLEANUP_TIMEOUT_MS = 10_000;

export class DockerRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  private readonly docker: Docker;
  private readonly log: Logger;
  private readonly scope: string | undefined;
  private readonly checkTimeoutMs: number;
  private readonly startTimeoutMs: number;
  private readonly killTimeoutMs: number;

  constructor(deps: DockerRuntimeDeps) {
    this.docker =
      deps.docker ?? new Docker(deps.socketPath ? { socketPath: deps.socketPath } : undefined);
    this.log = deps.log.child({ mod: 'docker' });
    this.scope = deps.scope;
    this.checkTimeoutMs = deps.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    this.startTimeoutMs = deps.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    this.killTimeoutMs = deps.killTimeoutMs ?? DEFAULT_KILL_TIMEOUT_MS;
  }

  async check(): Promise<RuntimeState> {
    // A wedged daemon accepts the connection and never answers; without a deadline `doctor`
    // and startup would hang with it.
    const abortSignal = AbortSignal.timeout(this.checkTimeoutMs);
    try {
      await this.get('/_ping', abortSignal);
      const version = await this.get('/version', abortSignal);
      const parsed = z.object({ Version: z.string() }).safeParse(version);
      return { ok: true, version: parsed.success ? parsed.data.Version : 'unknown' };
    } catch (err) {
      const facts = dockerErrorFacts(err);
      this.log.warn({ err }, 'docker engine check failed');
      let reason: string;
      if (abortSignal.aborted) {
        reason = `${NOT_REACHABLE}: it did not answer within ${this.checkTimeoutMs} ms`;
      } else if (isUnreachable(facts)) {
        reason = `${NOT_REACHABLE}: ${facts.message}`;
      } else {
        reason = `the Docker engine is not answering: ${facts.message}`;
      }
      return { ok: false, reason, fix: fixFor(abortSignal.aborted ? 'ETIMEDOUT' : facts.code) };
    }
  }

  async inspectImage(image: string): Promise<ImageState> {
    try {
      const info = await this.docker.getImage(image).inspect();
      return { image, present: true, id: info.Id, createdAt: info.Created };
    } catch (err) {
      if (dockerErrorFacts(err).statusCode === 404) return { image, present: false };
      throw engineError(`inspecting image ${image}`, err);
    }
  }

  async start(spec: ContainerSpec, opts: StartOptions = {}): Promise<RunningContainer> {
    const callerSignal = opts.signal;
    callerSignal?.throwIfAborted();
    const log = this.log.child({ container: spec.name });
    const facts = { containerName: spec.name, image: spec.image };
    const startedAt = performance.now();
    const options = this.createOptions(spec);

    // One signal for every request of this start: the caller's abort or our deadline, whichever
    // comes first. It is never aborted once start() has returned, so the attach and exit-wait
    // requests that carry it live on with the container.
    const giveUp = new AbortController();
    const signal = giveUp.signal;
    const onCallerAbort = (): void => giveUp.abort(callerSignal?.reason);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    const deadline = setTimeout(() => {
      giveUp.abort(
        new RuntimeUnavailableError(
          `the Docker engine did not start the container within ${seconds(this.startTimeoutMs)}`,
          fixFor('ETIMEDOUT'),
        ),
      );
    }, this.startTimeoutMs);

    // The create request does not carry `signal`: aborting it would not tell us whether the
    // engine made the container. It gets its answer (or its own later deadline) instead.
    const createDeadline = new AbortController();
    let creating: Promise<Docker.Container> | undefined;
    let container: Docker.Container | undefined;
    let attaching: Promise<Duplex> | undefined;
    let waiting: Promise<ExitWait> | undefined;
    let stage: 'create' | 'attach' | 'start' = 'create';
    try {
      creating = this.docker.createContainer({ ...options, abortSignal: createDeadline.signal });
      creating.catch(() => undefined);
      container = await untilAborted(creating, signal);
      stage = 'attach';
      // Both requests go out before `start`, in parallel:
      // - attach first, or the runner's first output (and an early crash message) is lost;
      // - the exit wait first, or an AutoRemove container can exit and vanish before we ask,
      //   and `wait` answers 404 with the exit code gone (the docker CLI registers its wait
      //   before start for the same reason: cli/command/container/utils.go waitExitOrRemoved).
      attaching = attachStdio(container, signal);
      waiting = registerExitWait(this.docker, container.id, signal);
      // Handled now: one may fail while we still await the other.
      attaching.catch(() => undefined);
      waiting.catch(() => undefined);
      const socket = await untilAborted(attaching, signal);
      const exit = await untilAborted(waiting, signal);
      stage = 'start';
      const stdio = this.wireStdio(socket, log);
      await untilAborted(container.start({ abortSignal: signal }), signal);
      log.debug(
        { id: container.id, ms: Math.round(performance.now() - startedAt) },
        'container started',
      );
      return this.running(container, spec.name, stdio, exit, log);
    } catch (err) {
      // Once the start is given up, that is the outcome, whatever the aborted request said.
      const gaveUp = signal.aborted;
      const failure: unknown = gaveUp ? signal.reason : startError(stage, spec, facts, err);
      attaching?.then((socket) => socket.destroy()).catch(() => undefined);
      waiting?.then((w) => w.cancel()).catch(() => undefined);
      // Undo whatever exists: a container that never started is not auto-removed. The removal
      // has its own deadline and never holds up the rejection when the engine is in trouble.
      let removal: Promise<void> | undefined;
      if (container) {
        removal = this.removeQuietly(container, log);
      } else if (creating && gaveUp) {
        this.removeLateCreate(creating, createDeadline, spec.name, log);
      } else if (creating && mayHaveReachedEngine(err)) {
        // The create request broke without an answer: the engine may have made the container.
        this.removeInBackground(this.docker.getContainer(spec.name), log);
      }
      // When the engine answered "no" it is healthy: wait for the removal (within the start's
      // deadline), so a failed start leaves nothing behind the moment it rejects.
      if (removal && !gaveUp && dockerErrorFacts(err).statusCode !== undefined) {
        await untilAborted(removal, signal).catch(() => undefined);
      }
      throw failure;
    } finally {
      clearTimeout(deadline);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
  }

  async listOurs(): ReturnType<ContainerRuntime['listOurs']> {
    const label = [`${OURS_LABEL}=1`];
    if (this.scope !== undefined) label.push(`${SCOPE_LABEL}=${this.scope}`);
    let containers: Docker.ContainerInfo[];
    try {
      // Several label filters are ANDed by the engine.
      containers = await this.docker.listContainers({ all: true, filters: { label } });
    } catch (err) {
      throw engineError('listing containers', err);
    }
    return containers.map((c) => ({
      id: c.Id,
      // The API reports names with a leading '/' (the legacy link namespace).
      name: (c.Names[0] ?? c.Id).replace(/^\//, ''),
      state: c.State,
      labels: c.Labels,
    }));
  }

  /**
   * Force-removes every container carrying our label (and scope), except those named in
   * `keep`. Call it only from the process that owns the containers — `serve` at startup, or
   * once the engine is back, with its live runs in `keep` — or it kills live runs.
   */
  async removeOrphans(keep: ReadonlySet<string> = new Set()): Promise<number> {
    const ours = (await this.listOurs()).filter((c) => !keep.has(c.name));
    const results = await Promise.allSettled(
      ours.map((c) =>
        this.docker
          .getContainer(c.id)
          .remove({ force: true })
          .then(() => c),
      ),
    );
    let removed = 0;
    for (const [i, result] of results.entries()) {
      if (result.status === 'fulfilled') {
        removed++;
        continue;
      }
      const status = dockerErrorFacts(result.reason).statusCode;
      // 404: gone meanwhile. 409: AutoRemove is already removing it. Both end as we want.
      if (status === 404 || status === 409) continue;
      this.log.warn(
        { err: result.reason, container: ours[i]?.name },
        'could not remove orphan container',
      );
    }
    if (ours.length > 0)
      this.log.info({ found: ours.length, removed, kept: keep.size }, 'removed orphan containers');
    return removed;
  }

  /**
   * Force-removes a container, with a deadline; never rejects (the orphan sweep is the backstop).
   */
  /** {@link removeQuietly} without waiting for it; never rejects, never throws. */
  private removeInBackground(container: Docker.Container, log: Logger): void {
    this.removeQuietly(container, log).catch((err: unknown) =>
      log.warn({ err }, 'container clean-up failed'),
    );
  }

  private async removeQuietly(container: Docker.Container, log: Logger): Promise<void> {
    try {
      await withDeadline(CLEANUP_TIMEOUT_MS, (abortSignal) =>
        container.remove({ force: true, abortSignal }),
      );
      log.debug({ id: container.id }, 'removed a container that failed to start');
    } catch (err) {
      const status = dockerErrorFacts(err).statusCode;
      // 404: never made, or gone meanwhile. 409: AutoRemove is already removing it.
      if (status === 404 || status === 409) return;
      log.warn({ err, id: container.id }, 'could not remove a container that failed to start');
    }
  }

  /**
   * Removes what a create left behind when the start gave up before its answer: the container
   * it made, once the answer arrives; or, when no answer comes within the clean-up deadline,
   * whatever carries the spec's (unique) name.
   */
  private removeLateCreate(
    creating: Promise<Docker.Container>,
    createDeadline: AbortController,
    name: string,
    log: Logger,
  ): void {
    const timer = setTimeout(() => createDeadline.abort(), CLEANUP_TIMEOUT_MS);
    // A wedged engine must not keep the process alive just for this.
    timer.unref();
    creating.then(
      (container) => {
        clearTimeout(timer);
        log.debug({ id: container.id }, 'create answered after the start gave up; removing');
        this.removeInBackground(container, log);
      },
      (err: unknown) => {
        clearTimeout(timer);
        // An answer ("no such image", a name conflict) means nothing was made, or not by us.
        if (!mayHaveReachedEngine(err)) return;
        this.removeInBackground(this.docker.getContainer(name), log);
      },
    );
  }

  /**
   * A plain GET with a deadline. dockerode's `ping()`/`version()` forward `abortSignal` at run
   * time, but @types/dockerode does not declare the option, so dial the same request directly.
   */
  private get(path: '/_ping' | '/version', abortSignal: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        { path, method: 'GET', abortSignal, statusCodes: { 200: true, 500: 'server error' } },
        (err, result) => (err ? reject(err) : resolve(result)),
      );
    });
  }

  private createOptions(spec: ContainerSpec): Docker.ContainerCreateOptions {
    const facts = { containerName: spec.name, image: spec.image };
    const env = Object.entries(spec.env).map(([key, value]) => {
      if (key.length === 0 || key.includes('=') || key.includes('\0') || value.includes('\0')) {
        throw new ContainerStartError(
          `invalid environment variable name ${JSON.stringify(key)}`,
          facts,
        );
      }
      return `${key}=${value}`;
    });
    const labels: Record<string, string> = { ...spec.labels, [OURS_LABEL]: '1' };
    if (this.scope !== undefined) labels[SCOPE_LABEL] = this.scope;

    return {
      name: spec.name,
      Image: spec.image,
      Env: env,
      Labels: labels,
      User: spec.user,
      Tty: false,
      OpenStdin: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      // StdinOnce must be true for `stdin.end()` to reach the process as EOF. With it false,
      // the engine answers an attach client's half-close by closing the attach's *stdout and
      // stderr* instead and leaves the container's stdin open (moby container/stream/attach.go:
      // CloseStdin is Config.StdinOnce). `docker run -i` sets it for the same reason.
      StdinOnce: true,
      HostConfig: {
        NetworkMode: spec.network ? 'default' : 'none',
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': 'rw,nosuid,size=256m' },
        // MemorySwap equal to Memory means no swap on top: the ceiling is real.
        Memory: spec.limits.memoryBytes,
        MemorySwap: spec.limits.memoryBytes,
        NanoCpus: spec.limits.nanoCpus,
        PidsLimit: spec.limits.pids,
        // Docker cannot mount a read-write bind `nosuid,nodev` (`-v` takes no such option, and
        // HostConfig.Mounts' BindOptions has none; moby/moby#12143, checked on Engine 20.10 by
        // reading /proc/mounts in a container: `-v …:rw,nosuid` is "invalid mode", and a local
        // volume with `o=bind,nosuid` applies the flags only when also `ro`). What they would
        // guard against is closed here instead: with `no-new-privileges` a setuid file does not
        // raise privileges on exec, with every capability dropped the agent cannot make a
        // setuid-root file or a device node (CAP_FSETID, CAP_CHOWN, CAP_MKNOD), and the device
        // cgroup refuses any device node it might find (test/integration/docker-hardening).
        Binds: spec.mounts.map((m) => toBind(m, facts)),
        // No engine-side log: the host reads stdout and stderr over the attach stream, opened
        // before start. The default json-file driver kept every stdout frame (the whole
        // conversation) and unbounded stderr under /var/lib/docker (issue 6: 1.15 GB).
        LogConfig: { Type: 'none', Config: {} },
        AutoRemove: true,
        // tini as PID 1 reaps the zombies that bash tool calls leave behind and forwards signals.
        Init: true,
      },
    };
  }

  /** Splits the attach stream into stdin/stdout/stderr streams for the caller. */
  private wireStdio(
    socket: Duplex,
    log: Logger,
  ): { stdin: Writable; stdout: PassThrough; stderr: PassThrough } {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    // With Tty false the engine multiplexes both outputs on the one attach stream, each chunk
    // behind an 8-byte header (stream type, length); demuxStream undoes that.
    this.docker.modem.demuxStream(socket, stdout, stderr);
    const endOutputs = (): void => {
      if (!stdout.writableEnded) stdout.end();
      if (!stderr.writableEnded) stderr.end();
    };
    // 'end' follows the last 'data', so nothing is cut off; 'close' covers a reset socket.
    socket.once('end', endOutputs);
    socket.once('close', endOutputs);
    // Without a listener, an EPIPE or reset after the container dies would crash the host.
    socket.on('error', (err) => log.debug({ err }, 'attach stream error'));

    const stdin = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (socket.destroyed || socket.writableEnded) {
          log.debug(
            { bytes: chunk.length },
            'stdin write after the container closed its stdio; dropped',
          );
          callback();
          return;
        }
        // Waiting for the socket's callback carries the socket's backpressure to the writer.
        socket.write(chunk, (err) => {
          if (err) log.debug({ err }, 'stdin write failed; the container has gone');
          callback();
        });
      },
      final(callback) {
        // A hijacked attach is a plain socket (docker-modem resolves the 'upgrade' socket), so
        // end() is a TCP/Unix half-close: the engine reads EOF and, with StdinOnce, closes the
        // container's stdin, while we keep reading its output until it exits.
        if (!socket.destroyed && !socket.writableEnded) socket.end();
        callback();
      },
    });
    return { stdin, stdout, stderr };
  }

  private running(
    container: Docker.Container,
    name: string,
    stdio: { stdin: Writable; stdout: PassThrough; stderr: PassThrough },
    exit: ExitWait,
    log: Logger,
  ): RunningContainer {
    const exited = exit.exited.then(
      (result) => {
        log.debug({ exitCode: result.exitCode }, 'container exited');
        return result;
      },
      (err: unknown) => {
        throw new ContainerWaitError(
          `lost track of container ${name}: ${dockerErrorFacts(err).message}`,
          { cause: err },
        );
      },
    );
    // Nobody may ever call wait(); an engine failure must not become an unhandled rejection.
    exited.catch(() => undefined);

    return {
      id: container.id,
      name,
      stdin: stdio.stdin,
      stdout: stdio.stdout,
      stderr: stdio.stderr,
      wait: () => exited,
      kill: async () => {
        const abortSignal = AbortSignal.timeout(this.killTimeoutMs);
        try {
          await untilAborted(container.kill({ signal: 'SIGKILL', abortSignal }), abortSignal);
          log.debug('container killed');
        } catch (err) {
          const facts = dockerErrorFacts(err);
          // 404: already removed. 409: not running (exited, or being removed). Both are done.
          if (facts.statusCode === 404 || facts.statusCode === 409) return;
          if (abortSignal.aborted) {
            throw new RuntimeUnavailableError(
              `the Docker engine did not kill container ${name} within ${seconds(this.killTimeoutMs)}`,
              fixFor('ETIMEDOUT'),
              { cause: err },
            );
          }
          throw unreachableError(facts, err) ?? engineError(`killing container ${name}`, err);
        }
      },
    };
  }
}

/** Opens the hijacked attach stream: one duplex socket carrying stdin in, stdout+stderr out. */
async function attachStdio(container: Docker.Container, abortSignal: AbortSignal): Promise<Duplex> {
  // hijack: docker-modem upgrades the connection and hands back the raw socket, which (unlike
  // its HttpDuplex for non-hijacked stdin) supports a true half-close for EOF.
  const stream: unknown = await container.attach({
    stream: true,
    stdin: true,
    stdout: true,
    stderr: true,
    hijack: true,
    abortSignal,
  });
  if (!isDuplex(stream)) throw new Error('the engine did not return a bidirectional attach stream');
  return stream;
}

function isDuplex(value: unknown): value is Duplex {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<Duplex>).write === 'function' &&
    typeof (value as Partial<Duplex>).on === 'function' &&
    typeof (value as Partial<Duplex>).end === 'function'
  );
}

interface ExitWait {
  /** Resolves once the container has exited and been removed. */
  exited: Promise<{ exitCode: number }>;
  /** Drops the wait request (used when start fails). */
  cancel(): void;
}

/**
 * Asks the engine to report when the container is removed, and resolves as soon as the engine
 * has registered that wait — before the container starts.
 *
 * dockerode's `container.wait()` resolves only with the final body, so it cannot tell us when
 * the waiter exists. The engine (API ≥ 1.30) registers the waiter, then flushes the response
 * headers at once and sends the body at exit (moby api/server/router/container/
 * container_routes.go postContainersWait), so a streamed request that has its headers is a
 * registered waiter. Condition `removed` (AutoRemove is on) still reports the exit code, and
 * means a name is free again once `wait()` resolves.
 */
function registerExitWait(docker: Docker, id: string, abortSignal: AbortSignal): Promise<ExitWait> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      {
        path: `/containers/${encodeURIComponent(id)}/wait?`,
        method: 'POST',
        isStream: true,
        abortSignal,
        // _query goes to the URL; an empty _body keeps docker-modem from echoing it as JSON.
        options: { _query: { condition: 'removed' }, _body: {} },
        statusCodes: {
          200: true,
          400: 'bad parameter',
          404: 'no such container',
          500: 'server error',
        },
      },
      (err, result) => {
        if (err) {
          reject(err);
          return;
        }
        if (!(result instanceof IncomingMessage)) {
          reject(new Error('the engine answered the wait request without a response stream'));
          return;
        }
        const res = result;
        const exited = new Promise<{ exitCode: number }>((resolveExit, rejectExit) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          // A cut connection shows up here at once: 'error' ("aborted", ECONNRESET), then
          // 'close' with the body incomplete.
          res.on('error', (err) => {
            rejectExit(
              new Error(
                `the connection to the Docker engine broke before the container exited (${err.message})`,
                { cause: err },
              ),
            );
          });
          res.on('close', () => {
            if (!res.complete) {
              rejectExit(
                new Error('the engine closed the wait request before the container exited'),
              );
              return;
            }
            const body = Buffer.concat(chunks).toString('utf8');
            let parsed: z.infer<typeof WaitResponseSchema>;
            try {
              parsed = WaitResponseSchema.parse(JSON.parse(body));
            } catch (parseErr) {
              rejectExit(
                new Error(`unexpected wait response: ${body.slice(0, 200)}`, { cause: parseErr }),
              );
              return;
            }
            if (parsed.Error?.Message) {
              rejectExit(new Error(parsed.Error.Message));
              return;
            }
            resolveExit({ exitCode: parsed.StatusCode });
          });
        });
        // Handled here so a cancelled wait is not an unhandled rejection; callers chain on it.
        exited.catch(() => undefined);
        resolve({ exited, cancel: () => res.destroy() });
      },
    );
  });
}

/** Turns a mount into `host:container:ro|rw` bind syntax, which has no escaping for ':'. */
function toBind(mount: Mount, facts: { containerName: string; image: string }): string {
  for (const p of [mount.hostPath, mount.containerPath]) {
    if (!p.startsWith('/') || p.includes(':') || p.includes(',')) {
      throw new ContainerStartError(
        `mount path ${p} must be absolute and contain no ':' or ','`,
        facts,
      );
    }
  }
  return `${mount.hostPath}:${mount.containerPath}:${mount.readOnly ? 'ro' : 'rw'}`;
}

export interface DockerErrorFacts {
  /** HTTP status from the engine, when it answered. */
  statusCode?: number;
  /** Socket error code (ENOENT, ECONNREFUSED, …), when it did not. */
  code?: string;
  /** The engine's own message when it gave one, else the error's message. */
  message: string;
}

/**
 * Reads what dockerode puts on its errors: `statusCode` and `json.message` (the engine's
 * words) for HTTP errors, Node's `code` for socket errors.
 */
export function dockerErrorFacts(err: unknown): DockerErrorFacts {
  if (typeof err !== 'object' || err === null) return { message: String(err) };
  const e = err as {
    statusCode?: unknown;
    code?: unknown;
    json?: unknown;
    message?: unknown;
    name?: unknown;
  };
  const facts: DockerErrorFacts = {
    message: typeof e.message === 'string' ? e.message : String(err),
  };
  if (typeof e.statusCode === 'number') facts.statusCode = e.statusCode;
  if (typeof e.code === 'string') facts.code = e.code;
  else if (e.name === 'AbortError' || e.name === 'TimeoutError') facts.code = 'ABORT_ERR';
  if (
    typeof e.json === 'object' &&
    e.json !== null &&
    typeof (e.json as { message?: unknown }).message === 'string'
  ) {
    facts.message = (e.json as { message: string }).message;
  }
  facts.message = facts.message.trim();
  return facts;
}

function isUnreachable(facts: DockerErrorFacts): boolean {
  return (
    facts.statusCode === undefined && facts.code !== undefined && UNREACHABLE_CODES.has(facts.code)
  );
}

function fixFor(code: string | undefined): string {
  if (code === 'EACCES') {
    return 'your user may not use the Docker socket: add it to the docker group (sudo usermod -aG docker $USER) and log in again';
  }
  if (code === 'ETIMEDOUT' || code === 'ABORT_ERR') {
    // It may be running but wedged, or slow to come up.
    return 'start or restart Docker Desktop (macOS) or dockerd (Linux: sudo systemctl restart docker)';
  }
  return 'start Docker Desktop (macOS) or run dockerd (Linux: sudo systemctl start docker)';
}

/** The {@link RuntimeUnavailableError} for an error that says the engine is not there. */
function unreachableError(
  facts: DockerErrorFacts,
  cause: unknown,
): RuntimeUnavailableError | undefined {
  if (!isUnreachable(facts)) return undefined;
  return new RuntimeUnavailableError(`${NOT_REACHABLE}: ${facts.message}`, fixFor(facts.code), {
    cause,
  });
}

/**
 * Whether a request that failed without an answer may still have been carried out: it broke
 * after connecting (reset, timeout, our abort), not at the connect itself.
 */
function mayHaveReachedEngine(err: unknown): boolean {
  const facts = dockerErrorFacts(err);
  if (facts.statusCode !== undefined) return false;
  return !(facts.code !== undefined && NEVER_CONNECTED_CODES.has(facts.code));
}

function seconds(ms: number): string {
  return `${ms / 1000} s`;
}

/**
 * Settles like `promise`, or rejects with the signal's reason as soon as it aborts. dockerode
 * forwards `abortSignal` to its HTTP request, so an aborted request errors out too; the race
 * makes the abort hold even if a request ignored it. The caller deals with a late settle.
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // Nobody else may be listening: its own rejection (the aborted request) is expected.
    promise.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

/** Runs one engine request that is aborted, and rejects, at a deadline of its own. */
function withDeadline<T>(ms: number, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
  const abortSignal = AbortSignal.timeout(ms);
  return untilAborted(call(abortSignal), abortSignal);
}

function engineError(what: string, err: unknown): DockerEngineError {
  const facts = dockerErrorFacts(err);
  const hint = isUnreachable(facts) ? `; ${fixFor(facts.code)}` : '';
  return new DockerEngineError(`${what} failed: ${facts.message}${hint}`, { cause: err });
}

function startError(
  stage: 'create' | 'attach' | 'start',
  spec: ContainerSpec,
  facts: { containerName: string; image: string },
  err: unknown,
): ContainerStartError | RuntimeUnavailableError | ImageMissingError {
  if (
    err instanceof ContainerStartError ||
    err instanceof RuntimeUnavailableError ||
    err instanceof ImageMissingError
  ) {
    return err;
  }
  const e = dockerErrorFacts(err);
  const unreachable = unreachableError(e, err);
  if (unreachable) return unreachable;
  if (stage === 'create' && e.statusCode === 404)
    return new ImageMissingError(spec.image, { cause: err });
  let message: string;
  if (stage === 'create' && e.statusCode === 409) {
    message = `a container named ${spec.name} already exists: ${e.message}`;
  } else {
    message = `could not ${stage} container ${spec.name} (image ${spec.image}): ${e.message}`;
  }
  return new ContainerStartError(message, facts, { cause: err });
}
