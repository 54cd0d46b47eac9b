/**
 * The agent's tools: the registry of their definitions as the model sees them, and
 * {@link executeTool}, which runs one call. The tools themselves live in one file per family.
 */
import type { ToolDefinition } from '../../../../main/core/agent/protocol.js';
import { fsErrorMessage } from '../fs-errors.js';
import { bashTool } from './bash-tool.js';
import {
  ToolError,
  resolveToolPath,
  type RegisteredTool,
  type ToolContext,
  type ToolOutcome,
} from './define.js';
import { editTool, readTool, writeTool } from './files.js';
import {
  cancelTaskTool,
  listChatsTool,
  listTasksTool,
  pauseTaskTool,
  registerGroupTool,
  resumeTaskTool,
  scheduleTaskTool,
  sendFileTool,
  sendMessageTool,
  unregisterGroupTool,
  updateTaskTool,
} from './host.js';
import { grepTool, listTool } from './search.js';

export {
  TOOL_LIMITS,
  ToolError,
  resolveToolPath,
  type HostCallReply,
  type ToolContext,
  type ToolOutcome,
} from './define.js';

// ── registry ───────────────────────────────────────────────────────────────

const TOOLS: readonly RegisteredTool[] = [
  bashTool,
  readTool,
  writeTool,
  editTool,
  listTool,
  grepTool,
  sendMessageTool,
  sendFileTool,
  listChatsTool,
  scheduleTaskTool,
  listTasksTool,
  updateTaskTool,
  pauseTaskTool,
  resumeTaskTool,
  cancelTaskTool,
  registerGroupTool,
  unregisterGroupTool,
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
