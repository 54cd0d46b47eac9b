/**
 * Per-group queues under one global concurrency cap (DESIGN.md §5).
 *
 * - One run at a time per group; at most `maxConcurrency` runs in all.
 * - Groups that cannot start wait in arrival order. A group whose run just ended goes to
 *   the back of the line, so a busy group cannot starve a quiet one.
 * - A message for a group whose run is alive is handed to that run at once; the run feeds it
 *   to the warm container over stdin.
 * - A failed run is retried with exponential backoff, then given up and reported.
 * - A paused group's messages wait; a run already under way finishes.
 *
 * The queue knows nothing of containers or messages: it schedules {@link GroupRun}s that the
 * orchestrator starts. Timers are the only clock it uses, so fake timers drive it in tests.
 */
import type { Logger } from '../logger.js';

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
  /** Stops the container now. */
  kill(): Promise<void>;
  /** Settles when the run has ended; `ok: false` means it should be retried. */
  readonly finished: Promise<RunOutcome>;
}

export type RunOutcome = { ok: true } | { ok: false; error: Error };

export interface RetryPolicy {
  /** Delay before the first retry; each next retry doubles it. @default 5000 */
  baseDelayMs: number;
  /** Retries after the first failure before giving up. @default 5 */
  maxRetries: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseDelayMs: 5_000, maxRetries: 5 };

export interface GroupQueueDeps {
  /** @default 3 */
  maxConcurrency: number;
  /**
   * Starts a run for the group, or returns null when it has nothing to do (no pending
   * triggered messages, or the group is gone).
   */
  startRun(groupJid: string): GroupRun | null;
  isPaused(groupJid: string): boolean;
  /** Every retry failed; the user must be told. The messages stay stored and pending. */
  onGiveUp(groupJid: string, error: Error, attempts: number): void;
  log: Logger;
  retry?: RetryPolicy;
}

interface GroupState {
  run: GroupRun | null;
  /** Messages arrived that no run has taken yet. */
  pending: boolean;
  waiting: boolean;
  failures: number;
  retryTimer: ReturnType<typeof setTimeout> | null;
}

export interface QueueSnapshot {
  maxConcurrency: number;
  running: Array<{ groupJid: string; idle: boolean }>;
  waiting: string[];
  retrying: string[];
}

export class GroupQueue {
  private readonly groups = new Map<string, GroupState>();
  private readonly waiting: string[] = [];
  private active = 0;
  private stopping = false;
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
      state.pending = true;
      return;
    }
    state.pending = true;
    if (this.deps.isPaused(groupJid) || state.retryTimer || state.waiting) return;
    this.admit(groupJid);
  }

  /** The group was paused: let a warm, idle container go; a busy one finishes its turn. */
  pause(groupJid: string): void {
    const run = this.groups.get(groupJid)?.run;
    if (run?.idle) run.requestStop();
  }

  /**
   * A run just finished a turn and went idle. If other groups wait for a slot, it is let go
   * now rather than at its idle timeout, so a warm container never starves a waiting group.
   */
  runIdle(groupJid: string): void {
    const run = this.groups.get(groupJid)?.run;
    if (run?.idle && this.waiting.length > 0) run.requestStop();
  }

  /** Forgets a removed group, stopping its run. */
  remove(groupJid: string): void {
    const state = this.groups.get(groupJid);
    if (!state) return;
    if (state.retryTimer) clearTimeout(state.retryTimer);
    state.retryTimer = null;
    state.pending = false;
    this.dropFromWaiting(groupJid);
    state.run?.requestStop();
  }

  snapshot(): QueueSnapshot {
    const running: QueueSnapshot['running'] = [];
    const retrying: string[] = [];
    for (const [groupJid, state] of this.groups) {
      if (state.run) running.push({ groupJid, idle: state.run.idle });
      if (state.retryTimer) retrying.push(groupJid);
    }
    return {
      maxConcurrency: this.deps.maxConcurrency,
      running,
      waiting: [...this.waiting],
      retrying,
    };
  }

  /**
   * Stops taking work, asks every run to finish, and kills what is still running after
   * `graceMs`. Pending messages stay stored for the next start.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    this.waiting.length = 0;
    const runs: GroupRun[] = [];
    for (const state of this.groups.values()) {
      if (state.retryTimer) clearTimeout(state.retryTimer);
      state.retryTimer = null;
      state.waiting = false;
      if (state.run) runs.push(state.run);
    }
    const stillRunning = new Set(runs);
    for (const run of runs) {
      void run.finished.finally(() => stillRunning.delete(run));
      run.requestStop();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const graceOver = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const first = await Promise.race([Promise.allSettled(runs.map((r) => r.finished)), graceOver]);
    clearTimeout(timer);
    if (first === 'timeout' && stillRunning.size > 0) {
      this.log.warn(
        { runs: stillRunning.size },
        'runs did not stop in time; killing their containers',
      );
      await Promise.allSettled([...stillRunning].map((r) => r.kill()));
    }
  }

  private stateOf(groupJid: string): GroupState {
    let state = this.groups.get(groupJid);
    if (!state) {
      state = { run: null, pending: false, waiting: false, failures: 0, retryTimer: null };
      this.groups.set(groupJid, state);
    }
    return state;
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
    state.pending = false;
    let run: GroupRun | null;
    try {
      run = this.deps.startRun(groupJid);
    } catch (err) {
      this.log.error({ group: groupJid, err }, 'could not start a run');
      run = failedRun(err);
    }
    if (!run) {
      this.drain();
      return;
    }
    state.run = run;
    this.active += 1;
    run.finished
      .catch((err: unknown): RunOutcome => ({ ok: false, error: asError(err) }))
      .then((outcome) => this.onRunFinished(groupJid, run, outcome));
  }

  private onRunFinished(groupJid: string, run: GroupRun, outcome: RunOutcome): void {
    const state = this.stateOf(groupJid);
    if (state.run === run) state.run = null;
    this.active -= 1;
    if (this.stopping) return;

    if (outcome.ok) {
      state.failures = 0;
      if (state.pending && !this.deps.isPaused(groupJid)) {
        // Back of the line: other groups that waited while this one ran go first.
        state.waiting = true;
        this.waiting.push(groupJid);
      }
    } else {
      this.onRunFailed(groupJid, state, outcome.error);
    }
    this.drain();
  }

  private onRunFailed(groupJid: string, state: GroupState, error: Error): void {
    state.failures += 1;
    if (state.failures > this.retry.maxRetries) {
      const attempts = state.failures;
      state.failures = 0;
      state.pending = false;
      this.log.error(
        { group: groupJid, attempts, err: error },
        'giving up after repeated failures',
      );
      this.deps.onGiveUp(groupJid, error, attempts);
      return;
    }
    const delay = this.retry.baseDelayMs * 2 ** (state.failures - 1);
    this.log.warn(
      { group: groupJid, attempt: state.failures, delayMs: delay, err: error },
      'run failed; retrying',
    );
    state.pending = true;
    state.retryTimer = setTimeout(() => {
      state.retryTimer = null;
      if (this.stopping || !state.pending || state.run || state.waiting) return;
      if (this.deps.isPaused(groupJid)) return; // Resume picks it up.
      this.admit(groupJid);
    }, delay);
  }

  /** Fills free slots from the waiting line, oldest first. */
  private drain(): void {
    while (this.active < this.deps.maxConcurrency && this.waiting.length > 0) {
      const groupJid = this.waiting.shift() as string;
      const state = this.stateOf(groupJid);
      state.waiting = false;
      if (state.run || !state.pending) continue;
      if (this.deps.isPaused(groupJid)) continue; // Stays pending; resume admits it.
      this.launch(groupJid);
    }
  }

  private dropFromWaiting(groupJid: string): void {
    const index = this.waiting.indexOf(groupJid);
    if (index !== -1) this.waiting.splice(index, 1);
    this.stateOf(groupJid).waiting = false;
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
    finished: Promise.resolve({ ok: false, error: asError(err) }),
  };
}
