import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type Db } from '../../main/core/store/database.js';
import {
  CorruptTaskError,
  INTERRUPTED_RUN_ERROR,
  MAX_TASK_ERROR_CHARS,
  MAX_TASK_PROMPT_CHARS,
  openStore,
  TaskNotFoundError,
  TaskValidationError,
  type NewTask,
  type Store,
} from '../../main/core/store/index.js';
import { MIGRATIONS } from '../../main/core/store/migrations/index.js';
import { FAMILY_GROUP, tempStore, type TempStore } from '../helpers/store.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2025, 0, 6, 7, 0, 0);

/** A weekday-morning cron task in the Family group, as the CLI would add it. */
function briefing(overrides: Partial<NewTask> = {}): NewTask {
  return {
    groupJid: FAMILY_GROUP.jid,
    prompt: 'Give me the morning briefing',
    schedule: { kind: 'cron', expr: '0 8 * * 1-5', timezone: 'Europe/Paris' },
    timezone: 'Europe/Paris',
    contextMode: 'group',
    postResult: true,
    nextRun: T0,
    createdBy: 'cli',
    ...overrides,
  };
}

let temp: TempStore;
let store: Store;
let dbFile: string;

beforeEach(() => {
  temp = tempStore('clawbar-store-tasks-');
  store = temp.store;
  dbFile = path.join(temp.dir, 'clawbar.db');
});

afterEach(() => {
  if (store.db.open) store.close();
  fs.rmSync(temp.dir, { recursive: true, force: true });
});

/** Closes the store and opens the same file again, as a restart of the host does. */
function restart(): Store {
  store.close();
  store = openStore(dbFile);
  return store;
}

describe('migration 006 (tasks and task runs)', () => {
  it('adds both tables to a database at version 5, keeping its groups, and then holds tasks', () => {
    const file = path.join(temp.dir, 'old.db');
    const old: Db = new Database(file);
    old.pragma('foreign_keys = ON');
    migrate(old, MIGRATIONS.slice(0, 5));
    old
      .prepare(
        `INSERT INTO chats (jid, name, channel, is_group) VALUES ('local:a', 'A', 'local', 1)`,
      )
      .run();
    old
      .prepare(
        `INSERT INTO groups (jid, folder, name, trigger, created_at) VALUES ('local:a', 'a', 'A', '@Andy', 0)`,
      )
      .run();
    expect(old.pragma('user_version', { simple: true })).toBe(5);
    old.close();

    const upgraded = openStore(file);
    try {
      expect(upgraded.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
      expect(upgraded.getGroup('local:a')?.folder).toBe('a');
      const task = upgraded.createTask(briefing({ groupJid: 'local:a' }), T0);
      expect(upgraded.listTasks().map((t) => t.id)).toEqual([task.id]);
    } finally {
      upgraded.close();
    }
  });

  it('refuses unknown kinds, context modes, statuses and run statuses, and spec text that is not JSON', () => {
    const db = openDatabase(':memory:');
    try {
      db.prepare(
        `INSERT INTO chats (jid, name, channel, is_group) VALUES ('local:a', 'A', 'local', 1)`,
      ).run();
      db.prepare(
        `INSERT INTO groups (jid, folder, name, trigger, created_at) VALUES ('local:a', 'a', 'A', '@Andy', 0)`,
      ).run();
      const insert = db.prepare(`
        INSERT INTO tasks (id, group_jid, prompt, kind, spec, timezone, context_mode, status,
          created_by, created_at, updated_at)
        VALUES (@id, 'local:a', 'p', @kind, @spec, 'UTC', @mode, @status, 'cli', 0, 0)`);
      const good = { id: 't_aaaaaaaa', kind: 'once', spec: '{}', mode: 'group', status: 'active' };
      insert.run(good);

      expect(() => insert.run({ ...good, id: 't_b', kind: 'weekly' })).toThrow(/CHECK/);
      expect(() => insert.run({ ...good, id: 't_c', mode: 'shared' })).toThrow(/CHECK/);
      expect(() => insert.run({ ...good, id: 't_d', status: 'deleted' })).toThrow(/CHECK/);
      expect(() => insert.run({ ...good, id: 't_e', spec: '{not json' })).toThrow(/CHECK/);
      expect(() =>
        db
          .prepare(`INSERT INTO task_runs (task_id, due_at, status) VALUES ('t_aaaaaaaa', 1, 'ok')`)
          .run(),
      ).toThrow(/CHECK/);
      expect(() =>
        db
          .prepare(
            `INSERT INTO task_runs (task_id, due_at, status) VALUES ('t_zzzzzzzz', 1, 'running')`,
          )
          .run(),
      ).toThrow(/FOREIGN KEY/);
    } finally {
      db.close();
    }
  });
});

describe('creating and reading tasks', () => {
  it('creates an active task with a fresh id and reads back every field', () => {
    const task = store.createTask(briefing(), T0);

    expect(task.id).toMatch(/^t_[a-z0-9]{8}$/);
    expect(store.getTask(task.id)).toEqual({
      id: task.id,
      groupJid: FAMILY_GROUP.jid,
      prompt: 'Give me the morning briefing',
      schedule: { kind: 'cron', expr: '0 8 * * 1-5', timezone: 'Europe/Paris' },
      timezone: 'Europe/Paris',
      contextMode: 'group',
      postResult: true,
      status: 'active',
      pausedReason: null,
      nextRun: T0,
      lastRun: null,
      lastStatus: null,
      lastResult: null,
      lastError: null,
      consecutiveFailures: 0,
      createdBy: 'cli',
      createdAt: T0,
      updatedAt: T0,
    });
  });

  it('keeps interval and one-off schedules as given', () => {
    const every = store.createTask(
      briefing({ schedule: { kind: 'interval', everyMs: 15 * 60_000, anchor: T0 } }),
      T0,
    );
    const once = store.createTask(
      briefing({ schedule: { kind: 'once', at: T0 + HOUR }, postResult: false }),
      T0,
    );

    expect(store.getTask(every.id)?.schedule).toEqual({
      kind: 'interval',
      everyMs: 15 * 60_000,
      anchor: T0,
    });
    expect(store.getTask(once.id)?.schedule).toEqual({ kind: 'once', at: T0 + HOUR });
    expect(store.getTask(once.id)?.postResult).toBe(false);
  });

  it('lists every task, or one group’s only', () => {
    const other = store.addGroup(
      { ...FAMILY_GROUP, jid: 'local:work', folder: 'work', name: 'Work' },
      0,
    );
    const a = store.createTask(briefing(), T0);
    const b = store.createTask(briefing({ groupJid: other.jid, createdBy: 'agent:work' }), T0 + 1);

    expect(store.listTasks().map((t) => t.id)).toEqual([a.id, b.id]);
    expect(store.listTasks({ groupJid: other.jid }).map((t) => t.id)).toEqual([b.id]);
    expect(store.listTasks({ groupJid: 'local:nobody' })).toEqual([]);
    expect(store.getTask(b.id)?.createdBy).toBe('agent:work');
  });

  it('finds no task for an id of the wrong form, without touching the database', () => {
    store.createTask(briefing(), T0);

    for (const id of ['', 't_', "t_' OR 1=1 --", 'T_AAAAAAAA', 42 as unknown as string]) {
      expect(store.getTask(id)).toBeUndefined();
      expect(store.removeTask(id)).toBe(false);
      expect(store.setNextRun(id, T0, T0)).toBe(false);
      expect(store.setTaskStatus(id, 'paused', T0)).toBe(false);
      expect(store.updateTask(id, { prompt: 'x' }, T0)).toBeUndefined();
      expect(store.listRuns(id, 10)).toEqual([]);
      expect(() => store.claimRun(id, T0, T0)).toThrow(TaskNotFoundError);
    }
    expect(store.listTasks()).toHaveLength(1);
  });

  it.each<[string, Partial<NewTask>, RegExp]>([
    ['an empty prompt', { prompt: '   ' }, /prompt: is empty/],
    [
      'a prompt over the limit',
      { prompt: 'x'.repeat(MAX_TASK_PROMPT_CHARS + 1) },
      /prompt: is 10001 characters long; the most is 10000/,
    ],
    ['a prompt that is not text', { prompt: 7 as unknown as string }, /prompt: must be text/],
    ['a group that is not registered', { groupJid: 'local:ghost' }, /no group is registered/],
    [
      'an unknown schedule kind',
      { schedule: { kind: 'weekly' } as unknown as NewTask['schedule'] },
      /schedule/,
    ],
    [
      'a zero interval',
      { schedule: { kind: 'interval', everyMs: 0, anchor: T0 } },
      /schedule: everyMs/,
    ],
    [
      'an extra field in the schedule',
      { schedule: { kind: 'once', at: T0, evil: true } as unknown as NewTask['schedule'] },
      /schedule/,
    ],
    ['a fractional time', { schedule: { kind: 'once', at: 1.5 } }, /schedule: at/],
    ['a timezone with odd characters', { timezone: '../../etc/passwd\n' }, /timezone: must be/],
    [
      'a cron timezone other than the task’s',
      { timezone: 'UTC' },
      /timezone: is UTC, but the cron schedule runs in Europe\/Paris/,
    ],
    [
      'an unknown context mode',
      { contextMode: 'shared' as unknown as NewTask['contextMode'] },
      /context mode/,
    ],
    ['a creator of the wrong form', { createdBy: 'agent:../../x' }, /creator/],
    ['a negative next run', { nextRun: -5 }, /next run/],
  ])('refuses %s with an error naming the field', (_name, overrides, message) => {
    let error: unknown;
    try {
      store.createTask(briefing(overrides), T0);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TaskValidationError);
    expect((error as Error).message).toMatch(message);
    expect(store.listTasks()).toEqual([]);
  });
});

describe('changing tasks', () => {
  it('updates the prompt, schedule, context mode and result posting, keeping the rest', () => {
    const task = store.createTask(briefing(), T0);

    const updated = store.updateTask(
      task.id,
      {
        prompt: 'Only the weather',
        schedule: { kind: 'cron', expr: '30 7 * * *', timezone: 'America/New_York' },
        contextMode: 'isolated',
        postResult: false,
        nextRun: T0 + 5 * HOUR,
      },
      T0 + 10,
    );

    expect(updated).toMatchObject({
      id: task.id,
      prompt: 'Only the weather',
      schedule: { kind: 'cron', expr: '30 7 * * *', timezone: 'America/New_York' },
      // A cron's timezone is the task's: it follows the new schedule.
      timezone: 'America/New_York',
      contextMode: 'isolated',
      postResult: false,
      nextRun: T0 + 5 * HOUR,
      createdAt: T0,
      updatedAt: T0 + 10,
    });
    expect(store.getTask(task.id)).toEqual(updated);
  });

  it('refuses a bad change and leaves the task as it was', () => {
    const task = store.createTask(briefing(), T0);

    expect(() => store.updateTask(task.id, { prompt: '' }, T0 + 1)).toThrow(TaskValidationError);
    expect(() => store.updateTask(task.id, { timezone: 'UTC' }, T0 + 1)).toThrow(
      /the cron schedule runs in Europe\/Paris/,
    );
    expect(store.getTask(task.id)).toEqual(task);
  });

  it('pauses with a reason, resumes with a fresh failure count and marks a task done', () => {
    const task = store.createTask(briefing(), T0);
    for (let i = 1; i <= 2; i++) {
      const run = store.claimRun(task.id, T0 + i, T0 + i);
      store.finishRun(run!.id, { status: 'error', finishedAt: T0 + i, error: 'boom' });
    }

    expect(store.setTaskStatus(task.id, 'paused', T0 + 10, { reason: 'paused by the user' })).toBe(
      true,
    );
    expect(store.getTask(task.id)).toMatchObject({
      status: 'paused',
      pausedReason: 'paused by the user',
      consecutiveFailures: 2,
    });

    store.setTaskStatus(task.id, 'active', T0 + 20, { reason: 'ignored', nextRun: T0 + HOUR });
    expect(store.getTask(task.id)).toMatchObject({
      status: 'active',
      pausedReason: null,
      consecutiveFailures: 0,
      nextRun: T0 + HOUR,
      updatedAt: T0 + 20,
    });

    store.setTaskStatus(task.id, 'done', T0 + 30, { nextRun: null });
    expect(store.getTask(task.id)).toMatchObject({ status: 'done', nextRun: null });
    expect(() => store.setTaskStatus(task.id, 'gone' as unknown as 'done', T0 + 40)).toThrow(
      TaskValidationError,
    );
  });

  it('sets the next run, and removes a task with its run log', () => {
    const task = store.createTask(briefing(), T0);
    store.claimRun(task.id, T0, T0);

    expect(store.setNextRun(task.id, T0 + HOUR, T0 + 1)).toBe(true);
    expect(store.getTask(task.id)?.nextRun).toBe(T0 + HOUR);
    expect(store.removeTask(task.id)).toBe(true);
    expect(store.getTask(task.id)).toBeUndefined();
    expect(store.listRuns(task.id, 10)).toEqual([]);
    expect(store.runningRuns()).toEqual([]);
    expect(store.removeTask(task.id)).toBe(false);
  });
});

describe('claiming a run: exactly once per due time', () => {
  it('claims a due time once; a second claim of it gets null and changes nothing', () => {
    const task = store.createTask(briefing(), T0);

    const run = store.claimRun(task.id, T0, T0 + 3, T0 + 24 * HOUR);
    expect(run).toEqual({
      id: expect.any(Number),
      taskId: task.id,
      dueAt: T0,
      startedAt: T0 + 3,
      finishedAt: null,
      durationMs: null,
      status: 'running',
      resultSummary: null,
      error: null,
      inputTokens: null,
      outputTokens: null,
    });
    expect(store.getTask(task.id)).toMatchObject({
      lastRun: T0 + 3,
      lastStatus: 'running',
      nextRun: T0 + 24 * HOUR,
    });

    expect(store.claimRun(task.id, T0, T0 + 50, T0 + 99 * HOUR)).toBeNull();
    expect(store.getTask(task.id)).toMatchObject({ lastRun: T0 + 3, nextRun: T0 + 24 * HOUR });
    expect(store.listRuns(task.id, 10)).toHaveLength(1);
  });

  it('refuses a due time claimed before a restart, even one that finished', () => {
    const task = store.createTask(briefing(), T0);
    const run = store.claimRun(task.id, T0, T0)!;
    store.finishRun(run.id, { status: 'success', finishedAt: T0 + 1000 });

    restart();

    expect(store.claimRun(task.id, T0, T0 + 2000)).toBeNull();
    expect(store.claimRun(task.id, T0 + HOUR, T0 + HOUR)).not.toBeNull();
  });

  it('leaves the next run alone when none is passed', () => {
    const task = store.createTask(briefing(), T0);

    store.claimRun(task.id, T0, T0);

    expect(store.getTask(task.id)?.nextRun).toBe(T0);
  });

  it('throws for a task that does not exist', () => {
    expect(() => store.claimRun('t_aaaaaaaa', T0, T0)).toThrow(TaskNotFoundError);
  });
});

describe('finishing a run', () => {
  it('counts errors and timeouts in a row, and a success resets the count', () => {
    const task = store.createTask(briefing(), T0);
    const fail = (i: number, status: 'error' | 'timeout'): number | null => {
      const run = store.claimRun(task.id, T0 + i * HOUR, T0 + i * HOUR)!;
      return store.finishRun(run.id, {
        status,
        finishedAt: T0 + i * HOUR + 500,
        error: `failure ${i}`,
      });
    };

    expect(fail(0, 'error')).toBe(1);
    expect(fail(1, 'timeout')).toBe(2);
    expect(fail(2, 'error')).toBe(3);
    expect(store.getTask(task.id)).toMatchObject({
      consecutiveFailures: 3,
      lastStatus: 'error',
      lastError: 'failure 2',
    });

    const run = store.claimRun(task.id, T0 + 3 * HOUR, T0 + 3 * HOUR)!;
    expect(
      store.finishRun(run.id, {
        status: 'success',
        finishedAt: T0 + 3 * HOUR + 1200,
        resultSummary: 'Sunny, 12°C',
        usage: { inputTokens: 1500, outputTokens: 300 },
      }),
    ).toBe(0);
    expect(store.getTask(task.id)).toMatchObject({
      consecutiveFailures: 0,
      lastStatus: 'success',
      lastResult: 'Sunny, 12°C',
      lastError: null,
    });
    expect(store.listRuns(task.id, 1)[0]).toMatchObject({
      status: 'success',
      startedAt: T0 + 3 * HOUR,
      finishedAt: T0 + 3 * HOUR + 1200,
      durationMs: 1200,
      resultSummary: 'Sunny, 12°C',
      inputTokens: 1500,
      outputTokens: 300,
    });
  });

  it('does nothing for a run that already ended, so a late report cannot count twice', () => {
    const task = store.createTask(briefing(), T0);
    const run = store.claimRun(task.id, T0, T0)!;

    expect(store.finishRun(run.id, { status: 'error', finishedAt: T0 + 1, error: 'a' })).toBe(1);
    expect(store.finishRun(run.id, { status: 'error', finishedAt: T0 + 2, error: 'b' })).toBeNull();
    expect(store.finishRun(999_999, { status: 'success', finishedAt: T0 + 3 })).toBeNull();
    expect(store.getTask(task.id)).toMatchObject({ consecutiveFailures: 1, lastError: 'a' });
  });

  it('cuts a hostile error to size and strips control characters', () => {
    const task = store.createTask(briefing(), T0);
    const run = store.claimRun(task.id, T0, T0)!;

    store.finishRun(run.id, {
      status: 'error',
      finishedAt: T0 + 1,
      error: `\u001b[31mred\u0000${'e'.repeat(5000)}`,
    });

    const stored = store.listRuns(task.id, 1)[0]?.error ?? '';
    expect(stored.length).toBe(MAX_TASK_ERROR_CHARS + 1);
    expect(stored.startsWith(' [31mred ')).toBe(true);
    expect(store.getTask(task.id)?.lastError).toBe(stored);
  });

  it('refuses a status a run cannot end with, and negative token counts', () => {
    const task = store.createTask(briefing(), T0);
    const run = store.claimRun(task.id, T0, T0)!;

    expect(() =>
      store.finishRun(run.id, { status: 'running' as 'success', finishedAt: T0 + 1 }),
    ).toThrow(/run status/);
    expect(() =>
      store.finishRun(run.id, {
        status: 'success',
        finishedAt: T0 + 1,
        usage: { inputTokens: -1, outputTokens: 0 },
      }),
    ).toThrow(/input tokens/);
    expect(store.runningRuns().map((r) => r.id)).toEqual([run.id]);
  });
});

describe('runs a restart cut off', () => {
  it('are found after a reopen, marked interrupted as a failure, and never claimed again', () => {
    const task = store.createTask(briefing(), T0);
    const done = store.claimRun(task.id, T0, T0)!;
    store.finishRun(done.id, { status: 'success', finishedAt: T0 + 100 });
    const cutOff = store.claimRun(task.id, T0 + HOUR, T0 + HOUR)!;

    restart();

    expect(store.runningRuns().map((r) => r.id)).toEqual([cutOff.id]);
    expect(store.markInterrupted(cutOff.id, T0 + 2 * HOUR)).toBe(1);
    expect(store.markInterrupted(cutOff.id, T0 + 2 * HOUR)).toBeNull();
    expect(store.runningRuns()).toEqual([]);
    expect(store.listRuns(task.id, 1)[0]).toMatchObject({
      id: cutOff.id,
      status: 'error',
      error: INTERRUPTED_RUN_ERROR,
      finishedAt: T0 + 2 * HOUR,
      durationMs: null,
    });
    expect(store.getTask(task.id)).toMatchObject({
      lastStatus: 'error',
      lastError: 'interrupted by a restart',
      consecutiveFailures: 1,
    });
    expect(store.claimRun(task.id, T0 + HOUR, T0 + 2 * HOUR)).toBeNull();
  });
});

describe('due times that did not run', () => {
  it('are logged as skipped or missed with why, once per due time, and take that due time', () => {
    const task = store.createTask(briefing(), T0);

    const skipped = store.recordSkippedOrMissed(task.id, T0, 'skipped', 'the group is paused', T0);
    expect(skipped).toMatchObject({
      status: 'skipped',
      dueAt: T0,
      startedAt: null,
      finishedAt: T0,
      error: 'the group is paused',
    });
    const missed = store.recordSkippedOrMissed(
      task.id,
      T0 + HOUR,
      'missed',
      'the app was closed',
      T0 + 5 * HOUR,
      T0 + 24 * HOUR,
    );
    expect(missed?.status).toBe('missed');
    expect(store.getTask(task.id)).toMatchObject({
      lastStatus: 'missed',
      nextRun: T0 + 24 * HOUR,
      lastRun: null,
      consecutiveFailures: 0,
    });

    expect(store.recordSkippedOrMissed(task.id, T0, 'missed', 'again', T0 + 1)).toBeNull();
    expect(store.claimRun(task.id, T0 + HOUR, T0 + 6 * HOUR)).toBeNull();
    expect(() =>
      store.recordSkippedOrMissed(task.id, T0 + 2, 'error' as 'missed', 'x', T0),
    ).toThrow(TaskValidationError);
    expect(() => store.recordSkippedOrMissed('t_aaaaaaaa', T0, 'missed', 'x', T0)).toThrow(
      TaskNotFoundError,
    );
  });
});

describe('the run log', () => {
  it('lists a task’s runs latest due time first, up to the limit, and no other task’s', () => {
    const task = store.createTask(briefing(), T0);
    const other = store.createTask(briefing(), T0);
    // Claimed out of order: the log is by due time, not by insertion.
    for (const i of [2, 0, 3, 1]) store.claimRun(task.id, T0 + i * HOUR, T0 + i * HOUR);
    store.claimRun(other.id, T0 + 9 * HOUR, T0 + 9 * HOUR);

    expect(store.listRuns(task.id, 3).map((r) => r.dueAt)).toEqual([
      T0 + 3 * HOUR,
      T0 + 2 * HOUR,
      T0 + HOUR,
    ]);
    expect(store.listRuns(task.id, 100)).toHaveLength(4);
    expect(store.listRuns(task.id, 0)).toHaveLength(1);
    expect(store.listRuns(task.id, Number.NaN)).toHaveLength(4);
  });
});

describe('removing a group', () => {
  it('removes its tasks and their run logs with it, and leaves other groups’ tasks', () => {
    const work = store.addGroup(
      { ...FAMILY_GROUP, jid: 'local:work', folder: 'work', name: 'Work' },
      0,
    );
    const family = store.createTask(briefing(), T0);
    const kept = store.createTask(briefing({ groupJid: work.jid }), T0);
    store.claimRun(family.id, T0, T0);
    store.claimRun(kept.id, T0, T0);

    expect(store.removeGroup(FAMILY_GROUP.jid)).toBe(true);

    expect(store.getTask(family.id)).toBeUndefined();
    expect(store.listTasks().map((t) => t.id)).toEqual([kept.id]);
    expect(store.runningRuns().map((r) => r.taskId)).toEqual([kept.id]);
    expect(
      store.db.prepare(`SELECT COUNT(*) AS n FROM task_runs WHERE task_id = ?`).get(family.id),
    ).toEqual({ n: 0 });
  });
});

describe('a corrupt task row', () => {
  function corrupt(id: string, spec: string): void {
    // The CHECK (json_valid) keeps non-JSON out; only a damaged file or a hand edit gets past it.
    store.db.pragma('ignore_check_constraints = ON');
    store.db.prepare(`UPDATE tasks SET spec = ? WHERE id = ?`).run(spec, id);
    store.db.pragma('ignore_check_constraints = OFF');
  }

  it.each([
    ['not JSON', '{"kind": "cron", "expr', /its schedule \(tasks.spec\) is not JSON/],
    ['the wrong shape', '{"kind":"cron","expr":42}', /is not a valid schedule \(expr:/],
    [
      'of another kind than its row',
      '{"kind":"once","at":5}',
      /is a once schedule, but the task is of kind cron/,
    ],
  ])('whose schedule is %s is refused with an error naming it and what to do', (_n, spec, msg) => {
    const task = store.createTask(briefing(), T0);
    corrupt(task.id, spec);

    let error: unknown;
    try {
      store.getTask(task.id);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CorruptTaskError);
    expect((error as CorruptTaskError).taskId).toBe(task.id);
    expect((error as Error).message).toMatch(msg);
    expect((error as Error).message).toContain(`clawbar tasks remove ${task.id}`);
  });

  it('makes a listing throw, unless the caller takes corrupt rows aside; it can still be paused or removed', () => {
    const bad = store.createTask(briefing(), T0);
    const good = store.createTask(briefing(), T0 + 1);
    corrupt(bad.id, 'null');

    expect(() => store.listTasks()).toThrow(CorruptTaskError);
    const reported: string[] = [];
    expect(
      store.listTasks({ onCorrupt: (err) => reported.push(err.taskId) }).map((t) => t.id),
    ).toEqual([good.id]);
    expect(reported).toEqual([bad.id]);

    expect(store.setTaskStatus(bad.id, 'paused', T0 + 2, { reason: 'corrupt schedule' })).toBe(
      true,
    );
    // A new schedule replaces the corrupt one.
    expect(
      store.updateTask(bad.id, { schedule: { kind: 'once', at: T0 + HOUR } }, T0 + 3)?.schedule,
    ).toEqual({ kind: 'once', at: T0 + HOUR });
    corrupt(bad.id, 'null');
    expect(store.removeTask(bad.id)).toBe(true);
    expect(store.listTasks().map((t) => t.id)).toEqual([good.id]);
  });
});
