/**
 * The agent's scheduled-task host calls over a real SQLite store and a real TaskAdmin.
 * Each authorization rule is tested allowed and refused, as NanoClaw's IPC authorization
 * tests do: the rules come from the run's binding, never from the payload.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostTools, type RunBinding } from '../../main/core/agent/host-tools.js';
import { TASK_PROMPT_MAX_CHARS } from '../../main/core/agent/protocol.js';
import {
  AGENT_TASK_DEFAULT_CONTEXT,
  MAX_AGENT_TASKS_PER_GROUP,
} from '../../main/core/agent/task-tools.js';
import { formatOutbound } from '../../main/core/router.js';
import { TaskAdmin, type TaskChange } from '../../main/core/scheduler/task-admin.js';
import {
  MAX_TASK_PROMPT_CHARS,
  openStore,
  type NewGroup,
  type Store,
  type Task,
} from '../../main/core/store/index.js';

/** 2026-11-25 10:00 UTC, a Wednesday: 11:00 in Berlin (CET). */
const NOW = Date.UTC(2026, 10, 25, 10, 0);
const FAMILY = 'local:family';
const WORK = 'local:work';
const MAIN = 'local:main';

const group = (jid: string, folder: string, isMain = false): NewGroup => ({
  jid,
  folder,
  name: folder,
  trigger: '@Andy',
  requiresTrigger: !isMain,
  isMain,
  channel: 'local',
});

const binding = (jid: string, folder: string, isMain: boolean): RunBinding => ({
  groupJid: jid,
  chatJid: jid,
  folder,
  isMain,
  turnId: `turn-${folder}`,
});

const familyRun = binding(FAMILY, 'family', false);
const workRun = binding(WORK, 'work', false);
const mainRun = binding(MAIN, 'main', true);

let dir: string;
let store: Store;
let admin: TaskAdmin;
let changes: TaskChange[];
let logged: Array<Record<string, unknown>>;
let tools: HostTools;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-host-tasks-'));
  store = openStore(path.join(dir, 'clawbar.db'));
  store.addGroup(group(FAMILY, 'family'), NOW);
  store.addGroup(group(WORK, 'work'), NOW);
  store.addGroup(group(MAIN, 'main', true), NOW);
  changes = [];
  admin = new TaskAdmin({
    store,
    timezone: 'Europe/Berlin',
    now: () => NOW,
    onChange: (change) => changes.push(change),
  });
  logged = [];
  const log = pino(
    { level: 'info' },
    { write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>) },
  );
  tools = new HostTools({
    store,
    // The task calls send nothing; an outbox that is never used.
    outbox: { notify: () => undefined, whenSettled: async () => 'sent' },
    formatOutbound,
    now: () => NOW,
    log,
    tasks: admin,
  });
});

afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const denials = () =>
  logged.filter((line) => line.level === 40 && String(line.msg).startsWith('denied: '));

/** A task made directly through TaskAdmin, as the CLI would. */
const taskIn = (jid: string, prompt = 'weekly report'): Task =>
  admin.add({
    group: store.getGroup(jid)!,
    prompt,
    cron: '0 9 * * 1',
    createdBy: 'cli',
  });

describe('schedule_task', () => {
  it('a non-main group schedules for its own group: a cron task in the user timezone, visible to TaskAdmin', async () => {
    const answer = await tools.call(familyRun, 'schedule_task', {
      prompt: 'Remind the user to stretch.',
      cron: '0 8 * * 1-5',
    });
    expect(answer.ok).toBe(true);
    const [task] = admin.list().tasks;
    expect(task).toMatchObject({
      groupJid: FAMILY,
      prompt: 'Remind the user to stretch.',
      schedule: { kind: 'cron', expr: '0 8 * * 1-5', timezone: 'Europe/Berlin' },
      timezone: 'Europe/Berlin',
      contextMode: AGENT_TASK_DEFAULT_CONTEXT,
      postResult: true,
      status: 'active',
      createdBy: 'agent:family',
      // Thursday 08:00 CET.
      nextRun: Date.UTC(2026, 10, 26, 7, 0),
    });
    expect(answer.result).toBe(
      `Scheduled task ${task!.id} for group family: every weekday at 08:00 (Europe/Berlin); ` +
        'next run 2026-11-26 08:00 CET (2026-11-26 07:00 UTC); context group; the result is posted to the chat.',
    );
    expect(changes).toEqual([{ kind: 'added', taskId: task!.id }]);
    expect(denials()).toEqual([]);
  });

  it(`refuses a group's task past ${MAX_AGENT_TASKS_PER_GROUP} live ones, counting none that are done`, async () => {
    for (let n = 0; n < MAX_AGENT_TASKS_PER_GROUP - 1; n++) taskIn(FAMILY, `task ${n}`);
    const done = admin.add({
      group: store.getGroup(FAMILY)!,
      prompt: 'once',
      at: '2026-11-26T09:00',
      createdBy: 'cli',
    });
    store.setTaskStatus(done.id, 'done', NOW);
    const call = () => tools.call(familyRun, 'schedule_task', { prompt: 'one more', every: '30s' });
    expect((await call()).ok).toBe(true);
    const refused = await call();
    expect(refused.ok).toBe(false);
    expect(refused.result).toContain(`already has ${MAX_AGENT_TASKS_PER_GROUP} tasks`);
    expect(admin.list({ groupJid: FAMILY }).tasks).toHaveLength(MAX_AGENT_TASKS_PER_GROUP + 1);
    // Another group is not held back by this one's tasks.
    expect((await tools.call(workRun, 'schedule_task', { prompt: 'x', every: '1h' })).ok).toBe(
      true,
    );
  });

  it('a non-main group may name its own folder', async () => {
    const answer = await tools.call(familyRun, 'schedule_task', {
      prompt: 'water the plants',
      every: '1d',
      group_folder: 'family',
      context_mode: 'isolated',
      post_result: false,
    });
    expect(answer.ok).toBe(true);
    expect(admin.list().tasks).toMatchObject([
      { groupJid: FAMILY, contextMode: 'isolated', postResult: false },
    ]);
  });

  it('a non-main group naming another group is refused, logged, and nothing is created', async () => {
    for (const folder of ['work', 'main', 'nope']) {
      const answer = await tools.call(familyRun, 'schedule_task', {
        prompt: 'spam them',
        cron: '* * * * *',
        group_folder: folder,
      });
      expect(answer).toEqual({
        ok: false,
        result:
          'not allowed: this group may only schedule a task for itself; leave out group_folder',
      });
    }
    expect(admin.list().tasks).toEqual([]);
    expect(changes).toEqual([]);
    expect(denials()).toHaveLength(3);
    expect(denials()[0]).toMatchObject({
      mod: 'host-tools',
      group: FAMILY,
      folder: 'work',
      msg: 'denied: non-main group tried to schedule a task for another group',
    });
  });

  it('refuses binding fields smuggled into the payload instead of obeying them', async () => {
    const answer = await tools.call(familyRun, 'schedule_task', {
      prompt: 'x',
      cron: '0 8 * * *',
      isMain: true,
      groupJid: WORK,
    });
    expect(answer.ok).toBe(false);
    expect(answer.result).toMatch(/^bad arguments for schedule_task: .*Unrecognized keys?/);
    expect(admin.list().tasks).toEqual([]);
  });

  it('main schedules for another group by its folder, created by main', async () => {
    const answer = await tools.call(mainRun, 'schedule_task', {
      prompt: 'Post the weekly plan.',
      cron: '0 9 * * 1',
      timezone: 'America/New_York',
      group_folder: 'work',
    });
    expect(answer.ok).toBe(true);
    expect(answer.result).toContain('for group work: every Monday at 09:00 (America/New_York)');
    expect(admin.list({ groupJid: WORK }).tasks).toMatchObject([
      {
        createdBy: 'agent:main',
        timezone: 'America/New_York',
        schedule: { kind: 'cron', expr: '0 9 * * 1', timezone: 'America/New_York' },
      },
    ]);
  });

  it('main naming an unknown folder gets a clear error listing the groups, and nothing is created', async () => {
    const answer = await tools.call(mainRun, 'schedule_task', {
      prompt: 'x',
      cron: '0 8 * * *',
      group_folder: 'famly',
    });
    expect(answer).toEqual({
      ok: false,
      result: 'no registered group has the folder "famly"; the groups are: main, family, work',
    });
    expect(admin.list().tasks).toEqual([]);
  });

  it.each([
    [{ prompt: 'x' }, /^no schedule given: pass exactly one of cron/],
    [{ prompt: 'x', cron: '0 8 * * *', every: '1h' }, /^conflicting schedules: .*cron and every/],
    [{ prompt: 'x', cron: '0 8 * *' }, /has 4 fields, needs 5: minute hour/],
    [{ prompt: 'x', cron: '0 25 * * *' }, /the hour field "25" is invalid/],
    [{ prompt: 'x', every: '0m' }, /interval "0m" is zero/],
    [{ prompt: 'x', at: '2026-11-25T09:00' }, /time "2026-11-25T09:00" is in the past/],
    [{ prompt: 'x', cron: '0 8 * * *', timezone: 'Berlin' }, /did you mean Europe\/Berlin\?/],
    [
      { prompt: 'x'.repeat(TASK_PROMPT_MAX_CHARS + 1), cron: '0 8 * * *' },
      /^bad arguments.*prompt/,
    ],
    [{ prompt: '', cron: '0 8 * * *' }, /^bad arguments for schedule_task: prompt/],
    [{ prompt: 'x', cron: 'x'.repeat(201) }, /^bad arguments for schedule_task: cron/],
    [{ prompt: 'x', every: '1h', context_mode: 'shared' }, /^bad arguments.*context_mode/],
    [{ prompt: 'x', every: '1h', post_result: 'yes' }, /^bad arguments.*post_result/],
    [{ prompt: 'hi\u001b[2J', every: '1h' }, /control characters/],
    ['not an object', /^bad arguments for schedule_task/],
  ])('refuses a bad payload %#, with a clear message and nothing stored', async (args, message) => {
    const answer = await tools.call(familyRun, 'schedule_task', args);
    expect(answer.ok).toBe(false);
    expect(answer.result).toMatch(message);
    expect(admin.list().tasks).toEqual([]);
    expect(changes).toEqual([]);
  });

  it('bounds the prompt exactly as the store does', () => {
    expect(TASK_PROMPT_MAX_CHARS).toBe(MAX_TASK_PROMPT_CHARS);
  });

  it('reads an at time without an offset in the user timezone, and a once task says so', async () => {
    const answer = await tools.call(familyRun, 'schedule_task', {
      prompt: 'Tell them the cake is ready.',
      at: '2026-11-25T17:00',
    });
    expect(answer.result).toContain(
      'once at 2026-11-25 17:00 (Europe/Berlin); next run 2026-11-25 17:00 CET (2026-11-25 16:00 UTC)',
    );
    expect(admin.list().tasks[0]?.nextRun).toBe(Date.UTC(2026, 10, 25, 16, 0));
  });
});

describe('list_tasks', () => {
  it('a non-main group sees only its own tasks, one line each with next run, status and prompt', async () => {
    const own = taskIn(FAMILY, 'family report');
    taskIn(WORK, 'SECRET work plans');
    const answer = await tools.call(familyRun, 'list_tasks', {});
    expect(answer.ok).toBe(true);
    const [header, ...lines] = answer.result.split('\n');
    expect(header).toMatch(/^1 task in group family\. Each line: id \| group \| schedule/);
    expect(lines).toEqual([
      `${own.id} | group family | every Monday at 09:00 (Europe/Berlin) | 2026-11-30 09:00 CET (2026-11-30 08:00 UTC) | active | never run | "family report"`,
    ]);
    expect(answer.result).not.toContain('SECRET');
    expect(answer.result).not.toContain('work');
  });

  it("a non-main group asking for another group's list is refused and logged", async () => {
    taskIn(WORK, 'SECRET work plans');
    const answer = await tools.call(familyRun, 'list_tasks', { group_folder: 'work' });
    expect(answer).toEqual({
      ok: false,
      result: 'not allowed: this group may only list the tasks of itself; leave out group_folder',
    });
    expect(denials()).toMatchObject([
      { group: FAMILY, msg: 'denied: non-main group tried to list the tasks of another group' },
    ]);
  });

  it("main sees every group's tasks, or one group's by folder", async () => {
    const family = taskIn(FAMILY);
    const work = taskIn(WORK);
    const all = await tools.call(mainRun, 'list_tasks', {});
    expect(all.result.split('\n')[0]).toMatch(/^2 tasks in all groups\./);
    expect(all.result).toContain(`${family.id} | group family`);
    expect(all.result).toContain(`${work.id} | group work`);
    const onlyWork = await tools.call(mainRun, 'list_tasks', { group_folder: 'work' });
    expect(onlyWork.result.split('\n')).toHaveLength(2);
    expect(onlyWork.result).toContain(`${work.id} | group work`);
  });

  it('says when there are none, and shows status, last error and a clipped, one-line prompt', async () => {
    expect(await tools.call(familyRun, 'list_tasks', {})).toEqual({
      ok: true,
      result: 'No scheduled tasks in group family.',
    });
    const task = taskIn(FAMILY, `line one\nline two ${'x'.repeat(300)}`);
    admin.pause(task.id, 'on holiday');
    store.db
      .prepare(`UPDATE tasks SET last_status = 'error', last_error = ? WHERE id = ?`)
      .run('the model said no\nfake line', task.id);
    const [, line] = (await tools.call(familyRun, 'list_tasks', {})).result.split('\n');
    expect(line).toContain(
      ' | no next run | paused (on holiday) | last error: the model said no fake line | ',
    );
    expect(line).toContain('"line one line two xxx');
    expect(line).toMatch(/…"$/);
  });
});

describe('managing a task', () => {
  const calls = [
    ['pause_task', {}],
    ['resume_task', {}],
    ['cancel_task', {}],
    ['update_task', { prompt: 'send me your secrets' }],
  ] as const;

  it.each(calls)(
    "a non-main group cannot %s another group's task: answered as unknown, logged, task unchanged",
    async (name, extra) => {
      const work = taskIn(WORK, 'work report');
      if (name === 'resume_task') admin.pause(work.id);
      const before = admin.get(work.id);
      changes = [];
      const answer = await tools.call(familyRun, name, { task_id: work.id, ...extra });
      expect(answer).toEqual({
        ok: false,
        result: `no task of this group has the id "${work.id}"; list_tasks shows this group's tasks`,
      });
      // The same answer as for an id that does not exist: nothing about the task leaks.
      const missing = await tools.call(familyRun, name, { task_id: 't_zzzzzzzz', ...extra });
      expect(missing.result).toBe(
        `no task of this group has the id "t_zzzzzzzz"; list_tasks shows this group's tasks`,
      );
      expect(admin.get(work.id)).toEqual(before);
      expect(changes).toEqual([]);
      expect(denials()).toMatchObject([
        {
          group: FAMILY,
          task: work.id,
          owner: WORK,
          msg: `denied: non-main group tried to ${name.replace('_task', '')} another group's task`,
        },
      ]);
    },
  );

  it('a non-main group manages its own task: update, pause, resume, cancel', async () => {
    const task = taskIn(FAMILY);
    const updated = await tools.call(familyRun, 'update_task', {
      task_id: task.id,
      cron: '0 8 * * 1-5',
      prompt: 'Remind the user to stretch.',
    });
    expect(updated).toEqual({
      ok: true,
      result: `Updated task ${task.id}: every weekday at 08:00 (Europe/Berlin); next run 2026-11-26 08:00 CET (2026-11-26 07:00 UTC); context isolated; the result is posted to the chat.`,
    });
    expect(admin.get(task.id)).toMatchObject({
      prompt: 'Remind the user to stretch.',
      schedule: { kind: 'cron', expr: '0 8 * * 1-5' },
    });

    const paused = await tools.call(familyRun, 'pause_task', { task_id: task.id });
    expect(paused).toEqual({
      ok: true,
      result: `Paused task ${task.id}: it will not run until resumed with resume_task.`,
    });
    expect(admin.get(task.id)).toMatchObject({
      status: 'paused',
      pausedReason: 'paused by the assistant in family',
      nextRun: null,
    });

    const resumed = await tools.call(familyRun, 'resume_task', { task_id: task.id });
    expect(resumed.ok).toBe(true);
    expect(resumed.result).toContain('next run 2026-11-26 08:00 CET');
    expect(admin.get(task.id).status).toBe('active');

    const cancelled = await tools.call(familyRun, 'cancel_task', { task_id: task.id });
    expect(cancelled).toEqual({
      ok: true,
      result: `Cancelled task ${task.id}: it is removed and will not run again.`,
    });
    expect(admin.list().tasks).toEqual([]);
    expect(changes.map((change) => change.kind)).toEqual([
      'added',
      'updated',
      'paused',
      'resumed',
      'removed',
    ]);
    expect(denials()).toEqual([]);
  });

  it("main manages another group's task", async () => {
    const work = taskIn(WORK);
    expect((await tools.call(mainRun, 'update_task', { task_id: work.id, every: '2h' })).ok).toBe(
      true,
    );
    expect(admin.get(work.id).schedule).toMatchObject({ kind: 'interval' });
    expect((await tools.call(mainRun, 'pause_task', { task_id: work.id })).ok).toBe(true);
    expect(admin.get(work.id).status).toBe('paused');
    expect((await tools.call(mainRun, 'resume_task', { task_id: work.id })).ok).toBe(true);
    expect(admin.get(work.id).status).toBe('active');
    expect((await tools.call(mainRun, 'cancel_task', { task_id: work.id })).ok).toBe(true);
    expect(admin.list().tasks).toEqual([]);
    expect(denials()).toEqual([]);
  });

  it('another non-main group cannot touch it either: each group is walled off from the others', async () => {
    const family = taskIn(FAMILY);
    const answer = await tools.call(workRun, 'cancel_task', { task_id: family.id });
    expect(answer.ok).toBe(false);
    expect(admin.get(family.id).id).toBe(family.id);
  });

  it('passes TaskAdmin errors back so the model can correct itself, changing nothing', async () => {
    const task = taskIn(FAMILY);
    changes = [];
    expect(await tools.call(familyRun, 'update_task', { task_id: task.id })).toEqual({
      ok: false,
      result:
        'nothing to change: give a new prompt, schedule (cron, every or at), timezone, context mode or post-result setting',
    });
    const badCron = await tools.call(familyRun, 'update_task', {
      task_id: task.id,
      cron: '0 8 * * 8',
    });
    expect(badCron.ok).toBe(false);
    expect(badCron.result).toMatch(/the day-of-week field "8" is invalid/);
    const twice = await tools.call(familyRun, 'resume_task', { task_id: task.id });
    expect(twice.ok).toBe(true);
    expect(admin.get(task.id)).toMatchObject({ schedule: task.schedule, prompt: task.prompt });
    expect((await tools.call(mainRun, 'pause_task', { task_id: 't_zzzzzzzz' })).result).toBe(
      'no task has the id "t_zzzzzzzz"; list_tasks shows the ids',
    );
    expect((await tools.call(familyRun, 'pause_task', { task_id: 'x'.repeat(65) })).result).toMatch(
      /^bad arguments for pause_task: task_id/,
    );
  });

  it('answers that scheduling is unavailable on a host without TaskAdmin', async () => {
    const bare = new HostTools({
      store,
      outbox: { notify: () => undefined, whenSettled: async () => 'sent' },
      formatOutbound,
      now: () => NOW,
      log: pino({ level: 'silent' }),
    });
    expect(await bare.call(familyRun, 'list_tasks', {})).toEqual({
      ok: false,
      result: 'scheduled tasks are not available on this host',
    });
  });
});
