/**
 * Per-group queues under one global concurrency cap (DESIGN.md §5).
 *
 * - A group's queue holds work items: its pending messages (one batch, however many arrive)
 *   and scheduled task runs, in order. One run at a time per group; at most
 *   `maxConcurrency` runs in all.
 * - Groups that cannot start wait in arrival order. A group whose run just ended goes to
 *   the back of the line, so a busy group cannot starve a quiet one.
 * - A message for a group whose run is alive is handed to that run at once; the run feeds it
 *   to the warm container over stdin. A task run takes no messages: they wait until it ends.
 * - A failed run is retried with exponential backoff, then given up and reported. A failure
 *   that would only repeat (`final`) is reported at once, and one caused by the machine not
 *   being ready (engine unreachable, image missing) spends no retry: all work is held until the
 *   orchestrator says the set-up is ready.
 * - A paused group's messages wait; a run already under way finishes.
 * - A stopped group's run is killed now and not retried; its messages stay stored for the
 *   next trigger.
 *
 * The queue knows nothing of containers or messages: it schedules {@link GroupRun}s that the
 * orchestrator starts. Timers are the only clock it uses, so fake timers drive it in tests.
 */
import type { Logger } from '../logger.js';

/** One unit of work in a group's queue. */
export type WorkItem =
  /** Every message stored since the group's cursor, answered as one batch. */
  | { kind: 'messages' }
  /** One run of a scheduled task; `taskId` is the scheduler's, opaque to the queue. */
  | { kind: 'task'; taskId: string };

/** A live run of one group's agent, as the queue sees it. */
export interface GroupRun {
  /**
   * New messages were stored for this group. Returns true when the run will take them
   * (now if idle, after its current turn if busy); false when it is winding down or busy
   * with work that must not be interrupted (a scheduled task).
   */
  offerMessages(): boolean;
  /** True while the container waits, idle, for a follow-up. */
  readonly idle: boolean;
  /** Asks the run to finish its current turn and stop, freeing its slot. */
  requestStop(): void;
  /** Stops the container now; `reason` says why, for the run's own log. */
  kill(reason?: string): Promise<void>;
  /** Settles when the run has ended. */
  readonly finished: Promise<RunOutcome>;
}

/**
 * How a failed run is handled:
 * - `retry`: a container fault that may pass; retried with backoff, then given up;
 * - `not-ready`: the machine is not ready to run agents: the container engine cannot be
 *   reached, or the agent image is missing. No retry is spent; all work is held until the
 *   orchestrator calls {@link GroupQueue.releaseWork};
 * - `final`: it would fail the same way again (a setup mistake, a turn the model refused);
 *   reported once, not retried. The messages stay stored for the next trigger.
 */
export type FailureKind = 'retry' | 'not-ready' | 'final';

/**
 * Why the queue itself killed a run: `stop` for {@link GroupQueue.stop}, `shutdown` for a run
 * still busy when {@link GroupQueue.shutdown}'s grace period ran out. Neither says anything
 * about the work the run was doing.
 */
export type RunKill = 'stop' | 'shutdown';

export type RunOutcome =
  | {
      ok: true;
      /**
       * The run took messages for a later turn but ended before it (asked to stop, or past
       * its wall-clock cap), or was asked to stop before its first turn: they are dispatched
       * again.
       */
      messagesLeft?: boolean;
    }
  | {
      ok: false;
      error: Error;
      failure: FailureKind;
      /**
       * No notice is owed to the chat: the run already told it why (it closed its turn with a
       * notice, as when it is stopped at a limit), or it failed while idle, with nothing of the
       * chat's pending. {@link GroupQueueDeps.onGiveUp} then sends none.
       */
      notified?: boolean;
      /**
       * Messages arrived during the run, for a turn it never started. A `final` failure is
       * not retried, but they still get a run of their own, as any new trigger would.
       */
      messagesLeft?: boolean;
    };

export interface RetryPolicy {
  /** Delay before the first retry; each next retry doubles it. @default 5000 */
  baseDelayMs: number;
  /** Retries after the first failure before giving up. @default 5 */
  maxRetries: number;
}

/**
 * How long {@link GroupQueue.shutdown} waits, after killing the runs still busy at the end of
 * its grace period, for them to end: a killed container's process exits within moments, and
 * the runs' ends must be booked before the process goes (see `shutdown`).
 */
export const KILLED_RUN_END_MS = 5_000;

export const DEFAULT_RETRY: RetryPolicy = { baseDelayMs: 5_000, maxRetries: 5 };

export interface GroupQueueDeps {
  /** @default 3 */
  maxConcurrency: number;
  /**
   * Starts a run for one work item of the group, or returns null when it has nothing to do
   * (no pending triggered messages, the task is gone, or the group is gone).
   */
  startRun(groupJid: string, work: WorkItem): GroupRun | null;
  isPaused(groupJid: string): boolean;
  /**
   * The queue stopped trying this work: every retry failed, or the failure was final. The
   * user must be told, unless `details.notified` says the run already told the chat.
   * Messages stay stored and pending.
   */
  onGiveUp(
    groupJid: string,
    error: Error,
    attempts: number,
    work: WorkItem,
    details?: { notified: boolean },
  ): void;
  /**
   * A run found the machine not ready (engine unreachable, image missing): all work is held.
   * The orchestrator finds out what is wrong, tells the user, and releases the work when fixed.
   */
  onNotReady(error: Error): void;
  /**
   * A run the queue started has ended; `killedBy` says whether the queue killed it, and why
   * (the one record of that: the orchestrator keeps none of its own). Called once per run, as
   * the queue books its end, and before {@link GroupQueue.shutdown} returns for the runs it
   * waited for, so what the orchestrator writes here is written before the process exits.
   */
  onRunEnded?(groupJid: string, run: GroupRun, outcome: RunOutcome, killedBy: RunKill | null): void;
  log: Logger;
  retry?: RetryPolicy;
}

interface GroupState {
  run: GroupRun | null;
  /** What the live run is doing. */
  runWork: WorkItem | null;
  /** Messages arrived that no run has taken yet. */
  pendingMessages: boolean;
  /** Task runs waiting, oldest first. */
  tasks: WorkItem[];
  /** In the global waiting line. */
  waiting: boolean;
  /** Held until the set-up is ready (see {@link GroupQueue.holdWork}). */
  blocked: boolean;
  failures: number;
  retryTimer: ReturnType<typeof setTimeout> | null;
  /** The work the pending retry will try again, so a stop can take it back. */
  retrying: WorkItem | null;
}

/** What {@link GroupQueue.stop} ended. */
export interface StopResult {
  /** The busy run it killed, or null when none was under way. */
  run: GroupRun | null;
  /** A failed run was waiting to be retried, and now will not be. */
  cancelledRetry: boolean;
}

export interface QueueSnapshot {
  maxConcurrency: number;
  running: Array<{ groupJid: string; idle: boolean; work: WorkItem['kind'] }>;
  waiting: string[];
  retrying: string[];
  /** Groups whose work is held until the set-up is ready (engine, image, API key). */
  waitingForSetup: string[];
}

export class GroupQueue {
  private readonly groups = new Map<string, GroupState>();
  private readonly waiting: string[] = [];
  /** Groups held while the set-up is not ready, in the order they were held. */
  private readonly blocked: string[] = [];
  private active = 0;
  /**
   * Every run started and not yet booked as ended, with the promise that settles once it is
   * ({@link GroupQueue.onRunFinished} has run): shutdown waits on these.
   */
  private readonly live = new Map<GroupRun, Promise<void>>();
  /**
   * Runs the queue killed, and why, until their end is booked. A run killed by a stop is
   * neither retried nor reported; either kind is passed on to {@link GroupQueueDeps.onRunEnded}.
   */
  private readonly killed = new Map<GroupRun, RunKill>();
  private stopping = false;
  private notReady = false;
  private readonly retry: RetryPolicy;
  private readonly log: Logger;

  constructor(private readonly deps: GroupQueueDeps) {
    if (!Number.isInteger(deps.maxConcurrency) || deps.maxConcurrency < 1) {
      throw new RangeError(
        `maxConcurrency must be a whole number of at least 1, got ${deps.maxConcurrency}`,
      );
    }
    this.retry = deps.retry ?? DEFAULT_RETRY;
    this.log = deps.log.child({ mod: 'queue' });
  }

  /** Messages for the group were stored and include a trigger: get them to an agent. */
  enqueueMessage(groupJid: string): void {
    if (this.stopping) return; // Stored; recovery picks them up at the next start.
    const state = this.stateOf(groupJid);
    if (state.run) {
      if (!this.deps.isPaused(groupJid) && state.run.offerMessages()) return;
      state.pendingMessages = true;
      return;
    }
    state.pendingMessages = true;
    this.admitIfIdle(groupJid, state);
  }

  /**
   * A scheduled task is due for the group. It runs after the group's live run ends (a warm,
   * idle container is asked to stop at once) and before the group's waiting messages.
   */
  enqueueTask(groupJid: string, taskId: string): void {
    if (this.stopping) return;
    const state = this.stateOf(groupJid);
    if (state.tasks.some((t) => t.kind === 'task' && t.taskId === taskId)) return;
    if (state.runWork?.kind === 'task' && state.runWork.taskId === taskId) return;
    state.tasks.push({ kind: 'task', taskId });
    if (state.run) {
      // A task never joins a message run: that run finishes its turn and makes way.
      state.run.requestStop();
      return;
    }
    this.admitIfIdle(groupJid, state);
  }

  /** The group was paused: let a warm, idle container go; a busy one finishes its turn. */
  pause(groupJid: string): void {
    const run = this.groups.get(groupJid)?.run;
    if (run?.idle) run.requestStop();
  }

  /**
   * Stop (DESIGN.md §5): the group's busy run is killed now, and neither its failure nor a
   * retry already waiting is tried again or reported as a give-up. Nothing stored is dropped:
   * the messages stay pending, undispatched, and the next one that arrives starts a run that
   * answers them all. Task runs queued behind it stay queued. A warm, idle run is let go.
   */
  stop(groupJid: string, reason = 'stopped on request (`clawbar groups stop`)'): StopResult {
    const state = this.groups.get(groupJid);
    if (!state) return { run: null, cancelledRetry: false };
    const cancelledRetry = state.retryTimer !== null;
    if (state.retryTimer) clearTimeout(state.retryTimer);
    state.retryTimer = null;
    const retried = cancelledRetry ? state.retrying : null;
    state.retrying = null;
    if (retried?.kind === 'task') {
      state.tasks = state.tasks.filter((t) => t.kind !== 'task' || t.taskId !== retried.taskId);
    }
    state.failures = 0;
    // Stored messages wait for the next trigger instead of being dispatched now.
    state.pendingMessages = false;
    const run = state.run;
    if (!run) return { run: null, cancelledRetry };
    if (run.idle) {
      // Nothing under way: the warm container just goes, as on pause.
      run.requestStop();
      return { run: null, cancelledRetry };
    }
    this.killed.set(run, 'stop');
    this.log.info({ group: groupJid, work: state.runWork?.kind }, 'stopping the run on request');
    run
      .kill(reason)
      .catch((err: unknown) =>
        this.log.error({ group: groupJid, err }, 'could not kill a stopped run'),
      );
    return { run, cancelledRetry };
  }

  /**
   * A run just finished a turn and went idle. If other groups wait for a slot, it is let go
   * now rather than at its idle timeout, so a warm container never starves a waiting group.
   */
  runIdle(groupJid: string): void {
    const state = this.groups.get(groupJid);
    if (!state?.run?.idle) return;
    if (this.waiting.length > 0 || state.tasks.length > 0) state.run.requestStop();
  }

  /** Forgets a removed group, stopping its run. */
  remove(groupJid: string): void {
    const state = this.groups.get(groupJid);
    if (!state) return;
    if (state.retryTimer) clearTimeout(state.retryTimer);
    state.retryTimer = null;
    state.pendingMessages = false;
    state.tasks = [];
    this.dropFrom(this.waiting, groupJid);
    this.dropFrom(this.blocked, groupJid);
    state.waiting = false;
    state.blocked = false;
    state.run?.requestStop();
  }

  /**
   * The machine is not ready to run agents (the engine is unreachable, the image is missing or
   * being built, no API key): new work is held, in arrival order, until {@link releaseWork}.
   */
  holdWork(): void {
    this.notReady = true;
  }

  /**
   * The set-up is ready again: work that was held is admitted, in the order it was held,
   * without counting the wait as failures.
   */
  releaseWork(): void {
    if (!this.notReady) return;
    this.notReady = false;
    this.log.info({ groups: this.blocked.length }, 'ready to run agents; resuming held work');
    const held = this.blocked.splice(0);
    for (const groupJid of held) {
      const state = this.stateOf(groupJid);
      state.blocked = false;
      if (this.stopping) continue;
      this.admitIfIdle(groupJid, state);
    }
  }

  /** Whether work is being held until the set-up is ready. */
  get holding(): boolean {
    return this.notReady;
  }

  snapshot(): QueueSnapshot {
    const running: QueueSnapshot['running'] = [];
    const retrying: string[] = [];
    for (const [groupJid, state] of this.groups) {
      if (state.run)
        running.push({ groupJid, idle: state.run.idle, work: state.runWork?.kind ?? 'messages' });
      if (state.retryTimer) retrying.push(groupJid);
    }
    return {
      maxConcurrency: this.deps.maxConcurrency,
      running,
      waiting: [...this.waiting],
      retrying,
      waitingForSetup: [...this.blocked],
    };
  }

  /**
   * Stops taking work, asks every run to finish, and kills what is still running after
   * `graceMs` (ended as killed by `shutdown`). Pending messages stay stored for the next start.
   *
   * Returns once every run's end is booked ({@link GroupQueueDeps.onRunEnded} called), so the
   * orchestrator's record of it is written while its store is still open: a turn the shutdown
   * cut short must not be counted against its messages as if the run had crashed. Killed runs
   * get {@link KILLED_RUN_END_MS} more to end; one that does not is logged and left.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    this.waiting.length = 0;
    this.blocked.length = 0;
    for (const state of this.groups.values()) {
      if (state.retryTimer) clearTimeout(state.retryTimer);
      state.retryTimer = null;
      state.waiting = false;
      state.blocked = false;
    }
    for (const run of this.live.keys()) run.requestStop();
    if (await this.allEnded(graceMs)) return;
    const stragglers = [...this.live.keys()];
    this.log.warn(
      { runs: stragglers.length },
      'runs did not stop in time; killing their containers',
    );
    for (const run of stragglers) if (!this.killed.has(run)) this.killed.set(run, 'shutdown');
    await Promise.allSettled(stragglers.map((r) => r.kill('Clawbar shut down during the run')));
    if (!(await this.allEnded(KILLED_RUN_END_MS))) {
      this.log.error(
        { runs: this.live.size },
        'killed runs did not end in time; a turn they left open stays counted as a failed attempt',
      );
    }
  }

  // ── internals ──────────────────────────────────────────────────────────

  private stateOf(groupJid: string): GroupState {
    let state = this.groups.get(groupJid);
    if (!state) {
      state = {
        run: null,
        runWork: null,
        pendingMessages: false,
        tasks: [],
        waiting: false,
        blocked: false,
        failures: 0,
        retryTimer: null,
        retrying: null,
      };
      this.groups.set(groupJid, state);
    }
    return state;
  }

  /** The group's next work item: a waiting task first, then its messages (unless paused). */
  private nextWork(groupJid: string, state: GroupState): WorkItem | null {
    const task = state.tasks[0];
    if (task) return task;
    if (state.pendingMessages && !this.deps.isPaused(groupJid)) return { kind: 'messages' };
    return null;
  }

  /** Puts a group with work and no run, no retry pending and no place in line, into motion. */
  private admitIfIdle(groupJid: string, state: GroupState): void {
    if (state.run || state.retryTimer || state.waiting || state.blocked) return;
    if (!this.nextWork(groupJid, state)) return;
    if (this.notReady) {
      this.hold(groupJid, state);
      return;
    }
    this.admit(groupJid);
  }

  /** Starts the group now if a slot is free, or puts it in line. */
  private admit(groupJid: string): void {
    if (this.active < this.deps.maxConcurrency) {
      this.launch(groupJid);
      return;
    }
    const state = this.stateOf(groupJid);
    state.waiting = true;
    this.waiting.push(groupJid);
    this.log.debug({ group: groupJid, position: this.waiting.length }, 'waiting for a slot');
    this.reclaimIdleSlot();
  }

  private hold(groupJid: string, state: GroupState): void {
    if (state.blocked) return;
    state.blocked = true;
    this.blocked.push(groupJid);
  }

  /** A warm container sitting idle holds a slot another group is waiting for: let it go. */
  private reclaimIdleSlot(): void {
    for (const state of this.groups.values()) {
      if (state.run?.idle) {
        state.run.requestStop();
        return;
      }
    }
  }

  private launch(groupJid: string): void {
    const state = this.stateOf(groupJid);
    const work = this.nextWork(groupJid, state);
    if (!work) {
      this.drain();
      return;
    }
    if (work.kind === 'task') state.tasks.shift();
    else state.pendingMessages = false;
    let run: GroupRun | null;
    try {
      run = this.deps.startRun(groupJid, work);
    } catch (err) {
      this.log.error({ group: groupJid, err }, 'could not start a run');
      run = failedRun(err);
    }
    if (!run) {
      // Nothing to do for this item; the group may have more.
      if (this.nextWork(groupJid, state)) this.launch(groupJid);
      else this.drain();
      return;
    }
    state.run = run;
    state.runWork = work;
    this.active += 1;
    const ended = run.finished
      .catch((err: unknown): RunOutcome => ({ ok: false, error: asError(err), failure: 'retry' }))
      .then((outcome) => this.onRunFinished(groupJid, run, work, outcome))
      .catch((err: unknown) => this.log.error({ group: groupJid, err }, 'queue bookkeeping failed'))
      .finally(() => this.live.delete(run));
    this.live.set(run, ended);
  }

  /** Waits up to `ms` for every live run's end to be booked; false when some were not. */
  private async allEnded(ms: number): Promise<boolean> {
    if (this.live.size === 0) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      const ended = Promise.allSettled([...this.live.values()]).then(() => true);
      return await Promise.race([ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private onRunFinished(
    groupJid: string,
    run: GroupRun,
    work: WorkItem,
    outcome: RunOutcome,
  ): void {
    const state = this.stateOf(groupJid);
    if (state.run === run) {
      state.run = null;
      state.runWork = null;
    }
    this.active -= 1;
    const killedBy = this.killed.get(run) ?? null;
    this.killed.delete(run);
    this.safely(() => this.deps.onRunEnded?.(groupJid, run, outcome, killedBy));
    // A run ended on request is not retried: what it did not finish waits for the next trigger.
    const stopped = killedBy === 'stop';
    if (this.stopping) return;

    if (outcome.ok || stopped) {
      state.failures = 0;
      if (outcome.ok && outcome.messagesLeft && !stopped) state.pendingMessages = true;
      this.toBackOfLine(groupJid, state);
    } else {
      this.onRunFailed(groupJid, state, work, outcome.error, outcome.failure, {
        notified: outcome.notified === true,
      });
      // Messages that arrived during the failed run are a new trigger, whatever the failure.
      if (outcome.messagesLeft) state.pendingMessages = true;
      if (outcome.failure === 'final') this.toBackOfLine(groupJid, state);
    }
    this.drain();
  }

  private onRunFailed(
    groupJid: string,
    state: GroupState,
    work: WorkItem,
    error: Error,
    failure: FailureKind,
    details: { notified: boolean },
  ): void {
    // The failed item goes back to the front of its kind, to be tried again.
    const requeue = (): void => {
      if (work.kind === 'task') state.tasks.unshift(work);
      else state.pendingMessages = true;
    };
    switch (failure) {
      case 'not-ready': {
        this.log.warn(
          { group: groupJid, err: error },
          'not ready to run agents; the work is held until that is fixed',
        );
        requeue();
        this.notReady = true;
        this.hold(groupJid, state);
        this.safely(() => this.deps.onNotReady(error));
        return;
      }
      case 'final': {
        const attempts = state.failures + 1;
        state.failures = 0;
        this.log.error({ group: groupJid, err: error }, 'run failed in a way a retry cannot fix');
        this.safely(() => this.deps.onGiveUp(groupJid, error, attempts, work, details));
        return;
      }
      case 'retry':
        break;
      default: {
        const unreachable: never = failure;
        throw new Error(`unknown failure kind ${String(unreachable)}`);
      }
    }
    state.failures += 1;
    if (state.failures > this.retry.maxRetries) {
      const attempts = state.failures;
      state.failures = 0;
      this.log.error(
        { group: groupJid, attempts, err: error },
        'giving up after repeated failures',
      );
      this.safely(() => this.deps.onGiveUp(groupJid, error, attempts, work));
      return;
    }
    const delay = this.retry.baseDelayMs * 2 ** (state.failures - 1);
    this.log.warn(
      { group: groupJid, attempt: state.failures, delayMs: delay, err: error },
      'run failed; retrying',
    );
    requeue();
    state.retrying = work;
    state.retryTimer = setTimeout(() => {
      state.retryTimer = null;
      state.retrying = null;
      if (this.stopping) return;
      this.admitIfIdle(groupJid, state); // A paused group's messages wait for resume.
    }, delay);
  }

  /**
   * A group whose run just ended, with more work (a task queued meanwhile, messages it handed
   * back), goes to the back of the line: other groups that waited while it ran go first.
   */
  private toBackOfLine(groupJid: string, state: GroupState): void {
    if (state.run || state.retryTimer || state.waiting || state.blocked) return;
    if (!this.nextWork(groupJid, state)) return;
    state.waiting = true;
    this.waiting.push(groupJid);
  }

  /** Fills free slots from the waiting line, oldest first. */
  private drain(): void {
    while (this.active < this.deps.maxConcurrency && this.waiting.length > 0) {
      const groupJid = this.waiting.shift() as string;
      const state = this.stateOf(groupJid);
      state.waiting = false;
      if (state.run || !this.nextWork(groupJid, state)) continue; // Paused: resume admits it.
      if (this.notReady) {
        this.hold(groupJid, state);
        continue;
      }
      this.launch(groupJid);
    }
  }

  private dropFrom(line: string[], groupJid: string): void {
    const index = line.indexOf(groupJid);
    if (index !== -1) line.splice(index, 1);
  }

  /** Runs an orchestrator callback; its failure is logged, never lets the queue's state tear. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, 'a queue callback threw');
    }
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A run that failed before it started, so the retry path handles start errors too. */
function failedRun(err: unknown): GroupRun {
  return {
    idle: false,
    offerMessages: () => false,
    requestStop: () => undefined,
    kill: async () => undefined,
    finished: Promise.resolve({ ok: false, error: asError(err), failure: 'retry' }),
  };
}
