/**
 * The Docker runtime: runs agent containers through the Docker Engine API (dockerode).
 *
 * Every container is locked down the same way: no network unless the group allows it, all
 * capabilities dropped, `no-new-privileges`, a read-only root filesystem with a small tmpfs at
 * `/tmp`, memory/CPU/pid ceilings, tini as PID 1, and automatic removal on exit. The host talks
 * to the agent over the container's stdin/stdout (JSON lines, see agent/protocol.ts); stderr
 * carries the runner's logs.
 */
import { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { PassThrough, Writable, type Duplex } from 'node:stream';

import Docker from 'dockerode';
import { z } from 'zod';

import type { Logger } from '../logger.js';
import {
  OURS_LABEL,
  SCOPE_LABEL,
  type ContainerRuntime,
  type ContainerSpec,
  type ImageState,
  type Mount,
  type RunningContainer,
  type RuntimeState,
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
}

/** A container could not be created, attached or started. Nothing is left behind. */
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

const DEFAULT_CHECK_TIMEOUT_MS = 5000;

export class DockerRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  private readonly docker: Docker;
  private readonly log: Logger;
  private readonly scope: string | undefined;
  private readonly checkTimeoutMs: number;

  constructor(deps: DockerRuntimeDeps) {
    this.docker =
      deps.docker ?? new Docker(deps.socketPath ? { socketPath: deps.socketPath } : undefined);
    this.log = deps.log.child({ mod: 'docker' });
    this.scope = deps.scope;
    this.checkTimeoutMs = deps.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
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
      return {
        ok: false,
        reason: abortSignal.aborted
          ? `the Docker engine did not answer within ${this.checkTimeoutMs} ms`
          : `the Docker engine is not answering: ${facts.message}`,
        fix: fixFor(facts.code),
      };
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

  async start(spec: ContainerSpec): Promise<RunningContainer> {
    const log = this.log.child({ container: spec.name });
    const facts = { containerName: spec.name, image: spec.image };
    const startedAt = performance.now();
    const options = this.createOptions(spec);

    let container: Docker.Container | undefined;
    let attaching: Promise<Duplex> | undefined;
    let waiting: Promise<ExitWait> | undefined;
    let stage: 'create' | 'attach' | 'start' = 'create';
    try {
      container = await this.docker.createContainer(options);
      stage = 'attach';
      // Both requests go out before `start`, in parallel:
      // - attach first, or the runner's first output (and an early crash message) is lost;
      // - the exit wait first, or an AutoRemove container can exit and vanish before we ask,
      //   and `wait` answers 404 with the exit code gone (the docker CLI registers its wait
      //   before start for the same reason: cli/command/container/utils.go waitExitOrRemoved).
      attaching = attachStdio(container);
      waiting = registerExitWait(this.docker, container.id);
      const socket = await attaching;
      const exit = await waiting;
      stage = 'start';
      const stdio = this.wireStdio(socket, log);
      await container.start();
      log.debug(
        { id: container.id, ms: Math.round(performance.now() - startedAt) },
        'container started',
      );
      return this.running(container, spec.name, stdio, exit, log);
    } catch (err) {
      // Undo whatever exists. A container that never started is not auto-removed.
      void attaching?.then(
        (socket) => socket.destroy(),
        () => undefined,
      );
      void waiting?.then(
        (w) => w.cancel(),
        () => undefined,
      );
      if (container) await forceRemove(container, log);
      throw startError(stage, spec, facts, err);
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
   * Force-removes every container carrying our label (and scope). Call it only from the
   * process that owns the containers — `serve` at startup — or it kills live runs.
   */
  async removeOrphans(): Promise<number> {
    const ours = await this.listOurs();
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
      this.log.info({ found: ours.length, removed }, 'removed orphan containers');
    return removed;
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
        Binds: spec.mounts.map((m) => toBind(m, facts)),
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
        try {
          await container.kill({ signal: 'SIGKILL' });
          log.debug('container killed');
        } catch (err) {
          const status = dockerErrorFacts(err).statusCode;
          // 404: already removed. 409: not running (exited, or being removed). Both are done.
          if (status === 404 || status === 409) return;
          throw engineError(`killing container ${name}`, err);
        }
      },
    };
  }
}

/** Opens the hijacked attach stream: one duplex socket carrying stdin in, stdout+stderr out. */
async function attachStdio(container: Docker.Container): Promise<Duplex> {
  // hijack: docker-modem upgrades the connection and hands back the raw socket, which (unlike
  // its HttpDuplex for non-hijacked stdin) supports a true half-close for EOF.
  const stream: unknown = await container.attach({
    stream: true,
    stdin: true,
    stdout: true,
    stderr: true,
    hijack: true,
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
function registerExitWait(docker: Docker, id: string): Promise<ExitWait> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      {
        path: `/containers/${encodeURIComponent(id)}/wait?`,
        method: 'POST',
        isStream: true,
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
          res.on('error', rejectExit);
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

async function forceRemove(container: Docker.Container, log: Logger): Promise<void> {
  try {
    await container.remove({ force: true });
  } catch (err) {
    const status = dockerErrorFacts(err).statusCode;
    if (status === 404 || status === 409) return;
    log.warn({ err, id: container.id }, 'could not remove a container that failed to start');
  }
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
  return 'start Docker Desktop (macOS) or run dockerd (Linux: sudo systemctl start docker)';
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
): ContainerStartError {
  if (err instanceof ContainerStartError) return err;
  const e = dockerErrorFacts(err);
  let message: string;
  if (isUnreachable(e)) {
    message = `the Docker engine is not answering (${e.code}); ${fixFor(e.code)}`;
  } else if (stage === 'create' && e.statusCode === 404) {
    message = `image ${spec.image} is not built; run \`clawbar image build\``;
  } else if (stage === 'create' && e.statusCode === 409) {
    message = `a container named ${spec.name} already exists: ${e.message}`;
  } else {
    message = `could not ${stage} container ${spec.name} (image ${spec.image}): ${e.message}`;
  }
  return new ContainerStartError(message, facts, { cause: err });
}
