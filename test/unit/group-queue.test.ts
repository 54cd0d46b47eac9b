import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  GroupQueue,
  type FailureKind,
  type GroupRun,
  type RunOutcome,
  type WorkItem,
} from '../../main/core/queue/group-queue.js';
import { silentLogger } from '../../main/core/logger.js';

/** A run the test finishes by hand. */
class ScriptedRun implements GroupRun {
  idle = false;
  offered = 0;
  acceptOffers = true;
  stopRequested = false;
  killed = false;
  private settle!: (outcome: RunOutcome) => void;
  readonly finished = new Promise<RunOutcome>((resolve) => (this.settle = resolve));

  constructor(
    readonly groupJid: string,
    readonly work: WorkItem = { kind: 'messages' },
  ) {
    // A task run takes no messages (DESIGN.md §5), as AgentRun with a task source does.
    if (work.kind === 'task') this.acceptOffers = false;
  }
  offerMessages(): boolean {
    this.offered += 1;
    return this.acceptOffers;
  }
  requestStop(): void {
    this.stopRequested = true;
  }
  async kill(): Promise<void> {
    this.killed = true;
    this.settle({ ok: true });
  }
  succeed(): void {
    this.settle({ ok: true });
  }
  fail(message = 'container crashed', failure: FailureKind = 'retry'): void {
    this.settle({ ok: false, error: new Error(message), failure });
  }
  /** Settles with exactly this outcome. */
  end(outcome: RunOutcome): void {
    this.settle(outcome);
  }
}

function harness(maxConcurrency = 3) {
  const started: ScriptedRun[] = [];
  const paused = new Set<string>();
  const gaveUp: Array<{ groupJid: string; attempts: number; work: WorkItem['kind'] }> = [];
  const notReady: string[] = [];
  let liveRuns = 0;
  let peakRuns = 0;
  const queue = new GroupQueue({
    maxConcurrency,
    log: silentLogger(),
    isPaused: (jid) => paused.has(jid),
    onGiveUp: (groupJid, _err, attempts, work) =>
      gaveUp.push({ groupJid, attempts, work: work.kind }),
    onNotReady: (err) => notReady.push(err.message),
    startRun: (jid, work) => {
      const run = new ScriptedRun(jid, work);
      started.push(run);
      liveRuns += 1;
      peakRuns = Math.max(peakRuns, liveRuns);
      void run.finished.then(() => (liveRuns -= 1));
      return run;
    },
  });
  const runsOf = (jid: string) => started.filter((r) => r.groupJid === jid);
  const last = (jid: string) => runsOf(jid).at(-1) as ScriptedRun;
  return { queue, started, paused, gaveUp, notReady, runsOf, last, peak: () => peakRuns };
}

/** Lets promise callbacks (run.finished handlers) run. */
const settle = () => vi.advanceTimersByTimeAsync(0);

describe('GroupQueue', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs one container at a time per group', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').acceptOffers = false; // busy with a task, say
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(1);
    h.last('a').succeed();
    await settle();
    expect(h.runsOf('a')).toHaveLength(2); // the waiting messages got one new run
  });

  it('never runs more than maxConcurrency groups at once', async () => {
    const h = harness(2);
    for (const jid of ['a', 'b', 'c', 'd', 'e']) h.queue.enqueueMessage(jid);
    expect(h.started).toHaveLength(2);
    expect(h.queue.snapshot().waiting).toEqual(['c', 'd', 'e']);
    while (h.started.some((r) => !r.stopRequested && !r.killed)) {
      const live = h.started.filter((r) => !r.stopRequested);
      for (const run of live) {
        run.stopRequested = true;
        run.succeed();
      }
      await settle();
    }
    expect(h.started.map((r) => r.groupJid).sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(h.peak()).toBe(2);
  });

  it('starts waiting groups in arrival order', async () => {
    const h = harness(1);
    for (const jid of ['a', 'b', 'c', 'd']) h.queue.enqueueMessage(jid);
    const order = [];
    for (let i = 0; i < 4; i++) {
      const run = h.started[i] as ScriptedRun;
      order.push(run.groupJid);
      run.succeed();
      await settle();
    }
    expect(order).toEqual(['a', 'b', 'c', 'd']);
  });

  it('sends a busy group to the back of the line so others are not starved', async () => {
    const h = harness(1);
    h.queue.enqueueMessage('a');
    h.last('a').acceptOffers = false;
    h.queue.enqueueMessage('b');
    h.queue.enqueueMessage('a'); // a has more work while b waits
    h.last('a').succeed();
    await settle();
    expect(h.started.map((r) => r.groupJid)).toEqual(['a', 'b']);
    h.last('b').succeed();
    await settle();
    expect(h.started.map((r) => r.groupJid)).toEqual(['a', 'b', 'a']);
  });

  it('hands a follow-up to the live run instead of starting another', () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').idle = true;
    h.queue.enqueueMessage('a');
    expect(h.last('a').offered).toBe(1);
    expect(h.started).toHaveLength(1);
  });

  it('asks an idle warm container to stop when another group needs its slot', () => {
    const h = harness(1);
    h.queue.enqueueMessage('a');
    h.last('a').idle = true;
    h.queue.enqueueMessage('b');
    expect(h.last('a').stopRequested).toBe(true);
    expect(h.runsOf('b')).toHaveLength(0);
  });

  it('lets a run that goes idle go at once when another group waits for its slot', () => {
    const h = harness(1);
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('b'); // a is busy: b waits, nothing to reclaim yet
    expect(h.last('a').stopRequested).toBe(false);
    h.last('a').idle = true;
    h.queue.runIdle('a');
    expect(h.last('a').stopRequested).toBe(true);
  });

  it('keeps an idle run warm when nobody waits', () => {
    const h = harness(1);
    h.queue.enqueueMessage('a');
    h.last('a').idle = true;
    h.queue.runIdle('a');
    expect(h.last('a').stopRequested).toBe(false);
  });

  it('retries a failed run with exponential backoff: 5 s, 10 s, 20 s, 40 s, 80 s', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    const delays = [5_000, 10_000, 20_000, 40_000, 80_000];
    for (const delay of delays) {
      const before = h.runsOf('a').length;
      h.last('a').fail();
      await settle();
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(h.runsOf('a')).toHaveLength(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(h.runsOf('a')).toHaveLength(before + 1);
    }
    expect(h.gaveUp).toEqual([]);
  });

  it('gives up after five retries and tells the orchestrator once', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    for (let attempt = 0; attempt < 6; attempt++) {
      h.last('a').fail();
      await settle();
      await vi.advanceTimersByTimeAsync(200_000);
    }
    expect(h.runsOf('a')).toHaveLength(6);
    expect(h.gaveUp).toEqual([{ groupJid: 'a', attempts: 6, work: 'messages' }]);
    // A later message starts afresh, with a full set of retries.
    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(7);
  });

  it('resets the failure count after a success', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').fail();
    await settle();
    await vi.advanceTimersByTimeAsync(5_000);
    h.last('a').succeed();
    await settle();
    h.queue.enqueueMessage('a');
    h.last('a').fail();
    await settle();
    await vi.advanceTimersByTimeAsync(4_999);
    expect(h.runsOf('a')).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.runsOf('a')).toHaveLength(4); // first-retry delay again, not the second's
  });

  it('holds messages of a paused group and dispatches them on resume', () => {
    const h = harness();
    h.paused.add('a');
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('a');
    expect(h.started).toHaveLength(0);
    h.paused.delete('a');
    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(1);
  });

  it('lets a run under way finish when its group is paused, but releases an idle one', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.paused.add('a');
    h.queue.pause('a');
    expect(h.last('a').stopRequested).toBe(false);
    h.queue.enqueueMessage('a');
    expect(h.last('a').offered).toBe(0); // not injected into the paused group's container
    h.last('a').idle = true;
    h.queue.pause('a');
    expect(h.last('a').stopRequested).toBe(true);
    h.last('a').succeed();
    await settle();
    expect(h.runsOf('a')).toHaveLength(1);
  });

  it('skips a paused group in the waiting line without losing its place for later', async () => {
    const h = harness(1);
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('b');
    h.queue.enqueueMessage('c');
    h.paused.add('b');
    h.last('a').succeed();
    await settle();
    expect(h.started.map((r) => r.groupJid)).toEqual(['a', 'c']);
    h.paused.delete('b');
    h.queue.enqueueMessage('b');
    h.last('c').succeed();
    await settle();
    expect(h.started.map((r) => r.groupJid)).toEqual(['a', 'c', 'b']);
  });

  it('shuts down cleanly: asks runs to stop, then kills stragglers after the grace period', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('b');
    const done = h.queue.shutdown(1_000);
    expect(h.last('a').stopRequested && h.last('b').stopRequested).toBe(true);
    h.last('a').succeed();
    await vi.advanceTimersByTimeAsync(1_000);
    await done;
    expect(h.last('a').killed).toBe(false);
    expect(h.last('b').killed).toBe(true);
    h.queue.enqueueMessage('c');
    expect(h.runsOf('c')).toHaveLength(0);
  });

  it('cancels pending retries on shutdown', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').fail();
    await settle();
    await h.queue.shutdown(10);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.runsOf('a')).toHaveLength(1);
  });

  it('treats a run that throws at start like a failed run and retries it', async () => {
    let calls = 0;
    const queue = new GroupQueue({
      maxConcurrency: 1,
      log: silentLogger(),
      isPaused: () => false,
      onGiveUp: () => undefined,
      onNotReady: () => undefined,
      startRun: () => {
        calls += 1;
        throw new Error('docker is down');
      },
    });
    queue.enqueueMessage('a');
    await settle();
    expect(queue.snapshot().retrying).toEqual(['a']);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(calls).toBe(2);
  });

  it('reports a final failure once, without retrying, and takes the next message afresh', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').fail('no API key', 'final');
    await settle();
    await vi.advanceTimersByTimeAsync(300_000);
    expect(h.runsOf('a')).toHaveLength(1);
    expect(h.gaveUp).toEqual([{ groupJid: 'a', attempts: 1, work: 'messages' }]);
    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(2);
  });

  it('gives messages that arrived during a run stopped for good a fresh run, after one give-up', async () => {
    const h = harness(1);
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('b'); // waits for the one slot
    const stopped = h.last('a');
    // A follow-up was taken for a later turn, then the run was stopped at a limit.
    h.queue.enqueueMessage('a');
    expect(stopped.offered).toBe(1);
    stopped.end({
      ok: false,
      error: new Error('the agent sent more than 20 replies in one turn'),
      failure: 'final',
      notified: true,
      messagesLeft: true,
    });
    await settle();
    expect(h.gaveUp).toEqual([{ groupJid: 'a', attempts: 1, work: 'messages' }]);
    // Not a retry on a timer: a new run, at the back of the line, after the group that waited.
    expect(h.started.map((run) => run.groupJid)).toEqual(['a', 'b']);
    expect(h.queue.snapshot().retrying).toEqual([]);
    h.last('b').succeed();
    await settle();
    expect(h.started.map((run) => run.groupJid)).toEqual(['a', 'b', 'a']);
    expect(h.last('a').work).toEqual({ kind: 'messages' });
  });

  it('runs a task queued behind a run that failed for good', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    const chat = h.last('a');
    h.queue.enqueueTask('a', 'briefing');
    expect(chat.stopRequested).toBe(true);
    chat.fail('the model API refused the request', 'final');
    await settle();
    expect(h.last('a').work).toEqual({ kind: 'task', taskId: 'briefing' });
  });

  it('spends no retry while the container engine is unreachable, and resumes in order when it is back', async () => {
    const h = harness(3);
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('b');
    h.last('a').fail('engine gone', 'not-ready');
    await settle();
    expect(h.notReady).toEqual(['engine gone']);
    // While it is down, new work waits too, and nothing is retried on a timer.
    h.queue.enqueueMessage('c');
    h.last('b').fail('engine gone', 'not-ready');
    await settle();
    await vi.advanceTimersByTimeAsync(600_000);
    expect(h.started).toHaveLength(2);
    expect(h.queue.snapshot().waitingForSetup).toEqual(['a', 'c', 'b']);
    expect(h.gaveUp).toEqual([]);

    h.queue.releaseWork();
    expect(h.started.map((r) => r.groupJid)).toEqual(['a', 'b', 'a', 'c', 'b']);
    expect(h.queue.snapshot().waitingForSetup).toEqual([]);
    // The outage was not counted: a real failure now waits the first delay, not a later one.
    h.last('a').fail();
    await settle();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.runsOf('a')).toHaveLength(3);
  });

  it('holds user messages while a task runs, then answers them in a run of their own', async () => {
    const h = harness();
    h.queue.enqueueTask('a', 'briefing');
    const taskRun = h.last('a');
    expect(taskRun.work).toEqual({ kind: 'task', taskId: 'briefing' });
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('a');
    expect(taskRun.offered).toBe(2); // offered, and refused: not injected into the task
    expect(h.runsOf('a')).toHaveLength(1);
    taskRun.succeed();
    await settle();
    expect(h.runsOf('a')).toHaveLength(2);
    expect(h.last('a').work).toEqual({ kind: 'messages' });
  });

  it('makes a warm message run stop for a due task, and runs the task before waiting messages', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    const chat = h.last('a');
    chat.idle = true;
    h.queue.enqueueTask('a', 'report');
    expect(chat.stopRequested).toBe(true);
    chat.acceptOffers = false; // winding down
    h.queue.enqueueMessage('a');
    chat.succeed();
    await settle();
    expect(h.last('a').work).toEqual({ kind: 'task', taskId: 'report' });
    h.last('a').succeed();
    await settle();
    expect(h.last('a').work).toEqual({ kind: 'messages' });
  });

  it('queues the same task once, even if it is due again while waiting', () => {
    const h = harness(1);
    h.queue.enqueueMessage('busy');
    h.queue.enqueueTask('a', 't1');
    h.queue.enqueueTask('a', 't1');
    expect(h.queue.snapshot().waiting).toEqual(['a']);
    h.last('busy').succeed();
    return settle().then(() => {
      expect(h.runsOf('a').map((r) => r.work)).toEqual([{ kind: 'task', taskId: 't1' }]);
    });
  });

  it('retries a failed task run and then gives it up as a task', async () => {
    const h = harness();
    h.queue.enqueueTask('a', 'nightly');
    for (let attempt = 0; attempt < 6; attempt++) {
      h.last('a').fail();
      await settle();
      await vi.advanceTimersByTimeAsync(200_000);
    }
    expect(h.runsOf('a').every((r) => r.work.kind === 'task')).toBe(true);
    expect(h.gaveUp).toEqual([{ groupJid: 'a', attempts: 6, work: 'task' }]);
  });

  it('a throwing give-up callback does not break the queue', async () => {
    let runs = 0;
    const queue = new GroupQueue({
      maxConcurrency: 1,
      log: silentLogger(),
      isPaused: () => false,
      onGiveUp: () => {
        throw new Error('listener bug');
      },
      onNotReady: () => undefined,
      startRun: (jid) => {
        runs += 1;
        const run = new ScriptedRun(jid);
        run.fail('bad', 'final');
        return run;
      },
    });
    queue.enqueueMessage('a');
    await settle();
    queue.enqueueMessage('b');
    await settle();
    expect(runs).toBe(2);
    expect(queue.snapshot().running).toEqual([]);
  });

  it('rejects a nonsensical concurrency cap', () => {
    expect(() => harness(0)).toThrow(/maxConcurrency/);
  });
});
