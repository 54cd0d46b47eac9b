/** The bash tool: a shell command in the group folder, with a timeout and an output cap. */
import fs from 'node:fs/promises';
import { z } from 'zod';
import { runBash } from '../bash.js';
import { TOOL_LIMITS, ToolError, defineTool } from './define.js';

export const bashTool = defineTool({
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
