/**
 * Extra mounts: host folders a group asks to see in its container, checked against an
 * allowlist file that only the host reads.
 *
 * The allowlist lives at `$CLAWBAR_HOME/mount-allowlist.json`. No container ever sees it: a
 * container mounts only its group's folder and the global memory (both below
 * `$CLAWBAR_HOME/groups`), and every extra mount that is, holds or lies inside `$CLAWBAR_HOME`
 * is refused. Its shape:
 *
 * ```json
 * {
 *   "roots": [
 *     { "path": "~/projects", "allowReadWrite": true, "description": "code the agent may edit" },
 *     { "path": "/srv/photos" }
 *   ],
 *   "blockedPatterns": ["*.sqlite"],
 *   "nonMainReadOnly": true
 * }
 * ```
 *
 * A missing file means no extra mounts; a malformed one refuses every extra mount, with the
 * reason, and never fails the run (the group runs with its standard mounts).
 *
 * Each request is checked at every run, because the filesystem changes between runs (a folder
 * replaced by a symlink, a root taken off the list):
 *
 * 1. The path is absolute or starts with `~/`, and has no `.` or `..` segment.
 * 2. Its real path (`fs.realpathSync`, every symlink resolved) is a directory inside the real
 *    path of an allowed root, so neither a symlink nor `..` can lead out of a root.
 * 3. No component of the path as given or of its real path matches a blocked pattern
 *    ({@link DEFAULT_BLOCKED_PATTERNS} plus the file's own), and no entry *inside* the folder
 *    does either, down to {@link NESTED_SCAN_LIMITS}: mounting `~` would hand over `~/.ssh`,
 *    and mounting a project hands over its `.env`. (NanoClaw checks only the path itself.)
 *    The scan skips `node_modules` and `.git`, does not follow links, and stops at its limits;
 *    what lies deeper is not checked, and the result says so.
 * 4. It is not `$CLAWBAR_HOME`, inside it, or a folder that holds it (nor the allowlist file).
 * 5. It is read-only unless its root has `allowReadWrite` and the request asks to write; a
 *    non-main group is always read-only while `nonMainReadOnly` is on (the default).
 * 6. It appears at `/workspace/extra/<containerPath>`, where `containerPath` is relative, made
 *    of plain names (letters, digits, `.`, `_`, `-`), with no `..` and no `:`; by default the
 *    folder's own name. Two mounts may not share or nest a container path, nor a host folder
 *    (a read-only mount inside a read-write one would be writable through it): the later one
 *    is refused.
 *
 * The engine then binds the real path that was checked, not the path as typed. The check is a
 * snapshot: a folder renamed between the check and the container start is mounted as it is
 * then. Only the user (or an agent with a read-write mount of a parent folder) can do that, and
 * the next run checks again.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { z } from 'zod';

import { CoreInputError } from '../errors.js';
import type { ExtraMountRequest } from '../store/types.js';
import { EXTRA_MOUNTS_DIR } from './mounts.js';
import type { Mount } from './runtime.js';

export { EXTRA_MOUNTS_DIR };

/** The allowlist's file name in `$CLAWBAR_HOME`. */
export const MOUNT_ALLOWLIST_FILE = 'mount-allowlist.json';

/** A larger allowlist file is refused unread: it is a short hand-written list. */
export const MAX_ALLOWLIST_BYTES = 64 * 1024;

/** The most extra mounts one group may ask for. */
export const MAX_EXTRA_MOUNTS = 16;

/**
 * How far inside a requested folder the secret scan looks: entries this deep (1 = the
 * folder's own entries) and this many in all.
 */
export const NESTED_SCAN_LIMITS = { maxDepth: 3, maxEntries: 5_000 } as const;

/** Folders the secret scan does not enter: big, and never where a person keeps a key. */
const SCAN_SKIPPED_DIRS: ReadonlySet<string> = new Set(['node_modules', '.git']);

/**
 * Names that hold credentials, matched against every path component, case-insensitively
 * (macOS folds case). `*` stands for any characters within one name; a pattern with `/`
 * matches that many consecutive components.
 */
export const DEFAULT_BLOCKED_PATTERNS: readonly string[] = [
  '.ssh',
  '.gnupg',
  '.gpg',
  '.aws',
  '.azure',
  '.gcloud',
  '.config/gcloud',
  '.config/gh',
  '.kube',
  '.docker',
  '.password-store',
  '.vault-token',
  '.terraform.d',
  '.netrc',
  '.npmrc',
  '.pypirc',
  '.pgpass',
  '.git-credentials',
  '.env',
  '.env.*',
  'id_rsa*',
  'id_dsa*',
  'id_ecdsa*',
  'id_ed25519*',
  '*.pem',
  '*.key',
  '*.p12',
  '*.pfx',
  '*.jks',
  '*.keystore',
  '*credentials*',
  'private_key*',
  '*.secret',
  'secrets',
  '.secrets',
  'Keychains',
];

/** A pattern: names of `[^/]` with `*` and `?`, one to a few components. */
const PatternSchema = z
  .string()
  .min(1, 'a blocked pattern may not be empty')
  .max(200)
  .refine((p) => !p.startsWith('/') && !p.endsWith('/') && !p.includes('//'), {
    message: 'a blocked pattern is a name or names joined by "/", like ".env" or ".config/gh"',
  });

const RootSchema = z
  .object({
    /** An absolute path, or one starting with `~/`. */
    path: z.string().min(1, 'a root needs a path').max(4096),
    /** Groups may ask for write access below this root. @default false */
    allowReadWrite: z.boolean().default(false),
    description: z.string().max(1000).optional(),
  })
  .strict();

const AllowlistSchema = z
  .object({
    roots: z.array(RootSchema).max(100, 'at most 100 roots'),
    /** Added to {@link DEFAULT_BLOCKED_PATTERNS}; the defaults always apply. */
    blockedPatterns: z.array(PatternSchema).max(200).default([]),
    /** Non-main groups get every extra mount read-only. @default true */
    nonMainReadOnly: z.boolean().default(true),
  })
  .strict();

/** The allowlist file, parsed. */
export type MountAllowlist = z.output<typeof AllowlistSchema>;

/** What reading the allowlist file gave. It never throws: a bad file is a reason. */
export type AllowlistLoad =
  | { ok: true; file: string; allowlist: MountAllowlist }
  | { ok: false; file: string; missing: boolean; reason: string };

/** Where the allowlist of the data root `home` lives. */
export function mountAllowlistPath(home: string): string {
  return path.join(home, MOUNT_ALLOWLIST_FILE);
}

/**
 * Reads and checks the allowlist file. A missing file is `missing` (no extra mounts); an
 * unreadable, oversized or malformed one gives a reason that says what to fix.
 */
export function loadMountAllowlist(file: string): AllowlistLoad {
  let text: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) {
      return { ok: false, file, missing: false, reason: `${file} is not a regular file` };
    }
    if (stat.size > MAX_ALLOWLIST_BYTES) {
      return {
        ok: false,
        file,
        missing: false,
        reason: `${file} is ${stat.size} bytes, more than the ${MAX_ALLOWLIST_BYTES} allowed`,
      };
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ENOENT') {
      return {
        ok: false,
        file,
        missing: true,
        reason: `there is no mount allowlist (${file}), so no extra mounts are allowed; create it with the folders groups may mount, like {"roots":[{"path":"~/projects"}]}`,
      };
    }
    return {
      ok: false,
      file,
      missing: false,
      reason: `cannot read ${file}: ${(err as Error).message}`,
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return {
      ok: false,
      file,
      missing: false,
      reason: `${file} is not valid JSON (${(err as Error).message}); no extra mounts are allowed until it is fixed`,
    };
  }
  const parsed = AllowlistSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(top)'}: ${issue.message}`)
      .join('; ');
    return {
      ok: false,
      file,
      missing: false,
      reason: `${file} is malformed (${problems}); expected {"roots":[{"path":"~/projects","allowReadWrite":false}],"blockedPatterns":[],"nonMainReadOnly":true}; no extra mounts are allowed until it is fixed`,
    };
  }
  return { ok: true, file, allowlist: parsed.data };
}

/** What the checks need besides the requests. */
export interface ExtraMountContext {
  /** The data root, `$CLAWBAR_HOME`: never mounted, nor anything holding it. */
  home: string;
  isMain: boolean;
  allowlist: AllowlistLoad;
  /** What `~/` stands for. @default os.homedir() */
  homedir?: string;
}

/** An extra mount that passed, with the request it came from. */
export interface GrantedMount extends Mount {
  request: ExtraMountRequest;
  /** Said when the mount is narrower than asked (read-only) or was not checked in full. */
  notes: string[];
}

/** An extra mount that was refused, and why (in words for the user). */
export interface RefusedMount {
  request: ExtraMountRequest;
  reason: string;
}

export interface ExtraMountResult {
  mounts: GrantedMount[];
  refused: RefusedMount[];
}

/** One request's verdict. */
export type ExtraMountVerdict =
  { ok: true; mount: GrantedMount } | { ok: false; refused: RefusedMount };

/** Thrown inside the checks; turned into a {@link RefusedMount}, never out of this module. */
class Refusal extends Error {}

/**
 * Checks every request and returns the mounts that pass and the ones refused, with reasons.
 * Never throws: a refused mount is skipped, and the run goes on without it.
 */
export function resolveExtraMounts(
  requests: readonly ExtraMountRequest[],
  ctx: ExtraMountContext,
): ExtraMountResult {
  const result: ExtraMountResult = { mounts: [], refused: [] };
  for (const [i, request] of requests.entries()) {
    if (i >= MAX_EXTRA_MOUNTS) {
      result.refused.push({
        request,
        reason: `a group may have at most ${MAX_EXTRA_MOUNTS} extra mounts`,
      });
      continue;
    }
    const verdict = checkExtraMount(request, ctx);
    if (!verdict.ok) {
      result.refused.push(verdict.refused);
      continue;
    }
    const clash = result.mounts.find((m) =>
      pathsNest(m.containerPath, verdict.mount.containerPath),
    );
    if (clash) {
      result.refused.push({
        request,
        reason: `its container path ${verdict.mount.containerPath} clashes with ${clash.containerPath} (from ${clash.request.hostPath}); give it another with HOST:NAME`,
      });
      continue;
    }
    // One inside the other would let a read-only mount be reached read-write through the other.
    const overlap = result.mounts.find((m) => pathsNest(m.hostPath, verdict.mount.hostPath));
    if (overlap) {
      result.refused.push({
        request,
        reason: `${verdict.mount.hostPath} is the same folder as, or nests with, ${overlap.hostPath} (mounted already); mount one of them`,
      });
      continue;
    }
    result.mounts.push(verdict.mount);
  }
  return result;
}

/** Checks one request against the allowlist (see the module comment for the rules). */
export function checkExtraMount(
  request: ExtraMountRequest,
  ctx: ExtraMountContext,
): ExtraMountVerdict {
  try {
    return { ok: true, mount: grant(request, ctx) };
  } catch (err) {
    // Anything else (a folder removed between two checks) refuses the mount, never the run.
    const reason =
      err instanceof Refusal ? err.message : `it could not be checked: ${(err as Error).message}`;
    return { ok: false, refused: { request, reason } };
  }
}

function grant(request: ExtraMountRequest, ctx: ExtraMountContext): GrantedMount {
  if (!ctx.allowlist.ok) throw new Refusal(ctx.allowlist.reason);
  const { allowlist } = ctx.allowlist;
  const homedir = ctx.homedir ?? os.homedir();
  const given = expandHostPath(request.hostPath, homedir);
  const patterns = [...DEFAULT_BLOCKED_PATTERNS, ...allowlist.blockedPatterns].map(compilePattern);

  const givenBlock = blockedComponent(components(given), patterns);
  if (givenBlock) throw new Refusal(`${given} is secret-bearing (it matches "${givenBlock}")`);
  const real = realPath(given);
  const realBlock = blockedComponent(components(real), patterns);
  if (realBlock) {
    throw new Refusal(
      `${given} leads to ${real}, which is secret-bearing (it matches "${realBlock}")`,
    );
  }
  // After the secret check: a link to a key file is reported as a secret, not as a file.
  if (!fs.statSync(real).isDirectory()) {
    throw new Refusal(`${given} is not a folder; only folders can be mounted`);
  }
  checkBindable(real);
  checkNotProtected(real, ctx);

  const root = allowedRootFor(real, allowlist, homedir);
  const containerPath = containerPathFor(request, given);
  const nested = findNestedSecret(real, patterns);
  if (nested.found) {
    throw new Refusal(
      `${real} holds ${nested.found.path}, which is secret-bearing (it matches "${nested.found.pattern}"); mount a narrower folder, or move the secret out`,
    );
  }

  const notes: string[] = [];
  const wantsWrite = request.readonly === false;
  let readOnly = true;
  if (wantsWrite && !root.allowReadWrite) {
    notes.push(`read-only: the allowlist root ${root.path} does not allow writing`);
  } else if (wantsWrite && !ctx.isMain && allowlist.nonMainReadOnly) {
    notes.push('read-only: the allowlist makes every extra mount of a non-main group read-only');
  } else if (wantsWrite) {
    readOnly = false;
  }
  if (!nested.complete) {
    notes.push(
      `only its first ${NESTED_SCAN_LIMITS.maxEntries} entries, ${NESTED_SCAN_LIMITS.maxDepth} levels deep, were checked for secrets`,
    );
  }
  return { hostPath: real, containerPath, readOnly, request, notes };
}

/** `~/x` → `<homedir>/x`; refuses relative paths and `.`/`..` segments as typed. */
function expandHostPath(raw: string, homedir: string): string {
  if (raw.length === 0 || raw.length > 4096 || /[\p{Cc}]/u.test(raw)) {
    throw new Refusal('a host path must be 1-4096 characters with no control characters');
  }
  let p: string;
  if (raw === '~') p = homedir;
  else if (raw.startsWith('~/')) p = path.join(homedir, raw.slice(2));
  else if (path.isAbsolute(raw)) p = raw;
  else throw new Refusal(`${raw} is not an absolute path (or one starting with ~/)`);
  // On the raw text: path.join would fold `a/../b` before anyone saw it.
  if (raw.split('/').some((s) => s === '..' || s === '.')) {
    throw new Refusal(`${raw} has a '.' or '..' segment; name the folder directly`);
  }
  return path.normalize(p).replace(/(.)\/+$/, '$1');
}

/** The real path of `p`, every symlink resolved; it must exist. */
function realPath(p: string): string {
  try {
    return fs.realpathSync.native(p);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new Refusal(
      code === 'ENOENT'
        ? `${p} does not exist`
        : `${p} cannot be resolved (${(err as Error).message})`,
    );
  }
}

/** The container engine's bind syntax cannot carry these; neither can a one-line log. */
function checkBindable(real: string): void {
  if (/[:,]/.test(real) || /[\p{Cc}]/u.test(real)) {
    throw new Refusal(`${real} holds ':', ',' or a control character, which a mount cannot carry`);
  }
}

/** `$CLAWBAR_HOME` (database, groups, allowlist, control socket) is never mounted, whole or part. */
function checkNotProtected(real: string, ctx: ExtraMountContext): void {
  const protectedPaths = [ctx.home];
  if (ctx.allowlist.ok) protectedPaths.push(ctx.allowlist.file);
  for (const p of protectedPaths) {
    let realProtected: string;
    try {
      realProtected = fs.realpathSync.native(p);
    } catch {
      realProtected = path.resolve(p);
    }
    if (real === realProtected || isInside(realProtected, real)) {
      throw new Refusal(`${real} is Clawbar's own data (${realProtected}); it is never mounted`);
    }
    if (isInside(real, realProtected)) {
      throw new Refusal(
        `${real} holds Clawbar's own data (${realProtected}); mount a folder that does not`,
      );
    }
  }
}

/** The root whose real path holds `real`; the most permissive one when several do. */
function allowedRootFor(
  real: string,
  allowlist: MountAllowlist,
  homedir: string,
): { path: string; allowReadWrite: boolean } {
  let best: { path: string; allowReadWrite: boolean } | null = null;
  const missing: string[] = [];
  for (const root of allowlist.roots) {
    let realRoot: string;
    try {
      const given =
        root.path === '~'
          ? homedir
          : root.path.startsWith('~/')
            ? path.join(homedir, root.path.slice(2))
            : root.path;
      if (!path.isAbsolute(given)) {
        missing.push(`${root.path} (not absolute)`);
        continue;
      }
      realRoot = fs.realpathSync.native(given);
    } catch {
      missing.push(`${root.path} (does not exist)`);
      continue;
    }
    if (real !== realRoot && !isInside(realRoot, real)) continue;
    if (!best || (root.allowReadWrite && !best.allowReadWrite)) {
      best = { path: root.path, allowReadWrite: root.allowReadWrite };
    }
  }
  if (best) return best;
  const listed = allowlist.roots.map((r) => r.path).join(', ') || 'none';
  throw new Refusal(
    `${real} is not inside any allowed root (${listed})${missing.length > 0 ? `; skipped roots: ${missing.join(', ')}` : ''}; add a root that holds it to the mount allowlist`,
  );
}

const CONTAINER_NAME = /^[A-Za-z0-9._-]+$/;

/** Where the mount appears: `/workspace/extra/<containerPath or the folder's name>`. */
function containerPathFor(request: ExtraMountRequest, given: string): string {
  if (request.containerPath === undefined) {
    // The folder's name as typed (a link's name, not its target's), made a safe single name.
    const name = path
      .basename(given)
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^[.-]+/, '');
    if (name === '' || name === '.' || name === '..') {
      throw new Refusal(`${given} has no usable folder name; give a container path with HOST:NAME`);
    }
    return `${EXTRA_MOUNTS_DIR}/${name}`;
  }
  const cp = request.containerPath;
  const segments = cp.split('/');
  const bad =
    cp.length === 0 ||
    cp.length > 200 ||
    cp.startsWith('/') ||
    segments.some((s) => s === '' || s === '.' || s === '..' || !CONTAINER_NAME.test(s));
  if (bad) {
    throw new Refusal(
      `container path "${printable(cp)}" must be relative, made of names of letters, digits, '.', '_' and '-' joined by '/', with no '..' or ':' (it goes under ${EXTRA_MOUNTS_DIR}/)`,
    );
  }
  return `${EXTRA_MOUNTS_DIR}/${cp}`;
}

// ── patterns ──────────────────────────────────────────────────────────────

interface CompiledPattern {
  source: string;
  /** One regex per component, all anchored. */
  parts: RegExp[];
}

function compilePattern(source: string): CompiledPattern {
  const parts = source.split('/').map((part) => {
    const body = part
      .split('')
      .map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('');
    return new RegExp(`^${body}$`, 'i');
  });
  return { source, parts };
}

/** Whether `pattern` matches the components ending at index `end`. */
function matchesAt(names: readonly string[], end: number, pattern: CompiledPattern): boolean {
  const start = end - pattern.parts.length + 1;
  if (start < 0) return false;
  return pattern.parts.every((re, k) => re.test(names[start + k] as string));
}

/** The first pattern some component of `names` matches, or null. */
function blockedComponent(
  names: readonly string[],
  patterns: readonly CompiledPattern[],
): string | null {
  for (let end = 0; end < names.length; end++) {
    const hit = patterns.find((p) => matchesAt(names, end, p));
    if (hit) return hit.source;
  }
  return null;
}

function components(p: string): string[] {
  return p.split(path.sep).filter((s) => s.length > 0);
}

/**
 * Looks inside `dir` for an entry a blocked pattern matches, breadth first, within
 * {@link NESTED_SCAN_LIMITS}, following no link (a link's own name still counts).
 */
function findNestedSecret(
  dir: string,
  patterns: readonly CompiledPattern[],
): { found: { path: string; pattern: string } | null; complete: boolean } {
  const base = components(dir);
  let queue: string[][] = [[]];
  let seen = 0;
  for (let depth = 1; depth <= NESTED_SCAN_LIMITS.maxDepth && queue.length > 0; depth++) {
    const next: string[][] = [];
    for (const rel of queue) {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(path.join(dir, ...rel), { withFileTypes: true });
      } catch {
        continue; // gone meanwhile, or unreadable: the container cannot read it either
      }
      for (const entry of entries) {
        if (++seen > NESTED_SCAN_LIMITS.maxEntries) return { found: null, complete: false };
        const names = [...base, ...rel, entry.name];
        const hit = patterns.find((p) => matchesAt(names, names.length - 1, p));
        if (hit)
          return {
            found: { path: path.join(dir, ...rel, entry.name), pattern: hit.source },
            complete: true,
          };
        if (entry.isDirectory() && !SCAN_SKIPPED_DIRS.has(entry.name))
          next.push([...rel, entry.name]);
      }
    }
    queue = next;
  }
  return { found: null, complete: queue.length === 0 };
}

// ── helpers ───────────────────────────────────────────────────────────────

/** True when `child` lies below `parent` (not equal). Both absolute and resolved. */
function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return (
    rel.length > 0 && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel)
  );
}

/** Whether two container paths are the same or one holds the other. */
function pathsNest(a: string, b: string): boolean {
  return a === b || isInside(a, b) || isInside(b, a);
}

/** Text from the user, safe to quote in one line. */
function printable(text: string): string {
  const clean = text.replace(/[\p{Cc}\p{Cf}]/gu, '?');
  return clean.length > 80 ? `${clean.slice(0, 80)}…` : clean;
}

// ── the CLI's mount specs ─────────────────────────────────────────────────

/**
 * Parses `PATH[:CONTAINER_PATH][:rw|:ro]`, as `clawbar groups mounts G --add` takes it. A host
 * path holding `:` cannot be written this way (a mount cannot carry it anyway).
 */
export function parseMountSpec(spec: string): ExtraMountRequest {
  const parts = spec.split(':');
  let mode: 'rw' | 'ro' | undefined;
  const last = parts[parts.length - 1];
  if (parts.length > 1 && (last === 'rw' || last === 'ro')) {
    mode = last;
    parts.pop();
  }
  if (parts.length > 2 || (parts[0] ?? '') === '' || parts[1] === '') {
    throw new Error(
      `"${printable(spec)}" is not PATH[:CONTAINER_PATH][:rw], like ~/projects/app or ~/projects/app:app:rw`,
    );
  }
  return {
    hostPath: parts[0] as string,
    ...(parts[1] !== undefined ? { containerPath: parts[1] } : {}),
    ...(mode === 'rw' ? { readonly: false } : {}),
  };
}

// ── `clawbar groups mounts` ───────────────────────────────────────────────

/** A change to a group's extra mounts; neither field lists them as they are. */
export interface MountChange {
  /** `PATH[:CONTAINER_PATH][:rw]`, checked against the allowlist before it is stored. */
  add?: string;
  /** A host path as stored (or the same path written with or without `~/`). */
  remove?: string;
}

/** One stored request and what the allowlist makes of it now. */
export interface MountStatusView {
  hostPath: string;
  containerPath: string | null;
  /** Whether the request asks to write. */
  wantsWrite: boolean;
  /** Mounted at the next run, and how; or refused, and why. */
  status: 'allowed' | 'refused';
  mount?: { hostPath: string; containerPath: string; readOnly: boolean };
  notes: string[];
  reason?: string;
}

/** The answer to `groups.mounts`. */
export interface GroupMountsView {
  group: string;
  allowlist: { file: string; state: 'ok' | 'missing' | 'invalid'; reason?: string };
  mounts: MountStatusView[];
  /** What the request changed, if anything. */
  changed: { added: string } | { removed: string } | null;
}

/**
 * Shows a group's extra mounts, as the allowlist judges them now, after `change`. An added
 * mount is checked at once, together with the group's others, and refused with the reason
 * (nothing is stored then); `save` stores the new list.
 *
 * @throws {CoreInputError} for a spec that cannot be read, a refused mount, an unknown removal
 */
export function changeGroupMounts(
  group: { name: string; isMain: boolean; extraMounts: readonly ExtraMountRequest[] },
  change: MountChange,
  ctx: Omit<ExtraMountContext, 'isMain'>,
  save: (requests: ExtraMountRequest[]) => void,
): GroupMountsView {
  const context: ExtraMountContext = { ...ctx, isMain: group.isMain };
  const homedir = ctx.homedir ?? os.homedir();
  let requests = [...group.extraMounts];
  let changed: GroupMountsView['changed'] = null;
  if (change.add !== undefined && change.remove !== undefined) {
    throw new CoreInputError('give --add or --remove, not both');
  }
  if (change.add !== undefined) {
    let request: ExtraMountRequest;
    try {
      request = parseMountSpec(change.add.trim());
    } catch (err) {
      throw new CoreInputError((err as Error).message);
    }
    const same = requests.find((r) => samePath(r.hostPath, request.hostPath, homedir));
    if (same) {
      throw new CoreInputError(
        `${request.hostPath} is already one of ${group.name}'s mounts; remove it first to change it`,
      );
    }
    if (requests.length >= MAX_EXTRA_MOUNTS) {
      throw new CoreInputError(`a group may have at most ${MAX_EXTRA_MOUNTS} extra mounts`);
    }
    const refused = resolveExtraMounts([...requests, request], context).refused.find(
      (r) => r.request === request,
    );
    if (refused) {
      throw new CoreInputError(`${request.hostPath} cannot be mounted: ${refused.reason}`);
    }
    requests.push(request);
    changed = { added: request.hostPath };
    save(requests);
  } else if (change.remove !== undefined) {
    const target = change.remove.trim();
    const kept = requests.filter((r) => !samePath(r.hostPath, target, homedir));
    if (kept.length === requests.length) {
      const listed = requests.map((r) => r.hostPath).join(', ') || 'none';
      throw new CoreInputError(`${target} is not one of ${group.name}'s mounts (${listed})`);
    }
    requests = kept;
    changed = { removed: target };
    save(requests);
  }
  return {
    group: group.name,
    allowlist: allowlistState(ctx.allowlist),
    mounts: mountStatuses(requests, context),
    changed,
  };
}

/** Each request with its verdict, in the order stored (as a run checks them). */
function mountStatuses(
  requests: readonly ExtraMountRequest[],
  ctx: ExtraMountContext,
): MountStatusView[] {
  const result = resolveExtraMounts(requests, ctx);
  return requests.map((request) => {
    const base = {
      hostPath: request.hostPath,
      containerPath: request.containerPath ?? null,
      wantsWrite: request.readonly === false,
    };
    const granted = result.mounts.find((m) => m.request === request);
    if (granted) {
      const { hostPath, containerPath, readOnly, notes } = granted;
      return { ...base, status: 'allowed', mount: { hostPath, containerPath, readOnly }, notes };
    }
    const reason = result.refused.find((r) => r.request === request)?.reason ?? 'refused';
    return { ...base, status: 'refused', notes: [], reason };
  });
}

function allowlistState(load: AllowlistLoad): GroupMountsView['allowlist'] {
  if (load.ok) return { file: load.file, state: 'ok' };
  return { file: load.file, state: load.missing ? 'missing' : 'invalid', reason: load.reason };
}

/** The same host path, written with `~/` or without. */
function samePath(a: string, b: string, homedir: string): boolean {
  const expand = (p: string): string =>
    path.normalize(p === '~' ? homedir : p.startsWith('~/') ? path.join(homedir, p.slice(2)) : p);
  return a === b || expand(a).replace(/(.)\/+$/, '$1') === expand(b).replace(/(.)\/+$/, '$1');
}
