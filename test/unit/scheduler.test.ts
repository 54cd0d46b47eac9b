/**
 * The scheduler against a real SQLite store, with fake timers and an injected monotonic clock.
 * The group queue is played by the test: it takes each run the scheduler hands over, and starts,
 * commits or fails it as a test needs, the way the core does (core.ts `startRun`, `onRunEnded`).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RunTimeoutError } from '../../main/core/agent/agent-run.js';
import { RunLimitError } from '../../main/core/agent/run-limits.js';
import type { RunEnding, TurnSource } from '../../main/core/agent/turns.js';
import { CoreInputError } from '../../main/core/errors.js';
import { CoreEventBus, type TaskFinished } from '../../main/core/events.js';
import { silentLogger } from '../../main/core/logger.js';
import {
  ALERT_AFTER_FAILURES,
  CLOCK_CHECK_MS,
  PAUSE_AFTER_FAILURES,
  Scheduler,
  type TaskWork,
} from '../../main/core/scheduler/scheduler.js';
import { TaskAdmin } from '../../main/core/scheduler/task-admin.js';
import { INTERRUPTED_RUN_ERROR, type Task } from '../../main/core/store/index.js';
import { tempStore, type TempStore } from '../helpers/store.js';

/** 2026-11-25 06:00 UTC, a Wednesday: 07:00 in Berlin (CET). */
const NOW = Date.UTC(2026, 10, 25, 6, 0, 0);
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const ZONE = 'Europe/Berlin';

interface Queued {
  groupJid: string;
  taskId: string;
  work: TaskWork;
  /** When the scheduler handed it over (fake time). */
  at: number;
}

const USAGE = { inputTokens: 120, outputTokens: 30, cacheReadTokens: 1_000, cacheWriteTokens: 50 };

describe('Scheduler', () => {
  let db: TempStore;
  let events: TaskFinished[];
  let queued: Queued[];
  let notices: Array<{ groupJid: string; text: string }>;
  /** How far the wall clock was moved apart from the monotonic one. */
  let wallShift: number;
  let schedulers: Scheduler[];
  let admin: TaskAdmin;
  let scheduler: Scheduler;

  /** A scheduler over the test's store, as a (re)started Clawbar makes one. */
  function makeScheduler(graceMs = HOUR): Scheduler {
    const bus = new CoreEventBus();
    bus.on('task:finished', (event) => events.push(event));
    const made = new Scheduler({
      store: db.store,
      events: bus,
      enqueue: (groupJid, taskId, work) => queued.push({ groupJid, taskId, work, at: Date.now() }),
      notify: (groupJid, text) => notices.push({ groupJid, text }),
      timezone: ZONE,
      graceMs,
      log: silentLogger(),
      monotonic: () => Date.now() - wallShift,
    });
    schedulers.push(made);
    return made;
  }

  function restart(graceMs = HOUR): Scheduler {
    scheduler.stop();
    scheduler = makeScheduler(graceMs);
    admin = new TaskAdmin({
      store: db.store,
      timezone: ZONE,
      onChange: (change) => scheduler.taskChanged(change),
    });
    scheduler.start();
    return scheduler;
  }

  beforeEach(() => {
    vi.useFakeTimers({
      now: NOW,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    });
    db = tempStore('clawbar-scheduler-');
    events = [];
    queued = [];
    notices = [];
    wallShift = 0;
    schedulers = [];
    scheduler = makeScheduler();
    admin = new TaskAdmin({
      store: db.store,
      timezone: ZONE,
      onChange: (change) => scheduler.taskChanged(change),
    });
    scheduler.start();
  });

  afterEach(() => {
    for (const made of schedulers) made.stop();
    db.close();
    vi.useRealTimers();
  });

  const add = (schedule: { cron?: string; every?: string; at?: string }, extra = {}): Task =>
    admin.add({ group: db.family, prompt: 'Stretch!', createdBy: 'cli', ...schedule, ...extra });

  /** The queue starts the run: the source is built and its turn begun (the claim). */
  function start(entry: Queued): { source: TurnSource; began: boolean } {
    const group = db.store.getGroup(entry.groupJid);
    if (!group) throw new Error('group gone');
    const source = entry.work.source(group);
    if (!source) throw new Error('the scheduler gave no source');
    const plan = source.next();
    return { source: withPlan(source, plan), began: plan !== null };
  }

  const plans = new WeakMap<TurnSource, ReturnType<TurnSource['next']>>();
  function withPlan(source: TurnSource, plan: ReturnType<TurnSource['next']>): TurnSource {
    plans.set(source, plan);
    return source;
  }

  function ending(outcome: RunEnding['outcome'], killedBy: RunEnding['killedBy'] = null) {
    return { outcome, killedBy, now: Date.now() };
  }

  /** The run's turn commits its replies, and the run ends. */
  async function succeed(source: TurnSource, replies = ['Time to stretch.']): Promise<void> {
    const plan = plans.get(source);
    if (!plan) throw new Error('no turn began');
    plan.commit({ turnId: 'turn-1', replies, messages: null, usage: USAGE, now: Date.now() });
    source.runEnded?.(ending({ ok: true }));
    await flush();
  }

  function fail(source: TurnSource, error: Error = new Error('container exited with 137')): void {
    source.runEnded?.(ending({ ok: false, error, failure: 'retry' }));
  }

  /** Lets the scheduler's microtasks (the bookkeeping after a commit) run. */
  const flush = () => Promise.resolve().then(() => undefined);

  const runsOf = (task: Task) => db.store.listRuns(task.id, 100);
  const taskNow = (task: Task) => db.store.getTask(task.id) as Task;

  describe('firing', () => {
    it('fires a cron task from its timer at its due time in the task timezone, not before', async () => {
      const task = add({ cron: '0 8 * * *' });
      // 08:00 in Berlin is 07:00 UTC, an hour from now.
      expect(scheduler.armedFor(task.id)).toBe(NOW + HOUR);
      await vi.advanceTimersByTimeAsync(HOUR - 1);
      expect(queued).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(1);
      expect(queued).toHaveLength(1);
      expect(queued[0]).toMatchObject({ groupJid: db.family.jid, taskId: task.id, at: NOW + HOUR });
      // The next timer is already set, for tomorrow at 08:00.
      expect(scheduler.armedFor(task.id)).toBe(NOW + 25 * HOUR);
    });

    it('follows the wall clock across a DST change: 08:00 Berlin is 06:00 UTC in summer, 07:00 in winter', async () => {
      vi.setSystemTime(Date.UTC(2026, 9, 23, 12, 0)); // Friday 23 Oct 2026, CEST
      const task = add({ cron: '0 8 * * *' });
      await vi.advanceTimersByTimeAsync(Date.UTC(2026, 9, 24, 6, 0) - Date.now());
      expect(queued.map((q) => q.at)).toEqual([Date.UTC(2026, 9, 24, 6, 0)]); // Saturday, CEST
      await succeed(start(queued[0] as Queued).source);
      await vi.advanceTimersByTimeAsync(Date.UTC(2026, 9, 25, 7, 0) - Date.now());
      expect(queued.map((q) => q.at)).toEqual([
        Date.UTC(2026, 9, 24, 6, 0),
        Date.UTC(2026, 9, 25, 7, 0), // Sunday: DST ended at 03:00, CET
      ]);
      expect(taskNow(task).nextRun).toBe(Date.UTC(2026, 9, 25, 7, 0));
    });

    it('keeps an interval anchored to its schedule, however long each run takes', async () => {
      vi.setSystemTime(NOW + 7 * SECOND + 123);
      const task = add({ every: '15m' });
      const anchor = NOW + 7 * SECOND + 123;
      for (let k = 1; k <= 4; k++) {
        await vi.advanceTimersByTimeAsync(anchor + k * 15 * MINUTE - Date.now());
        const entry = queued.at(-1) as Queued;
        expect(entry.at).toBe(anchor + k * 15 * MINUTE);
        const { source } = start(entry);
        // The run takes 4 minutes and 17 seconds; the next due time does not move.
        await vi.advanceTimersByTimeAsync(4 * MINUTE + 17 * SECOND);
        await succeed(source);
      }
      expect(
        runsOf(task)
          .map((r) => r.dueAt - anchor)
          .reverse(),
      ).toEqual([1, 2, 3, 4].map((k) => k * 15 * MINUTE));
      expect(taskNow(task).nextRun).toBe(anchor + 5 * 15 * MINUTE);
    });

    it('fires every task due at the same instant in the same tick, in due order', async () => {
      const at = '2026-11-25T07:30:00';
      const tasks = Array.from({ length: 100 }, () => add({ at }));
      await vi.advanceTimersByTimeAsync(30 * MINUTE);
      expect(queued).toHaveLength(100);
      // Not one timer tick (1 ms) apart each, as node-schedule alone would fire them.
      expect(new Set(queued.map((q) => q.at))).toEqual(new Set([NOW + 30 * MINUTE]));
      expect(new Set(queued.map((q) => q.taskId))).toEqual(new Set(tasks.map((t) => t.id)));
    });

    it('fires a one-off once and then marks it done', async () => {
      const task = add({ at: '2026-11-25T07:30:00' }); // Berlin time: 06:30 UTC
      await vi.advanceTimersByTimeAsync(30 * MINUTE);
      expect(queued).toHaveLength(1);
      await succeed(start(queued[0] as Queued).source);
      expect(taskNow(task)).toMatchObject({ status: 'done', nextRun: null, lastStatus: 'success' });
      expect(scheduler.armedFor(task.id)).toBeNull();
      await vi.advanceTimersByTimeAsync(48 * HOUR);
      expect(queued).toHaveLength(1);
    });

    it('disarms a task that is paused or removed, and re-arms one that is resumed', async () => {
      const task = add({ every: '1h' });
      admin.pause(task.id);
      expect(scheduler.armedFor(task.id)).toBeNull();
      await vi.advanceTimersByTimeAsync(2 * HOUR);
      expect(queued).toHaveLength(0);
      admin.resume(task.id);
      expect(scheduler.armedFor(task.id)).toBe(taskNow(task).nextRun);
      admin.remove(task.id);
      expect(scheduler.armedFor(task.id)).toBeNull();
      await vi.advanceTimersByTimeAsync(3 * HOUR);
      expect(queued).toHaveLength(0);
    });
  });

  describe('run logs', () => {
    it('records a successful run: start, duration, result, tokens; posts the result and emits task:finished', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      await vi.advanceTimersByTimeAsync(2 * SECOND); // The queue took 2 s to free a slot.
      const { source } = start(queued[0] as Queued);
      await vi.advanceTimersByTimeAsync(40 * SECOND);
      await succeed(source, ['Time to stretch.', 'And drink water.']);
      const [run] = runsOf(task);
      expect(run).toMatchObject({
        dueAt: NOW + HOUR,
        startedAt: NOW + HOUR + 2 * SECOND,
        durationMs: 40 * SECOND,
        status: 'success',
        resultSummary: 'Time to stretch.\n\nAnd drink water.',
        error: null,
        inputTokens: 1_170,
        outputTokens: 30,
      });
      expect(taskNow(task)).toMatchObject({
        lastStatus: 'success',
        lastResult: 'Time to stretch.\n\nAnd drink water.',
        consecutiveFailures: 0,
      });
      expect(db.store.undeliveredOutbox(db.family.jid).map((i) => i.text)).toEqual([
        'Time to stretch.',
        'And drink water.',
      ]);
      expect(events).toEqual([
        {
          taskId: task.id,
          groupJid: db.family.jid,
          status: 'success',
          dueAt: NOW + HOUR,
          summary: 'Time to stretch. And drink water.',
          durationMs: 40 * SECOND,
          consecutiveFailures: 0,
          alert: null,
        },
      ]);
    });

    it('keeps the result out of the chat when the task says so, but still in its run log', async () => {
      const task = add({ every: '1h' }, { postResult: false });
      await vi.advanceTimersByTimeAsync(HOUR);
      await succeed(start(queued[0] as Queued).source, ['Quiet result.']);
      expect(db.store.undeliveredOutbox(db.family.jid)).toEqual([]);
      expect(runsOf(task)[0]).toMatchObject({ status: 'success', resultSummary: 'Quiet result.' });
    });

    it('gives the agent the task prompt with its id and due time', async () => {
      add({ cron: '0 8 * * *' });
      await vi.advanceTimersByTimeAsync(HOUR);
      const group = db.store.getGroup(db.family.jid);
      const source = (queued[0] as Queued).work.source(group as NonNullable<typeof group>);
      const plan = source?.next();
      expect(plan?.prompt).toMatch(
        /^\[Scheduled task t_[a-z0-9]{8}, due 2026-11-25 08:00 CET\]\nStretch!$/,
      );
    });

    it('records a timeout as a timeout and any other failure as an error, with the error', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      fail(start(queued[0] as Queued).source, new RunTimeoutError('no output for 15 minutes'));
      await vi.advanceTimersByTimeAsync(HOUR);
      fail(start(queued[1] as Queued).source);
      expect(runsOf(task).map((r) => [r.status, r.error])).toEqual([
        ['error', 'container exited with 137'],
        ['timeout', 'no output for 15 minutes'],
      ]);
      expect(events.map((e) => [e.status, e.consecutiveFailures])).toEqual([
        ['timeout', 1],
        ['error', 2],
      ]);
    });

    it('records a turn stopped at a time limit as a timeout, with the reason the chat was given', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      const { source } = start(queued[0] as Queued);
      const reason = 'the agent made no progress for 15 min';
      plans.get(source)?.skip('turn-1', reason, Date.now());
      source.runEnded?.(
        ending({ ok: false, error: new RunLimitError('silence', reason), failure: 'final' }),
      );
      expect(runsOf(task)).toMatchObject([{ status: 'timeout', error: reason }]);
      expect(taskNow(task).lastStatus).toBe('timeout');
    });

    it('records a turn the agent gave up on as an error with its reason', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      const { source } = start(queued[0] as Queued);
      plans.get(source)?.skip('turn-1', 'the agent could not finish (tool loop)', Date.now());
      source.runEnded?.(ending({ ok: true }));
      expect(runsOf(task)).toMatchObject([
        { status: 'error', error: 'the agent could not finish (tool loop)' },
      ]);
      // The chat was told at once, by the turn's own notice.
      expect(db.store.undeliveredOutbox(db.family.jid).map((i) => i.text)).toEqual([
        'A scheduled task could not run: the agent could not finish (tool loop)',
      ]);
    });

    it('does not run a task again after it failed mid-run, even when the queue retries the work', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      const entry = queued[0] as Queued;
      fail(start(entry).source);
      // The queue retries the same work after its backoff: there is nothing left to run.
      const group = db.store.getGroup(db.family.jid) as NonNullable<
        ReturnType<typeof db.store.getGroup>
      >;
      expect(entry.work.source(group)).toBeNull();
      expect(runsOf(task)).toHaveLength(1);
    });

    it('retries a run that could not start, and logs it as failed when the queue gives up', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      const entry = queued[0] as Queued;
      const group = db.store.getGroup(db.family.jid) as NonNullable<
        ReturnType<typeof db.store.getGroup>
      >;
      // The container never came up: no turn began, nothing was claimed, the queue will retry.
      const first = entry.work.source(group) as TurnSource;
      first.runEnded?.(ending({ ok: false, error: new Error('engine hiccup'), failure: 'retry' }));
      expect(runsOf(task)).toEqual([]);
      expect(taskNow(task).nextRun).toBe(NOW + HOUR); // Still owed: a crash now would run it at start.
      expect(scheduler.isPending(task.id)).toBe(true);
      entry.work.gaveUp(new Error('could not start the agent container: engine hiccup'));
      expect(runsOf(task)[0]).toMatchObject({
        dueAt: NOW + HOUR,
        status: 'error',
        error: 'the run could not start: could not start the agent container: engine hiccup',
      });
      expect(scheduler.isPending(task.id)).toBe(false);
    });
  });

  describe('exactly once', () => {
    it('never fires a run again after a restart in the middle of it', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      start(queued[0] as Queued); // Claimed: the turn began in its container.
      await vi.advanceTimersByTimeAsync(5 * MINUTE);
      // Clawbar dies here: no end is recorded. It starts again a minute later.
      await vi.advanceTimersByTimeAsync(MINUTE);
      restart();
      await flush();
      expect(queued).toHaveLength(1);
      expect(runsOf(task)).toMatchObject([
        { dueAt: NOW + HOUR, status: 'error', error: INTERRUPTED_RUN_ERROR },
      ]);
      expect(taskNow(task)).toMatchObject({ nextRun: NOW + 2 * HOUR, consecutiveFailures: 1 });
      expect(events.map((e) => e.status)).toEqual(['error']);
      // And its next due time fires as usual.
      await vi.advanceTimersByTimeAsync(NOW + 2 * HOUR - Date.now());
      expect(queued.map((q) => q.at)).toEqual([NOW + HOUR, NOW + 2 * HOUR]);
    });

    it('fires once at start a run that a crash caught before it began, and only once', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      expect(queued).toHaveLength(1); // Queued behind other groups, never started. Crash.
      await vi.advanceTimersByTimeAsync(10 * MINUTE);
      restart();
      expect(queued).toHaveLength(2);
      const again = queued[1] as Queued;
      expect(again.taskId).toBe(task.id);
      const { source, began } = start(again);
      expect(began).toBe(true);
      await succeed(source);
      expect(runsOf(task)).toMatchObject([{ dueAt: NOW + HOUR, status: 'success' }]);
      // A second restart finds nothing owed.
      restart();
      expect(queued).toHaveLength(2);
    });

    it('refuses to claim a due time twice, whoever asks', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      const entry = queued[0] as Queued;
      start(entry);
      restart(); // Same due time owed? No: it was claimed.
      expect(queued).toHaveLength(1);
      expect(runsOf(task)).toHaveLength(1);
    });
  });

  describe('missed due times', () => {
    it('runs the latest missed due time once at start when it is within the grace window', async () => {
      const task = add({ cron: '0 8 * * *' });
      scheduler.stop(); // Clawbar closed at 07:00, before the 08:00 run.
      await vi.advanceTimersByTimeAsync(HOUR + 40 * MINUTE);
      restart(); // 08:40: 40 minutes late, within the hour.
      expect(queued.map((q) => q.taskId)).toEqual([task.id]);
      const { source } = start(queued[0] as Queued);
      await succeed(source);
      expect(runsOf(task)).toMatchObject([{ dueAt: NOW + HOUR, status: 'success' }]);
      expect(taskNow(task).nextRun).toBe(NOW + 25 * HOUR);
    });

    it('logs a due time past the grace window as missed and waits for the next one', async () => {
      const task = add({ cron: '0 8 * * *' });
      scheduler.stop();
      await vi.advanceTimersByTimeAsync(2 * HOUR + 30 * MINUTE);
      restart(); // 09:30: 90 minutes late.
      expect(queued).toHaveLength(0);
      expect(runsOf(task)).toMatchObject([
        { dueAt: NOW + HOUR, status: 'missed', startedAt: null },
      ]);
      expect(runsOf(task)[0]?.error).toContain('more than 1h ago');
      expect(taskNow(task)).toMatchObject({ nextRun: NOW + 25 * HOUR, lastStatus: 'missed' });
      expect(scheduler.armedFor(task.id)).toBe(NOW + 25 * HOUR);
      expect(events).toMatchObject([{ taskId: task.id, status: 'missed', dueAt: NOW + HOUR }]);
    });

    it('honours the grace window setting', async () => {
      const task = add({ cron: '0 8 * * *' });
      scheduler.stop();
      await vi.advanceTimersByTimeAsync(HOUR + 10 * MINUTE);
      restart(5 * MINUTE); // 10 minutes late, with a 5-minute window.
      expect(queued).toHaveLength(0);
      expect(runsOf(task)[0]).toMatchObject({ status: 'missed' });
    });

    it('runs an interval once after a long sleep and logs every other due time as missed', async () => {
      const task = add({ every: '15m' });
      scheduler.stop();
      await vi.advanceTimersByTimeAsync(3 * HOUR + 5 * MINUTE);
      restart();
      // Twelve due times passed; the latest (5 minutes ago) runs, eleven are missed.
      expect(queued).toHaveLength(1);
      const { source } = start(queued[0] as Queued);
      await succeed(source);
      const runs = runsOf(task);
      expect(runs.filter((r) => r.status === 'missed')).toHaveLength(11);
      expect(runs[0]).toMatchObject({ dueAt: NOW + 3 * HOUR, status: 'success' });
      expect(taskNow(task).nextRun).toBe(NOW + 3 * HOUR + 15 * MINUTE);
    });

    it('marks a one-off missed past the window as done', async () => {
      const task = add({ at: '2026-11-25T07:30:00' });
      scheduler.stop();
      await vi.advanceTimersByTimeAsync(3 * HOUR);
      restart();
      expect(queued).toHaveLength(0);
      expect(taskNow(task)).toMatchObject({ status: 'done', lastStatus: 'missed' });
    });

    it('re-arms after the wall clock jumps ahead (a wake from sleep), running what is due', async () => {
      const task = add({ cron: '0 8 * * *' });
      // The machine sleeps: the wall clock moves 90 minutes on, the monotonic clock does not,
      // so the timer set for 08:00 would fire 90 minutes late.
      wallShift += 90 * MINUTE;
      vi.setSystemTime(Date.now() + 90 * MINUTE);
      expect(queued).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(CLOCK_CHECK_MS);
      expect(queued).toHaveLength(1); // 08:30: within the grace window, so it runs now.
      expect((queued[0] as Queued).at - (NOW + 90 * MINUTE)).toBeLessThanOrEqual(CLOCK_CHECK_MS);
      expect(taskNow(task).nextRun).toBe(NOW + HOUR);
      await succeed(start(queued[0] as Queued).source);
      expect(taskNow(task).nextRun).toBe(NOW + 25 * HOUR);
    });

    it('re-arms after the clock is set back, without running a due time twice', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      await succeed(start(queued[0] as Queued).source);
      // Someone sets the clock back 30 minutes: the 07:00 run is not repeated.
      wallShift -= 30 * MINUTE;
      vi.setSystemTime(Date.now() - 30 * MINUTE);
      await vi.advanceTimersByTimeAsync(CLOCK_CHECK_MS);
      expect(queued).toHaveLength(1);
      expect(scheduler.armedFor(task.id)).toBe(NOW + 2 * HOUR);
      await vi.advanceTimersByTimeAsync(NOW + 2 * HOUR - Date.now());
      expect(queued.map((q) => q.at)).toEqual([NOW + HOUR, NOW + 2 * HOUR]);
    });
  });

  describe('skipping', () => {
    it("logs a paused group's due time as skipped, and runs again once the group is resumed", async () => {
      const task = add({ every: '1h' });
      db.store.setPaused(db.family.jid, true);
      await vi.advanceTimersByTimeAsync(HOUR);
      expect(queued).toHaveLength(0);
      expect(runsOf(task)).toMatchObject([
        { dueAt: NOW + HOUR, status: 'skipped', error: 'the group is paused' },
      ]);
      expect(taskNow(task)).toMatchObject({ nextRun: NOW + 2 * HOUR, lastStatus: 'skipped' });
      expect(events).toMatchObject([{ status: 'skipped', summary: 'the group is paused' }]);
      db.store.setPaused(db.family.jid, false);
      await vi.advanceTimersByTimeAsync(HOUR);
      expect(queued.map((q) => q.at)).toEqual([NOW + 2 * HOUR]);
    });

    it('skips a run whose group was paused while it waited in the queue', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      db.store.setPaused(db.family.jid, true);
      const group = db.store.getGroup(db.family.jid) as NonNullable<
        ReturnType<typeof db.store.getGroup>
      >;
      expect((queued[0] as Queued).work.source(group)).toBeNull();
      expect(runsOf(task)).toMatchObject([{ status: 'skipped', error: 'the group is paused' }]);
      expect(taskNow(task).nextRun).toBe(NOW + 2 * HOUR);
    });

    it('never runs a task twice at the same time: a due time during a run is skipped', async () => {
      const task = add({ every: '30m' });
      await vi.advanceTimersByTimeAsync(30 * MINUTE);
      const { source } = start(queued[0] as Queued);
      await vi.advanceTimersByTimeAsync(30 * MINUTE); // Still running at the next due time.
      expect(queued).toHaveLength(1);
      await succeed(source);
      expect(runsOf(task).map((r) => [r.dueAt - NOW, r.status])).toEqual([
        [60 * MINUTE, 'skipped'],
        [30 * MINUTE, 'success'],
      ]);
      expect(runsOf(task)[0]?.error).toMatch(
        /^the run due at 2026-11-25 07:30 CET had not finished$/,
      );
      await vi.advanceTimersByTimeAsync(30 * MINUTE);
      expect(queued).toHaveLength(2);
    });
  });

  describe('failures', () => {
    it(`alerts the chat after ${ALERT_AFTER_FAILURES} failures in a row and pauses the task after ${PAUSE_AFTER_FAILURES}`, async () => {
      const task = add({ every: '1m' });
      for (let n = 1; n <= PAUSE_AFTER_FAILURES; n++) {
        await vi.advanceTimersByTimeAsync(MINUTE);
        fail(start(queued.at(-1) as Queued).source, new Error(`boom ${n}`));
        expect(notices).toHaveLength(
          n < ALERT_AFTER_FAILURES ? 0 : n < PAUSE_AFTER_FAILURES ? 1 : 2,
        );
      }
      expect(notices[0]?.text).toContain(`has failed ${ALERT_AFTER_FAILURES} times in a row`);
      expect(notices[0]?.text).toContain('Last error: boom 3');
      expect(notices[1]?.text).toContain(
        `failed ${PAUSE_AFTER_FAILURES} times in a row, so it is paused`,
      );
      expect(notices[1]?.text).toContain(`clawbar tasks resume ${task.id}`);
      expect(taskNow(task)).toMatchObject({
        status: 'paused',
        nextRun: null,
        lastError: 'boom 10',
        consecutiveFailures: PAUSE_AFTER_FAILURES,
      });
      expect(taskNow(task).pausedReason).toContain('last error: boom 10');
      expect(
        events.filter((e) => e.alert !== null).map((e) => [e.consecutiveFailures, e.alert]),
      ).toEqual([
        [ALERT_AFTER_FAILURES, 'failing'],
        [PAUSE_AFTER_FAILURES, 'paused'],
      ]);
      await vi.advanceTimersByTimeAsync(10 * MINUTE);
      expect(queued).toHaveLength(PAUSE_AFTER_FAILURES);
    });

    it('starts counting again after a success', async () => {
      const task = add({ every: '1m' });
      for (let n = 0; n < 2; n++) {
        await vi.advanceTimersByTimeAsync(MINUTE);
        fail(start(queued.at(-1) as Queued).source);
      }
      await vi.advanceTimersByTimeAsync(MINUTE);
      await succeed(start(queued.at(-1) as Queued).source);
      for (let n = 0; n < 2; n++) {
        await vi.advanceTimersByTimeAsync(MINUTE);
        fail(start(queued.at(-1) as Queued).source);
      }
      expect(notices).toEqual([]);
      expect(taskNow(task).consecutiveFailures).toBe(2);
    });
  });

  describe('run now', () => {
    it('runs a task on request without moving its next due time', async () => {
      const task = add({ cron: '0 8 * * *' });
      await vi.advanceTimersByTimeAsync(10 * MINUTE);
      const dueAt = scheduler.runNow(taskNow(task));
      expect(dueAt).toBe(NOW + 10 * MINUTE);
      const { source } = start(queued[0] as Queued);
      expect(plans.get(source)?.prompt).toContain('run on request at 2026-11-25 07:10 CET');
      await succeed(source);
      expect(taskNow(task).nextRun).toBe(NOW + HOUR);
      expect(runsOf(task)).toMatchObject([{ dueAt: NOW + 10 * MINUTE, status: 'success' }]);
      // Its scheduled run still comes.
      await vi.advanceTimersByTimeAsync(50 * MINUTE);
      expect(queued).toHaveLength(2);
    });

    it('refuses with the fix when the task or its group is paused, or a run is under way', () => {
      const task = add({ every: '1h' });
      scheduler.runNow(taskNow(task));
      expect(() => scheduler.runNow(taskNow(task))).toThrow(/already has a run queued or running/);
      db.store.setPaused(db.family.jid, true);
      expect(() => scheduler.runNow(taskNow(task))).toThrow(/clawbar groups resume family/);
      admin.pause(task.id);
      expect(() => scheduler.runNow(taskNow(task))).toThrow(CoreInputError);
      expect(() => scheduler.runNow(taskNow(task))).toThrow(/clawbar tasks resume/);
    });
  });

  describe('hostile and broken state', () => {
    it('pauses a task whose stored schedule is corrupt, and arms the others', async () => {
      const good = add({ every: '1h' });
      const bad = add({ every: '1h' });
      db.store.db.prepare(`UPDATE tasks SET spec = '{"kind":"interval"}' WHERE id = ?`).run(bad.id);
      restart();
      expect(scheduler.armedFor(good.id)).toBe(NOW + HOUR);
      const row = db.store.db
        .prepare(`SELECT status, paused_reason FROM tasks WHERE id = ?`)
        .get(bad.id) as {
        status: string;
        paused_reason: string;
      };
      expect(row.status).toBe('paused');
      expect(row.paused_reason).toContain('cannot be read');
    });

    it('does nothing for a task removed while its run waited in the queue', async () => {
      const task = add({ every: '1h' });
      await vi.advanceTimersByTimeAsync(HOUR);
      admin.remove(task.id);
      const group = db.store.getGroup(db.family.jid) as NonNullable<
        ReturnType<typeof db.store.getGroup>
      >;
      expect((queued[0] as Queued).work.source(group)).toBeNull();
      expect(events).toEqual([]);
    });
  });
});
