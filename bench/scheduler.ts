/**
 * Scheduler firing delay (issue 9): "a task fires within 100 ms of its due time when the queue
 * has room", measured for 100 one-off tasks all due at the same instant.
 *
 * What "fires" means here: the moment the scheduler hands the due run to the group queue
 * (`SchedulerDeps.enqueue`, which is `Core.enqueueTask` in the app). That is all the scheduler
 * controls; how long a run then waits depends on how busy the queue is, and the target is
 * stated for a queue with room. So each task is in a group of its own (100 groups: one run at a
 * time per group, so 10 tasks in one group would wait for each other by design), and the queue
 * allows 100 runs at once.
 *
 * Two figures per task, both against the due time:
 * - firing delay: when `enqueue` was called;
 * - start delay: when the real {@link GroupQueue} called `startRun` for it, i.e. when the core
 *   would build the run's turn and start its container. The run returned ends at once: the
 *   container's start is the latency bench's subject, not this one.
 *
 * Everything is real except the agent: the SQLite store in a temp dir, TaskAdmin creating the
 * tasks from ISO times as `clawbar tasks add --at` does, the scheduler's node-schedule timers
 * (real time, no fake timers), and the group queue. The logger is silent; serve also writes one
 * info line per due task to its log file, a synchronous append of a few hundred bytes.
 *
 * Times are taken on the monotonic clock and mapped to the wall clock (the due time is a wall
 * time) through one offset read just before the due time, so the figures have sub-millisecond
 * resolution rather than `Date.now()`'s whole milliseconds.
 *
 * Tasks: env BENCH_SCHEDULER_TASKS, default 100.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreEventBus } from '../main/core/events.js';
import { silentLogger } from '../main/core/logger.js';
import { GroupQueue, type GroupRun } from '../main/core/queue/group-queue.js';
import { Scheduler } from '../main/core/scheduler/scheduler.js';
import { TaskAdmin } from '../main/core/scheduler/task-admin.js';
import { openStore } from '../main/core/store/index.js';
import { quantile, type BenchRow } from './row.js';

/** The target: within 100 ms of the due time. */
const TARGET_MS = 100;
/**
 * The due time is the first whole second at least this far ahead when set-up begins: time to
 * create the groups and tasks and arm their timers before it comes.
 */
const LEAD_MS = 2_000;
/** Set-up must leave at least this much before the due time, or the run would not be fair. */
const MIN_SLACK_MS = 300;
/** How long after the due time every task must have started, or the bench fails. */
const WAIT_LIMIT_MS = 30_000;

/** The wall-clock time now, with the monotonic clock's resolution. */
type PreciseClock = () => number;

/**
 * Maps `performance.now()` onto the wall clock. The offset is read at the instant `Date.now()`
 * ticks to a new millisecond, so it is right to a few microseconds rather than to the nearest
 * millisecond. Spins for at most about a millisecond.
 */
function preciseWallClock(): PreciseClock {
  const start = Date.now();
  let now = start;
  let mono = performance.now();
  while (now === start) {
    mono = performance.now();
    now = Date.now();
  }
  const offset = now - mono;
  return () => performance.now() + offset;
}

function describe(values: number[]): string {
  const at = (q: number) => quantile(values, q).toFixed(1);
  return `median ${at(0.5)} ms, p99 ${at(0.99)} ms, min ${at(0)} ms, max ${at(1)} ms (n=${values.length})`;
}

function row(name: string, value: number): BenchRow {
  const rounded = Math.round(value * 10) / 10;
  return { name, value: rounded, unit: 'ms', target: TARGET_MS, met: rounded <= TARGET_MS };
}

/** A run that ends as soon as it starts: the queue only needs to see a slot taken and freed. */
function finishedRun(): GroupRun {
  return {
    idle: false,
    offerMessages: () => false,
    requestStop: () => undefined,
    kill: async () => undefined,
    finished: Promise.resolve({ ok: true }),
  };
}

/** Creates `tasks` one-off tasks due at the same instant; returns firing and start delays. */
export async function schedulerBench(
  opts: { tasks?: number; log?: (line: string) => void } = {},
): Promise<BenchRow[]> {
  const count = opts.tasks ?? Number(process.env.BENCH_SCHEDULER_TASKS ?? 100);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) {
    throw new Error(`BENCH_SCHEDULER_TASKS must be a whole number from 1 to 10000, got ${count}`);
  }
  const report = opts.log ?? (() => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-bench-sched-'));
  const store = openStore(path.join(dir, 'clawbar.db'));
  const log = silentLogger();
  const clock = preciseWallClock();

  /** Per task id: when the scheduler handed it to the queue, and when the queue started it. */
  const firedAt = new Map<string, number>();
  const startedAt = new Map<string, number>();
  let allStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => {
    allStarted = resolve;
  });

  const queue = new GroupQueue({
    maxConcurrency: count,
    startRun: (_groupJid, work) => {
      const at = clock();
      if (work.kind !== 'task') return null;
      startedAt.set(work.taskId, at);
      if (startedAt.size === count) allStarted();
      return finishedRun();
    },
    isPaused: (jid) => store.getGroup(jid)?.paused ?? true,
    onGiveUp: (jid, error) => log.error({ group: jid, err: error }, 'bench run given up'),
    onNotReady: (error) => log.error({ err: error }, 'bench queue not ready'),
    log,
  });
  const scheduler = new Scheduler({
    store,
    events: new CoreEventBus(),
    enqueue: (groupJid, taskId) => {
      firedAt.set(taskId, clock());
      // As Core.enqueueTask does: the group is looked up, then the queue is told.
      if (!store.getGroup(groupJid)) throw new Error(`bench: no group ${groupJid}`);
      queue.enqueueTask(groupJid, taskId);
    },
    notify: () => undefined,
    timezone: 'UTC',
    log,
  });
  const admin = new TaskAdmin({
    store,
    timezone: 'UTC',
    onChange: (change) => scheduler.taskChanged(change),
  });
  let waitTimer: ReturnType<typeof setTimeout> | undefined;

  try {
    scheduler.start();
    const dueAt = Math.ceil((Date.now() + LEAD_MS) / 1000) * 1000;
    const at = new Date(dueAt).toISOString();
    for (let i = 0; i < count; i++) {
      const name = `bench-${String(i).padStart(4, '0')}`;
      const group = store.addGroup(
        {
          jid: `local:${name}`,
          folder: name,
          name,
          trigger: '@Andy',
          requiresTrigger: true,
          isMain: false,
          channel: 'local',
        },
        Date.now(),
      );
      admin.add({ group, prompt: `bench task ${i}`, at, createdBy: 'cli' });
    }
    const slack = dueAt - Date.now();
    if (slack < MIN_SLACK_MS) {
      throw new Error(
        `setting up ${count} tasks left only ${slack} ms before their due time (need ${MIN_SLACK_MS}); ` +
          'the machine is too busy for a fair measurement, or BENCH_SCHEDULER_TASKS is too large',
      );
    }
    report(`${count} one-off tasks in ${count} groups, all due at ${at} (armed ${slack} ms ahead)`);

    const timeout = new Promise<never>((_, reject) => {
      waitTimer = setTimeout(
        () =>
          reject(
            new Error(
              `only ${firedAt.size} of ${count} tasks fired and ${startedAt.size} started within ` +
                `${WAIT_LIMIT_MS} ms of their due time`,
            ),
          ),
        slack + WAIT_LIMIT_MS,
      );
    });
    await Promise.race([started, timeout]);

    const firing = [...firedAt.values()].map((t) => t - dueAt);
    const start = [...startedAt.values()].map((t) => t - dueAt);
    report(`firing delay (scheduler → queue): ${describe(firing)}`);
    // The hand-overs' spacing tells a slow scheduler from one that fires due tasks one timer
    // tick apart (node-schedule runs at most one job per tick, and a tick is at least 1 ms).
    if (count > 1) {
      const spread = quantile(firing, 1) - quantile(firing, 0);
      report(
        `hand-overs spread over ${spread.toFixed(1)} ms, one per ${(spread / (count - 1)).toFixed(2)} ms`,
      );
    }
    report(`start delay (due → queue starts the run): ${describe(start)}`);
    const label = `(${count} tasks due in the same second)`;
    return [
      row(`scheduler: firing delay median ${label}`, quantile(firing, 0.5)),
      row(`scheduler: firing delay p99 ${label}`, quantile(firing, 0.99)),
      row(`scheduler: task start delay median ${label}`, quantile(start, 0.5)),
      row(`scheduler: task start delay p99 ${label}`, quantile(start, 0.99)),
    ];
  } finally {
    clearTimeout(waitTimer);
    scheduler.stop();
    await queue.shutdown(1_000);
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
