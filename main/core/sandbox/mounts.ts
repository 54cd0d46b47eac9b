/**
 * The mount policy: which host directories a group's container sees, and where.
 *
 * A container sees exactly two host directories, both under the data root (`$CLAWBAR_HOME`):
 *
 * | host                 | container            | access                   |
 * | -------------------- | -------------------- | ------------------------ |
 * | the group's folder   | `/workspace/group`   | read-write               |
 * | the global memory    | `/workspace/global`  | read-only unless main    |
 *
 * There is no session folder: the conversation transcript lives in the host's store, where no
 * container can rewrite it (issue 6).
 *
 * Beyond those, a group may have extra mounts under `/workspace/extra/`, each one checked
 * against the mount allowlist first (mount-allowlist.ts). Only what passed reaches
 * {@link groupMounts}, which checks each again here as a last line: a resolved path outside the
 * data root, never holding it.
 *
 * Every host path is checked before it reaches the runtime, because a bind mount is the one
 * place where a mistake hands the agent the rest of the disk: a `..` segment, a symlink placed
 * in a group folder by the agent itself, or a path outside the data root would all widen what
 * the container can touch. The checks fail closed with a {@link MountPolicyError}.
 *
 * This module also owns group folder names, since a folder name becomes a host path here.
 */
import fs from 'node:fs';
import path from 'node:path';

import type { Mount } from './runtime.js';

/** Where the standard directories appear inside the container. */
export const CONTAINER_PATHS = {
  group: '/workspace/group',
  global: '/workspace/global',
} as const;

/** Where extra mounts (mount-allowlist.ts) appear inside the container. */
export const EXTRA_MOUNTS_DIR = '/workspace/extra';

/**
 * Folder names no group may take. `global` is the global memory folder
 * (`$CLAWBAR_HOME/groups/global`); a group folder by that name would hand one group write
 * access to every group's shared memory.
 */
export const RESERVED_FOLDER_NAMES: ReadonlySet<string> = new Set(['global']);

/** The longest folder name {@link validateFolderName} accepts. */
export const MAX_FOLDER_NAME_LENGTH = 64;

/**
 * The longest stem {@link folderFromName} makes from a display name, leaving room for a
 * uniqueness suffix such as `-12` within {@link MAX_FOLDER_NAME_LENGTH}.
 */
export const MAX_FOLDER_STEM_LENGTH = 48;

/** A host path that may not be mounted into a container. */
export class MountPolicyError extends Error {
  override readonly name = 'MountPolicyError';
  /** The offending host path. */
  readonly hostPath: string;

  constructor(message: string, hostPath: string, options?: ErrorOptions) {
    super(message, options);
    this.hostPath = hostPath;
  }
}

/** A group folder name that breaks the naming rules. */
export class InvalidFolderNameError extends Error {
  override readonly name = 'InvalidFolderNameError';
  readonly folder: string;

  constructor(message: string, folder: string) {
    super(message);
    this.folder = folder;
  }
}

/** The facts {@link groupMounts} needs about one run. */
export interface GroupMountInput {
  /** The data root, `$CLAWBAR_HOME`. Absolute and already resolved with `fs.realpathSync`. */
  home: string;
  /** The group's folder, `<home>/groups/<folder>`. Must exist. */
  groupDir: string;
  /** The global memory folder, `<home>/groups/global`. Must exist. */
  globalDir: string;
  /** The main group may edit global memory; every other group only reads it. */
  isMain: boolean;
  /**
   * Extra mounts that passed the allowlist (`resolveExtraMounts`), each with its real host
   * path and a container path under {@link EXTRA_MOUNTS_DIR}. @default none
   */
  extra?: readonly Mount[];
}

/** How the policy resolves paths; injectable so a test can simulate a filesystem race. */
export interface MountPolicyDeps {
  /** @default fs.realpathSync.native */
  realpath?: (p: string) => string;
}

/**
 * Builds the mount list for one group run, after checking every host path.
 *
 * Each host path must be absolute, free of `.`/`..` segments, equal to its own realpath (so no
 * symlink anywhere along it redirects the mount), strictly inside `home`, and must not overlap
 * another mount (one inside the other would let a read-only mount be reached read-write).
 *
 * The check is a snapshot: a symlink swapped in after it would be followed by the engine. That
 * window is closed by the layout, not here: every checked path is a directory that only the
 * host creates, and the agent can only write *inside* the mounted directories, never replace
 * the mount points themselves.
 *
 * @throws {MountPolicyError} when any path breaks the policy.
 */
export function groupMounts(input: GroupMountInput, deps: MountPolicyDeps = {}): Mount[] {
  const realpath = deps.realpath ?? fs.realpathSync.native;
  const home = checkResolved(input.home, 'data root', realpath);

  const mounts: Mount[] = [
    { hostPath: input.groupDir, containerPath: CONTAINER_PATHS.group, readOnly: false },
    { hostPath: input.globalDir, containerPath: CONTAINER_PATHS.global, readOnly: !input.isMain },
  ];
  const labels = ['group folder', 'global memory folder'];

  mounts.forEach((mount, i) => {
    const label = labels[i] ?? 'mount';
    checkResolved(mount.hostPath, label, realpath);
    if (!isStrictlyInside(home, mount.hostPath)) {
      throw new MountPolicyError(
        `${label} ${mount.hostPath} is not inside the data root ${home}`,
        mount.hostPath,
      );
    }
  });

  for (const mount of input.extra ?? []) mounts.push(checkExtraMount(mount, home, realpath));

  for (const [i, a] of mounts.entries()) {
    for (const b of mounts.slice(i + 1)) {
      if (
        a.hostPath === b.hostPath ||
        isStrictlyInside(a.hostPath, b.hostPath) ||
        isStrictlyInside(b.hostPath, a.hostPath)
      ) {
        throw new MountPolicyError(
          `mounts overlap: ${a.hostPath} (${a.containerPath}) and ${b.hostPath} (${b.containerPath}); each must be its own directory`,
          b.hostPath,
        );
      }
    }
  }
  return mounts;
}

/**
 * Checks an extra mount once more, whatever let it through: its host path resolved and outside
 * the data root (neither in it nor holding it), its container path a plain path under
 * {@link EXTRA_MOUNTS_DIR}. Returns a copy with only the mount's own fields.
 */
function checkExtraMount(mount: Mount, home: string, realpath: (p: string) => string): Mount {
  checkResolved(mount.hostPath, 'extra mount', realpath);
  if (mount.hostPath === home || isStrictlyInside(home, mount.hostPath)) {
    throw new MountPolicyError(
      `extra mount ${mount.hostPath} is inside the data root ${home}; it is never mounted`,
      mount.hostPath,
    );
  }
  if (isStrictlyInside(mount.hostPath, home)) {
    throw new MountPolicyError(
      `extra mount ${mount.hostPath} holds the data root ${home}; it is never mounted`,
      mount.hostPath,
    );
  }
  const rel = path.posix.relative(EXTRA_MOUNTS_DIR, mount.containerPath);
  if (
    !mount.containerPath.startsWith(`${EXTRA_MOUNTS_DIR}/`) ||
    rel === '' ||
    rel.split('/').some((s) => s === '..' || s === '.' || s === '') ||
    mount.containerPath !== path.posix.join(EXTRA_MOUNTS_DIR, rel)
  ) {
    throw new MountPolicyError(
      `extra mount ${mount.hostPath} would appear at ${mount.containerPath}, not under ${EXTRA_MOUNTS_DIR}/`,
      mount.hostPath,
    );
  }
  return { hostPath: mount.hostPath, containerPath: mount.containerPath, readOnly: mount.readOnly };
}

/**
 * Checks that `p` is absolute, normalized and its own realpath; returns it unchanged.
 * `path.resolve` alone is not enough: it folds `..` lexically and never looks at symlinks.
 */
function checkResolved(p: string, label: string, realpath: (p: string) => string): string {
  if (p.length === 0 || p.includes('\0')) {
    throw new MountPolicyError(`${label} path is empty or contains a NUL byte`, p);
  }
  if (!path.isAbsolute(p)) {
    throw new MountPolicyError(`${label} ${p} is not an absolute path`, p);
  }
  // Check segments on the raw string: path.normalize would silently fold `a/../b`.
  const segments = p.split(path.sep).slice(1);
  if (segments.some((s) => s === '..' || s === '.')) {
    throw new MountPolicyError(`${label} ${p} contains a '.' or '..' segment`, p);
  }
  if (p !== path.normalize(p) || (p.length > 1 && p.endsWith(path.sep))) {
    throw new MountPolicyError(
      `${label} ${p} is not in normal form (doubled or trailing separators)`,
      p,
    );
  }
  let real: string;
  try {
    real = realpath(p);
  } catch (err) {
    throw new MountPolicyError(
      `${label} ${p} does not exist or cannot be resolved; create it before the run`,
      p,
      {
        cause: err,
      },
    );
  }
  if (real !== p) {
    throw new MountPolicyError(
      `${label} ${p} resolves to ${real} through a symlink; mounts must name the real directory (resolve CLAWBAR_HOME with fs.realpathSync first)`,
      p,
    );
  }
  return p;
}

/** True when `child` lies below `parent` (not equal). Both are resolved absolute paths. */
function isStrictlyInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  // `..x` is a legal child name; only `..` itself or a leading `../` means "outside".
  return (
    rel.length > 0 && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel)
  );
}

const FOLDER_NAME = /^[a-z0-9][a-z0-9-]*$/;

/**
 * Checks a group folder name: lowercase ASCII letters, digits and `-`, 1 to 64 characters,
 * not starting with `-`, and not a reserved name such as `global`.
 *
 * These rules keep a folder name a single safe path segment on every filesystem Clawbar runs
 * on (no separators, no `..`, no case-folding clashes on macOS) and a valid Docker name part.
 *
 * @throws {InvalidFolderNameError} with a message that says which rule failed.
 */
export function validateFolderName(name: string): void {
  if (name.length === 0) {
    throw new InvalidFolderNameError('folder name is empty', name);
  }
  if (name.length > MAX_FOLDER_NAME_LENGTH) {
    throw new InvalidFolderNameError(
      `folder name "${name}" is longer than ${MAX_FOLDER_NAME_LENGTH} characters`,
      name,
    );
  }
  if (name.startsWith('-')) {
    throw new InvalidFolderNameError(`folder name "${name}" must not start with '-'`, name);
  }
  if (!FOLDER_NAME.test(name)) {
    throw new InvalidFolderNameError(
      `folder name "${name}" may only contain lowercase letters a-z, digits and '-'`,
      name,
    );
  }
  if (RESERVED_FOLDER_NAMES.has(name)) {
    throw new InvalidFolderNameError(
      `folder name "${name}" is reserved (it holds the global memory)`,
      name,
    );
  }
}

/**
 * Makes a folder name from a group's display name, unique among `taken`.
 *
 * Lowercases, folds accents (`Família` → `familia`), turns every run of other characters into
 * one `-`, trims `-` from both ends and cuts to {@link MAX_FOLDER_STEM_LENGTH}. A name with no
 * usable character (emoji, CJK) becomes `group`. A taken or reserved result gets `-2`, `-3`, …
 *
 * @param taken folder names already in use; reserved names count as taken without being listed.
 */
export function folderFromName(name: string, taken: ReadonlySet<string>): string {
  const stem =
    name
      .normalize('NFKD')
      .replace(/\p{M}+/gu, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, MAX_FOLDER_STEM_LENGTH)
      .replace(/-+$/, '') || 'group';

  const isFree = (candidate: string): boolean =>
    !taken.has(candidate) && !RESERVED_FOLDER_NAMES.has(candidate);
  if (isFree(stem)) return stem;
  for (let n = 2; ; n++) {
    const candidate = `${stem}-${n}`;
    if (isFree(candidate)) return candidate;
  }
}
