/**
 * The built `clawbar` command as a user runs it, with `serve` not running: it opens the
 * database itself, stores what it is given, and leaves the answering to the next `serve`.
 * No Docker needed.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/clawbar.js';
import { clawbarIn, okIn, useOfflineHome, type CliRun } from '../helpers/offline-cli.js';

const homeOf = useOfflineHome();

/** The built CLI in this test's home (see offline-cli.ts), with `extraEnv` and stdin `input`. */
function clawbar(
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
  timeoutMs = 30_000,
  input?: string,
): Promise<CliRun> {
  return clawbarIn(homeOf(), args, {
    env: extraEnv,
    timeoutMs,
    ...(input !== undefined ? { input } : {}),
  });
}

/** Runs a command that must succeed, and returns its stdout. */
const ok = (args: string[]): Promise<string> => okIn(homeOf(), args);

function messagesInDb(): number {
  const db = new Database(path.join(homeOf(), 'clawbar.db'), { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM messages').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

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
        network: false,
        webFetch: false,
        usageToday: {
          inputTokens: 0,
          outputTokens: 0,
          cacheReadTokens: 0,
          cacheWriteTokens: 0,
          tokens: 0,
          calls: 0,
          costUsd: 0,
          knownCostUsd: 0,
          unpricedModels: [],
        },
      },
    ]);
    expect(fs.existsSync(path.join(homeOf(), 'groups', 'family', 'CLAUDE.md'))).toBe(true);
    expect(fs.existsSync(path.join(homeOf(), 'groups', 'global', 'CLAUDE.md'))).toBe(true);
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
    expect(run.stderr).toContain(
      'unknown option --colour for `groups list`; valid: --json, --help',
    );
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
    expect(fs.existsSync(path.join(homeOf(), 'clawbar.db'))).toBe(false);
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
    expect(fs.existsSync(path.join(homeOf(), 'clawbar.db'))).toBe(false);
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

  it('a CLAWBAR_HOME that is a file is one plain line, for status and every other command', async () => {
    const file = path.join(homeOf(), 'not-a-dir');
    fs.writeFileSync(file, 'x');
    for (const [args, dir] of [
      [['status'], file],
      [['groups', 'list'], path.join(file, 'sub')],
    ] as const) {
      const run = await clawbar([...args], { CLAWBAR_HOME: dir });
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(
        `clawbar: cannot use ${dir} as Clawbar's data directory: it (or a folder above it) is a file; set CLAWBAR_HOME to a directory, or move the file away\n`,
      );
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
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

/** Every command `clawbar --help` lists; a new command must be added here to be tested. */
const COMMANDS = [
  'serve',
  'status',
  'doctor',
  'groups list',
  'groups add',
  'groups remove',
  'groups pause',
  'groups resume',
  'groups stop',
  'groups senders',
  'groups show',
  'groups set',
  'groups mounts',
  'send',
  'messages',
  'tasks list',
  'tasks add',
  'tasks pause',
  'tasks resume',
  'tasks remove',
  'tasks run',
  'tasks runs',
  'chats',
  'pair',
  'unlink',
  'image build',
];

/** The command names in the main help's list: its lines that start with two spaces and a word. */
function listedCommands(help: string): string[] {
  return help
    .split('\n')
    .map((line) => /^ {2}([a-z]+(?: [a-z]+)?)(?=\s|$)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
}

function storedTexts(): string[] {
  const db = new Database(path.join(homeOf(), 'clawbar.db'), { readonly: true });
  try {
    return (
      db.prepare('SELECT text FROM messages ORDER BY seq').all() as Array<{ text: string }>
    ).map((row) => row.text);
  } finally {
    db.close();
  }
}

describe('CLI habits', () => {
  it('lists every command in --help', async () => {
    expect(listedCommands(await ok(['--help']))).toEqual(COMMANDS);
  });

  it.each(COMMANDS)('%s answers --help and -h with its own usage on stdout', async (name) => {
    for (const flag of ['--help', '-h']) {
      const run = await clawbar([...name.split(' '), flag]);
      expect(run.code, `${name} ${flag}`).toBe(0);
      expect(run.stderr, `${name} ${flag}`).toBe('');
      expect(run.stdout.split('\n')[0], `${name} ${flag}`).toMatch(
        new RegExp(`^Usage: clawbar ${name}( |$)`),
      );
      expect(run.stdout).toContain('-h, --help');
      expect(run.stdout).toContain('--json');
    }
    // No database, no socket: help touched nothing.
    expect(fs.readdirSync(homeOf())).toEqual([]);
  });

  it('gives help even after other options, and `clawbar help CMD` is the same help', async () => {
    const direct = await ok(['send', '--group', 'family', '--frobnicate', '--help']);
    expect(direct.split('\n')[0]).toBe(
      'Usage: clawbar send --group G [--from NAME] [--wait [--timeout SECONDS]] TEXT|-',
    );
    expect(await ok(['help', 'send'])).toBe(direct);
  });

  it.each(['groups', 'tasks', 'image'])(
    'the %s family answers --help and -h with its commands',
    async (family) => {
      for (const flag of ['--help', '-h']) {
        const run = await clawbar([family, flag]);
        expect(run).toMatchObject({ code: 0, stderr: '' });
        expect(run.stdout).toContain(`Usage: clawbar ${family} <command>`);
        for (const name of COMMANDS.filter((c) => c.startsWith(`${family} `)))
          expect(run.stdout).toContain(`  ${name}`);
      }
    },
  );

  it('prints the version of package.json with --version and -V', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V']) {
      expect(await clawbar([flag])).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
    }
    expect(JSON.parse(await ok(['--version', '--json']))).toEqual({ version: pkg.version });
  });

  it('refuses an unknown option by listing the valid ones, never by suggesting to send it', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['send', '--group', 'family', '--frobnicate', 'hello']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      [
        'clawbar: unknown option --frobnicate for `send`; valid: --group, --from, --wait, --timeout, --json, --help',
        'to send text that starts with -, put -- before it: clawbar send --group G -- -5 degrees',
        'usage: clawbar send --group G [--from NAME] [--wait [--timeout SECONDS]] TEXT|-',
        '',
      ].join('\n'),
    );
    expect(run.stderr).not.toContain('positional');
    expect(messagesInDb()).toBe(0);
  });

  it('sends text that starts with a dash after --, and a lone - after -- as text', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['send', '--group', 'family', '--', '-5 degrees'])).toBe(
      'stored (no trigger, so the assistant was not asked)\n',
    );
    await ok(['send', '--group', 'family', '--', '-5', 'degrees', 'outside']);
    await ok(['send', '--group', 'family', '--', '-']);
    expect(storedTexts()).toEqual(['-5 degrees', '-5 degrees outside', '-']);
  });

  it('reads the text from stdin with -, as long as a message may be', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const piped = await clawbar(
      ['send', '--group', 'family', '-'],
      {},
      30_000,
      '@Andy first line\nsecond line\n',
    );
    expect(piped).toEqual({
      code: 0,
      stdout: 'stored; `clawbar serve` is not running, so it will be answered when it starts\n',
      stderr: '',
    });
    // The core's limit on one message is 65,536 characters: exactly that much goes through.
    const longest = `@Andy ${'x'.repeat(65_536 - 6)}`;
    const long = await clawbar(['send', '--group', 'family', '--json', '-'], {}, 30_000, longest);
    expect(long.code, long.stderr).toBe(0);
    expect(storedTexts()).toEqual(['@Andy first line\nsecond line', longest]);
  });

  it.each([
    ['one character over the limit', 'y'.repeat(65_537)],
    ['far over the limit', 'z'.repeat(4 * 1024 * 1024)],
  ])('refuses stdin %s and stores nothing', async (_label, input) => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['send', '--group', 'family', '-'], {}, 30_000, input);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      'clawbar: the message on stdin is longer than 65536 characters, the most one message may hold; nothing was sent\n',
    );
    expect(messagesInDb()).toBe(0);
  });

  it.each([[''], [' \n\n']])('refuses empty stdin %j and stores nothing', async (input) => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['send', '--group', 'family', '-'], {}, 30_000, input);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(
      'stdin was empty, so there is no message to send; nothing was sent',
    );
    expect(messagesInDb()).toBe(0);
  });

  it('refuses - together with TEXT', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const run = await clawbar(['send', '--group', 'family', '-', 'more'], {}, 30_000, 'hi');
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('`-` reads the message from stdin, so it takes no TEXT as well');
    expect(messagesInDb()).toBe(0);
  });

  it('advertises serve --http, and refuses a malformed address before anything starts', async () => {
    expect(await ok(['serve', '--help'])).toContain('--http HOST:PORT');
    for (const args of [
      ['serve', '--http', '8080'],
      ['serve', '--http=localhost:99999'],
      ['serve', '--http', '[nonsense]:80'],
    ]) {
      const run = await clawbar(args, {}, 20_000);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^clawbar: --http\b.*\n$/);
    }
    // Refused before anything started: no database, no socket, no token.
    expect(fs.readdirSync(homeOf())).toEqual([]);
  });
});

describe('a database from the future', () => {
  it('is refused with a clear error, and the file is left untouched', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    const file = path.join(homeOf(), 'clawbar.db');
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
    fs.writeFileSync(path.join(homeOf(), 'groups'), 'not a folder');
    const run = await clawbar(['serve'], {}, 20_000);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/EEXIST.*groups/);
    expect(fs.existsSync(path.join(homeOf(), 'clawbar.sock'))).toBe(false);
  });
});
