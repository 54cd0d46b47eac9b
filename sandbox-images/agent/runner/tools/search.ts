/** The search tools: list (a folder, or paths matching a glob) and grep (file contents). */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { globToRegExp, splitLiteralPrefix, walkTree } from '../glob.js';
import {
  TOOL_LIMITS,
  ToolError,
  defineTool,
  displayPath,
  looksBinary,
  pathField,
  resolveToolPath,
  truncateLine,
  type ToolContext,
} from './define.js';

// ── list ───────────────────────────────────────────────────────────────────

export const listTool = defineTool({
  name: 'list',
  description:
    'Lists a folder (default: the group folder), or with pattern, finds the paths below it that match a glob: ' +
    '`*` and `?` within a name, `**` for any number of folders, `{a,b}` for alternatives, e.g. `**/*.md`. Folders end ' +
    `in /. At most ${TOOL_LIMITS.listMaxEntries} entries; .git and node_modules are not searched unless path points into them.`,
  input: z.strictObject({
    path: pathField.optional().describe('The folder, absolute or relative to the group folder.'),
    pattern: z.string().min(1).max(1000).optional().describe('A glob, relative to path.'),
  }),
  async run(input, context) {
    const base = resolveToolPath(context.groupDir, input.path ?? '.');
    const stats = await fs.stat(base);
    if (!stats.isDirectory()) {
      if (input.pattern !== undefined)
        throw new ToolError(`${base} is a file, not a folder to search`);
      return `${base} is a file of ${stats.size} bytes.`;
    }
    return input.pattern === undefined
      ? listFolder(base)
      : findByGlob(base, input.pattern, context);
  },
});

async function listFolder(folder: string): Promise<string> {
  const dirents = await fs.readdir(folder, { withFileTypes: true });
  if (dirents.length === 0) return `${folder} is empty.`;
  const names = dirents
    .map((dirent) =>
      dirent.isDirectory()
        ? `${dirent.name}/`
        : dirent.isSymbolicLink()
          ? `${dirent.name}@`
          : dirent.name,
    )
    .sort();
  const shown = names.slice(0, TOOL_LIMITS.listMaxEntries);
  const more = names.length - shown.length;
  return [
    `${folder} (${names.length} entries):`,
    ...shown,
    ...(more > 0 ? [`[${more} more not shown]`] : []),
  ].join('\n');
}

async function findByGlob(base: string, pattern: string, context: ToolContext): Promise<string> {
  if (path.isAbsolute(pattern) || pattern.split('/').includes('..')) {
    throw new ToolError(
      'pattern must be relative to path and stay below it; put the folder to search in path',
    );
  }
  const { prefix, rest } = splitLiteralPrefix(pattern.replace(/^\.\//, ''));
  const matcher = globToRegExp(rest);
  const root = path.join(base, prefix);
  const matches: string[] = [];
  let full = false;
  const rootStats = await fs.stat(root).catch(() => null);
  const summary = rootStats?.isDirectory()
    ? await walkTree(
        root,
        (entry) => {
          if (!matcher.test(entry.relativePath)) return;
          if (matches.length >= TOOL_LIMITS.listMaxEntries) {
            full = true;
            return false;
          }
          matches.push(
            displayPath(context.groupDir, entry.absolutePath) +
              (entry.kind === 'directory' ? '/' : ''),
          );
        },
        context.signal ? { signal: context.signal } : {},
      )
    : { exhausted: false, stopped: false };
  if (matches.length === 0) return `No paths under ${base} match ${pattern}.`;
  matches.sort();
  if (full) matches.push(`[stopped at ${TOOL_LIMITS.listMaxEntries} matches; narrow the pattern]`);
  if (summary.exhausted)
    matches.push('[the tree is too large to search whole; narrow path or pattern]');
  return matches.join('\n');
}

// ── grep ───────────────────────────────────────────────────────────────────

export const grepTool = defineTool({
  name: 'grep',
  description:
    'Searches file contents with a JavaScript regular expression and returns matching lines as path:line: text. path ' +
    'is a file or a folder (default: the group folder); glob filters file names (`*.md`, or `docs/**/*.md` to match ' +
    `the path). Binary files, .git and node_modules are skipped. At most ${TOOL_LIMITS.grepMaxMatches} matches.`,
  input: z.strictObject({
    pattern: z
      .string()
      .min(1)
      .max(1000)
      .describe('A JavaScript regular expression, without slashes.'),
    path: pathField
      .optional()
      .describe('A file or folder, absolute or relative to the group folder.'),
    glob: z
      .string()
      .min(1)
      .max(1000)
      .optional()
      .describe('Only search files whose name (or path, if it has a /) matches.'),
    ignore_case: z.boolean().optional().describe('Match letters regardless of case.'),
  }),
  async run(input, context) {
    let regex: RegExp;
    try {
      regex = new RegExp(input.pattern, input.ignore_case === true ? 'i' : '');
    } catch (err) {
      throw new ToolError(
        `invalid regular expression: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const fileFilter = input.glob === undefined ? null : globToRegExp(input.glob);
    const filterOnPath = input.glob?.includes('/') ?? false;
    const base = resolveToolPath(context.groupDir, input.path ?? '.');
    const stats = await fs.stat(base);

    const lines: string[] = [];
    let chars = 0;
    let full = false;
    let skippedLarge = 0;
    const searchFile = async (absolutePath: string): Promise<boolean> => {
      const fileStats = await fs.stat(absolutePath).catch(() => null);
      if (!fileStats) return true;
      if (fileStats.size > TOOL_LIMITS.maxFileBytes) {
        skippedLarge++;
        return true;
      }
      const bytes = await fs.readFile(absolutePath).catch(() => null);
      if (!bytes || looksBinary(bytes)) return true;
      const fileLines = bytes.toString('utf8').split('\n');
      for (let index = 0; index < fileLines.length; index++) {
        const line = fileLines[index] ?? '';
        if (!regex.test(line)) continue;
        const hit = `${displayPath(context.groupDir, absolutePath)}:${index + 1}: ${truncateLine(line)}`;
        if (
          lines.length >= TOOL_LIMITS.grepMaxMatches ||
          chars + hit.length > TOOL_LIMITS.grepMaxOutputChars
        ) {
          full = true;
          return false;
        }
        lines.push(hit);
        chars += hit.length + 1;
      }
      return true;
    };

    let exhausted = false;
    if (stats.isDirectory()) {
      const summary = await walkTree(
        base,
        async (entry) => {
          if (entry.kind !== 'file') return;
          const subject = filterOnPath ? entry.relativePath : path.basename(entry.relativePath);
          if (fileFilter && !fileFilter.test(subject)) return;
          return searchFile(entry.absolutePath);
        },
        context.signal ? { signal: context.signal } : {},
      );
      exhausted = summary.exhausted;
    } else {
      await searchFile(base);
    }
    if (full)
      lines.push(`[stopped after ${lines.length} matches; narrow the pattern, path or glob]`);
    if (exhausted) lines.push('[the tree is too large to search whole; narrow path or glob]');
    if (skippedLarge > 0)
      lines.push(`[${skippedLarge} files over ${TOOL_LIMITS.maxFileBytes} bytes were skipped]`);
    return lines.length === 0 ? `No matches for /${input.pattern}/ in ${base}.` : lines.join('\n');
  },
});
