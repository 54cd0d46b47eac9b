/**
 * File operations inside folders a container can write: a group's folder and the global memory.
 * The host runs as the user (or as root on a server), the agent does not, and
 * anything in those folders may have been put there by a hostile agent: a symlink to
 * `/etc/passwd`, to `..`, to another group's folder, or a directory swapped for one while the
 * host is at work. Host code that reads, creates or chowns there goes through this module, so
 * it never follows a link the agent planted (issue 6: a main agent replaced
 * `/workspace/global/CLAUDE.md` with a link, and the next CLI command, as root, created the host
 * file it pointed to).
 *
 * How: every path is a *root* (a directory the host made, such as `$CLAWBAR_HOME/groups`) and a
 * relative path below it. The relative path may not be absolute or hold `.` or `..`. The walk
 * opens each directory with `O_NOFOLLOW|O_DIRECTORY` and reaches the next name *through the
 * descriptor it holds*, never through the whole path string again, so renaming a directory or
 * swapping one for a link half-way cannot redirect it. Node has no `openat`; on Linux
 * `/proc/self/fd/<fd>/<name>` is the same thing (the kernel jumps to the directory the
 * descriptor holds, then looks up `<name>` there). Elsewhere (macOS) the walk opens the path
 * string with `O_NOFOLLOW` and checks each step with `realpath`: that refuses every planted
 * link, but an agent racing the walk could still swap a directory between two steps. Creation
 * always uses `O_CREAT|O_EXCL|O_NOFOLLOW`, so a file is never written through an existing link
 * or into an existing file, whatever the platform.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/** A path inside a root that the host refuses to use: it leaves the root or passes a link. */
export class UnsafePathError extends Error {
  override readonly name = 'UnsafePathError';
  /** The directory the path had to stay inside. */
  readonly root: string;
  /** The offending path, as given (relative to `root`). */
  readonly relativePath: string;

  constructor(message: string, root: string, relativePath: string, options?: ErrorOptions) {
    super(message, options);
    this.root = root;
    this.relativePath = relativePath;
  }
}

/**
 * How the walk reaches a name inside a directory it holds open. `procFd`: through
 * `/proc/self/fd/<fd>/<name>`, which resolves `<name>` in the directory the descriptor holds
 * (Linux with procfs; checked once, procfs does not come and go under a running process).
 * Otherwise by path string with a `realpath` check, as on macOS. Tests turn `procFd` off to
 * run the portable walk on Linux too; nothing else should change it.
 */
export const walkMode = {
  procFd: process.platform === 'linux' && fs.existsSync('/proc/self/fd'),
};

/** An open directory reached without following a link below the root. */
export interface OpenDir {
  fd: number;
  /** Its path as text: for messages and for the walk where there is no `/proc/self/fd`. */
  path: string;
}

/**
 * Splits a relative path into its names. Refuses what would leave the root lexically: an
 * absolute path, `.` or `..`, a NUL byte. Empty segments (`a//b`, a trailing `/`) are dropped.
 */
export function pathSegments(root: string, rel: string): string[] {
  if (rel.includes('\0')) throw new UnsafePathError(`path contains a NUL byte`, root, rel);
  if (path.isAbsolute(rel) || path.posix.isAbsolute(rel)) {
    throw new UnsafePathError(`${rel} is absolute; expected a path inside ${root}`, root, rel);
  }
  // On POSIX a backslash is an ordinary character in a name; only Windows separates with it.
  const separators = path.sep === '\\' ? /[\\/]+/ : /\/+/;
  const segments = rel.split(separators).filter((s) => s.length > 0);
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new UnsafePathError(
      `${rel} has a '.' or '..' segment; it may not leave ${root}`,
      root,
      rel,
    );
  }
  return segments;
}

/**
 * The name `name` inside `dir`, as a path the fs calls resolve without re-walking the parents
 * (with {@link walkMode}`.procFd`; otherwise the path string, see the module comment).
 */
export function childPath(dir: OpenDir, name: string): string {
  return walkMode.procFd ? `/proc/self/fd/${dir.fd}/${name}` : path.join(dir.path, name);
}

/** A path that lists the directory `dir` holds open: its entries, not those of a link's target. */
export function listingPath(dir: OpenDir): string {
  return walkMode.procFd ? `/proc/self/fd/${dir.fd}` : dir.path;
}

/** The `code` of a Node system error (`'ENOENT'`, `'ELOOP'`…), or undefined for anything else. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What is at `p` without following it, or undefined when nothing is. */
function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch {
    return undefined;
  }
}

/** Says why a directory could not be opened without following a link, when that is the reason. */
function refusal(
  opened: string,
  shown: string,
  root: string,
  rel: string,
  err: unknown,
): UnsafePathError | undefined {
  const code = errorCode(err);
  // Linux answers ENOTDIR for O_DIRECTORY|O_NOFOLLOW on a link, macOS ELOOP: look to tell.
  if (code !== 'ELOOP' && code !== 'ENOTDIR') return undefined;
  const stat = lstatOrUndefined(opened);
  const what = stat?.isSymbolicLink() ? 'is a symbolic link' : 'is not a directory';
  return new UnsafePathError(
    `${shown} ${what}; host code does not follow links in folders a container can write, so it was left alone`,
    root,
    rel,
    { cause: err },
  );
}

/** Opens `root` itself; it must be a real directory, not a link to one. */
function openRoot(root: string, rel: string): OpenDir {
  try {
    return { fd: fs.openSync(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path: root };
  } catch (err) {
    throw refusal(root, root, root, rel, err) ?? err;
  }
}

interface WalkOptions {
  /** Create missing directories (with `mode`) instead of failing with ENOENT. */
  create: boolean;
  /** @default 0o755 */
  mode?: number;
}

/** Opens the directory `name` inside `dir`, never through a link; creates it if asked. */
function openChildDir(
  dir: OpenDir,
  name: string,
  root: string,
  rel: string,
  opts: WalkOptions,
): OpenDir {
  const at = childPath(dir, name);
  const shown = path.join(dir.path, name);
  const open = (): OpenDir => {
    const fd = fs.openSync(at, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    const child = { fd, path: shown };
    if (!walkMode.procFd) checkStillInside(child, root, rel);
    return child;
  };
  try {
    return open();
  } catch (err) {
    if (err instanceof UnsafePathError) throw err;
    const refused = refusal(at, shown, root, rel, err);
    if (refused) throw refused;
    if (errorCode(err) !== 'ENOENT' || !opts.create) throw err;
  }
  let created = false;
  try {
    // mkdir never follows a link at its last name: one planted meanwhile gives EEXIST.
    fs.mkdirSync(at, { mode: opts.mode ?? 0o755 });
    created = true;
  } catch (err) {
    if (errorCode(err) !== 'EEXIST') throw err;
  }
  let child: OpenDir;
  try {
    child = open();
  } catch (err) {
    throw refusal(at, shown, root, rel, err) ?? err;
  }
  // The umask may have taken bits off the mode; the caller asked for this one exactly.
  if (created && opts.mode !== undefined) fs.fchmodSync(child.fd, opts.mode);
  return child;
}

/**
 * Where there is no `/proc/self/fd`, each step opens a path string, so a directory swapped for a
 * link between two steps would be followed. Its real path tells: it must still lie in the root.
 */
function checkStillInside(dir: OpenDir, root: string, rel: string): void {
  const realRoot = fs.realpathSync.native(root);
  const relative = path.relative(realRoot, fs.realpathSync.native(dir.path));
  const expected = path.relative(root, dir.path);
  if (relative !== expected) {
    fs.closeSync(dir.fd);
    throw new UnsafePathError(
      `${dir.path} moved while it was being opened (it now resolves outside ${root}); it was left alone`,
      root,
      rel,
    );
  }
}

/** Opens the directory `root/segments…`, following no link on the way; the caller closes it. */
function walk(root: string, rel: string, segments: string[], opts: WalkOptions): OpenDir {
  if (opts.create) fs.mkdirSync(path.dirname(root), { recursive: true });
  let dir: OpenDir;
  try {
    dir = openRoot(root, rel);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT' || !opts.create) throw err;
    let created = false;
    try {
      fs.mkdirSync(root, { mode: opts.mode ?? 0o755 });
      created = true;
    } catch (mkdirErr) {
      if (errorCode(mkdirErr) !== 'EEXIST') throw mkdirErr;
    }
    dir = openRoot(root, rel);
    if (created && opts.mode !== undefined) fs.fchmodSync(dir.fd, opts.mode);
  }
  for (const name of segments) {
    let next: OpenDir;
    try {
      next = openChildDir(dir, name, root, rel, opts);
    } finally {
      // The child is open (or the walk failed): the parent is done either way.
      fs.closeSync(dir.fd);
    }
    dir = next;
  }
  return dir;
}

/** Options of {@link ensureDirInside}. */
export interface EnsureDirOptions {
  /**
   * Mode of each directory this call creates (exactly: the umask does not apply). Directories
   * that exist keep theirs. @default 0o755
   */
  mode?: number;
}

/**
 * Makes sure the directory `root/rel` exists, creating `root` and every missing directory below
 * it, and returns its path. Refuses a link or a non-directory anywhere from `root` down, with
 * {@link UnsafePathError}: `root`'s own parents are trusted, `root` and below are not.
 */
export function ensureDirInside(root: string, rel: string, opts: EnsureDirOptions = {}): string {
  const segments = pathSegments(root, rel);
  const dir = walk(root, rel, segments, { create: true, mode: opts.mode ?? 0o755 });
  fs.closeSync(dir.fd);
  return path.join(root, ...segments);
}

/** Options of {@link writeFileNew}. */
export interface WriteFileNewOptions {
  /** Mode of the new file, exactly (the umask does not apply). @default 0o644 */
  mode?: number;
}

/** What {@link writeFileNew} did. */
export type WriteFileNewResult = 'created' | 'exists';

/**
 * Creates the file `root/rel` with `data`, only if nothing is there: `O_CREAT|O_EXCL|O_NOFOLLOW`.
 * An existing regular file is left as it is (`'exists'`); a link or anything else in its place
 * is refused with {@link UnsafePathError} and left alone. The parent directories must exist and
 * are reached without following links. A write that fails half-way removes the partial file.
 */
export function writeFileNew(
  root: string,
  rel: string,
  data: string | Uint8Array,
  opts: WriteFileNewOptions = {},
): WriteFileNewResult {
  const segments = pathSegments(root, rel);
  const name = segments.pop();
  if (name === undefined)
    throw new UnsafePathError(`${rel} names no file inside ${root}`, root, rel);
  const mode = opts.mode ?? 0o644;
  const dir = walk(root, rel, segments, { create: false });
  try {
    const at = childPath(dir, name);
    const shown = path.join(dir.path, name);
    let fd: number;
    try {
      fd = fs.openSync(at, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    } catch (err) {
      if (errorCode(err) !== 'EEXIST' && errorCode(err) !== 'ELOOP') throw err;
      const there = lstatOrUndefined(at);
      if (there?.isFile()) return 'exists';
      throw new UnsafePathError(
        `${shown} ${there?.isSymbolicLink() ? 'is a symbolic link' : 'is not a regular file'}; host code does not write through it, so it was left alone`,
        root,
        rel,
        { cause: err },
      );
    }
    try {
      fs.fchmodSync(fd, mode);
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      for (let written = 0; written < bytes.length;) {
        written += fs.writeSync(fd, bytes, written, bytes.length - written);
      }
    } catch (err) {
      fs.closeSync(fd);
      // unlink does not follow a link at its last name, and `at` is reached through `dir`.
      fs.rmSync(at, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    return 'created';
  } finally {
    fs.closeSync(dir.fd);
  }
}

/** Options of {@link readFileInside}. */
export interface ReadFileInsideOptions {
  /** A larger file is refused rather than read: the agent chooses its size. */
  maxBytes: number;
}

/**
 * Reads the regular file `root/rel`, following no link on the way or at the file itself, and
 * refusing a file larger than `maxBytes` (and a FIFO or device, which could block or never end).
 */
export function readFileInside(root: string, rel: string, opts: ReadFileInsideOptions): Buffer {
  const segments = pathSegments(root, rel);
  const name = segments.pop();
  if (name === undefined)
    throw new UnsafePathError(`${rel} names no file inside ${root}`, root, rel);
  const dir = walk(root, rel, segments, { create: false });
  let fd: number;
  try {
    const at = childPath(dir, name);
    try {
      // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
      fd = fs.openSync(at, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      if (errorCode(err) !== 'ELOOP' && errorCode(err) !== 'EMLINK') throw err;
      throw new UnsafePathError(
        `${path.join(dir.path, name)} is a symbolic link; host code does not read through it`,
        root,
        rel,
        { cause: err },
      );
    }
  } finally {
    fs.closeSync(dir.fd);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      throw new UnsafePathError(`${path.join(root, rel)} is not a regular file`, root, rel);
    }
    if (stat.size > opts.maxBytes) {
      throw new UnsafePathError(
        `${path.join(root, rel)} is ${stat.size} bytes, more than the ${opts.maxBytes} allowed`,
        root,
        rel,
      );
    }
    // Read to the end, not to the size fstat gave: the agent may still be growing the file.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      length += n;
      if (length > opts.maxBytes) {
        throw new UnsafePathError(
          `${path.join(root, rel)} grew past the ${opts.maxBytes} bytes allowed while it was read`,
          root,
          rel,
        );
      }
    }
    return Buffer.concat(chunks, length);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Entries {@link chownTreeNoFollow} looks at before it stops: an agent can fill its folder with
 * millions of files, and the walk runs as root before every run of the group.
 */
export const DEFAULT_CHOWN_MAX_ENTRIES = 10_000;

/** Directory entries read from the kernel per call: memory stays bounded in a huge directory. */
const CHOWN_DIR_BUFFER_SIZE = 128;

/** Options of {@link chownTreeNoFollow}. */
export interface ChownTreeOptions {
  /**
   * Only entries owned by this uid change hands, and only directories owned by it are entered.
   * The root itself always changes. With 0, the walk touches only what root (the host) made:
   * the agent cannot make root-owned files, so a folder full of the agent's own files costs one
   * directory listing. @default undefined (every entry)
   */
  onlyOwnedBy?: number;
  /** Directories deeper than this are left as they are. @default 32 */
  maxDepth?: number;
  /**
   * Entries (of any owner, links included) the walk looks at before it stops, with `capped`
   * set in the result. What lies past them keeps its owner.
   * @default {@link DEFAULT_CHOWN_MAX_ENTRIES}
   */
  maxEntries?: number;
}

/** What {@link chownTreeNoFollow} did. */
export interface ChownTreeResult {
  /** Entries whose owner was set, the root included. */
  changed: number;
  /** Links seen and left alone (neither followed nor changed). */
  linksSkipped: number;
  /** Entries looked at below the root. */
  examined: number;
  /**
   * The walk stopped at `maxEntries`: entries it did not reach kept their owner. Only a folder
   * with that many entries gets here, which is the agent's doing; what it can lose is write
   * access to files root made in it (the memory templates).
   */
  capped: boolean;
}

/**
 * Gives `root` and what lies below it to `uid:gid`, never following a link: links are skipped,
 * never entered, and so is a directory swapped for a link during the walk. Regular files
 * and directories only; FIFOs, sockets and devices are left alone. `root` itself must be a real
 * directory ({@link UnsafePathError} otherwise).
 *
 * It runs as root at the start of every run, in a folder the agent fills, so it is bounded:
 * directories are read a batch at a time and every `lstat` is async, so a folder with millions
 * of files never stalls the event loop (other groups' runs go on), and the walk stops after
 * `maxEntries` entries.
 */
export async function chownTreeNoFollow(
  root: string,
  uid: number,
  gid: number,
  opts: ChownTreeOptions = {},
): Promise<ChownTreeResult> {
  const result: ChownTreeResult = { changed: 0, linksSkipped: 0, examined: 0, capped: false };
  const maxDepth = opts.maxDepth ?? 32;
  const maxEntries = opts.maxEntries ?? DEFAULT_CHOWN_MAX_ENTRIES;
  const top = openRoot(root, '');
  try {
    fs.fchownSync(top.fd, uid, gid);
    result.changed++;
    await chownChildren(top, '', 1);
  } finally {
    fs.closeSync(top.fd);
  }
  return result;

  async function chownChildren(dir: OpenDir, rel: string, depth: number): Promise<void> {
    const listing = await fsp.opendir(listingPath(dir), { bufferSize: CHOWN_DIR_BUFFER_SIZE });
    // `for await` closes the listing however the loop is left.
    for await (const entry of listing) {
      if (result.capped) return;
      if (result.examined >= maxEntries) {
        result.capped = true;
        return;
      }
      result.examined++;
      const name = entry.name;
      const at = childPath(dir, name);
      let stat: fs.Stats;
      try {
        stat = await fsp.lstat(at);
      } catch (err) {
        if (errorCode(err) === 'ENOENT') continue; // gone meanwhile
        throw err;
      }
      if (stat.isSymbolicLink()) {
        result.linksSkipped++;
        continue;
      }
      if (opts.onlyOwnedBy !== undefined && stat.uid !== opts.onlyOwnedBy) continue;
      const childRel = rel === '' ? name : `${rel}/${name}`;
      if (stat.isFile()) {
        // lchown: if the file became a link since lstat, the link changes hands, not its target.
        try {
          await fsp.lchown(at, uid, gid);
        } catch (err) {
          if (errorCode(err) === 'ENOENT') continue; // gone meanwhile
          throw err;
        }
        result.changed++;
      } else if (stat.isDirectory() && depth <= maxDepth) {
        let child: OpenDir;
        try {
          child = openChildDir(dir, name, root, childRel, { create: false });
        } catch (err) {
          // Swapped for a link (or removed) since the lstat: leave it, like any other link.
          if (!(err instanceof UnsafePathError) && errorCode(err) !== 'ENOENT') throw err;
          result.linksSkipped++;
          continue;
        }
        try {
          fs.fchownSync(child.fd, uid, gid);
          result.changed++;
          await chownChildren(child, childRel, depth + 1);
        } finally {
          fs.closeSync(child.fd);
        }
      }
    }
  }
}
