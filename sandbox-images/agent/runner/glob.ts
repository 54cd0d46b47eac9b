/**
 * A small glob matcher and a bounded directory walk, for the list and grep tools.
 *
 * Supported glob syntax, matched against `/`-separated paths relative to the search root:
 * `*` (any characters within one path segment), `?` (one character within a segment),
 * `**` (any number of whole segments, including none, when it stands alone as a segment;
 * anywhere else it matches across segments) and `{a,b}` (alternatives, nestable).
 * Everything else, including `[`, is literal, because file names like `[id].tsx` are common
 * and character classes are not.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Compiles a glob into a regular expression that must match a whole relative path. */
export function globToRegExp(pattern: string): RegExp {
  return new RegExp(`^${globSource(pattern)}$`);
}

/** Any glob syntax: a segment without it is a literal folder name. */
const GLOB_SYNTAX = /[*?{]/;

/**
 * Splits a glob into the leading folders that are plain names and the rest, so a walk can
 * start in `src/lib` for `src/lib/**\/*.ts` instead of searching the whole tree.
 * The last segment always stays in `rest`.
 */
export function splitLiteralPrefix(pattern: string): { prefix: string; rest: string } {
  const segments = pattern.split('/');
  let literal = 0;
  while (literal < segments.length - 1 && !GLOB_SYNTAX.test(segments[literal] ?? '')) literal++;
  return { prefix: segments.slice(0, literal).join('/'), rest: segments.slice(literal).join('/') };
}

function globSource(pattern: string): string {
  let source = '';
  let i = 0;
  while (i < pattern.length) {
    const ch = pattern.charAt(i);
    if (ch === '*' && pattern.charAt(i + 1) === '*') {
      const startsSegment = i === 0 || pattern.charAt(i - 1) === '/';
      if (startsSegment && pattern.charAt(i + 2) === '/') {
        source += '(?:[^/]*/)*';
        i += 3;
      } else {
        source += '.*';
        i += 2;
      }
    } else if (ch === '*') {
      source += '[^/]*';
      i += 1;
    } else if (ch === '?') {
      source += '[^/]';
      i += 1;
    } else if (ch === '{' && closingBrace(pattern, i) !== -1) {
      const close = closingBrace(pattern, i);
      const alternatives = splitAlternatives(pattern.slice(i + 1, close));
      source += `(?:${alternatives.map(globSource).join('|')})`;
      i = close + 1;
    } else {
      source += ch.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
      i += 1;
    }
  }
  return source;
}

/** The index of the `}` that closes the `{` at `open`, or -1 when it is unbalanced. */
function closingBrace(pattern: string, open: number): number {
  let depth = 0;
  for (let i = open; i < pattern.length; i++) {
    const ch = pattern.charAt(i);
    if (ch === '{') depth++;
    else if (ch === '}' && --depth === 0) return i;
  }
  return -1;
}

/** Splits the inside of `{…}` on the commas that are not inside a nested brace. */
function splitAlternatives(inner: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < inner.length; i++) {
    const ch = inner.charAt(i);
    if (ch === '{') depth++;
    else if (ch === '}') depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(inner.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(inner.slice(start));
  return parts;
}

/** One file or folder met during a walk. */
export interface WalkEntry {
  absolutePath: string;
  /** Relative to the walk's root, with `/` separators. */
  relativePath: string;
  kind: 'file' | 'directory';
}

export interface WalkOptions {
  /**
   * The most entries to look at before giving up, so a walk of `/` or a huge tree ends in
   * bounded time. @default 50_000
   */
  maxEntries?: number;
  /**
   * Folder names never descended into: they are large and almost never what the agent is
   * looking for. A walk that starts inside one still searches it.
   * @default ['.git', 'node_modules']
   */
  skipDirectories?: readonly string[];
  signal?: AbortSignal;
}

/** How a walk ended. */
export interface WalkSummary {
  /** True when `maxEntries` ran out before the tree did. */
  exhausted: boolean;
  /** True when the visitor asked to stop. */
  stopped: boolean;
}

/**
 * Visits every file and folder below `root`, one folder at a time and in name order within a
 * folder (callers that show results sort them). Folders that cannot be
 * read are skipped; symbolic links are reported (as what they point to) but never followed
 * into, so a link loop cannot trap the walk. The visitor returns `false` to stop early.
 * Throws only when `root` itself cannot be read.
 */
export async function walkTree(
  root: string,
  visit: (entry: WalkEntry) => boolean | void | Promise<boolean | void>,
  options: WalkOptions = {},
): Promise<WalkSummary> {
  const maxEntries = options.maxEntries ?? 50_000;
  const skip = new Set(options.skipDirectories ?? ['.git', 'node_modules']);
  let seen = 0;
  // A stack of folders still to read, as paths relative to the root; '' is the root itself.
  const pending: string[] = [''];
  let first = true;
  while (pending.length > 0) {
    options.signal?.throwIfAborted();
    const relativeDir = pending.pop() ?? '';
    const absoluteDir = path.join(root, relativeDir);
    let dirents;
    try {
      dirents = await fs.readdir(absoluteDir, { withFileTypes: true });
    } catch (err) {
      if (first) throw err;
      continue;
    }
    first = false;
    dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const subdirectories: string[] = [];
    for (const dirent of dirents) {
      if (++seen > maxEntries) return { exhausted: true, stopped: false };
      const relativePath = relativeDir ? `${relativeDir}/${dirent.name}` : dirent.name;
      const absolutePath = path.join(absoluteDir, dirent.name);
      let kind: WalkEntry['kind'] | null = dirent.isDirectory()
        ? 'directory'
        : dirent.isFile()
          ? 'file'
          : null;
      if (dirent.isSymbolicLink()) {
        const target = await fs.stat(absolutePath).catch(() => null);
        kind = target?.isDirectory() ? 'directory' : target?.isFile() ? 'file' : null;
      } else if (kind === 'directory' && !skip.has(dirent.name)) {
        subdirectories.push(relativePath);
      }
      if (kind === null) continue; // sockets, fifos, devices, broken links
      if ((await visit({ absolutePath, relativePath, kind })) === false)
        return { exhausted: false, stopped: true };
    }
    // Reverse so that popping the stack continues in name order.
    for (let i = subdirectories.length - 1; i >= 0; i--) pending.push(subdirectories[i] ?? '');
  }
  return { exhausted: false, stopped: false };
}
