/**
 * The scheduler: fires each active task at its due times, once per due time, through its
 * group's queue, and records how every due time went.
 *
 * - **Timers, not a poll.** Each active task has one node-schedule job for its next due time.
 *   Its callback hands the run to the group's queue, so a task fires as soon as it is due when
 *   the queue has room.
 * - **Exactly once.** A run is claimed in the store (`claimRun`, unique per task and due time)
 *   when its turn begins, in the container that will run it. Until then the task's `next_run`
 *   stays at that due time, so a crash while the run waited in the queue fires it again at
 *   start; after the claim, a crash leaves a `running` row, which {@link Scheduler.start} marks
 *   as interrupted and never runs again.
 * - **Missed due times.** At start, after a wake, and after the clock jumps, due times that
 *   passed are decided by `missedRuns`: the latest runs once if it is within the grace window,
 *   the others are logged as missed.
 * - **One run at a time per task.** A due time that comes while the task's previous run is
 *   still queued or running is logged as skipped.
 * - **Never silent.** Every due time ends as a run-log row (success, error, timeout, skipped or
 *   missed) and a `task:finished` event. After {@link ALERT_AFTER_FAILURES} failures in a row
 *   the chat is told; after {@link PAUSE_AFTER_FAILURES} the task is paused, and the chat told why.
 *
 * A task run that fails after its turn began is not retried: its due time is logged as failed
 * and the next due time is its next chance. Running it again could repeat what it already did
 * (a message sent, a file written). A run that could not start at all (no container) is retried
 * by the queue, as messages are, since nothing of it happened yet.
 */
import schedule from 'node-schedule';
import type { CoreEventBus, TaskFinished, TaskFinishedStatus } from '../events.js';
import { CoreInputError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  CorruptTaskError,
  TaskNotFoundError,
  type Group,
  type Store,
  type Task,
  type TokenUsage,
} from '../store/index.js';
import type { RunEnding, TranscriptUpkeep, TurnResult, TurnSource } from '../agent/turns.js';
import { taskTurn } from '../agent/turns.js';
import { RunTimeoutError } from '../agent/agent-run.js';
import { RunLimitError } from '../agent/run-limits.js';
import { DEFAULT_GRACE_MS, formatDuration, formatInZone, missedRuns, nextRun } from './schedule.js';
import type { TaskChange } from './task-admin.js';
import { clip, oneLine } from '../text.js';

/** Failures in a row after which the chat is told that a task keeps failing. */
export const ALERT_AFTER_FAILURES = 3;
/** Failures in a row after which a task is paused, until someone resumes it. */
export const PAUSE_AFTER_FAILURES = 10;
/** How often the wall clock is compared with the monotonic one, to notice jumps and sleep. */
export const CLOCK_CHECK_MS = 10_000;
/** A difference between the two clocks past this is a jump (or a sleep): every task is re-armed. */
export const CLOCK_JUMP_MS = 2_000;
/** Characters of a run's result kept as its summary in the `task:finished` event. */
export const EVENT_SUMMARY_CHARS = 200;

/** One run of a task in the group queue, as the core hands it back when its slot is free. */
export interface TaskWork {
  /**
   * The run's turn source, built when the run starts; null when there is nothing to run (the
   * task was paused, removed, or already ran). Called again if the queue retries a run that
   * could not start.
   */
  source(group: Group): TurnSource | null;
  /** The queue gave up on the run: it never started (no container), after its retries. */
  gaveUp(error: Error): void;
  /** The run was dropped before it started (its group removed, or held over its disk budget). */
  dropped(reason: string): void;
}

export interface SchedulerDeps {
  store: Store;
  events: CoreEventBus;
  /** Hands a due run to the group's queue (`Core.enqueueTask`). */
  enqueue(groupJid: string, taskId: string, work: TaskWork): void;
  /** Queues a notice for the group's chat and wakes the outbox. */
  notify(groupJid: string, text: string): void;
  /** The user's timezone, for the times in a run's prompt. */
  timezone: string;
  /** How late a missed due time may still run. @default DEFAULT_GRACE_MS (1 h) */
  graceMs?: number;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
  /** A clock that never jumps and stops during sleep. @default performance.now */
  monotonic?: () => number;
  /** @default CLOCK_CHECK_MS */
  clockCheckMs?: number;
  /**
   * The keeper of a group's conversation (compaction.ts), for runs in context mode `group`:
   * they compact and archive it as chat runs do. Without it they trim it at commit.
   */
  upkeepFor?: (group: Group) => TranscriptUpkeep;
}

/** A due time handed to the queue and not yet ended. */
interface PendingRun {
  dueAt: number;
  /** The run's row, once its turn began and claimed it. */
  claimedRunId: number | null;
}

export class Scheduler {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly monotonic: () => number;
  private readonly graceMs: number;
  /** Each active task's timer, and the due time it is set for. */
  private readonly armed = new Map<string, { job: schedule.Job; dueAt: number }>();
  /** Each task's run in the queue or running: at most one per task. */
  private readonly pending = new Map<string, PendingRun>();
  private clockTimer: ReturnType<typeof setInterval> | null = null;
  private lastWall = 0;
  private lastMono = 0;
  private running = false;

  constructor(private readonly deps: SchedulerDeps) {
    this.log = deps.log.child({ mod: 'scheduler' });
    this.now = deps.now ?? Date.now;
    this.monotonic = deps.monotonic ?? (() => performance.now());
    this.graceMs = deps.graceMs ?? DEFAULT_GRACE_MS;
  }

  /**
   * Settles runs that a crash cut off (they are never run again), then arms every active task,
   * catching up on due times that passed while Clawbar was not running.
   */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.recoverInterrupted();
    this.armAll();
    this.lastWall = this.now();
    this.lastMono = this.monotonic();
    this.clockTimer = setInterval(
      () => this.checkClock(),
      this.deps.clockCheckMs ?? CLOCK_CHECK_MS,
    );
    this.clockTimer.unref?.();
    this.log.info({ tasks: this.armed.size }, 'scheduler started');
  }

  /** Cancels every timer. Runs already queued are the queue's to finish or drop. */
  stop(): void {
    this.running = false;
    if (this.clockTimer) clearInterval(this.clockTimer);
    this.clockTimer = null;
    for (const { job } of this.armed.values()) job.cancel();
    this.armed.clear();
  }

  /**
   * Re-arms every task from the store, catching up on what was missed: after the machine woke
   * from sleep (the app's power monitor calls this) or the clock was set.
   */
  rearm(reason: string): void {
    if (!this.running) return;
    this.log.info({ reason }, 're-arming scheduled tasks');
    this.armAll();
  }

  /** A task was added, changed, paused, resumed or removed (TaskAdmin's `onChange`). */
  taskChanged(change: TaskChange): void {
    if (!this.running) return;
    this.disarm(change.taskId);
    if (change.kind === 'removed') return;
    const task = this.readTask(change.taskId);
    if (task) this.arm(task);
  }

  /** A group was removed, and its tasks with it: their timers go too. */
  groupRemoved(): void {
    for (const taskId of [...this.armed.keys()]) {
      if (!this.readTask(taskId)) this.disarm(taskId);
    }
  }

  /** When the task's timer is set for, or null when none is: for status and tests. */
  armedFor(taskId: string): number | null {
    return this.armed.get(taskId)?.dueAt ?? null;
  }

  /** Whether the task has a run queued or running. */
  isPending(taskId: string): boolean {
    return this.pending.has(taskId);
  }

  /**
   * Runs a task now, outside its schedule (`clawbar tasks run`). Its next due time stays as it
   * was. Returns the due time the run stands for.
   * @throws CoreInputError when the task is not active, its group is paused, or a run of it is
   *   already queued or running.
   */
  runNow(task: Task): number {
    if (!this.running) throw new CoreInputError('the scheduler is not running');
    if (task.status !== 'active') {
      throw new CoreInputError(
        `task ${task.id} is ${task.status}; resume it first with \`clawbar tasks resume ${task.id}\``,
      );
    }
    const group = this.deps.store.getGroup(task.groupJid);
    if (!group) throw new CoreInputError(`task ${task.id}'s group is gone`);
    if (group.paused) {
      throw new CoreInputError(
        `task ${task.id}'s group ${group.name ?? group.folder} is paused; resume the group first with \`clawbar groups resume ${group.folder}\``,
      );
    }
    if (this.pending.has(task.id)) {
      throw new CoreInputError(
        `task ${task.id} already has a run queued or running; see \`clawbar tasks runs ${task.id}\``,
      );
    }
    const dueAt = this.now();
    this.dispatch(task, dueAt, { manual: true });
    return dueAt;
  }

  // --- arming ---------------------------------------------------------------------------------

  private armAll(): void {
    const tasks = this.deps.store.listTasks({
      onCorrupt: (err) => this.pauseCorrupt(err),
    });
    const live = new Set(tasks.map((t) => t.id));
    for (const taskId of [...this.armed.keys()]) if (!live.has(taskId)) this.disarm(taskId);
    for (const task of tasks) {
      this.disarm(task.id);
      try {
        this.arm(task);
      } catch (err) {
        // One task whose store write fails must not keep the others from being armed.
        this.log.error({ task: task.id, err }, 'could not arm a scheduled task');
      }
    }
  }

  private disarm(taskId: string): void {
    this.armed.get(taskId)?.job.cancel();
    this.armed.delete(taskId);
  }

  /** Sets the task's timer for its next due time, or decides now about one already past. */
  private arm(task: Task): void {
    if (task.status !== 'active') return;
    if (task.nextRun === null) {
      this.settleWithoutNext(task);
      return;
    }
    if (task.nextRun <= this.now()) {
      this.due(task, task.nextRun);
      return;
    }
    this.setTimer(task.id, task.nextRun);
  }

  private setTimer(taskId: string, dueAt: number): void {
    this.disarm(taskId);
    const job = schedule.scheduleJob(new Date(dueAt), () => this.fireDue());
    if (!job) {
      // The due time passed between the check and here.
      queueMicrotask(() => this.onTimer(taskId, dueAt));
      return;
    }
    this.armed.set(taskId, { job, dueAt });
  }

  /** An active task with no next due time: a one-off whose run is over, or a lost time. */
  private settleWithoutNext(task: Task): void {
    if (this.pending.has(task.id)) return;
    const now = this.now();
    if (task.schedule.kind === 'once') {
      this.deps.store.setTaskStatus(task.id, 'done', now);
      return;
    }
    const next = nextRun(task.schedule, now);
    this.deps.store.setNextRun(task.id, next, now);
    if (next !== null) this.setTimer(task.id, next);
  }

  /**
   * A timer fired: every task due by now fires, in due order, in this one tick. node-schedule
   * runs one job per timer tick (each next one on a fresh 1 ms timeout), so a hundred tasks due
   * in the same second would otherwise fire over a hundred ticks, the last over 100 ms late.
   */
  private fireDue(): void {
    const now = this.now();
    const due = [...this.armed.entries()]
      .filter(([, timer]) => timer.dueAt <= now)
      .sort(([, a], [, b]) => a.dueAt - b.dueAt);
    for (const [taskId, timer] of due) {
      timer.job.cancel();
      this.armed.delete(taskId);
      this.onTimer(taskId, timer.dueAt);
    }
  }

  private onTimer(taskId: string, dueAt: number): void {
    if (!this.running) return;
    try {
      const task = this.readTask(taskId);
      if (!task || task.status !== 'active') return;
      this.due(task, dueAt);
    } catch (err) {
      this.log.error({ task: taskId, err }, 'a scheduled task could not be fired');
    }
  }

  /**
   * Decides about the due times from `firstDue` to now: the latest runs when it is within the
   * grace window (on time, it is `firstDue` itself), the others are logged as missed. Then the
   * timer is set for the next one.
   */
  private due(task: Task, firstDue: number): void {
    const now = this.now();
    const decision = missedRuns(task.schedule, firstDue - 1, now, this.graceMs);
    if (decision.missedCount > 0) this.recordMissed(task, decision.missed, decision, now);
    if (decision.runNow && decision.runDue !== null) {
      this.dispatch(task, decision.runDue);
    } else if (decision.missedCount > 0) {
      this.advance(task, decision.next, now);
    }
    const fresh = this.readTask(task.id);
    if (fresh?.status === 'active' && decision.next !== null) this.setTimer(task.id, decision.next);
  }

  /** The task's stored next due time moves on; a one-off with none left is done. */
  private advance(task: Task, next: number | null, now: number): void {
    if (this.holdsNextRun(task.id)) return; // The queued run holds next_run at its own due time.
    if (next === null && task.schedule.kind === 'once') {
      this.deps.store.setTaskStatus(task.id, 'done', now);
    } else {
      this.deps.store.setNextRun(task.id, next, now);
    }
  }

  private recordMissed(
    task: Task,
    missed: readonly number[],
    decision: { missedCount: number; missedCountIsMinimum: boolean },
    now: number,
  ): void {
    const reason =
      `Clawbar was not running, or the machine was asleep, at this time, and it was more ` +
      `than ${formatDuration(this.graceMs)} ago when it could run`;
    for (const dueAt of missed) {
      const row = this.deps.store.recordSkippedOrMissed(task.id, dueAt, 'missed', reason, now);
      if (row) this.finished(task, 'missed', dueAt, reason, null, task.consecutiveFailures);
    }
    this.log.warn(
      {
        task: task.id,
        group: task.groupJid,
        missed: decision.missedCount,
        atLeast: decision.missedCountIsMinimum,
        first: missed[0] === undefined ? undefined : new Date(missed[0]).toISOString(),
      },
      'scheduled task missed due times while Clawbar was not running',
    );
  }

  // --- running --------------------------------------------------------------------------------

  /**
   * Hands the task's run for `dueAt` to its group's queue, or logs why it will not run: its
   * group is paused, or its previous run has not finished.
   */
  private dispatch(task: Task, dueAt: number, options: { manual?: boolean } = {}): void {
    const { store } = this.deps;
    const now = this.now();
    const group = store.getGroup(task.groupJid);
    if (!group) return; // Removed with its group; the cascade took the task.
    if (group.paused) {
      this.skip(task, dueAt, 'the group is paused');
      return;
    }
    const previous = this.pending.get(task.id);
    if (previous) {
      this.skip(
        task,
        dueAt,
        `the run due at ${formatInZone(previous.dueAt, task.timezone)} had not finished`,
      );
      return;
    }
    // Until the run is claimed, the task's next run is this due time: a crash before then runs it at start.
    if (!options.manual) store.setNextRun(task.id, dueAt, now);
    const pending: PendingRun = { dueAt, claimedRunId: null };
    this.pending.set(task.id, pending);
    this.log.info(
      { task: task.id, group: group.jid, due: new Date(dueAt).toISOString(), lateMs: now - dueAt },
      options.manual ? 'scheduled task run on request' : 'scheduled task due',
    );
    this.deps.enqueue(group.jid, task.id, this.work(task.id, pending, options.manual === true));
  }

  /** One queued run: what the core calls when its slot is free, and when it is dropped. */
  private work(taskId: string, pending: PendingRun, manual: boolean): TaskWork {
    let done = false;
    const settle = (): void => {
      done = true;
      if (this.pending.get(taskId) === pending) this.pending.delete(taskId);
    };
    return {
      source: (group) => {
        if (done) return null;
        const task = this.readTask(taskId);
        if (!task || task.status !== 'active') {
          settle();
          if (task) this.skip(task, pending.dueAt, `the task was ${task.status} before it ran`);
          return null;
        }
        if (group.paused) {
          settle();
          this.skip(task, pending.dueAt, 'the group is paused');
          return null;
        }
        return this.turnSource(task, group, pending, manual, settle);
      },
      gaveUp: (error) => {
        if (done) return;
        settle();
        this.failUnstarted(taskId, pending.dueAt, error, manual);
      },
      dropped: (reason) => {
        if (done) return;
        settle();
        const task = this.readTask(taskId);
        if (task) this.skip(task, pending.dueAt, reason);
      },
    };
  }

  /** The run's turns: the task's prompt as one turn, claimed when it begins. */
  private turnSource(
    task: Task,
    group: Group,
    pending: PendingRun,
    manual: boolean,
    settle: () => void,
  ): TurnSource {
    const { store } = this.deps;
    let startedAt = 0;
    /** Why the turn was closed without a result; the run's end decides error or timeout. */
    let skipReason: string | null = null;
    const inner = taskTurn({
      store,
      group,
      prompt: taskPrompt(task, pending.dueAt, manual),
      history: task.contextMode === 'group' ? store.transcriptOf(group.jid) : null,
      ...(task.contextMode === 'group' && this.deps.upkeepFor
        ? { upkeep: this.deps.upkeepFor(group) }
        : {}),
      timezone: this.deps.timezone,
      postResult: task.postResult,
      onCommit: (result) => {
        // In the commit's transaction: the replies and the run's record stand or fall together.
        const failures = store.finishRun(pending.claimedRunId as number, {
          status: 'success',
          finishedAt: result.now,
          resultSummary: resultText(result),
          usage: runUsage(result.usage),
        });
        if (failures !== null) {
          queueMicrotask(() =>
            this.afterRun(
              task,
              'success',
              pending.dueAt,
              resultText(result) ?? '',
              result.now - startedAt,
              0,
            ),
          );
        }
      },
      onSkip: (reason) => {
        skipReason = reason;
      },
    });
    return {
      kind: inner.kind,
      takesMessages: inner.takesMessages,
      history: () => inner.history(),
      ...(inner.resetHistory ? { resetHistory: (now: number) => inner.resetHistory?.(now) } : {}),
      ...(inner.prepare
        ? { prepare: (signal: AbortSignal) => inner.prepare?.(signal) ?? Promise.resolve() }
        : {}),
      next: () => {
        if (pending.claimedRunId !== null) return null;
        const now = this.now();
        const nextDue = manual ? undefined : nextAfterClaim(task, pending.dueAt, now);
        const run = store.claimRun(task.id, pending.dueAt, now, nextDue);
        if (!run) {
          // Claimed before (another process, or a run before a restart): it is not run again.
          settle();
          return null;
        }
        pending.claimedRunId = run.id;
        startedAt = now;
        return inner.next();
      },
      runEnded: (ending: RunEnding) => {
        try {
          this.runEnded(task, pending, manual, ending, { startedAt, skipReason }, settle);
        } catch (err) {
          this.log.error({ task: task.id, err }, "could not record the end of a task's run");
        }
      },
    };
  }

  private runEnded(
    task: Task,
    pending: PendingRun,
    manual: boolean,
    ending: RunEnding,
    turn: { startedAt: number; skipReason: string | null },
    settle: () => void,
  ): void {
    const { outcome, killedBy } = ending;
    if (pending.claimedRunId === null) {
      // The turn never began. A run that failed to start is tried again by the queue (it keeps
      // this work); anything else ends this due time here.
      const retried = !outcome.ok && outcome.failure !== 'final' && killedBy === null;
      if (retried) return;
      settle();
      // Cut off by a shutdown before it began, like a run still queued then: its due time is
      // still the task's next run, so it runs at the next start (within the grace window).
      if (killedBy === 'shutdown') return;
      if (!outcome.ok && killedBy === null) {
        this.failUnstarted(task.id, pending.dueAt, outcome.error, manual);
        return;
      }
      const fresh = this.readTask(task.id);
      const reason =
        killedBy === 'stop'
          ? 'the run was stopped before it began'
          : 'the run ended before its turn began (the group was paused, or the run was asked to stop)';
      if (fresh) this.skip(fresh, pending.dueAt, reason);
      return;
    }
    settle();
    // A run that succeeded was recorded in its commit; finishing it again changes nothing.
    const status = !outcome.ok && isTimeout(outcome.error) ? 'timeout' : 'error';
    let error: string;
    if (killedBy === 'stop') error = 'stopped on request (`clawbar groups stop`)';
    else if (killedBy === 'shutdown') error = 'Clawbar shut down during the run';
    else if (turn.skipReason !== null) error = turn.skipReason;
    else if (outcome.ok) error = 'the run ended before the task was done';
    else error = outcome.error.message;
    this.endClaimed(task, pending, status, error, turn.startedAt);
  }

  /** Ends a claimed run that did not succeed, and tells everyone. */
  private endClaimed(
    task: Task,
    pending: PendingRun,
    status: 'error' | 'timeout',
    error: string,
    startedAt: number,
  ): void {
    if (pending.claimedRunId === null) return;
    const now = this.now();
    const failures = this.deps.store.finishRun(pending.claimedRunId, {
      status,
      finishedAt: now,
      error,
    });
    if (failures === null) return;
    this.afterRun(task, status, pending.dueAt, error, now - startedAt, failures);
  }

  /** A run that never started, after the queue's retries: a failure of its due time. */
  private failUnstarted(taskId: string, dueAt: number, error: Error, manual: boolean): void {
    const { store } = this.deps;
    const task = this.readTask(taskId);
    if (!task) return;
    const now = this.now();
    const run = store.claimRun(
      taskId,
      dueAt,
      now,
      manual ? undefined : nextAfterClaim(task, dueAt, now),
    );
    if (!run) return;
    const message = `the run could not start: ${error.message}`;
    const failures = store.finishRun(run.id, { status: 'error', finishedAt: now, error: message });
    if (failures !== null) this.afterRun(task, 'error', dueAt, message, 0, failures);
    this.rearmOne(taskId);
  }

  /**
   * Logs a due time that did not run, and why. When it was the task's stored next run (the
   * oldest due time not yet dealt with), the next run moves on to the one after it.
   */
  private skip(task: Task, dueAt: number, reason: string): void {
    const now = this.now();
    const stored = this.readTask(task.id);
    const movesNext = stored?.nextRun === dueAt && !this.holdsNextRun(task.id);
    const next = movesNext
      ? (this.armed.get(task.id)?.dueAt ?? nextRun(task.schedule, Math.max(dueAt, now)))
      : undefined;
    const row = this.deps.store.recordSkippedOrMissed(
      task.id,
      dueAt,
      'skipped',
      reason,
      now,
      ...(movesNext ? [next] : []),
    );
    if (!row) return;
    this.log.info({ task: task.id, group: task.groupJid, reason }, 'scheduled task skipped');
    this.finished(task, 'skipped', dueAt, reason, null, task.consecutiveFailures);
    if (task.schedule.kind === 'once') this.deps.store.setTaskStatus(task.id, 'done', now);
  }

  /** A run of the task waits in the queue, unclaimed: the stored next run is its due time. */
  private holdsNextRun(taskId: string): boolean {
    const pending = this.pending.get(taskId);
    return pending !== undefined && pending.claimedRunId === null;
  }

  /**
   * A run ended (success, error, timeout): the one-off is done, the event goes out, and a task
   * that keeps failing is reported, then paused.
   */
  private afterRun(
    task: Task,
    status: 'success' | 'error' | 'timeout',
    dueAt: number,
    text: string,
    durationMs: number,
    failures: number,
  ): void {
    const now = this.now();
    if (task.schedule.kind === 'once' && this.readTask(task.id)?.status === 'active') {
      this.deps.store.setTaskStatus(task.id, 'done', now);
    }
    let alert: TaskFinished['alert'] = null;
    if (status !== 'success') {
      this.log.warn(
        { task: task.id, group: task.groupJid, status, failures, err: text },
        'scheduled task run failed',
      );
      if (failures >= PAUSE_AFTER_FAILURES) {
        alert = 'paused';
        this.deps.store.setTaskStatus(task.id, 'paused', now, {
          reason: `paused after ${failures} failed runs in a row; last error: ${text}`,
          nextRun: null,
        });
        this.disarm(task.id);
        this.deps.notify(
          task.groupJid,
          `Scheduled task ${task.id} (${clip(task.prompt, 60)}) failed ${failures} times in a row, so it is paused. ` +
            `Last error: ${clip(text, 300)}. Resume it with \`clawbar tasks resume ${task.id}\` once that is fixed.`,
        );
      } else if (failures === ALERT_AFTER_FAILURES) {
        alert = 'failing';
        this.deps.notify(
          task.groupJid,
          `Scheduled task ${task.id} (${clip(task.prompt, 60)}) has failed ${failures} times in a row. ` +
            `Last error: ${clip(text, 300)}. It will be paused after ${PAUSE_AFTER_FAILURES} failures.`,
        );
      }
    } else {
      this.log.info({ task: task.id, group: task.groupJid, durationMs }, 'scheduled task run done');
    }
    this.finished(task, status, dueAt, text, durationMs, failures, alert);
  }

  private finished(
    task: Task,
    status: TaskFinishedStatus,
    dueAt: number,
    text: string,
    durationMs: number | null,
    consecutiveFailures: number,
    alert: TaskFinished['alert'] = null,
  ): void {
    this.deps.events.emit('task:finished', {
      taskId: task.id,
      groupJid: task.groupJid,
      status,
      dueAt,
      summary: clip(oneLine(text), EVENT_SUMMARY_CHARS),
      durationMs,
      consecutiveFailures,
      alert,
    });
  }

  // --- recovery and the clock ---------------------------------------------------------------

  /** Runs still `running` were cut off by a crash or a kill: logged as failed, never run again. */
  private recoverInterrupted(): void {
    const { store } = this.deps;
    for (const run of store.runningRuns()) {
      const failures = store.markInterrupted(run.id, this.now());
      if (failures === null) continue;
      this.log.warn(
        { task: run.taskId, due: new Date(run.dueAt).toISOString() },
        'a scheduled task run was cut off by a restart; it is not run again',
      );
      const task = this.readTask(run.taskId);
      if (task) this.afterRun(task, 'error', run.dueAt, 'interrupted by a restart', 0, failures);
    }
  }

  /** Re-arms everything when the wall clock moved apart from the monotonic one. */
  private checkClock(): void {
    const wall = this.now();
    const mono = this.monotonic();
    const drift = wall - this.lastWall - (mono - this.lastMono);
    this.lastWall = wall;
    this.lastMono = mono;
    if (Math.abs(drift) < CLOCK_JUMP_MS) return;
    try {
      this.rearm(
        drift > 0
          ? `the clock moved ${formatDuration(drift)} ahead (a wake from sleep, or the clock was set)`
          : `the clock was set back ${formatDuration(-drift)}`,
      );
    } catch (err) {
      this.log.error({ err }, 'could not re-arm scheduled tasks after a clock jump');
    }
  }

  private rearmOne(taskId: string): void {
    const task = this.readTask(taskId);
    if (task && !this.armed.has(taskId)) this.arm(task);
  }

  /** The task, or null when it is gone or unreadable (an unreadable one is paused). */
  private readTask(taskId: string): Task | null {
    try {
      return this.deps.store.getTask(taskId) ?? null;
    } catch (err) {
      if (err instanceof CorruptTaskError) {
        this.pauseCorrupt(err);
        return null;
      }
      if (err instanceof TaskNotFoundError) return null;
      throw err;
    }
  }

  private pauseCorrupt(err: CorruptTaskError): void {
    this.disarm(err.taskId);
    this.log.error({ task: err.taskId, err }, 'a scheduled task cannot be read; it is paused');
    this.deps.store.setTaskStatus(err.taskId, 'paused', this.now(), {
      reason: err.message,
      nextRun: null,
    });
  }
}

/** Limits on time, as opposed to amounts: a run stopped at one of these timed out. */
const TIME_LIMITS: ReadonlySet<string> = new Set(['silence', 'turnWallClockMs', 'runWallClockMs']);

/** Whether a run ended because it ran out of time (no progress, or past a wall-clock cap). */
function isTimeout(error: Error): boolean {
  return (
    error instanceof RunTimeoutError ||
    (error instanceof RunLimitError && TIME_LIMITS.has(error.limit))
  );
}

/** The task's prompt as the agent gets it: what it is, and when it was due. */
function taskPrompt(task: Task, dueAt: number, manual: boolean): string {
  const when = manual
    ? `run on request at ${formatInZone(dueAt, task.timezone)}`
    : `due ${formatInZone(dueAt, task.timezone)}`;
  return `[Scheduled task ${task.id}, ${when}]\n${task.prompt}`;
}

/** Where the task's next run stands once this due time is claimed. */
function nextAfterClaim(task: Task, dueAt: number, now: number): number | null {
  return nextRun(task.schedule, Math.max(dueAt, now));
}

/** A run's replies as its stored result, or null when it said nothing. */
function resultText(result: TurnResult): string | null {
  const text = result.replies.join('\n\n').trim();
  return text === '' ? null : text;
}

/** The tokens a run used, as the run log keeps them: cached input counts as input. */
function runUsage(usage: TokenUsage): { inputTokens: number; outputTokens: number } {
  return {
    inputTokens: usage.inputTokens + usage.cacheReadTokens + usage.cacheWriteTokens,
    outputTokens: usage.outputTokens,
  };
}
