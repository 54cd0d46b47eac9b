/** The file tools: read, write and edit. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  TOOL_LIMITS,
  ToolError,
  defineTool,
  looksBinary,
  pathField,
  resolveToolPath,
  truncateLine,
} from './define.js';

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

// ── read ───────────────────────────────────────────────────────────────────

export const readTool = defineTool({
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

export const writeTool = defineTool({
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

export const editTool = defineTool({
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
