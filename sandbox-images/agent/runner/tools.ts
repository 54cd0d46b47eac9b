/**
 * The agent's tools: their definitions as the model sees them, input validation, and their
 * implementations.
 *
 * Each tool is one zod schema plus one function. The JSON schema the model receives is derived
 * from the zod schema, so the two cannot drift apart. Whatever the model sends, a tool call
 * ends in a tool result: bad input, a missing file or a failing command become an `is_error`
 * result the model can read and act on, never an exception that ends the turn.
 *
 * The container is the sandbox, so the file tools may touch any path the container user can.
 * Relative paths resolve against the group folder.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  HostCallArgsSchemas,
  type HostCallName,
  type ToolDefinition,
} from '../../../main/core/agent/protocol.js';
import { runBash } from './bash.js';
import { fsErrorMessage } from './fs-errors.js';
import { globToRegExp, splitLiteralPrefix, walkTree } from './glob.js';

/** Limits on what the tools take in and give back, chosen to keep the model's context lean. */
export const TOOL_LIMITS = {
  /** @default 120 s */
  bashDefaultTimeoutMs: 120_000,
  /** @default 600 s */
  bashMaxTimeoutMs: 600_000,
  /** Bash output kept, head and tail together. @default 30,000 */
  bashMaxOutputChars: 30_000,
  /** Lines the read tool returns when no limit is given. @default 2,000 */
  readDefaultLines: 2_000,
  /** Characters the read tool returns at most. @default 50,000 */
  readMaxOutputChars: 50_000,
  /** Characters of one line the read and grep tools show. @default 2,000 */
  maxLineChars: 2_000,
  /** Files larger than this are not read whole by read, edit or grep. @default 10 MiB */
  maxFileBytes: 10 * 1024 * 1024,
  /** Entries the list tool returns. @default 500 */
  listMaxEntries: 500,
  /** Matching lines the grep tool returns. @default 200 */
  grepMaxMatches: 200,
  /** Characters the grep tool returns at most. @default 30,000 */
  grepMaxOutputChars: 30_000,
} as const;

/** The host's answer to a `host.call`. */
export interface HostCallReply {
  ok: boolean;
  result: string;
}

/** What a tool may use besides its input. */
export interface ToolContext {
  /** The group folder: the working directory and the base of relative paths. Absolute. */
  groupDir: string;
  /** Makes a call to the host (e.g. send_message) and waits for its `tool.result`. */
  callHost(name: HostCallName, args: unknown, signal?: AbortSignal): Promise<HostCallReply>;
  /** Aborted when the turn is cancelled (shutdown); long tools stop early. */
  signal?: AbortSignal;
}

/** The result of one tool call, ready to become a `tool_result` block. */
export interface ToolOutcome {
  content: string;
  isError: boolean;
}

/** A failure a tool reports to the model in plain words. */
export class ToolError extends Error {
  override readonly name = 'ToolError';
}

interface ToolSpec<Input extends z.ZodType> {
  name: string;
  description: string;
  input: Input;
  /** Returns the result text, or throws {@link ToolError} (or any error) for an `is_error` result. */
  run(input: z.output<Input>, context: ToolContext): Promise<string | ToolOutcome>;
}

/** A tool with its types erased, as the registry holds it. */
interface RegisteredTool {
  definition: ToolDefinition;
  execute(rawInput: unknown, context: ToolContext): Promise<ToolOutcome>;
}

function defineTool<Input extends z.ZodType>(spec: ToolSpec<Input>): RegisteredTool {
  const { $schema: _dialect, ...inputSchema } = z.toJSONSchema(spec.input, { io: 'input' });
  return {
    definition: {
      name: spec.name,
      description: spec.description,
      input_schema: { ...inputSchema, type: 'object' },
    },
    async execute(rawInput, context) {
      const parsed = spec.input.safeParse(rawInput);
      if (!parsed.success) {
        return {
          content: `Invalid input for ${spec.name}: ${formatIssues(parsed.error)}`,
          isError: true,
        };
      }
      const result = await spec.run(parsed.data, context);
      return typeof result === 'string' ? { content: result, isError: false } : result;
    },
  };
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : 'input'}: ${issue.message}`)
    .join('; ');
}

/** Resolves a tool path: absolute paths as given, relative ones against the group folder. */
export function resolveToolPath(groupDir: string, toolPath: string): string {
  return path.resolve(groupDir, toolPath);
}

/** How results name a path: relative to the group folder when inside it, so it can be reused. */
function displayPath(groupDir: string, absolutePath: string): string {
  const relative = path.relative(groupDir, absolutePath);
  if (relative === '') return '.';
  if (relative.startsWith('..') || path.isAbsolute(relative)) return absolutePath;
  return relative.split(path.sep).join('/');
}

/** A file whose first 8 KiB hold a NUL byte is treated as binary, as git and grep do. */
function looksBinary(bytes: Buffer): boolean {
  return bytes.subarray(0, 8192).includes(0);
}

function truncateLine(line: string): string {
  return line.length > TOOL_LIMITS.maxLineChars
    ? `${line.slice(0, TOOL_LIMITS.maxLineChars)}… [line truncated]`
    : line;
}

/** Reads a text file for read and edit, with clear errors for folders, huge and binary files. */
async function readTextFile(absolutePath: string): Promise<string> {
  const stats = await fs.stat(absolutePath);
  if (stats.isDirectory())
    throw new ToolError(`${absolutePath} is a directory; use the list tool to see what it holds`);
  if (stats.size > TOOL_LIMITS.maxFileBytes) {
    throw new ToolError(
      `${absolutePath} is ${stats.size} bytes, too large to load whole; use bash (head, tail, sed -n) to look at parts of it`,
    );
  }
  const bytes = await fs.readFile(absolutePath);
  if (looksBinary(bytes)) {
    throw new ToolError(
      `${absolutePath} looks like a binary file (it contains NUL bytes); inspect it with bash, e.g. file or xxd`,
    );
  }
  return bytes.toString('utf8');
}

function countOccurrences(haystack: string, needle: string): number {
  let count = 0;
  for (
    let at = haystack.indexOf(needle);
    at !== -1;
    at = haystack.indexOf(needle, at + needle.length)
  )
    count++;
  return count;
}

const pathField = z.string().min(1).max(4096);

// ── bash ───────────────────────────────────────────────────────────────────

const bashTool = defineTool({
  name: 'bash',
  description:
    'Runs a shell command with `bash -c` in the group folder and returns its combined stdout and stderr and its exit ' +
    `code. The command has no stdin. Default timeout ${TOOL_LIMITS.bashDefaultTimeoutMs / 1000} s, at most ` +
    `${TOOL_LIMITS.bashMaxTimeoutMs / 1000} s; on timeout every process it started is killed. Output past ` +
    `${TOOL_LIMITS.bashMaxOutputChars} characters keeps only its start and end, so filter long output (grep, head, tail).`,
  input: z.strictObject({
    command: z.string().min(1).max(100_000).describe('The command line to run.'),
    timeout_ms: z
      .number()
      .int()
      .min(1)
      .max(TOOL_LIMITS.bashMaxTimeoutMs)
      .optional()
      .describe(`Timeout in milliseconds (default ${TOOL_LIMITS.bashDefaultTimeoutMs}).`),
  }),
  async run(input, context) {
    // Checked first because spawn reports a missing cwd as "spawn bash ENOENT", which
    // reads as if bash were missing.
    const cwdStats = await fs.stat(context.groupDir).catch(() => null);
    if (!cwdStats?.isDirectory())
      throw new ToolError(`the group folder ${context.groupDir} does not exist`);
    const timeoutMs = input.timeout_ms ?? TOOL_LIMITS.bashDefaultTimeoutMs;
    const result = await runBash({
      command: input.command,
      cwd: context.groupDir,
      timeoutMs,
      maxOutputChars: TOOL_LIMITS.bashMaxOutputChars,
      ...(context.signal ? { signal: context.signal } : {}),
    });
    const notes: string[] = [];
    if (result.timedOut)
      notes.push(
        `[timed out after ${timeoutMs} ms; the command and everything it started were killed]`,
      );
    else if (result.exitSignal) notes.push(`[killed by signal ${result.exitSignal}]`);
    else notes.push(`[exit code ${result.exitCode ?? 'unknown'}]`);
    if (result.outputLeftOpen)
      notes.push(
        '[a background process still holds the output open; its later output is not shown]',
      );
    const output = result.output === '' ? '(no output)' : result.output.replace(/\n$/, '');
    const failed = result.timedOut || result.aborted || result.exitCode !== 0;
    return { content: `${output}\n${notes.join('\n')}`, isError: failed };
  },
});

// ── read ───────────────────────────────────────────────────────────────────

const readTool = defineTool({
  name: 'read',
  description:
    'Reads a text file and returns its lines numbered like `cat -n`. Long files come in pages: use offset (the first ' +
    `line, from 1) and limit (default ${TOOL_LIMITS.readDefaultLines} lines). Relative paths are in the group folder.`,
  input: z.strictObject({
    path: pathField.describe('The file to read, absolute or relative to the group folder.'),
    offset: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('The first line to return, counting from 1.'),
    limit: z.number().int().min(1).max(10_000).optional().describe('How many lines to return.'),
  }),
  async run(input, context) {
    const absolutePath = resolveToolPath(context.groupDir, input.path);
    const text = await readTextFile(absolutePath);
    if (text === '') return `${absolutePath} is empty.`;
    const lines = text.split('\n');
    if (text.endsWith('\n')) lines.pop();
    const first = input.offset ?? 1;
    if (first > lines.length) {
      throw new ToolError(
        `offset ${first} is past the end of ${absolutePath}, which has ${lines.length} lines`,
      );
    }
    const wanted = Math.min(
      lines.length,
      first - 1 + (input.limit ?? TOOL_LIMITS.readDefaultLines),
    );
    const width = String(wanted).length;
    const shown: string[] = [];
    let chars = 0;
    let last = first - 1;
    for (let index = first - 1; index < wanted; index++) {
      const numbered = `${String(index + 1).padStart(width)}\t${truncateLine(lines[index] ?? '')}`;
      if (chars + numbered.length > TOOL_LIMITS.readMaxOutputChars && shown.length > 0) break;
      shown.push(numbered);
      chars += numbered.length + 1;
      last = index + 1;
    }
    if (first === 1 && last === lines.length) return shown.join('\n');
    return `${shown.join('\n')}\n[lines ${first}-${last} of ${lines.length}; use offset and limit to read more]`;
  },
});

// ── write ──────────────────────────────────────────────────────────────────

const writeTool = defineTool({
  name: 'write',
  description:
    'Writes a file, replacing it if it exists and creating missing parent folders. Relative paths are in the group ' +
    'folder. To change part of an existing file, prefer edit.',
  input: z.strictObject({
    path: pathField.describe('The file to write, absolute or relative to the group folder.'),
    content: z.string().max(5_000_000).describe('The complete new content of the file.'),
  }),
  async run(input, context) {
    const absolutePath = resolveToolPath(context.groupDir, input.path);
    await fs.mkdir(path.dirname(absolutePath), { recursive: true });
    await fs.writeFile(absolutePath, input.content, 'utf8');
    return `Wrote ${Buffer.byteLength(input.content)} bytes to ${absolutePath}.`;
  },
});

// ── edit ───────────────────────────────────────────────────────────────────

const editTool = defineTool({
  name: 'edit',
  description:
    'Replaces an exact piece of text in a file. old_string must match the file exactly, including whitespace and ' +
    'indentation, and must occur once, unless replace_all is true. Read the file first.',
  input: z.strictObject({
    path: pathField.describe('The file to edit, absolute or relative to the group folder.'),
    old_string: z.string().min(1).describe('The exact text to replace.'),
    new_string: z.string().describe('The text to put in its place.'),
    replace_all: z
      .boolean()
      .optional()
      .describe('Replace every occurrence instead of requiring exactly one.'),
  }),
  async run(input, context) {
    const absolutePath = resolveToolPath(context.groupDir, input.path);
    if (input.old_string === input.new_string)
      throw new ToolError('old_string and new_string are the same; nothing to change');
    const text = await readTextFile(absolutePath);
    const count = countOccurrences(text, input.old_string);
    if (count === 0) {
      throw new ToolError(
        `old_string was not found in ${absolutePath}. It must match exactly, including whitespace and indentation; read the file and copy the text.`,
      );
    }
    if (count > 1 && input.replace_all !== true) {
      throw new ToolError(
        `old_string occurs ${count} times in ${absolutePath}; include more of the surrounding text to make it unique, or set replace_all to true`,
      );
    }
    // split/join and slicing rather than String.replace, which would expand `$&` and friends
    // in new_string.
    const updated =
      count > 1
        ? text.split(input.old_string).join(input.new_string)
        : text.slice(0, text.indexOf(input.old_string)) +
          input.new_string +
          text.slice(text.indexOf(input.old_string) + input.old_string.length);
    await fs.writeFile(absolutePath, updated, 'utf8');
    return `Replaced ${count} occurrence${count === 1 ? '' : 's'} in ${absolutePath}.`;
  },
});

// ── list ───────────────────────────────────────────────────────────────────

const listTool = defineTool({
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

const grepTool = defineTool({
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

// ── send_message ───────────────────────────────────────────────────────────

const sendMessageTool = defineTool({
  name: 'send_message',
  description:
    'Sends a message to the chat right away, while you keep working: to acknowledge a long task or report progress. ' +
    'Your final answer is sent anyway; do not repeat in it what you sent here.',
  input: z.strictObject({
    text: HostCallArgsSchemas.send_message.shape.text.describe('The message text.'),
  }),
  async run(input, context) {
    const reply = await context.callHost('send_message', { text: input.text }, context.signal);
    if (!reply.ok) return { content: reply.result || 'send_message failed', isError: true };
    return reply.result || 'Message sent.';
  },
});

// ── registry ───────────────────────────────────────────────────────────────

const TOOLS: readonly RegisteredTool[] = [
  bashTool,
  readTool,
  writeTool,
  editTool,
  listTool,
  grepTool,
  sendMessageTool,
];
const TOOLS_BY_NAME = new Map(TOOLS.map((tool) => [tool.definition.name, tool]));

/** The tool definitions sent with every model request. */
export const TOOL_DEFINITIONS: readonly ToolDefinition[] = TOOLS.map((tool) => tool.definition);

/**
 * Runs one tool call. Never rejects: unknown tools, invalid input and every failure become an
 * `is_error` outcome whose text says what went wrong. Only a cancelled turn (the context's
 * signal aborted) is reported by rethrowing, so the turn stops instead of carrying on.
 */
export async function executeTool(
  name: string,
  input: unknown,
  context: ToolContext,
): Promise<ToolOutcome> {
  const tool = TOOLS_BY_NAME.get(name);
  if (!tool) {
    return {
      content: `Unknown tool "${name}". Available tools: ${[...TOOLS_BY_NAME.keys()].join(', ')}.`,
      isError: true,
    };
  }
  try {
    const outcome = await tool.execute(input, context);
    context.signal?.throwIfAborted();
    return outcome;
  } catch (err) {
    if (context.signal?.aborted) throw context.signal.reason;
    if (err instanceof ToolError) return { content: err.message, isError: true };
    const target = isPathInput(input)
      ? resolveToolPath(context.groupDir, input.path)
      : context.groupDir;
    return { content: fsErrorMessage(err, target), isError: true };
  }
}

function isPathInput(input: unknown): input is { path: string } {
  return (
    typeof input === 'object' &&
    input !== null &&
    typeof (input as { path?: unknown }).path === 'string'
  );
}
