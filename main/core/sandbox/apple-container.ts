/**
 * The Apple Container runtime: runs agent containers through Apple's `container` CLI
 * (github.com/apple/container, 1.0 or later) on macOS. Each container is a lightweight VM.
 *
 * The CLI is the only interface Apple documents, so every operation is one `container`
 * process: `create` then `start --attach --interactive` for a run (its stdin, stdout and stderr
 * are the container's, so the runner's JSON lines flow over the CLI's own pipes), `kill`,
 * `list --all --format json` and `delete --force` for orphans, `system status` / `system
 * start` for the service, `image inspect` and `build` for the image. What each is given, and
 * how its output is read, lives in apple-container-cli.ts, where it is tested without the CLI.
 *
 * The process spawner is injected, so tests drive this class with recorded outputs, and with a
 * fake `container` executable for the stdin/stdout piping.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import type { Logger } from '../logger.js';
import {
  APPLE_FIXES,
  AppleContainerArgumentError,
  LIST_ARGS,
  STATUS_ARGS,
  buildArgs,
  classifyFailure,
  createArgs,
  firstErrorLine,
  imageInspectArgs,
  killArgs,
  oursOnly,
  parseContainerList,
  parseImageInspect,
  parseSystemStatus,
  planMounts,
  removeArgs,
  startArgs,
  systemStartArgs,
  type InspectedImage,
  type PathKind,
} from './apple-container-cli.js';
import {
  ImageMissingError,
  RuntimeUnavailableError,
  type ContainerRuntime,
  type ContainerSpec,
  type ImageState,
  type RunningContainer,
  type RuntimeState,
  type StartOptions,
} from './runtime.js';

/** The part of `child_process.spawn` the runtime uses; tests pass a fake. */
export type Spawner = (command: string, args: string[], options: SpawnOptions) => ChildProcess;

/** What {@link AppleContainerRuntime} needs. */
export interface AppleContainerRuntimeDeps {
  log: Logger;
  /** The `container` executable. @default 'container' (looked up on PATH) */
  binary?: string;
  /** @default child_process.spawn */
  spawn?: Spawner;
  /** This instance's scope label (see `scopeForHome`). @default undefined (every Clawbar container) */
  scope?: string;
  /**
   * Where single-file mounts are staged, one private directory per run (see `planMounts`).
   * @default `<os.tmpdir()>/clawbar-apple-files`
   */
  stagingRoot?: string;
  /**
   * When `check()` finds the service stopped, run `container system start` (at most once a
   * minute) and check again. `clawbar doctor` turns it off: it reports, it does not fix.
   * @default true
   */
  startService?: boolean;
  /** How long `check()` waits for `system status`. @default 15000 (the CLI's own ping waits 10 s) */
  checkTimeoutMs?: number;
  /** How long `system start` may take. @default 60000 */
  serviceStartTimeoutMs?: number;
  /** How long `create` (and the image check before it) may take. @default 60000 */
  startTimeoutMs?: number;
  /** How long `kill` may take. @default 10000 */
  killTimeoutMs?: number;
  /** How long `list`, `delete` and `image inspect` may take. @default 30000 */
  commandTimeoutMs?: number;
  /** @default Date.now */
  now?: () => number;
}

/** A `container` command that exited: its code and what it printed. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A container could not be created or started, and the CLI said why. Nothing is left behind. */
export class AppleContainerStartError extends Error {
  override readonly name = 'ContainerStartError';
}

/** A `container` command other than a run failed. */
export class AppleContainerError extends Error {
  override readonly name = 'AppleContainerError';
}

/** The most a command's output may hold before it is cut (a list of many containers fits). */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
/** How often `check()` may try to start the service. */
const SERVICE_START_INTERVAL_MS = 60_000;

const NOT_REACHABLE = 'Apple container service not reachable';

export class AppleContainerRuntime implements ContainerRuntime {
  readonly kind = 'apple' as const;
  private readonly log: Logger;
  private readonly binary: string;
  private readonly spawn: Spawner;
  private readonly scope: string | undefined;
  private readonly stagingRoot: string;
  private readonly startService: boolean;
  private readonly checkTimeoutMs: number;
  private readonly serviceStartTimeoutMs: number;
  private readonly startTimeoutMs: number;
  private readonly killTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly now: () => number;
  private lastServiceStart = Number.NEGATIVE_INFINITY;

  constructor(deps: AppleContainerRuntimeDeps) {
    this.log = deps.log.child({ mod: 'apple-container' });
    this.binary = deps.binary ?? 'container';
    this.spawn = deps.spawn ?? nodeSpawn;
    this.scope = deps.scope;
    this.stagingRoot = deps.stagingRoot ?? path.join(os.tmpdir(), 'clawbar-apple-files');
    this.startService = deps.startService ?? true;
    this.checkTimeoutMs = deps.checkTimeoutMs ?? 15_000;
    this.serviceStartTimeoutMs = deps.serviceStartTimeoutMs ?? 60_000;
    this.startTimeoutMs = deps.startTimeoutMs ?? 60_000;
    this.killTimeoutMs = deps.killTimeoutMs ?? 10_000;
    this.commandTimeoutMs = deps.commandTimeoutMs ?? 30_000;
    this.now = deps.now ?? Date.now;
  }

  async check(): Promise<RuntimeState> {
    const first = await this.status();
    if (first.ok || !this.startService || first.fix !== APPLE_FIXES.start) return first;
    if (this.now() - this.lastServiceStart < SERVICE_START_INTERVAL_MS) return first;
    this.lastServiceStart = this.now();
    this.log.info('the container service is not running; starting it');
    try {
      const started = await this.run(
        systemStartArgs(Math.ceil(this.serviceStartTimeoutMs / 1000)),
        this.serviceStartTimeoutMs + 5_000,
      );
      if (started.code !== 0) {
        const why = firstErrorLine(started.stderr) ?? `exit code ${started.code}`;
        this.log.warn({ why }, 'container system start failed');
        return {
          ok: false,
          reason: `${NOT_REACHABLE}: \`container system start\` failed: ${why}`,
          fix: APPLE_FIXES.restart,
        };
      }
    } catch (err) {
      this.log.warn({ err }, 'container system start failed');
      return first;
    }
    return this.status();
  }

  /** `system status`, turned into a state with a fix; never throws. */
  private async status(): Promise<RuntimeState> {
    let result: CliResult;
    try {
      result = await this.run([...STATUS_ARGS], this.checkTimeoutMs);
    } catch (err) {
      if (err instanceof RuntimeUnavailableError)
        return { ok: false, reason: err.message, fix: err.fix };
      return {
        ok: false,
        reason: `${NOT_REACHABLE}: ${(err as Error).message}`,
        fix: APPLE_FIXES.restart,
      };
    }
    const status = parseSystemStatus(result.code, result.stdout, result.stderr);
    switch (status.state) {
      case 'running':
        return { ok: true, version: status.version };
      case 'not-running':
        return {
          ok: false,
          reason: `${NOT_REACHABLE}: the apiserver is not running`,
          fix: APPLE_FIXES.start,
        };
      case 'unregistered':
        return {
          ok: false,
          reason: `${NOT_REACHABLE}: the apiserver is not registered with launchd`,
          fix: APPLE_FIXES.start,
        };
      case 'unknown': {
        const tooOld = classifyFailure(result.stderr) === 'too-old';
        return {
          ok: false,
          reason: `${NOT_REACHABLE}: ${status.detail}`,
          fix: tooOld ? APPLE_FIXES.upgrade : APPLE_FIXES.restart,
        };
      }
      default: {
        const unreachable: never = status;
        return unreachable;
      }
    }
  }

  async inspectImage(image: string): Promise<ImageState> {
    const found = await this.inspectImageDetails(image);
    if (!found) return { image, present: false };
    return {
      image,
      present: true,
      id: found.id,
      ...(found.createdAt ? { createdAt: found.createdAt } : {}),
    };
  }

  /**
   * The image's id, creation time and labels; null when there is no such image.
   * @throws {RuntimeUnavailableError} when the service cannot be reached.
   * @throws {AppleContainerError} when the CLI fails otherwise.
   */
  async inspectImageDetails(image: string): Promise<InspectedImage | null> {
    const result = await this.run(imageInspectArgs(image), this.commandTimeoutMs);
    if (result.code === 0) return parseImageInspect(result.stdout);
    const failure = classifyFailure(result.stderr);
    if (failure === 'not-found') return null;
    throw this.failureError(`inspecting image ${image}`, result, failure);
  }

  async start(spec: ContainerSpec, opts: StartOptions = {}): Promise<RunningContainer> {
    const signal = opts.signal;
    signal?.throwIfAborted();
    const log = this.log.child({ container: spec.name });
    const staging = path.join(this.stagingRoot, spec.name);
    const cleanStaging = (): void => {
      fs.rm(staging, { recursive: true, force: true }, (err) => {
        if (err) log.warn({ err, staging }, 'could not remove the staged files');
      });
    };
    try {
      const plan = planMounts(spec.mounts, pathKind, staging);
      const args = createArgs(spec, plan.mounts, this.scope);
      if (plan.copies.length > 0) stageFiles(staging, plan.copies);

      // `create` would try to pull a missing image from a registry; ask first.
      const image = await this.inspectImageDetails(spec.image);
      if (!image) throw new ImageMissingError(spec.image);
      signal?.throwIfAborted();

      let created: CliResult;
      try {
        created = await this.run(args, this.startTimeoutMs, signal);
      } catch (err) {
        // Cut off mid-create (abort or deadline): the container may exist; leave nothing behind.
        await this.removeQuietly(spec.name, log);
        throw err;
      }
      if (created.code !== 0) {
        const failure = classifyFailure(created.stderr);
        if (failure === 'unavailable') throw this.unavailable(created.stderr);
        const why = firstErrorLine(created.stderr) ?? `exit code ${created.code}`;
        throw new AppleContainerStartError(
          failure === 'exists'
            ? `a container named ${spec.name} already exists: ${why}`
            : `could not create container ${spec.name} (image ${spec.image}): ${why}`,
        );
      }
      if (signal?.aborted) {
        await this.removeQuietly(spec.name, log);
        throw signal.reason as Error;
      }
      return await this.attach(spec.name, log, cleanStaging);
    } catch (err) {
      cleanStaging();
      if (err instanceof AppleContainerArgumentError) {
        throw new AppleContainerStartError(err.message, { cause: err });
      }
      throw err;
    }
  }

  /** Starts the created container with the CLI's stdio as the container's. */
  private attach(name: string, log: Logger, onExit: () => void): Promise<RunningContainer> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(this.binary, startArgs(name), { stdio: ['pipe', 'pipe', 'pipe'] });
      const exited = new Promise<{ exitCode: number }>((resolveExit) => {
        child.once('close', (code, sig) => {
          onExit();
          // The CLI exits with the container's exit code. Ended by a signal itself (our
          // SIGKILL when the service was wedged), it is reported as a shell would: 128 + n.
          const exitCode = code ?? 128 + signalNumber(sig);
          log.debug({ exitCode, signal: sig }, 'container exited');
          resolveExit({ exitCode });
        });
      });
      child.once('error', (err: NodeJS.ErrnoException) => {
        // Only a failed spawn lands here before 'spawn'; later errors are the pipes'.
        reject(
          err.code === 'ENOENT'
            ? new RuntimeUnavailableError(
                `${NOT_REACHABLE}: ${this.binary} is not installed`,
                APPLE_FIXES.install,
                { cause: err },
              )
            : err,
        );
        this.removeQuietly(name, log).catch(() => undefined);
      });
      child.once('spawn', () => {
        const { stdin, stdout, stderr } = child;
        if (!stdin || !stdout || !stderr) {
          reject(new Error('the container CLI was started without pipes'));
          return;
        }
        resolve({
          id: name,
          name,
          stdin: guardedStdin(stdin, log),
          stdout,
          stderr,
          wait: () => exited,
          kill: () => this.kill(name, child, log),
        });
      });
    });
  }

  private async kill(name: string, child: ChildProcess, log: Logger): Promise<void> {
    let result: CliResult;
    try {
      result = await this.run(killArgs(name), this.killTimeoutMs);
    } catch (err) {
      // A wedged service: at least stop waiting on the attached CLI; the orphan sweep removes
      // the container once the service answers again.
      if (child.exitCode === null) child.kill('SIGKILL');
      throw err;
    }
    if (result.code === 0) {
      log.debug('container killed');
      return;
    }
    const failure = classifyFailure(result.stderr);
    // Gone already, or not running: done either way.
    if (failure === 'not-found' || /not running|is stopped/i.test(result.stderr)) return;
    if (child.exitCode === null) child.kill('SIGKILL');
    throw this.failureError(`killing container ${name}`, result, failure);
  }

  async listOurs(): Promise<
    Array<{ id: string; name: string; state: string; labels: Record<string, string> }>
  > {
    const result = await this.run([...LIST_ARGS], this.commandTimeoutMs);
    if (result.code !== 0)
      throw this.failureError('listing containers', result, classifyFailure(result.stderr));
    return oursOnly(parseContainerList(result.stdout), this.scope);
  }

  async removeOrphans(keep: ReadonlySet<string> = new Set()): Promise<number> {
    const orphans = (await this.listOurs()).filter((c) => !keep.has(c.name) && !keep.has(c.id));
    if (orphans.length === 0) return 0;
    const ids = orphans.map((c) => c.id);
    const result = await this.run(removeArgs(ids), this.commandTimeoutMs);
    // `delete` prints each id it removed, and fails as a whole if any one failed.
    const removed = result.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => ids.includes(l)).length;
    if (result.code !== 0) {
      const failure = classifyFailure(result.stderr);
      if (failure === 'unavailable') throw this.unavailable(result.stderr);
      this.log.warn(
        { removed, of: ids.length, why: firstErrorLine(result.stderr) },
        'some orphans were not removed',
      );
    }
    if (removed > 0) this.log.info({ removed }, 'removed orphaned containers');
    return removed;
  }

  /**
   * `container build` of the agent image, each output line reported as it comes.
   * @throws {AppleContainerError} when the build fails, with its last lines.
   */
  async buildImage(
    opts: { contextDir: string; tag: string; labels: Record<string, string>; baseImage?: string },
    onLine: (line: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const tail: string[] = [];
    const result = await this.run(buildArgs(opts), 60 * 60_000, signal, (line) => {
      tail.push(line);
      if (tail.length > 5) tail.shift();
      onLine(line);
    });
    if (result.code !== 0) {
      const failure = classifyFailure(result.stderr);
      if (failure === 'unavailable') throw this.unavailable(result.stderr);
      throw new AppleContainerError(
        `container build of ${opts.tag} failed (exit code ${result.code}): ${tail.join(' | ') || firstErrorLine(result.stderr) || 'no output'}`,
      );
    }
  }

  private async removeQuietly(name: string, log: Logger): Promise<void> {
    try {
      await this.run(removeArgs([name]), this.commandTimeoutMs);
    } catch (err) {
      log.warn({ err }, 'could not remove a container after a failed start');
    }
  }

  private unavailable(stderr: string): RuntimeUnavailableError {
    return new RuntimeUnavailableError(
      `${NOT_REACHABLE}: ${firstErrorLine(stderr) ?? 'no answer'}`,
      APPLE_FIXES.start,
    );
  }

  private failureError(
    what: string,
    result: CliResult,
    failure: ReturnType<typeof classifyFailure>,
  ): Error {
    if (failure === 'unavailable') return this.unavailable(result.stderr);
    const hint = failure === 'too-old' ? `; ${APPLE_FIXES.upgrade}` : '';
    return new AppleContainerError(
      `${what} failed: ${firstErrorLine(result.stderr) ?? `exit code ${result.code}`}${hint}`,
    );
  }

  /**
   * Runs one `container` command to its end, with a deadline (after which it is killed).
   * `onLine` gets stdout and stderr lines as they come, for progress.
   * @throws {RuntimeUnavailableError} when the CLI is not installed or misses its deadline.
   * @throws the signal's reason when `signal` aborts (the process is killed).
   */
  run(
    args: string[],
    timeoutMs: number,
    signal?: AbortSignal,
    onLine?: (line: string) => void,
  ): Promise<CliResult> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = this.spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        reject(err as Error);
        return;
      }
      const out = collector(onLine);
      const errOut = collector(onLine);
      child.stdout?.on('data', out.push);
      child.stderr?.on('data', errOut.push);
      let failure: Error | undefined;
      const onAbort = (): void => {
        failure = signal?.reason as Error;
        child.kill('SIGKILL');
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => {
        failure = new RuntimeUnavailableError(
          `${NOT_REACHABLE}: \`container ${args.slice(0, 2).join(' ')}\` did not finish within ${timeoutMs / 1000} s`,
          APPLE_FIXES.restart,
        );
        child.kill('SIGKILL');
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      child.once('error', (err: NodeJS.ErrnoException) => {
        done();
        reject(
          err.code === 'ENOENT'
            ? new RuntimeUnavailableError(
                `${NOT_REACHABLE}: \`${this.binary}\` is not installed (not found on PATH)`,
                APPLE_FIXES.install,
                { cause: err },
              )
            : err,
        );
      });
      child.once('close', (code, sig) => {
        done();
        out.flush();
        errOut.flush();
        if (failure) {
          reject(failure);
          return;
        }
        resolve({
          code: code ?? 128 + signalNumber(sig),
          stdout: out.text(),
          stderr: errOut.text(),
        });
      });
    });
  }
}

/** Gathers a stream's bytes up to the cap, and hands out whole lines as they complete. */
function collector(onLine?: (line: string) => void): {
  push: (chunk: Buffer) => void;
  flush: () => void;
  text: () => string;
} {
  const chunks: Buffer[] = [];
  let size = 0;
  let partial = '';
  return {
    push: (chunk: Buffer) => {
      if (size < MAX_OUTPUT_BYTES) {
        chunks.push(chunk);
        size += chunk.length;
      }
      if (!onLine) return;
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') onLine(printable(line));
    },
    flush: () => {
      if (onLine && partial.trim() !== '') onLine(printable(partial));
      partial = '';
    },
    text: () => Buffer.concat(chunks).toString('utf8').slice(0, MAX_OUTPUT_BYTES),
  };
}

/** Printable text only: build output reaches terminals and logs. */
function printable(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ' ').trimEnd();
}

function signalNumber(sig: NodeJS.Signals | null): number {
  return sig ? (os.constants.signals[sig] ?? 0) : 0;
}

/** What a mount source is, without following a final symlink (the policy resolved them). */
function pathKind(hostPath: string): PathKind {
  try {
    const stat = fs.lstatSync(hostPath);
    if (stat.isDirectory()) return 'directory';
    if (stat.isFile()) return 'file';
    return 'other';
  } catch {
    return 'missing';
  }
}

/**
 * Copies single files into the run's staging directory (owner-only). APFS clones the file
 * (COPYFILE_FICLONE), so a large file costs no space until one side changes; the copy is the
 * snapshot the agent reads.
 */
function stageFiles(staging: string, copies: ReadonlyArray<{ from: string; to: string }>): void {
  for (const { from, to } of copies) {
    fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o700 });
    fs.copyFileSync(from, to, fs.constants.COPYFILE_FICLONE);
    fs.chmodSync(to, 0o444);
  }
}

/**
 * The container's stdin as the runtime interface promises it: writes after the container has
 * gone are dropped, never raised (an EPIPE would otherwise crash the host).
 */
function guardedStdin(pipe: Writable, log: Logger): Writable {
  pipe.on('error', (err) => log.debug({ err }, 'container stdin error'));
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (pipe.destroyed || pipe.writableEnded) {
        log.debug({ bytes: chunk.length }, 'stdin write after the container closed; dropped');
        callback();
        return;
      }
      pipe.write(chunk, () => callback());
    },
    final(callback) {
      if (!pipe.destroyed && !pipe.writableEnded) pipe.end();
      callback();
    },
  });
}
