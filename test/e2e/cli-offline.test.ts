/**
 * The built `clawbar` command as a user runs it, with `serve` not running: it opens the
 * database itself, stores what it is given, and leaves the answering to the next `serve`.
 * No Docker needed.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin', 'clawbar.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let home: string;

/** The environment of a user who set only CLAWBAR_HOME: nothing from this process's Clawbar settings. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('CLAWBAR_') && !key.startsWith('ANTHROPIC_')) env[key] = value;
  }
  return { ...env, CLAWBAR_HOME: home, ...extra };
}

function clawbar(
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
  timeoutMs = 30_000,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: ROOT, env: cleanEnv(extraEnv), timeout: timeoutMs },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(
            new Error(`clawbar ${args.join(' ')} did not finish (${err.message}):\n${stderr}`),
          );
          return;
        }
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
      },
    );
  });
}

/** Runs a command that must succeed, and returns its stdout. */
async function ok(args: string[]): Promise<string> {
  const run = await clawbar(args);
  if (run.code !== 0)
    throw new Error(`clawbar ${args.join(' ')} exited ${run.code}:\n${run.stderr}`);
  return run.stdout;
}

function messagesInDb(): number {
  const db = new Database(path.join(home, 'clawbar.db'), { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'main', 'cli', 'index.js'))) {
    throw new Error(
      'dist/main/cli/index.js is missing: run `npm run build` first (`npm test` does it)',
    );
  }
});

beforeEach(() => {
  // Short: the control socket path in it must fit in 108 bytes.
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-cli-'));
});

afterEach(() => {
  fs.rmSync(home, { recursive: true, force: true });
});

describe('groups and messages without serve', () => {
  it('adds a group and lists it as JSON', async () => {
    const added = await clawbar(['groups', 'add', '--name', 'Family']);
    expect(added).toMatchObject({ code: 0, stderr: '' });
    expect(added.stdout).toBe('added group Family (folder family, jid local:family)\n');

    const listed = JSON.parse(await ok(['groups', 'list', '--json'])) as unknown;
    expect(listed).toEqual([
      {
        name: 'Family',
        folder: 'family',
        jid: 'local:family',
        channel: 'local',
        trigger: '@Andy',
        main: false,
        paused: false,
      },
    ]);
    expect(fs.existsSync(path.join(home, 'groups', 'family', 'CLAUDE.md'))).toBe(true);
    expect(fs.existsSync(path.join(home, 'groups', 'global', 'CLAUDE.md'))).toBe(true);
  });

  it('stores a sent message and says it will be answered when serve starts', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const sent = await clawbar(['send', '--group', 'family', '@Andy hi']);
    expect(sent.code).toBe(0);
    expect(sent.stdout).toBe(
      'stored; `clawbar serve` is not running, so it will be answered when it starts\n',
    );
    expect(messagesInDb()).toBe(1);
  });

  it('does not promise an answer to a message without the trigger', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['send', '--group', 'family', 'just chatting'])).toBe(
      'stored (no trigger, so the assistant was not asked)\n',
    );
  });

  it("says a paused group's message waits for resume", async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    await ok(['groups', 'pause', 'family']);
    expect(await ok(['send', '--group', 'family', '@Andy hi'])).toBe(
      'stored; the group is paused, so it waits for `clawbar groups resume`\n',
    );
  });

  it('lists both directions of history with messages --json, oldest first', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    await ok(['send', '--group', 'family', '--from', 'Alice', '@Andy hi']);
    await ok(['send', '--group', 'Family', '--from', 'Bob', 'and hello from me']);
    const list = JSON.parse(await ok(['messages', '--group', 'family', '--json'])) as Array<
      Record<string, unknown>
    >;
    expect(list).toEqual([
      expect.objectContaining({ from: 'Alice', text: '@Andy hi', fromAssistant: false }),
      expect.objectContaining({ from: 'Bob', text: 'and hello from me', fromAssistant: false }),
    ]);
    const limited = JSON.parse(
      await ok(['messages', '--group', 'family', '--limit', '1', '--json']),
    ) as unknown[];
    expect(limited).toEqual([expect.objectContaining({ text: 'and hello from me' })]);
  });

  it('pauses, resumes and removes a group by name, folder or jid', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['groups', 'pause', 'Family'])).toBe('paused group Family\n');
    expect(JSON.parse(await ok(['groups', 'list', '--json']))).toEqual([
      expect.objectContaining({ paused: true }),
    ]);
    expect(await ok(['groups', 'resume', 'local:family'])).toBe('resumed group Family\n');
    expect(await ok(['groups', 'remove', 'family'])).toBe(
      'removed group Family (its folder family and history are kept)\n',
    );
    expect(JSON.parse(await ok(['groups', 'list', '--json']))).toEqual([]);
  });

  it('groups stop says there is no run to stop, as text and as JSON', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['groups', 'stop', 'family'])).toBe('Family has no run to stop.\n');
    expect(JSON.parse(await ok(['groups', 'stop', 'local:family', '--json']))).toEqual({
      group: expect.objectContaining({ name: 'Family', jid: 'local:family' }),
      stopped: false,
      cancelledRetry: false,
    });
    const unknown = await clawbar(['groups', 'stop', 'ghost']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no group named "ghost"');
    const bare = await clawbar(['groups', 'stop']);
    expect(bare.code).not.toBe(0);
    expect(bare.stderr).toContain('usage: clawbar groups stop G');
  });
});

describe('refusals without serve', () => {
  it('send --wait exits non-zero with a clear message and stores nothing', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['send', '--group', 'family', '--wait', '@Andy hi']);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      'clawbar: --wait needs `clawbar serve` running; the message was not stored\n',
    );
    expect(messagesInDb()).toBe(0);
  });

  it('a send to an unknown group exits 1 with "no group named"', async () => {
    const run = await clawbar(['send', '--group', 'nope', '@Andy hi']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('no group named "nope"');
  });

  it.each([[''], ['   ']])(
    'an empty message %j exits non-zero and stores nothing',
    async (text) => {
      await ok(['groups', 'add', '--name', 'Family']);
      const run = await clawbar(['send', '--group', 'family', text]);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toContain('the message is empty');
      expect(messagesInDb()).toBe(0);
    },
  );

  it('an unknown command exits non-zero with the usage on stderr', async () => {
    const run = await clawbar(['frobnicate']);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expect(run.stderr).toContain('Usage: clawbar <command>');
  });

  it('no command at all exits non-zero with the usage on stderr', async () => {
    const run = await clawbar([]);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('Usage: clawbar <command>');
  });

  it('an unknown option exits non-zero with the usage on stderr', async () => {
    const run = await clawbar(['groups', 'list', '--colour']);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain("Unknown option '--colour'");
    expect(run.stderr).toContain('usage: clawbar groups list');
  });

  it('--limit abc is refused', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['messages', '--group', 'family', '--limit', 'abc']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toBe('clawbar: --limit must be a whole number of at least 1, got "abc"\n');
  });

  it('groups add without --name is refused', async () => {
    const run = await clawbar(['groups', 'add']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('--name is required');
    expect(fs.existsSync(path.join(home, 'clawbar.db'))).toBe(false);
  });

  it('--trigger with --no-trigger is refused as a contradiction', async () => {
    const run = await clawbar([
      'groups',
      'add',
      '--name',
      'Family',
      '--trigger',
      'x',
      '--no-trigger',
    ]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('--trigger and --no-trigger contradict each other');
    expect(fs.existsSync(path.join(home, 'clawbar.db'))).toBe(false);
  });

  it('--help exits 0 with the usage on stdout', async () => {
    const run = await clawbar(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: clawbar <command>');
    expect(run.stdout).toContain('send --group G');
    expect(run.stdout).toContain('groups stop G');
    expect(run.stderr).toBe('');
  });

  it('a bad environment variable is a clear configuration error', async () => {
    const run = await clawbar(['groups', 'list'], { CLAWBAR_MAX_CONCURRENCY: 'many' });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      'clawbar: CLAWBAR_MAX_CONCURRENCY must be a whole number from 1 to 64, got "many"\n',
    );
  });
});

describe('--json', () => {
  it('prints exactly one JSON document on stdout for each command', async () => {
    for (const args of [
      ['groups', 'add', '--name', 'Family', '--json'],
      ['groups', 'list', '--json'],
      ['send', '--group', 'family', '--json', '@Andy hi'],
      ['messages', '--group', 'family', '--json'],
      ['groups', 'pause', 'family', '--json'],
    ]) {
      const run = await clawbar(args);
      expect(run.code, args.join(' ')).toBe(0);
      expect(run.stderr).toBe('');
      expect(() => JSON.parse(run.stdout), run.stdout).not.toThrow();
    }
    const sent = JSON.parse(
      await ok(['send', '--group', 'family', '--json', '@Andy again']),
    ) as Record<string, unknown>;
    expect(sent).toMatchObject({ triggered: true, dispatched: false, paused: true, replies: [] });
  });

  it('reports errors on stderr as JSON and prints nothing on stdout', async () => {
    for (const args of [
      ['send', '--group', 'nope', '--json', '@Andy hi'],
      ['messages', '--group', 'x', '--limit', 'abc', '--json'],
      ['groups', 'list', '--json', '--colour'],
      ['groups', 'add', '--json'],
      ['frobnicate', '--json'],
    ]) {
      const run = await clawbar(args);
      expect(run.code, args.join(' ')).not.toBe(0);
      expect(run.stdout, args.join(' ')).toBe('');
      const error = JSON.parse(run.stderr) as { error?: unknown };
      expect(typeof error.error, args.join(' ')).toBe('string');
    }
  });

  it('treats --json after -- as message text, not as the option', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['send', '--group', 'family', '--', '--json']);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('stored (no trigger, so the assistant was not asked)\n');
  });
});

describe('a database from the future', () => {
  it('is refused with a clear error, and the file is left untouched', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const file = path.join(home, 'clawbar.db');
    const db = new Database(file);
    db.pragma('user_version = 999');
    db.close();
    const before = createHash('sha256').update(fs.readFileSync(file)).digest('hex');

    for (const args of [
      ['groups', 'list'],
      ['send', '--group', 'family', '@Andy hi'],
    ]) {
      const run = await clawbar(args);
      expect(run.code).not.toBe(0);
      expect(run.stdout).toBe('');
      expect(run.stderr).toContain('has schema version 999, but this Clawbar only knows up to');
      expect(run.stderr).toContain('upgrade Clawbar');
      expect(run.stderr).not.toMatch(/\n\s+at /); // a message for a person, not a stack trace
    }
    expect(createHash('sha256').update(fs.readFileSync(file)).digest('hex')).toBe(before);
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(999);
    check.close();
  });
});

describe('serve that cannot start', () => {
  it('exits with an error and removes its socket instead of hanging', async () => {
    // A file where the groups folder must go: setting up the data folder fails after the socket is up.
    fs.writeFileSync(path.join(home, 'groups'), 'not a folder');
    const run = await clawbar(['serve'], {}, 20_000);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/EEXIST.*groups/);
    expect(fs.existsSync(path.join(home, 'clawbar.sock'))).toBe(false);
  });
});
