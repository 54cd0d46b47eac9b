/**
 * The pure half of the Apple Container runtime: the arguments Clawbar gives Apple's `container`
 * CLI (github.com/apple/container, 1.0 or later), and the parsing of what it prints. Nothing
 * here runs a process, so every rule is unit-tested on this Linux machine, where the CLI
 * cannot run (see test/fixtures/apple-container/ for the recorded outputs and their sources).
 *
 * Facts about the CLI used below, from its docs/command-reference.md and Sources/ at 1.2.x:
 *
 * - `--mount type=bind,source=S,target=T[,readonly]` accepts directories only (Client/Parser
 *   `mount`: "path '…' is not a directory"): virtiofs shares directories. The parser splits
 *   the spec at every `,` and each directive at `=`, with no escaping, so a path holding either
 *   cannot be passed and is refused here, before the CLI mangles it.
 * - A container name (`--name`, which becomes its id) matches `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`
 *   and is at most 63 characters (ManagedContainer.nameValid).
 * - `--network none` attaches no network at all (Client/Utility containerConfigFromFlags).
 * - `--cpus` takes a whole number of CPUs; `--memory` has 1 MiB granularity.
 * - `container ls --format json` printed `[{status, configuration, networks, startedDate}]` up
 *   to 0.12 (PrintableContainer) and `[{id, configuration, status: {state, networks,
 *   startedDate}}]` since 1.0 (ManagedContainer); both are read.
 * - `container image inspect` printed `[{name, index, variants}]` up to 0.12 (ImageDetail) and
 *   `[{id, configuration: {name, creationDate, descriptor}, variants}]` since 1.0
 *   (ImageResource); each variant's `config` is the OCI image config, labels under
 *   `config.Labels`.
 * - `container system status --format json` prints `{status, appRoot, installRoot,
 *   apiServerVersion, …}`; `status` is `running`, `not running` or `unregistered`, and the exit
 *   code is 1 unless it is running (System/SystemStatus.swift).
 * - Errors go to stderr as `Error: <code>: "<message>"` (ContainerizationError.description),
 *   e.g. `Error: notFound: "container with ID x not found"`.
 */
import path from 'node:path';

import { z } from 'zod';

import { OURS_LABEL, SCOPE_LABEL, type ContainerSpec, type Mount } from './runtime.js';

/** The `container` CLI is told a mount spec or a name it would misread; nothing ran. */
export class AppleContainerArgumentError extends Error {
  override readonly name = 'AppleContainerArgumentError';
}

/** Where single-file mounts' copies are mounted from: see {@link planMounts}. */
export interface StagedFile {
  /** The file on the host, as the mount policy resolved it. */
  from: string;
  /** Its copy in the run's staging directory. */
  to: string;
}

/** Directory mounts the CLI can take, and the file copies they need first. */
export interface MountPlan {
  /** Directory mounts, in the order given (file mounts' staging directories last). */
  mounts: Mount[];
  /** Files to copy into staging directories before the container starts. */
  copies: StagedFile[];
}

/** What {@link planMounts} needs to know about a host path. */
export type PathKind = 'directory' | 'file' | 'missing' | 'other';

/**
 * Turns the runtime-neutral mounts into directory mounts Apple Container accepts.
 *
 * A directory is mounted as it is. A single file cannot be (virtiofs shares directories), and
 * the obvious fallback, mounting its parent directory, would hand the agent every file beside
 * it (the home directory, a `.ssh` folder), which the mount allowlist exists to prevent. So:
 *
 * - a **read-only file** is copied into a staging directory of its own for this run, and that
 *   directory is mounted read-only at the file's container directory, holding the copies of
 *   every read-only file that goes to that directory. The agent sees a snapshot taken at
 *   start; it cannot see the file's neighbours.
 * - a **read-write file** is refused: a copy would silently drop the agent's writes. The error
 *   says to allow the file's directory instead.
 * - a file whose container directory is the target of a directory mount, or sits inside one,
 *   or is `/`, is refused: the staging mount would hide or shadow the other mount.
 *
 * @param kindOf tells what a host path is (tests inject it; the runtime uses lstat).
 * @param stagingDir this run's private staging directory on the host.
 * @throws {AppleContainerArgumentError} for the refusals above, and a missing source.
 */
export function planMounts(
  mounts: readonly Mount[],
  kindOf: (hostPath: string) => PathKind,
  stagingDir: string,
): MountPlan {
  const directories: Mount[] = [];
  const files: Mount[] = [];
  for (const mount of mounts) {
    checkMountPath(mount.hostPath);
    checkMountPath(mount.containerPath);
    const kind = kindOf(mount.hostPath);
    switch (kind) {
      case 'directory':
        directories.push(mount);
        break;
      case 'file':
        files.push(mount);
        break;
      case 'missing':
        throw new AppleContainerArgumentError(`mount source ${mount.hostPath} does not exist`);
      case 'other':
        throw new AppleContainerArgumentError(
          `mount source ${mount.hostPath} is neither a directory nor a regular file`,
        );
      default: {
        const unreachable: never = kind;
        throw new AppleContainerArgumentError(`unknown path kind ${String(unreachable)}`);
      }
    }
  }

  // One staging directory per container directory, numbered in order of first appearance.
  const stagingByTarget = new Map<string, string>();
  const copies: StagedFile[] = [];
  const seenTargets = new Set<string>();
  for (const file of files) {
    if (!file.readOnly) {
      throw new AppleContainerArgumentError(
        `Apple Container mounts directories only, and a read-write file (${file.hostPath}) cannot be emulated without losing the agent's writes; allow its directory ${path.dirname(file.hostPath)} instead, or make the mount read-only`,
      );
    }
    if (seenTargets.has(file.containerPath)) {
      throw new AppleContainerArgumentError(`two mounts target ${file.containerPath}`);
    }
    seenTargets.add(file.containerPath);
    const targetDir = path.posix.dirname(file.containerPath);
    if (targetDir === '/') {
      throw new AppleContainerArgumentError(
        `a single file cannot be mounted at ${file.containerPath}: Apple Container would need to mount a directory over /`,
      );
    }
    const clash = directories.find(
      (d) => d.containerPath === targetDir || isInside(targetDir, d.containerPath),
    );
    if (clash) {
      throw new AppleContainerArgumentError(
        `a single file cannot be mounted at ${file.containerPath}: Apple Container mounts directories only, and a directory there would shadow the mount of ${clash.hostPath} at ${clash.containerPath}; mount it elsewhere`,
      );
    }
    let staging = stagingByTarget.get(targetDir);
    if (staging === undefined) {
      staging = path.join(stagingDir, String(stagingByTarget.size + 1));
      stagingByTarget.set(targetDir, staging);
    }
    copies.push({
      from: file.hostPath,
      to: path.join(staging, path.posix.basename(file.containerPath)),
    });
  }
  const staged: Mount[] = [...stagingByTarget].map(([containerPath, hostPath]) => ({
    hostPath,
    containerPath,
    readOnly: true,
  }));
  for (const s of staged) {
    const clash = directories.find((d) => isInside(d.containerPath, s.containerPath));
    if (clash) {
      throw new AppleContainerArgumentError(
        `the staging mount for files at ${s.containerPath} would cover the mount of ${clash.hostPath} at ${clash.containerPath}; mount the files elsewhere`,
      );
    }
  }
  return { mounts: [...directories, ...staged], copies };
}

function isInside(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith('/') ? parent : `${parent}/`);
}

/** Absolute, and free of the characters the CLI's `--mount` parser splits at. */
function checkMountPath(p: string): void {
  if (!p.startsWith('/') || p.includes(',') || p.includes('=') || /[\0\n]/.test(p)) {
    throw new AppleContainerArgumentError(
      `mount path ${JSON.stringify(p)} must be absolute and contain no ',' or '=' (Apple Container's --mount cannot escape them)`,
    );
  }
}

/** The container-name rule of Apple Container (ManagedContainer.nameValid). */
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const MAX_NAME_LENGTH = 63;

const MIB = 1024 * 1024;

/** `--memory` for a byte ceiling, rounded up to whole MiB (the CLI's granularity). */
export function memoryArg(bytes: number): string {
  return `${Math.max(1, Math.ceil(bytes / MIB))}M`;
}

/** `--cpus` for a Docker-style nano-CPU share: whole CPUs, rounded up, at least one. */
export function cpusArg(nanoCpus: number): string {
  return String(Math.max(1, Math.ceil(nanoCpus / 1e9)));
}

/** The labels every Clawbar container carries, with this instance's scope when there is one. */
export function labelsFor(spec: ContainerSpec, scope: string | undefined): Record<string, string> {
  const labels: Record<string, string> = { ...spec.labels, [OURS_LABEL]: '1' };
  if (scope !== undefined) labels[SCOPE_LABEL] = scope;
  return labels;
}

/**
 * `container create …` for one agent container, locked down as far as the CLI allows: no
 * network unless the group has one, every capability dropped, a read-only root with a tmpfs
 * `/tmp`, CPU/memory/process ceilings, an init process, and removal once it stops. Each
 * container is also its own lightweight VM, which is Apple Container's main boundary.
 *
 * Not available in the CLI, and why that is acceptable: `no-new-privileges` (no flag; with
 * every capability dropped a setuid binary gains nothing it could use outside the VM), a pid
 * cgroup ceiling (RLIMIT_NPROC via `--ulimit nproc` stands in).
 *
 * @param mounts directory mounts only (see {@link planMounts}).
 * @throws {AppleContainerArgumentError} for a name, environment variable or label the CLI
 * would refuse or misread.
 */
export function createArgs(
  spec: ContainerSpec,
  mounts: readonly Mount[],
  scope: string | undefined,
): string[] {
  if (!NAME_PATTERN.test(spec.name) || spec.name.length > MAX_NAME_LENGTH) {
    throw new AppleContainerArgumentError(
      `container name ${JSON.stringify(spec.name)} is not valid for Apple Container (letters, digits, '_', '.', '-', at most ${MAX_NAME_LENGTH})`,
    );
  }
  const args = ['create', '--name', spec.name, '--rm', '--interactive'];
  for (const [key, value] of Object.entries(labelsFor(spec, scope))) {
    if (key.length === 0 || key.includes('=') || /[\0\n]/.test(key + value)) {
      throw new AppleContainerArgumentError(`invalid label ${JSON.stringify(key)}`);
    }
    args.push('--label', `${key}=${value}`);
  }
  for (const [key, value] of Object.entries(spec.env)) {
    if (key.length === 0 || key.includes('=') || key.includes('\0') || value.includes('\0')) {
      throw new AppleContainerArgumentError(
        `invalid environment variable name ${JSON.stringify(key)}`,
      );
    }
    // Always KEY=VALUE: a bare KEY would make the CLI copy the host's value in.
    args.push('--env', `${key}=${value}`);
  }
  if (spec.user !== undefined) args.push('--user', spec.user);
  args.push(
    '--cpus',
    cpusArg(spec.limits.nanoCpus),
    '--memory',
    memoryArg(spec.limits.memoryBytes),
    '--ulimit',
    `nproc=${spec.limits.pids}:${spec.limits.pids}`,
  );
  if (!spec.network) args.push('--network', 'none');
  args.push('--cap-drop', 'ALL', '--read-only', '--tmpfs', '/tmp', '--init');
  for (const m of mounts) {
    checkMountPath(m.hostPath);
    checkMountPath(m.containerPath);
    args.push(
      '--mount',
      `type=bind,source=${m.hostPath},target=${m.containerPath}${m.readOnly ? ',readonly' : ''}`,
    );
  }
  // The image goes last; no command, so the image's entrypoint (the runner) runs.
  args.push(spec.image);
  return args;
}

/** `container start` attached to the created container's stdin, stdout and stderr. */
export function startArgs(name: string): string[] {
  return ['start', '--attach', '--interactive', name];
}

/** `container kill`: SIGKILL, the same as the Docker runtime's stop. */
export function killArgs(name: string): string[] {
  return ['kill', '--signal', 'KILL', name];
}

/** `container delete --force`: removes containers, running or not. */
export function removeArgs(ids: readonly string[]): string[] {
  return ['delete', '--force', ...ids];
}

export const LIST_ARGS = ['list', '--all', '--format', 'json'] as const;
export const STATUS_ARGS = ['system', 'status', '--format', 'json'] as const;

/**
 * `container system start`. The kernel install is answered yes: without a kernel no container
 * can run, and the CLI would otherwise stop to ask on a terminal Clawbar does not have.
 */
export function systemStartArgs(timeoutSeconds: number): string[] {
  return ['system', 'start', '--enable-kernel-install', '--timeout', String(timeoutSeconds)];
}

export function imageInspectArgs(image: string): string[] {
  return ['image', 'inspect', image];
}

/**
 * `container build` for the agent image: the Dockerfile's `BASE_IMAGE` argument, the runner
 * hash label, plain progress lines.
 */
export function buildArgs(opts: {
  contextDir: string;
  tag: string;
  labels: Record<string, string>;
  baseImage?: string;
}): string[] {
  const args = ['build', '--tag', opts.tag, '--progress', 'plain'];
  if (opts.baseImage !== undefined) args.push('--build-arg', `BASE_IMAGE=${opts.baseImage}`);
  for (const [key, value] of Object.entries(opts.labels)) args.push('--label', `${key}=${value}`);
  args.push('--file', path.join(opts.contextDir, 'Dockerfile'), opts.contextDir);
  return args;
}

// ---------------------------------------------------------------------------------------------
// Output parsing

/** One container, as Clawbar needs it. */
export interface ListedContainer {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
}

const LabelsSchema = z.record(z.string(), z.string()).catch({});

const ConfigurationSchema = z.looseObject({
  id: z.string(),
  labels: LabelsSchema.optional(),
});

/** Since 1.0 (ManagedContainer): `{id, configuration, status: {state, …}}`. */
const ManagedContainerSchema = z.looseObject({
  configuration: ConfigurationSchema,
  status: z.looseObject({ state: z.string() }),
});

/** Up to 0.12 (PrintableContainer): `{status: "running", configuration, networks}`. */
const PrintableContainerSchema = z.looseObject({
  configuration: ConfigurationSchema,
  status: z.string(),
});

/** The CLI printed something that is not what its source says it prints. */
export class AppleContainerOutputError extends Error {
  override readonly name = 'AppleContainerOutputError';
}

function parseJson(stdout: string, what: string): unknown {
  try {
    return JSON.parse(stdout) as unknown;
  } catch (err) {
    throw new AppleContainerOutputError(
      `\`container ${what}\` did not print JSON: ${stdout.slice(0, 200)}`,
      { cause: err },
    );
  }
}

/**
 * Reads `container list --all --format json`, either shape. Entries that match neither are
 * skipped (a newer CLI may list other kinds of resources); a non-array is an error.
 */
export function parseContainerList(stdout: string): ListedContainer[] {
  const trimmed = stdout.trim();
  // The CLI prints nothing for an empty list in some formats; treat that as empty.
  if (trimmed === '') return [];
  const raw = parseJson(trimmed, 'list');
  if (!Array.isArray(raw)) {
    throw new AppleContainerOutputError('`container list` did not print a JSON array');
  }
  const out: ListedContainer[] = [];
  for (const entry of raw) {
    const managed = ManagedContainerSchema.safeParse(entry);
    const printable = managed.success ? undefined : PrintableContainerSchema.safeParse(entry);
    const configuration = managed.success
      ? managed.data.configuration
      : printable?.success
        ? printable.data.configuration
        : undefined;
    if (!configuration) continue;
    const state = managed.success ? managed.data.status.state : (printable?.data?.status ?? '');
    out.push({
      id: configuration.id,
      // Apple Container has no separate name: `--name` becomes the id.
      name: configuration.id,
      state,
      labels: configuration.labels ?? {},
    });
  }
  return out;
}

/** Only Clawbar's containers, and only this instance's when it has a scope. */
export function oursOnly(
  containers: readonly ListedContainer[],
  scope: string | undefined,
): ListedContainer[] {
  return containers.filter(
    (c) => c.labels[OURS_LABEL] === '1' && (scope === undefined || c.labels[SCOPE_LABEL] === scope),
  );
}

/** What `system status` says, before it is turned into a fix for the user. */
export type SystemStatus =
  | { state: 'running'; version: string }
  | { state: 'not-running' | 'unregistered' }
  | { state: 'unknown'; detail: string };

const StatusSchema = z.looseObject({
  status: z.string(),
  apiServerVersion: z.string().optional(),
});

/**
 * Reads `container system status --format json`: its JSON when it printed one, whatever the
 * exit code (1 for "not running"), else its words.
 */
export function parseSystemStatus(code: number, stdout: string, stderr: string): SystemStatus {
  const parsed = (() => {
    try {
      return StatusSchema.safeParse(JSON.parse(stdout.trim()));
    } catch {
      return undefined;
    }
  })();
  if (parsed?.success) {
    const { status, apiServerVersion } = parsed.data;
    if (status === 'running') {
      return { state: 'running', version: versionFrom(apiServerVersion) };
    }
    if (status === 'unregistered') return { state: 'unregistered' };
    if (status === 'not running') return { state: 'not-running' };
    return { state: 'unknown', detail: `status ${JSON.stringify(status)}` };
  }
  const text = `${stdout}\n${stderr}`;
  // The table form, or a CLI older than `--format` on this command.
  if (/not registered with launchd/i.test(text)) return { state: 'unregistered' };
  if (/apiserver is not running|XPC connection error|Connection invalid/i.test(text))
    return { state: 'not-running' };
  return {
    state: 'unknown',
    detail: firstErrorLine(stderr) ?? (code === 0 ? 'no status printed' : `exit code ${code}`),
  };
}

/**
 * The version number from the API server's version string, e.g. `container-apiserver version
 * 1.2.3 (build: release, commit: 1234abc)` → `1.2.3`; the whole string when it has none.
 */
export function versionFrom(raw: string | undefined): string {
  if (!raw) return 'unknown';
  const match =
    /\bversion\s+(\d+\.\d+(?:\.\d+)?\S*)/.exec(raw) ?? /^(\d+\.\d+(?:\.\d+)?\S*)$/.exec(raw);
  return match?.[1] ?? raw;
}

/** What Clawbar needs from `image inspect`. */
export interface InspectedImage {
  id: string;
  createdAt: string | undefined;
  /** The image config's labels (the first variant that has any). */
  labels: Record<string, string>;
}

const VariantSchema = z.looseObject({
  config: z
    .looseObject({
      created: z.string().optional(),
      config: z.looseObject({ Labels: LabelsSchema.nullish() }).nullish(),
    })
    .optional(),
  digest: z.string().optional(),
});

const ImageResourceSchema = z.looseObject({
  id: z.string(),
  configuration: z.looseObject({
    creationDate: z.string().optional(),
    descriptor: z.looseObject({ digest: z.string() }).optional(),
  }),
  variants: z.array(VariantSchema).catch([]),
});

const ImageDetailSchema = z.looseObject({
  name: z.string(),
  index: z.looseObject({ digest: z.string() }),
  variants: z.array(VariantSchema).catch([]),
});

/** Reads `container image inspect IMAGE` (either shape); the first image it lists. */
export function parseImageInspect(stdout: string): InspectedImage {
  const raw = parseJson(stdout.trim(), 'image inspect');
  const first: unknown = Array.isArray(raw) ? raw[0] : raw;
  const resource = ImageResourceSchema.safeParse(first);
  const detail = resource.success ? undefined : ImageDetailSchema.safeParse(first);
  let id: string;
  let createdAt: string | undefined;
  let variants: Array<z.infer<typeof VariantSchema>>;
  if (resource.success) {
    const digest = resource.data.configuration.descriptor?.digest;
    id = digest ?? `sha256:${resource.data.id}`;
    createdAt = resource.data.configuration.creationDate;
    variants = resource.data.variants;
  } else if (detail?.success) {
    id = detail.data.index.digest;
    variants = detail.data.variants;
  } else {
    throw new AppleContainerOutputError(
      `\`container image inspect\` printed an unexpected document: ${stdout.slice(0, 200)}`,
    );
  }
  const labelled = variants.find((v) => Object.keys(v.config?.config?.Labels ?? {}).length > 0);
  createdAt ??= variants.find((v) => v.config?.created)?.config?.created;
  return { id, createdAt, labels: labelled?.config?.config?.Labels ?? {} };
}

/** How a failed `container` command's stderr reads. */
export type CliFailure =
  /** The container or image does not exist. */
  | 'not-found'
  /** A container by that name exists already. */
  | 'exists'
  /** The API server cannot be reached: the system service is not started. */
  | 'unavailable'
  /** The CLI does not know an option Clawbar passed: it is older than 1.0. */
  | 'too-old'
  | 'other';

export function classifyFailure(stderr: string): CliFailure {
  if (
    /XPC connection error|Connection invalid|container system start|apiserver is not running/i.test(
      stderr,
    )
  )
    return 'unavailable';
  if (
    /Unknown option|Unexpected argument|unknown directive|Missing expected argument/i.test(stderr)
  )
    return 'too-old';
  if (/\bnotFound\b|not found|does not exist/i.test(stderr)) return 'not-found';
  if (/\bexists\b|already exists/i.test(stderr)) return 'exists';
  return 'other';
}

/** The first line of stderr that says something, without the CLI's `Error: ` prefix. */
export function firstErrorLine(stderr: string): string | undefined {
  const line = stderr
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.length > 0);
  return line?.replace(/^Error:\s*/, '').slice(0, 500);
}

/** The fixes a user can apply, one per kind of failure. */
export const APPLE_FIXES = {
  install:
    "install Apple's container CLI (1.0 or later) from https://github.com/apple/container/releases, or set CLAWBAR_RUNTIME=docker",
  start: 'start the container service: container system start',
  restart: 'restart the container service: container system stop && container system start',
  upgrade:
    "update Apple's container CLI to 1.0 or later (https://github.com/apple/container/releases)",
} as const;
