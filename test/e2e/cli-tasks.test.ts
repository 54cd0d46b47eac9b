/**
 * `clawbar tasks …` as a user runs it, with `serve` not running: the built CLI opens the
 * database itself and manages the tasks there, for the next `serve` to fire. No Docker needed.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it } from 'vitest';
import type { TaskChangeView, TaskRunsView } from '../../main/core/control/handlers.js';
import type { TaskListing, TaskView } from '../../main/core/scheduler/task-admin.js';
import { clawbarIn, okIn, useOfflineHome, type CliRun } from '../helpers/offline-cli.js';

const homeOf = useOfflineHome('clawbar-tasks-');
/** The user's timezone: Berlin. */
const USER = { env: { TZ: 'Europe/Berlin' } };
const clawbar = (args: string[]): Promise<CliRun> => clawbarIn(homeOf(), args, USER);
const ok = (args: string[]): Promise<string> => okIn(homeOf(), args, USER);

async function json<T>(args: string[]): Promise<T> {
  // Before a `--`, after which it would be part of the prompt.
  const end = args.includes('--') ? args.indexOf('--') : args.length;
  return JSON.parse(await ok([...args.slice(0, end), '--json', ...args.slice(end)])) as T;
}

beforeEach(async () => {
  await ok(['groups', 'add', '--name', 'Family']);
});

describe('clawbar tasks without serve', () => {
  it('adds a cron task in the user timezone and prints its id and next run in both zones', async () => {
    const run = await clawbar([
      'tasks',
      'add',
      '--group',
      'family',
      '--cron',
      '0 8 * * 1-5',
      'morning',
      'briefing',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /^added task (t_[a-z0-9]{8}) to Family: every weekday at 08:00 \(Europe\/Berlin\); next run \d{4}-\d\d-\d\d 08:00 CES?T \(\d{4}-\d\d-\d\d 0[67]:00 UTC\)\n$/,
    );
    const [task] = (await json<TaskListing>(['tasks', 'list'])).tasks;
    expect(task).toMatchObject({
      group: { jid: 'local:family', name: 'Family', folder: 'family' },
      prompt: 'morning briefing',
      kind: 'cron',
      timezone: 'Europe/Berlin',
      contextMode: 'isolated',
      postResult: true,
      status: 'active',
      createdBy: 'cli',
    });
    expect(run.stdout).toContain(task!.id);
  });

  it('adds an interval and a one-off task with their options, and lists them as text and JSON', async () => {
    const every = await json<TaskView>([
      'tasks',
      'add',
      '--group',
      'Family',
      '--every',
      '2h',
      '--tz',
      'America/New_York',
      '--context',
      'group',
      '--no-post-result',
      '--',
      '-check the news',
    ]);
    expect(every).toMatchObject({
      kind: 'interval',
      schedule: 'every 2h',
      timezone: 'America/New_York',
      contextMode: 'group',
      postResult: false,
      prompt: '-check the news',
    });
    const once = await json<TaskView>([
      'tasks',
      'add',
      '--group',
      'local:family',
      '--at',
      '2099-01-01T09:00',
      'happy new year',
    ]);
    expect(once).toMatchObject({
      kind: 'once',
      schedule: 'once at 2099-01-01 09:00 (Europe/Berlin)',
      nextRun: '2099-01-01T08:00:00.000Z',
      nextRunLocal: '2099-01-01 09:00 CET',
      nextRunUtc: '2099-01-01 08:00 UTC',
    });

    const listing = await json<TaskListing>(['tasks', 'list']);
    expect(listing.tasks.map((t) => t.id)).toEqual([every.id, once.id]);
    expect(listing.unreadable).toEqual([]);

    const text = await ok(['tasks', 'list']);
    expect(text).toContain(
      [
        `${once.id}  Family  active`,
        '  schedule: once at 2099-01-01 09:00 (Europe/Berlin)',
        '  next run: 2099-01-01 09:00 CET (2099-01-01 08:00 UTC)',
        '  last run: never',
        '  prompt:   happy new year',
      ].join('\n'),
    );
    expect(text).toMatch(
      new RegExp(
        `${every.id}  Family  active\\n  schedule: every 2h\\n  next run: .* E[SD]T \\(.* UTC\\)`,
      ),
    );
  });

  it.each([
    [['--cron', '0 25 * * *'], /the hour field "25" is invalid/],
    [['--cron', '0 8 * * *', '--tz', 'Mars/Olympus'], /unknown timezone "Mars\/Olympus"/],
    [['--at', '2000-01-01T09:00'], /time "2000-01-01T09:00" is in the past/],
    [['--every', '0s'], /interval "0s" is zero/],
    [['--every', '1h', '--cron', '* * * * *'], /give only one of --cron, --every or --at/],
    [['--context', 'shared', '--every', '1h'], /--context must be group or isolated/],
  ])('refuses %j with a clear message, exit 2, storing nothing', async (options, message) => {
    const run = await clawbar(['tasks', 'add', '--group', 'family', ...options, 'hello']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
    expect((await json<TaskListing>(['tasks', 'list'])).tasks).toEqual([]);
  });

  it('refuses an unknown group and an unknown task id with exit 1', async () => {
    const group = await clawbar(['tasks', 'add', '--group', 'nope', '--every', '1h', 'hi']);
    expect(group.code).toBe(1);
    expect(group.stderr).toContain('no group named "nope"');
    for (const verb of ['pause', 'resume', 'remove', 'runs']) {
      const run = await clawbar(['tasks', verb, 't_zzzzzzzz']);
      expect(run.code, verb).toBe(1);
      expect(run.stderr, verb).toBe(
        'clawbar: no task has the id "t_zzzzzzzz"; see `clawbar tasks list` for the ids\n',
      );
    }
  });

  it('pauses, resumes and removes a task by id', async () => {
    const task = await json<TaskView>([
      'tasks',
      'add',
      '--group',
      'family',
      '--every',
      '1h',
      'stretch',
    ]);

    expect(await ok(['tasks', 'pause', task.id])).toBe(
      `paused task ${task.id} (Family: every 1h)\n`,
    );
    let [listed] = (await json<TaskListing>(['tasks', 'list'])).tasks;
    expect(listed).toMatchObject({
      status: 'paused',
      pausedReason: 'paused by the user',
      nextRun: null,
    });
    expect(await ok(['tasks', 'list'])).toContain(
      `${task.id}  Family  paused: paused by the user\n  schedule: every 1h\n  next run: none\n`,
    );

    const resumed = await json<TaskChangeView>(['tasks', 'resume', task.id]);
    expect(resumed.task).toMatchObject({ status: 'active', pausedReason: null });
    expect(Date.parse(resumed.task!.nextRun!)).toBeGreaterThan(Date.now());
    [listed] = (await json<TaskListing>(['tasks', 'list'])).tasks;
    expect(listed!.status).toBe('active');

    expect(await ok(['tasks', 'remove', task.id])).toBe(
      `removed task ${task.id} (Family: every 1h)\n`,
    );
    expect(await ok(['tasks', 'list'])).toBe(
      'no tasks yet; add one with `clawbar tasks add --group G --cron EXPR PROMPT`\n',
    );
  });

  it('shows the run log with status, duration, tokens and the summary or error', async () => {
    const task = await json<TaskView>([
      'tasks',
      'add',
      '--group',
      'family',
      '--every',
      '1h',
      '--tz',
      'UTC',
      'report',
    ]);
    expect(await ok(['tasks', 'runs', task.id])).toBe(`task ${task.id} has not run yet\n`);

    // Runs as the scheduler will log them (it does not exist yet): written straight to the db.
    const db = new Database(path.join(homeOf(), 'clawbar.db'));
    try {
      const insert = db.prepare(`
        INSERT INTO task_runs (task_id, due_at, started_at, finished_at, duration_ms, status,
          result_summary, error, input_tokens, output_tokens)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
      const due = Date.UTC(2026, 10, 25, 7, 0);
      insert.run(task.id, due, due, due + 12_300, 12_300, 'success', 'all done', null, 1200, 300);
      insert.run(
        task.id,
        due + 3_600_000,
        due + 3_600_000,
        due + 3_605_000,
        5_000,
        'error',
        null,
        'model unavailable',
        10,
        0,
      );
    } finally {
      db.close();
    }
    expect(await ok(['tasks', 'runs', task.id])).toBe(
      [
        '2026-11-25 08:00 UTC  error       5.0 s  10 in / 0 out  model unavailable',
        '2026-11-25 07:00 UTC  success    12.3 s  1200 in / 300 out  all done',
        '',
      ].join('\n'),
    );
    const limited = await json<TaskRunsView>(['tasks', 'runs', task.id, '--limit', '1']);
    expect(limited.runs).toEqual([
      {
        dueAt: '2026-11-25T08:00:00.000Z',
        dueLocal: '2026-11-25 08:00 UTC',
        startedAt: '2026-11-25T08:00:00.000Z',
        durationMs: 5_000,
        status: 'error',
        summary: null,
        error: 'model unavailable',
        inputTokens: 10,
        outputTokens: 0,
      },
    ]);
    const bad = await clawbar(['tasks', 'runs', task.id, '--limit', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--limit must be a whole number from 1 to 1000');
  });

  it.each(['list', 'add', 'pause', 'resume', 'run', 'remove', 'runs'])(
    'tasks %s answers --help with its usage and touches nothing',
    async (verb) => {
      fs.rmSync(homeOf(), { recursive: true, force: true });
      fs.mkdirSync(homeOf());
      const run = await clawbar(['tasks', verb, '--help']);
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout.split('\n')[0]).toMatch(new RegExp(`^Usage: clawbar tasks ${verb}( |$)`));
      expect(run.stdout).toContain('--json');
      expect(fs.readdirSync(homeOf())).toEqual([]);
    },
  );

  it('says that `tasks run` needs serve, which runs the agents, and runs nothing', async () => {
    const task = await json<TaskView>(['tasks', 'add', '--group', 'Family', '--every', '1h', 'hi']);
    const run = await clawbar(['tasks', 'run', task.id]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('running a task needs `clawbar serve` running');
    expect((await json<TaskRunsView>(['tasks', 'runs', task.id])).runs).toEqual([]);
  });
});
