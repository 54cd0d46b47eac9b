import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoreInputError } from '../../main/core/errors.js';
import { ScheduleError } from '../../main/core/scheduler/schedule.js';
import {
  TaskAdmin,
  UnknownTaskError,
  type TaskChange,
} from '../../main/core/scheduler/task-admin.js';
import { MAX_TASK_PROMPT_CHARS } from '../../main/core/store/index.js';
import { tempStore, type TempStore } from '../helpers/store.js';

/** 2026-11-25 10:00 UTC, a Wednesday (11:00 in Berlin, CET). */
const NOW = Date.UTC(2026, 10, 25, 10, 0, 0);
const MINUTE = 60_000;

describe('TaskAdmin', () => {
  let db: TempStore;
  let now: number;
  let changes: TaskChange[];
  let admin: TaskAdmin;

  beforeEach(() => {
    db = tempStore('clawbar-task-admin-');
    now = NOW;
    changes = [];
    admin = new TaskAdmin({
      store: db.store,
      timezone: 'Europe/Berlin',
      now: () => now,
      onChange: (change) => changes.push(change),
    });
  });

  afterEach(() => db.close());

  const base = () => ({ group: db.family, prompt: 'morning briefing', createdBy: 'cli' });

  it('stores a cron task in the default timezone with its first run computed', () => {
    const task = admin.add({ ...base(), cron: '0 8 * * 1-5' });
    expect(task).toMatchObject({
      groupJid: 'local:family',
      schedule: { kind: 'cron', expr: '0 8 * * 1-5', timezone: 'Europe/Berlin' },
      timezone: 'Europe/Berlin',
      contextMode: 'isolated',
      postResult: true,
      status: 'active',
      createdBy: 'cli',
      // Thursday 08:00 CET is 07:00 UTC.
      nextRun: Date.UTC(2026, 10, 26, 7, 0),
    });
    expect(changes).toEqual([{ kind: 'added', taskId: task.id }]);
    const view = admin.view(task);
    expect(view).toMatchObject({
      group: { name: 'Family', folder: 'family' },
      schedule: 'every weekday at 08:00 (Europe/Berlin)',
      nextRun: '2026-11-26T07:00:00.000Z',
      nextRunLocal: '2026-11-26 08:00 CET',
      nextRunUtc: '2026-11-26 07:00 UTC',
    });
  });

  it('anchors an interval at now and reads an at time in the given timezone', () => {
    const every = admin.add({ ...base(), every: '15m', contextMode: 'group', postResult: false });
    expect(every).toMatchObject({
      schedule: { kind: 'interval', everyMs: 15 * MINUTE, anchor: NOW },
      nextRun: NOW + 15 * MINUTE,
      contextMode: 'group',
      postResult: false,
      timezone: 'Europe/Berlin',
    });
    const once = admin.add({ ...base(), at: '2026-11-25T17:00', timezone: 'America/New_York' });
    expect(once).toMatchObject({
      schedule: { kind: 'once', at: Date.UTC(2026, 10, 25, 22, 0) },
      nextRun: Date.UTC(2026, 10, 25, 22, 0),
      timezone: 'America/New_York',
    });
    expect(admin.view(once).schedule).toBe('once at 2026-11-25 17:00 (America/New_York)');
  });

  it('refuses a bad cron, an unknown timezone, a past time and a zero interval, storing nothing', () => {
    expect(() => admin.add({ ...base(), cron: '0 25 * * *' })).toThrow(/hour field "25"/);
    expect(() => admin.add({ ...base(), cron: '0 8 * * *', timezone: 'Mars/Olympus' })).toThrow(
      /unknown timezone "Mars\/Olympus"/,
    );
    expect(() => admin.add({ ...base(), at: '2026-11-25T09:00Z' })).toThrow(/in the past/);
    expect(() => admin.add({ ...base(), every: '0m' })).toThrow(ScheduleError);
    expect(() => admin.add({ ...base(), cron: '0 8 * * *', every: '1h' })).toThrow(
      /conflicting schedules/,
    );
    expect(admin.list().tasks).toEqual([]);
    expect(changes).toEqual([]);
  });

  it('refuses an empty, overlong or control-character prompt as input errors', () => {
    expect(() => admin.add({ ...base(), prompt: '  ', every: '1h' })).toThrow(/prompt is empty/);
    expect(() =>
      admin.add({ ...base(), prompt: 'x'.repeat(MAX_TASK_PROMPT_CHARS + 1), every: '1h' }),
    ).toThrow(/at most 10000/);
    expect(() => admin.add({ ...base(), prompt: 'hi\u001b[2J', every: '1h' })).toThrow(
      CoreInputError,
    );
    // Line breaks and tabs are fine in a prompt.
    expect(admin.add({ ...base(), prompt: 'line one\n\tline two', every: '1h' }).prompt).toBe(
      'line one\n\tline two',
    );
  });

  it('turns the store refusing a creator into an input error', () => {
    expect(() => admin.add({ ...base(), createdBy: 'Not A Creator!', every: '1h' })).toThrow(
      CoreInputError,
    );
  });

  it('pauses with no next run, and resumes with the next run computed from now', () => {
    const task = admin.add({ ...base(), every: '1h' });
    now += 5 * MINUTE;
    const paused = admin.pause(task.id);
    expect(paused).toMatchObject({
      status: 'paused',
      pausedReason: 'paused by the user',
      nextRun: null,
    });
    // Paused across three due times: none is made up, the next is the first after now.
    now = NOW + 3 * 60 * MINUTE + 10 * MINUTE;
    const resumed = admin.resume(task.id);
    expect(resumed).toMatchObject({
      status: 'active',
      pausedReason: null,
      nextRun: NOW + 4 * 60 * MINUTE,
    });
    expect(changes.map((c) => c.kind)).toEqual(['added', 'paused', 'resumed']);
  });

  it('will not resume a one-off whose time passed while it was paused', () => {
    const task = admin.add({ ...base(), at: '2026-11-25T12:00Z' });
    admin.pause(task.id);
    now = Date.UTC(2026, 10, 25, 13, 0);
    expect(() => admin.resume(task.id)).toThrow(/which has passed; remove it/);
    expect(admin.get(task.id).status).toBe('paused');
  });

  it('removes a task and its run log', () => {
    const task = admin.add({ ...base(), every: '1h' });
    db.store.claimRun(task.id, NOW + 60 * MINUTE, NOW + 60 * MINUTE);
    expect(admin.runs(task.id)).toHaveLength(1);
    expect(admin.remove(task.id)?.id).toBe(task.id);
    expect(() => admin.get(task.id)).toThrow(UnknownTaskError);
    expect(db.store.listRuns(task.id)).toEqual([]);
    expect(changes.at(-1)).toEqual({ kind: 'removed', taskId: task.id });
  });

  it('says an unknown id is unknown, for every operation', () => {
    for (const act of [
      () => admin.pause('t_zzzzzzzz'),
      () => admin.resume('t_zzzzzzzz'),
      () => admin.remove('t_zzzzzzzz'),
      () => admin.runs('t_zzzzzzzz'),
      () => admin.get('nonsense\u0007'),
    ]) {
      expect(act).toThrow(UnknownTaskError);
    }
    expect(() => admin.get('nonsense\u0007')).toThrow(/"nonsense\?"/);
  });

  it('lists the run log latest first with status, duration, result and tokens', () => {
    const task = admin.add({ ...base(), every: '1h', timezone: 'UTC' });
    const first = NOW + 60 * MINUTE;
    const run = db.store.claimRun(task.id, first, first);
    db.store.finishRun(run!.id, {
      status: 'success',
      finishedAt: first + 12_300,
      resultSummary: 'all good',
      usage: { inputTokens: 1200, outputTokens: 300 },
    });
    db.store.recordSkippedOrMissed(task.id, first + 60 * MINUTE, 'skipped', 'group paused', first);
    const runs = admin.runs(task.id).map((r) => admin.runView(r, 'UTC'));
    expect(runs).toEqual([
      expect.objectContaining({
        dueLocal: '2026-11-25 12:00 UTC',
        status: 'skipped',
        error: 'group paused',
      }),
      {
        dueAt: '2026-11-25T11:00:00.000Z',
        dueLocal: '2026-11-25 11:00 UTC',
        startedAt: '2026-11-25T11:00:00.000Z',
        durationMs: 12_300,
        status: 'success',
        summary: 'all good',
        error: null,
        inputTokens: 1200,
        outputTokens: 300,
      },
    ]);
    expect(admin.runs(task.id, 1)).toHaveLength(1);
    expect(admin.view(admin.get(task.id)).lastStatus).toBe('skipped');
  });

  it("lists one group's tasks, and shows a corrupt task apart instead of hiding it", () => {
    const other = db.store.addGroup(
      {
        jid: 'local:work',
        folder: 'work',
        name: 'Work',
        trigger: '@Andy',
        requiresTrigger: true,
        isMain: false,
        channel: 'local',
      },
      0,
    );
    const family = admin.add({ ...base(), every: '1h' });
    const work = admin.add({ ...base(), group: other, every: '2h' });
    expect(admin.list({ groupJid: 'local:work' }).tasks.map((t) => t.id)).toEqual([work.id]);

    db.store.db.prepare(`UPDATE tasks SET spec = '{"kind":"cron"}' WHERE id = ?`).run(family.id);
    const listing = admin.list();
    expect(listing.tasks.map((t) => t.id)).toEqual([work.id]);
    expect(listing.unreadable.map((e) => e.taskId)).toEqual([family.id]);
    // A corrupt task can still be paused and removed.
    expect(admin.pause(family.id)).toBeNull();
    expect(admin.remove(family.id)).toBeNull();
    expect(admin.list().unreadable).toEqual([]);
  });
});

describe('TaskAdmin.update', () => {
  let db: TempStore;
  let now: number;
  let changes: TaskChange[];
  let admin: TaskAdmin;

  beforeEach(() => {
    db = tempStore('clawbar-task-update-');
    now = NOW;
    changes = [];
    admin = new TaskAdmin({
      store: db.store,
      timezone: 'Europe/Berlin',
      now: () => now,
      onChange: (change) => changes.push(change),
    });
  });

  afterEach(() => db.close());

  const add = (schedule: { cron?: string; every?: string; at?: string; timezone?: string }) =>
    admin.add({ group: db.family, prompt: 'morning briefing', createdBy: 'cli', ...schedule });

  it('changes the prompt, context mode and post-result setting, keeping the schedule and next run', () => {
    const task = add({ cron: '0 8 * * 1-5' });
    const updated = admin.update(task.id, {
      prompt: 'evening briefing',
      contextMode: 'group',
      postResult: false,
    });
    expect(updated).toMatchObject({
      prompt: 'evening briefing',
      contextMode: 'group',
      postResult: false,
      schedule: task.schedule,
      nextRun: task.nextRun,
    });
    expect(admin.get(task.id)).toEqual(updated);
    expect(changes).toEqual([
      { kind: 'added', taskId: task.id },
      { kind: 'updated', taskId: task.id },
    ]);
  });

  it("replaces the schedule, read in the task's own timezone, with the next run computed from now", () => {
    const task = add({ every: '1h', timezone: 'America/New_York' });
    now += 20 * MINUTE;
    const updated = admin.update(task.id, { cron: '30 9 * * *' });
    expect(updated).toMatchObject({
      schedule: { kind: 'cron', expr: '30 9 * * *', timezone: 'America/New_York' },
      timezone: 'America/New_York',
      // Now is 05:20 in New York (EST), so the next run is 09:30 there today: 14:30 UTC.
      nextRun: Date.UTC(2026, 10, 25, 14, 30),
    });
    const every = admin.update(task.id, { every: '15m' });
    expect(every).toMatchObject({
      schedule: { kind: 'interval', everyMs: 15 * MINUTE, anchor: now },
      nextRun: now + 15 * MINUTE,
    });
  });

  it('moves a cron to a new timezone given alone, keeping its wall-clock time', () => {
    const task = add({ cron: '0 8 * * 1-5' });
    const updated = admin.update(task.id, { timezone: 'Asia/Tokyo' });
    expect(updated).toMatchObject({
      schedule: { kind: 'cron', expr: '0 8 * * 1-5', timezone: 'Asia/Tokyo' },
      timezone: 'Asia/Tokyo',
      // Thursday 08:00 in Tokyo (UTC+9) is Wednesday 23:00 UTC.
      nextRun: Date.UTC(2026, 10, 25, 23, 0),
    });
    expect(admin.view(updated).schedule).toBe('every weekday at 08:00 (Asia/Tokyo)');
  });

  it('keeps a paused task without a next run; resuming computes it from the new schedule', () => {
    const task = add({ every: '1h' });
    admin.pause(task.id);
    const updated = admin.update(task.id, { cron: '0 18 * * *' });
    expect(updated).toMatchObject({ status: 'paused', nextRun: null });
    // 18:00 in Berlin (CET) is 17:00 UTC.
    expect(admin.resume(task.id).nextRun).toBe(Date.UTC(2026, 10, 25, 17, 0));
  });

  it('refuses a bad schedule, two schedules, an unknown timezone, a bad prompt or no change, changing nothing', () => {
    const task = add({ cron: '0 8 * * 1-5' });
    changes = [];
    expect(() => admin.update(task.id, { cron: '0 8 * *' })).toThrow(/needs 5/);
    expect(() => admin.update(task.id, { cron: '0 9 * * *', every: '1h' })).toThrow(
      /conflicting schedules/,
    );
    expect(() => admin.update(task.id, { timezone: 'Berlin' })).toThrow(
      /unknown timezone "Berlin"; did you mean Europe\/Berlin\?/,
    );
    expect(() => admin.update(task.id, { at: '2026-11-25T09:00Z' })).toThrow(/in the past/);
    expect(() => admin.update(task.id, { prompt: ' ' })).toThrow(/prompt is empty/);
    expect(() =>
      admin.update(task.id, { contextMode: 'everything' as unknown as 'group' }),
    ).toThrow(CoreInputError);
    expect(() => admin.update(task.id, {})).toThrow(/nothing to change/);
    expect(admin.get(task.id)).toEqual(task);
    expect(changes).toEqual([]);
  });

  it('refuses to change a one-off that has already run, and an unknown id', () => {
    const task = add({ at: '2026-11-25T12:00Z' });
    db.store.setTaskStatus(task.id, 'done', NOW, { nextRun: null });
    expect(() => admin.update(task.id, { prompt: 'again' })).toThrow(
      /one-off that has already run; add a new task/,
    );
    expect(admin.get(task.id).prompt).toBe('morning briefing');
    expect(() => admin.update('t_zzzzzzzz', { prompt: 'x' })).toThrow(UnknownTaskError);
  });
});
