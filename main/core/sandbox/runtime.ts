/**
 * The container runtime interface. One implementation per external system:
 * `docker.ts` (dockerode) and, later, `apple-container.ts` (the `container` CLI).
 * Swapping runtimes means choosing a different implementation of this interface.
 */
import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';

/** A host directory made visible inside the container. */
export interface Mount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

/** Resource ceilings for one agent container. */
export interface ContainerLimits {
  /** @default 1 GiB */
  memoryBytes: number;
  /** CPU share in units of 1e-9 CPUs. @default 1 CPU */
  nanoCpus: number;
  /** @default 256 */
  pids: number;
}

export const DEFAULT_LIMITS: ContainerLimits = {
  memoryBytes: 1024 * 1024 * 1024,
  nanoCpus: 1_000_000_000,
  pids: 256,
};

/** Everything needed to start one agent container. */
export interface ContainerSpec {
  /** Unique, Docker-safe name, e.g. `clawbar-family-1732441234567`. */
  name: string;
  image: string;
  mounts: Mount[];
  /** Plain settings only. Never secrets: the model key stays on the host. */
  env: Record<string, string>;
  /** Extra labels; the runtime always adds its own "ours" label. */
  labels: Record<string, string>;
  limits: ContainerLimits;
  /** False means `--network none`. @default false */
  network: boolean;
  /** `uid:gid` to run as; the image's non-root user when omitted. */
  user?: string;
}

/** A started container, with its stdio already attached. */
export interface RunningContainer {
  readonly id: string;
  readonly name: string;
  /**
   * The container's stdin. `end()` delivers EOF to the process inside. Writes after the
   * container has exited are dropped, not raised as errors: the exit is reported by `wait()`.
   */
  readonly stdin: Writable;
  /** The container's stdout; ends when the container's stdio closes. */
  readonly stdout: Readable;
  /** The container's stderr, kept apart from stdout; ends with it. */
  readonly stderr: Readable;
  /**
   * Resolves when the container exits, with its exit code. Rejects when the runtime loses track
   * of the container (the engine restarted, or the connection to it broke): that is a failed
   * run, never a clean exit.
   */
  wait(): Promise<{ exitCode: number }>;
  /**
   * Stops the container now (SIGKILL). Safe to call twice or after exit. Has a deadline of its
   * own, so a wedged engine cannot hang the caller; rejects with
   * {@link RuntimeUnavailableError} when the engine cannot be reached.
   */
  kill(): Promise<void>;
}

export interface StartOptions {
  /**
   * Aborting it gives the start up at whatever stage it is in (create, attach, start): start
   * rejects with the signal's reason, and a container that was created is removed.
   */
  signal?: AbortSignal;
}

export type RuntimeState =
  { ok: true; version: string } | { ok: false; reason: string; fix: string };

export interface ImageState {
  image: string;
  /** Whether the engine has it; null when the engine could not be asked (it is down). */
  present: boolean | null;
  id?: string;
  createdAt?: string;
}

export interface ContainerRuntime {
  readonly kind: 'docker' | 'apple';
  /** Whether the engine answers, with a fix for the user when it does not. */
  check(): Promise<RuntimeState>;
  inspectImage(image: string): Promise<ImageState>;
  /**
   * Creates, attaches and starts a container. It has a deadline of its own (a wedged engine
   * rejects with {@link RuntimeUnavailableError}), and `opts.signal` cancels it sooner.
   * @throws {RuntimeUnavailableError} when the engine cannot be reached or does not answer
   */
  start(spec: ContainerSpec, opts?: StartOptions): Promise<RunningContainer>;
  /** Containers carrying our label, running or not. */
  listOurs(): Promise<
    Array<{ id: string; name: string; state: string; labels: Record<string, string> }>
  >;
  /**
   * Removes containers left behind by a previous process (after a crash), or lost while the
   * engine was unreachable. Containers named in `keep` belong to live runs and stay.
   * Returns how many were removed.
   */
  removeOrphans(keep?: ReadonlySet<string>): Promise<number>;
}

/**
 * The container engine cannot be reached, or did not answer in time. This is not the run's
 * fault: the core waits for the engine to come back instead of spending the group's retries.
 */
export class RuntimeUnavailableError extends Error {
  override readonly name = 'RuntimeUnavailableError';
  /** What the user can do about it, e.g. "start Docker Desktop". */
  readonly fix: string;

  constructor(message: string, fix: string, options?: ErrorOptions) {
    super(message, options);
    this.fix = fix;
  }
}

/** The label every Clawbar container carries, so orphans can be found and cleaned. */
export const OURS_LABEL = 'dev.clawbar.managed';

/**
 * The label naming the Clawbar instance (one per data root) that started a container. A runtime
 * given a scope sees and cleans only its own containers, so two instances sharing one engine
 * (two users, parallel test runs) never remove each other's running agents as "orphans".
 */
export const SCOPE_LABEL = 'dev.clawbar.scope';

/** The {@link SCOPE_LABEL} value for a data root: a short, stable hash of its resolved path. */
export function scopeForHome(home: string): string {
  return createHash('sha256').update(home).digest('hex').slice(0, 16);
}

/**
 * The agent image is not there. A setup mistake, not a fault: retrying cannot help until the
 * user builds it, so the run is reported at once with the fix.
 */
export class ImageMissingError extends Error {
  override readonly name = 'ImageMissingError';
  readonly image: string;

  constructor(image: string, options?: ErrorOptions) {
    super(`the agent image ${image} is not built; run \`clawbar image build\``, options);
    this.image = image;
  }
}
