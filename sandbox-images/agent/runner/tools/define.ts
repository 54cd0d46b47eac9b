/**
 * What every tool is built from: {@link defineTool}, the context a tool runs in, its outcome,
 * the limits on what tools take in and give back, and the path and text helpers they share.
 *
 * Each tool is one zod schema plus one function. The JSON schema the model receives is derived
 * from the zod schema, so the two cannot drift apart. Whatever the model sends, a tool call
 * ends in a tool result: bad input, a missing file or a failing command become an `is_error`
 * result the model can read and act on, never an exception that ends the turn.
 *
 * The container is the sandbox, so the file tools may touch any path the container user can.
 * Relative paths resolve against the group folder.
 */
import path from 'node:path';
import { z } from 'zod';
import type { HostCallName, ToolDefinition } from '../../../../main/core/agent/protocol.js';

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
export interface RegisteredTool {
  definition: ToolDefinition;
  execute(rawInput: unknown, context: ToolContext): Promise<ToolOutcome>;
}

export function defineTool<Input extends z.ZodType>(spec: ToolSpec<Input>): RegisteredTool {
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
export function displayPath(groupDir: string, absolutePath: string): string {
  const relative = path.relative(groupDir, absolutePath);
  if (relative === '') return '.';
  if (relative.startsWith('..') || path.isAbsolute(relative)) return absolutePath;
  return relative.split(path.sep).join('/');
}

/** A file whose first 8 KiB hold a NUL byte is treated as binary, as git and grep do. */
export function looksBinary(bytes: Buffer): boolean {
  return bytes.subarray(0, 8192).includes(0);
}

export function truncateLine(line: string): string {
  return line.length > TOOL_LIMITS.maxLineChars
    ? `${line.slice(0, TOOL_LIMITS.maxLineChars)}… [line truncated]`
    : line;
}

export const pathField = z.string().min(1).max(4096);
