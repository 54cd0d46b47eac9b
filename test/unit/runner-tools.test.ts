/**
 * The in-container runner's tools, run against real temp folders and a real bash, plus the
 * glob matcher they rely on. The conversation rules are tested in conversation.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ToolDefinitionSchema } from '../../main/core/agent/protocol.js';
import { HeadTailBuffer } from '../../sandbox-images/agent/runner/bash.js';
import { globToRegExp, splitLiteralPrefix } from '../../sandbox-images/agent/runner/glob.js';
import {
  TOOL_DEFINITIONS,
  TOOL_LIMITS,
  executeTool,
  type HostCallReply,
  type ToolContext,
} from '../../sandbox-images/agent/runner/tools/index.js';

let root: string;
let groupDir: string;
let hostCalls: Array<{ name: string; args: unknown }>;
let hostReply: HostCallReply;

function context(overrides: Partial<ToolContext> = {}): ToolContext {
  return {
    groupDir,
    callHost: async (name, args) => {
      hostCalls.push({ name, args });
      return hostReply;
    },
    ...overrides,
  };
}

const run = (name: string, input: unknown, overrides: Partial<ToolContext> = {}) =>
  executeTool(name, input, context(overrides));

function writeGroupFile(relative: string, content: string | Buffer): string {
  const file = path.join(groupDir, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
}

/** A process counts as gone when /proc has no entry for it or it is a zombie awaiting its reaper. */
function processIsGone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-tools-'));
  groupDir = path.join(root, 'group');
  fs.mkdirSync(groupDir);
  hostCalls = [];
  hostReply = { ok: true, result: 'delivered' };
});

afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('tool definitions', () => {
  it('match the protocol schema the host validates model requests with', () => {
    for (const definition of TOOL_DEFINITIONS)
      expect(ToolDefinitionSchema.parse(definition)).toEqual(definition);
    expect(TOOL_DEFINITIONS.map((tool) => tool.name)).toEqual([
      'bash',
      'read',
      'write',
      'edit',
      'list',
      'grep',
      'send_message',
      'send_file',
      'list_chats',
      'schedule_task',
      'list_tasks',
      'update_task',
      'pause_task',
      'resume_task',
      'cancel_task',
      'register_group',
      'unregister_group',
    ]);
  });

  it('describe their inputs as JSON schema without the zod dialect marker', () => {
    const bash = TOOL_DEFINITIONS.find((tool) => tool.name === 'bash');
    expect(bash?.input_schema).toMatchObject({ type: 'object', required: ['command'] });
    expect(bash?.input_schema).not.toHaveProperty('$schema');
  });

  it('answer an unknown tool with an error naming the tools that exist', async () => {
    const outcome = await run('rm_rf', {});
    expect(outcome.isError).toBe(true);
    expect(outcome.content).toContain('Unknown tool "rm_rf"');
    expect(outcome.content).toContain('bash, read');
  });
});

describe('bash tool', () => {
  it('runs in the group folder and reports stdout, stderr and the exit code', async () => {
    const outcome = await run('bash', { command: 'pwd; echo to-stderr >&2' });
    expect(outcome).toEqual({ content: `${groupDir}\nto-stderr\n[exit code 0]`, isError: false });
  });

  it('reports a non-zero exit as an error result with its code', async () => {
    const outcome = await run('bash', { command: 'echo failing; exit 3' });
    expect(outcome.isError).toBe(true);
    expect(outcome.content).toBe('failing\n[exit code 3]');
  });

  it('says when a command printed nothing', async () => {
    expect((await run('bash', { command: 'true' })).content).toBe('(no output)\n[exit code 0]');
  });

  it('kills the whole process group on timeout', async () => {
    const started = Date.now();
    const outcome = await run('bash', {
      command: 'sleep 30 & echo $! > bg.pid; sleep 30',
      timeout_ms: 300,
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(outcome.isError).toBe(true);
    expect(outcome.content).toContain('[timed out after 300 ms');
    const backgroundPid = Number(fs.readFileSync(path.join(groupDir, 'bg.pid'), 'utf8'));
    await expect.poll(() => processIsGone(backgroundPid), { timeout: 2_000 }).toBe(true);
  });

  it('keeps the head and tail of long output and says how much was left out', async () => {
    const outcome = await run('bash', {
      command: "echo START; head -c 100000 /dev/zero | tr '\\0' x; echo; echo END",
    });
    expect(outcome.isError).toBe(false);
    expect(outcome.content.startsWith('START\n')).toBe(true);
    expect(outcome.content).toMatch(/END\n\[exit code 0\]$/);
    expect(outcome.content).toMatch(/\[… \d+ characters of output omitted …\]/);
    expect(outcome.content.length).toBeLessThan(TOOL_LIMITS.bashMaxOutputChars + 200);
  });

  it('does not wait for a background job that keeps the output open', async () => {
    const started = Date.now();
    const outcome = await run('bash', { command: 'sleep 20 & echo $! > bg.pid; echo started' });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(outcome.content).toContain('started\n[exit code 0]');
    expect(outcome.content).toContain('background process still holds the output open');
    process.kill(Number(fs.readFileSync(path.join(groupDir, 'bg.pid'), 'utf8')), 'SIGKILL');
  });

  it('kills the command when the turn is cancelled', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('shutdown')), 200);
    const started = Date.now();
    await expect(
      run('bash', { command: 'sleep 30' }, { signal: controller.signal }),
    ).rejects.toThrow('shutdown');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('rejects a missing command, a timeout above the maximum and unknown fields', async () => {
    const missing = await run('bash', {});
    expect(missing).toMatchObject({ isError: true });
    expect(missing.content).toMatch(/^Invalid input for bash: command: /);

    const tooLong = await run('bash', { command: 'true', timeout_ms: 900_000 });
    expect(tooLong.isError).toBe(true);
    expect(tooLong.content).toContain('timeout_ms');

    const extra = await run('bash', { command: 'true', cwd: '/' });
    expect(extra.isError).toBe(true);
    expect(extra.content).toContain('cwd');
  });

  it('explains a missing group folder instead of blaming bash', async () => {
    const outcome = await run(
      'bash',
      { command: 'true' },
      { groupDir: path.join(root, 'nowhere') },
    );
    expect(outcome).toEqual({
      content: `the group folder ${path.join(root, 'nowhere')} does not exist`,
      isError: true,
    });
  });
});

describe('HeadTailBuffer', () => {
  it('keeps everything while under the limit', () => {
    const buffer = new HeadTailBuffer(5, 5);
    buffer.append('abc');
    buffer.append('defgh');
    expect(buffer.result()).toEqual({ text: 'abcdefgh', omittedChars: 0 });
  });

  it('keeps the first and last characters across many small chunks', () => {
    const buffer = new HeadTailBuffer(3, 3);
    for (const ch of 'abcdefghijklmnopqrstuvwxyz') buffer.append(ch);
    expect(buffer.result()).toEqual({
      text: 'abc\n\n[… 20 characters of output omitted …]\n\nxyz',
      omittedChars: 20,
    });
  });
});

describe('read tool', () => {
  it('returns the file with numbered lines, resolving relative paths in the group folder', async () => {
    writeGroupFile('notes/todo.md', 'one\ntwo\nthree\n');
    expect(await run('read', { path: 'notes/todo.md' })).toEqual({
      content: '1\tone\n2\ttwo\n3\tthree',
      isError: false,
    });
  });

  it('reads absolute paths too', async () => {
    const file = writeGroupFile('a.txt', 'alpha');
    expect((await run('read', { path: file })).content).toBe('1\talpha');
  });

  it('pages with offset and limit and says what is left', async () => {
    writeGroupFile('long.txt', Array.from({ length: 10 }, (_, i) => `line ${i + 1}`).join('\n'));
    const outcome = await run('read', { path: 'long.txt', offset: 4, limit: 2 });
    expect(outcome.content).toBe(
      '4\tline 4\n5\tline 5\n[lines 4-5 of 10; use offset and limit to read more]',
    );
  });

  it('fails clearly for a missing file, a folder, a binary file and an offset past the end', async () => {
    expect(await run('read', { path: 'missing.txt' })).toEqual({
      content: `no such file or directory: ${path.join(groupDir, 'missing.txt')}`,
      isError: true,
    });
    fs.mkdirSync(path.join(groupDir, 'folder'));
    expect((await run('read', { path: 'folder' })).content).toContain(
      'is a directory; use the list tool',
    );
    writeGroupFile('image.bin', Buffer.from([0x89, 0x50, 0x00, 0x01]));
    expect((await run('read', { path: 'image.bin' })).content).toContain(
      'looks like a binary file',
    );
    writeGroupFile('short.txt', 'a\nb\n');
    const pastEnd = await run('read', { path: 'short.txt', offset: 5 });
    expect(pastEnd).toMatchObject({ isError: true });
    expect(pastEnd.content).toContain('offset 5 is past the end');
  });

  it('rejects an offset of zero', async () => {
    writeGroupFile('a.txt', 'alpha');
    const outcome = await run('read', { path: 'a.txt', offset: 0 });
    expect(outcome.isError).toBe(true);
    expect(outcome.content).toContain('offset');
  });
});

describe('write tool', () => {
  it('creates missing parent folders and reports the absolute path', async () => {
    const outcome = await run('write', { path: 'deep/er/file.txt', content: 'héllo' });
    const file = path.join(groupDir, 'deep/er/file.txt');
    expect(outcome).toEqual({ content: `Wrote 6 bytes to ${file}.`, isError: false });
    expect(fs.readFileSync(file, 'utf8')).toBe('héllo');
  });

  it('fails clearly when a parent is a file or the target is a folder', async () => {
    writeGroupFile('plain.txt', 'x');
    const underFile = await run('write', { path: 'plain.txt/child.txt', content: 'y' });
    expect(underFile.isError).toBe(true);
    expect(underFile.content).toContain(path.join(groupDir, 'plain.txt'));

    fs.mkdirSync(path.join(groupDir, 'folder'));
    expect(await run('write', { path: 'folder', content: 'y' })).toEqual({
      content: `${path.join(groupDir, 'folder')} is a directory`,
      isError: true,
    });
  });

  it('rejects input without content', async () => {
    const outcome = await run('write', { path: 'x.txt' });
    expect(outcome.isError).toBe(true);
    expect(outcome.content).toContain('content');
    expect(fs.existsSync(path.join(groupDir, 'x.txt'))).toBe(false);
  });
});

describe('edit tool', () => {
  it('replaces a unique string exactly, taking $ patterns in new_string literally', async () => {
    const file = writeGroupFile('code.js', 'const a = 1;\nconst b = 2;\n');
    const outcome = await run('edit', {
      path: 'code.js',
      old_string: 'const b = 2;',
      new_string: "const b = '$&';",
    });
    expect(outcome).toEqual({ content: `Replaced 1 occurrence in ${file}.`, isError: false });
    expect(fs.readFileSync(file, 'utf8')).toBe("const a = 1;\nconst b = '$&';\n");
  });

  it('refuses a string that occurs more than once unless replace_all is set', async () => {
    const file = writeGroupFile('list.txt', 'item\nitem\nother\n');
    const refused = await run('edit', {
      path: 'list.txt',
      old_string: 'item',
      new_string: 'thing',
    });
    expect(refused.isError).toBe(true);
    expect(refused.content).toContain('occurs 2 times');
    expect(fs.readFileSync(file, 'utf8')).toBe('item\nitem\nother\n');

    const replaced = await run('edit', {
      path: 'list.txt',
      old_string: 'item',
      new_string: 'thing',
      replace_all: true,
    });
    expect(replaced).toEqual({ content: `Replaced 2 occurrences in ${file}.`, isError: false });
    expect(fs.readFileSync(file, 'utf8')).toBe('thing\nthing\nother\n');
  });

  it('fails when the string is not found, unchanged, or the file is missing', async () => {
    writeGroupFile('a.txt', 'alpha');
    expect(
      (await run('edit', { path: 'a.txt', old_string: 'beta', new_string: 'gamma' })).content,
    ).toContain('old_string was not found');
    expect(
      (await run('edit', { path: 'a.txt', old_string: 'alpha', new_string: 'alpha' })).content,
    ).toContain('nothing to change');
    expect(await run('edit', { path: 'gone.txt', old_string: 'a', new_string: 'b' })).toEqual({
      content: `no such file or directory: ${path.join(groupDir, 'gone.txt')}`,
      isError: true,
    });
  });

  it('rejects an empty old_string', async () => {
    writeGroupFile('a.txt', 'alpha');
    const outcome = await run('edit', { path: 'a.txt', old_string: '', new_string: 'x' });
    expect(outcome.isError).toBe(true);
    expect(outcome.content).toContain('old_string');
  });
});

describe('list tool', () => {
  beforeEach(() => {
    writeGroupFile('README.md', '# hi');
    writeGroupFile('notes/a.md', 'a');
    writeGroupFile('notes/deep/b.md', 'b');
    writeGroupFile('notes/c.txt', 'c');
    writeGroupFile('node_modules/pkg/index.md', 'skip me');
  });

  it('lists the group folder with folders marked', async () => {
    expect((await run('list', {})).content).toBe(
      `${groupDir} (3 entries):\nREADME.md\nnode_modules/\nnotes/`,
    );
  });

  it('finds files at any depth with ** and skips node_modules', async () => {
    expect((await run('list', { pattern: '**/*.md' })).content).toBe(
      'README.md\nnotes/a.md\nnotes/deep/b.md',
    );
  });

  it('matches * within one folder and {a,b} alternatives', async () => {
    expect((await run('list', { pattern: '*.md' })).content).toBe('README.md');
    expect((await run('list', { pattern: 'notes/*.{md,txt}' })).content).toBe(
      'notes/a.md\nnotes/c.txt',
    );
    expect((await run('list', { path: 'notes', pattern: '?.md' })).content).toBe('notes/a.md');
  });

  it('searches node_modules when path points into it', async () => {
    expect((await run('list', { path: 'node_modules', pattern: '**/*.md' })).content).toBe(
      'node_modules/pkg/index.md',
    );
  });

  it('says when nothing matches, and fails for a missing folder or an escaping pattern', async () => {
    expect((await run('list', { pattern: '**/*.py' })).content).toBe(
      `No paths under ${groupDir} match **/*.py.`,
    );
    expect(await run('list', { path: 'nope' })).toEqual({
      content: `no such file or directory: ${path.join(groupDir, 'nope')}`,
      isError: true,
    });
    expect((await run('list', { pattern: '../*' })).isError).toBe(true);
  });
});

describe('glob matching', () => {
  it.each([
    ['*.md', 'a.md', true],
    ['*.md', 'dir/a.md', false],
    ['**/*.md', 'a.md', true],
    ['**/*.md', 'x/y/a.md', true],
    ['src/**/index.ts', 'src/index.ts', true],
    ['src/**/index.ts', 'src/a/b/index.ts', true],
    ['src/**', 'src/a/b', true],
    ['file?.txt', 'file1.txt', true],
    ['file?.txt', 'file12.txt', false],
    ['*.{js,ts}', 'a.ts', true],
    ['*.{js,ts}', 'a.rs', false],
    ['[id].tsx', '[id].tsx', true],
    ['a.b', 'axb', false],
  ])('%s matches %s: %s', (pattern, candidate, expected) => {
    expect(globToRegExp(pattern).test(candidate)).toBe(expected);
  });

  it('splits off the leading plain folders so a walk can start there', () => {
    expect(splitLiteralPrefix('src/lib/**/*.ts')).toEqual({ prefix: 'src/lib', rest: '**/*.ts' });
    expect(splitLiteralPrefix('README.md')).toEqual({ prefix: '', rest: 'README.md' });
  });
});

describe('grep tool', () => {
  beforeEach(() => {
    writeGroupFile('notes/a.md', 'Buy milk\nCall Bob\n');
    writeGroupFile('notes/b.txt', 'milk again\n');
    writeGroupFile('blob.bin', Buffer.concat([Buffer.from('milk'), Buffer.from([0, 1, 2])]));
  });

  it('returns matching lines as path:line and skips binary files', async () => {
    expect((await run('grep', { pattern: 'milk' })).content).toBe(
      'notes/a.md:1: Buy milk\nnotes/b.txt:1: milk again',
    );
  });

  it('filters by glob and can ignore case', async () => {
    expect((await run('grep', { pattern: 'MILK', glob: '*.md', ignore_case: true })).content).toBe(
      'notes/a.md:1: Buy milk',
    );
    expect((await run('grep', { pattern: 'milk', glob: 'notes/*.txt' })).content).toBe(
      'notes/b.txt:1: milk again',
    );
  });

  it('searches a single file', async () => {
    expect((await run('grep', { pattern: 'Bob', path: 'notes/a.md' })).content).toBe(
      'notes/a.md:2: Call Bob',
    );
  });

  it('stops at the match limit and says so', async () => {
    writeGroupFile('many.txt', 'hit\n'.repeat(TOOL_LIMITS.grepMaxMatches + 50));
    const lines = (await run('grep', { pattern: '^hit$', path: 'many.txt' })).content.split('\n');
    expect(lines).toHaveLength(TOOL_LIMITS.grepMaxMatches + 1);
    expect(lines.at(-1)).toContain(`[stopped after ${TOOL_LIMITS.grepMaxMatches} matches`);
  });

  it('reports no matches without an error, and an invalid regex with one', async () => {
    expect(await run('grep', { pattern: 'zebra' })).toEqual({
      content: `No matches for /zebra/ in ${groupDir}.`,
      isError: false,
    });
    const invalid = await run('grep', { pattern: '(' });
    expect(invalid.isError).toBe(true);
    expect(invalid.content).toContain('invalid regular expression');
  });
});

describe('send_message tool', () => {
  it('calls the host and returns its answer', async () => {
    expect(await run('send_message', { text: 'on it' })).toEqual({
      content: 'delivered',
      isError: false,
    });
    expect(hostCalls).toEqual([{ name: 'send_message', args: { text: 'on it' } }]);
  });

  it('turns a refusal from the host into an error result', async () => {
    hostReply = { ok: false, result: 'not allowed' };
    expect(await run('send_message', { text: 'hi' })).toEqual({
      content: 'not allowed',
      isError: true,
    });
  });

  it('rejects empty text without calling the host', async () => {
    expect((await run('send_message', { text: '' })).isError).toBe(true);
    expect(hostCalls).toEqual([]);
  });
});

describe('list_chats tool', () => {
  it('asks the host with no arguments, or with the query, and returns its listing', async () => {
    hostReply = { ok: true, result: '1 chat, newest first.\nfam@g.us | group | whatsapp | "Fam"' };
    expect(await run('list_chats', {})).toEqual({ content: hostReply.result, isError: false });
    expect(await run('list_chats', { query: 'fam' })).toEqual({
      content: hostReply.result,
      isError: false,
    });
    expect(hostCalls).toEqual([
      { name: 'list_chats', args: {} },
      { name: 'list_chats', args: { query: 'fam' } },
    ]);
  });

  it('turns the refusal a non-main group gets into an error result', async () => {
    hostReply = { ok: false, result: 'not allowed: only the main group may list chats' };
    expect(await run('list_chats', {})).toEqual({
      content: 'not allowed: only the main group may list chats',
      isError: true,
    });
  });

  it('rejects a query over 100 characters and unknown fields without calling the host', async () => {
    expect((await run('list_chats', { query: 'x'.repeat(101) })).isError).toBe(true);
    expect((await run('list_chats', { isMain: true })).isError).toBe(true);
    expect(hostCalls).toEqual([]);
  });

  it('tells the model it is for the main group, with an optional query', () => {
    const definition = TOOL_DEFINITIONS.find((tool) => tool.name === 'list_chats');
    expect(definition?.description).toContain('main group only');
    expect(definition?.input_schema).toMatchObject({
      type: 'object',
      properties: { query: { type: 'string', maxLength: 100 } },
    });
    expect(definition?.input_schema).not.toHaveProperty('required');
  });
});

describe('scheduled-task tools', () => {
  const definition = (name: string) => TOOL_DEFINITIONS.find((tool) => tool.name === name);

  it('take "remind me every weekday at 8 to stretch" as one schedule_task call and forward it to the host', async () => {
    hostReply = { ok: true, result: 'Scheduled task t_k3m9p2xq for group family: …' };
    const call = { cron: '0 8 * * 1-5', prompt: 'Remind the user to stretch.' };
    expect(await run('schedule_task', call)).toEqual({
      content: hostReply.result,
      isError: false,
    });
    expect(hostCalls).toEqual([{ name: 'schedule_task', args: call }]);
  });

  it('tell the model the cron format, durations, ISO times and the default timezone', () => {
    const schedule = definition('schedule_task');
    expect(schedule?.description).toContain('"0 8 * * 1-5"');
    expect(schedule?.description).toContain('minute hour day-of-month month day-of-week');
    expect(schedule?.description).toMatch(/"30s", "15m", "2h", "1d"/);
    expect(schedule?.description).toContain('2026-11-25T17:00');
    expect(schedule?.description).toContain("the user's timezone");
    expect(schedule?.input_schema).toMatchObject({
      type: 'object',
      required: ['prompt'],
      additionalProperties: false,
      properties: {
        prompt: { type: 'string', maxLength: 10_000 },
        cron: { type: 'string', maxLength: 200 },
        every: { type: 'string' },
        at: { type: 'string' },
        timezone: { type: 'string' },
        context_mode: { enum: ['group', 'isolated'] },
        post_result: { type: 'boolean' },
        group_folder: { type: 'string' },
      },
    });
    expect(definition('update_task')?.input_schema).toMatchObject({ required: ['task_id'] });
    for (const name of ['pause_task', 'resume_task', 'cancel_task']) {
      expect(definition(name)?.input_schema).toMatchObject({
        required: ['task_id'],
        properties: { task_id: { type: 'string' } },
      });
    }
  });

  it('forward only the fields given, for every task tool', async () => {
    await run('list_tasks', {});
    await run('list_tasks', { group_folder: 'work' });
    await run('update_task', { task_id: 't_k3m9p2xq', every: '2h', post_result: false });
    await run('pause_task', { task_id: 't_k3m9p2xq' });
    await run('resume_task', { task_id: 't_k3m9p2xq' });
    await run('cancel_task', { task_id: 't_k3m9p2xq' });
    expect(hostCalls).toEqual([
      { name: 'list_tasks', args: {} },
      { name: 'list_tasks', args: { group_folder: 'work' } },
      { name: 'update_task', args: { task_id: 't_k3m9p2xq', every: '2h', post_result: false } },
      { name: 'pause_task', args: { task_id: 't_k3m9p2xq' } },
      { name: 'resume_task', args: { task_id: 't_k3m9p2xq' } },
      { name: 'cancel_task', args: { task_id: 't_k3m9p2xq' } },
    ]);
  });

  it("turn the host's refusal into an error result the model can read", async () => {
    hostReply = { ok: false, result: 'cron "0 8 * *" has 4 fields, needs 5' };
    expect(await run('schedule_task', { prompt: 'x', cron: '0 8 * *' })).toEqual({
      content: 'cron "0 8 * *" has 4 fields, needs 5',
      isError: true,
    });
  });

  it('reject a missing prompt, a missing task id, a bad context mode and unknown fields without calling the host', async () => {
    expect((await run('schedule_task', { cron: '0 8 * * *' })).isError).toBe(true);
    expect((await run('pause_task', {})).isError).toBe(true);
    expect(
      (await run('schedule_task', { prompt: 'x', every: '1h', context_mode: 'shared' })).isError,
    ).toBe(true);
    expect((await run('schedule_task', { prompt: 'x', every: '1h', isMain: true })).isError).toBe(
      true,
    );
    expect(hostCalls).toEqual([]);
  });
});
