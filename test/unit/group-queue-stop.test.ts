/**
 * `GroupQueue.stop` (DESIGN.md §5 "Stop"): a busy run ends now and is not retried; its
 * messages stay stored for the next trigger. Fake timers drive the retry backoff.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../main/core/logger.js';
import {
  GroupQueue,
  type GroupRun,
  type RunOutcome,
  type WorkItem,
} from '../../main/core/queue/group-queue.js';

/**
 * A run the test settles by hand. Killed, it fails as AgentRun does when its container dies
 * under a turn: a `retry` failure, which the queue would retry were it not stopped.
 */
class ScriptedRun implements GroupRun {
  idle = false;
  kills = 0;
  private settle!: (outcome: RunOutcome) => void;
  readonly finished = new Promise<RunOutcome>((resolve) => (this.settle = resolve));

  constructor(
    readonly groupJid: string,
    readonly work: WorkItem,
  ) {}
  offerMessages(): boolean {
    return this.work.kind === 'messages' && this.kills === 0;
  }
  requestStop(): void {}
  async kill(): Promise<void> {
    this.kills += 1;
    this.fail('the agent container exited (code 137) in the middle of a turn');
  }
  succeed(): void {
    this.settle({ ok: true });
  }
  fail(message = 'container crashed'): void {
    this.settle({ ok: false, error: new Error(message), failure: 'retry' });
  }
}

function harness() {
  const started: ScriptedRun[] = [];
  const gaveUp: string[] = [];
  const queue = new GroupQueue({
    maxConcurrency: 2,
    log: silentLogger(),
    isPaused: () => false,
    onGiveUp: (groupJid, error) => gaveUp.push(`${groupJid}: ${error.message}`),
    onNotReady: () => undefined,
    startRun: (jid, work) => {
      const run = new ScriptedRun(jid, work);
      started.push(run);
      return run;
    },
  });
  const runsOf = (jid: string) => started.filter((r) => r.groupJid === jid);
  const last = (jid: string) => runsOf(jid).at(-1) as ScriptedRun;
  return { queue, started, gaveUp, runsOf, last };
}

/** Lets promise callbacks (run.finished handlers) run. */
const settle = () => vi.advanceTimersByTimeAsync(0);
/** Longer than every backoff of the default retry policy together. */
const ALL_RETRIES_MS = 10 * 60_000;

describe('GroupQueue.stop', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('kills the busy run, does not retry it and reports no give-up', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    const run = h.last('a');

    const result = h.queue.stop('a');
    expect(result).toEqual({ run, cancelledRetry: false });
    expect(run.kills).toBe(1);
    await settle();
    await vi.advanceTimersByTimeAsync(ALL_RETRIES_MS);

    expect(h.runsOf('a')).toHaveLength(1);
    expect(h.gaveUp).toEqual([]);
    expect(h.queue.snapshot()).toMatchObject({ running: [], retrying: [], waiting: [] });
  });

  it('frees the slot of a stopped run for a group waiting in line', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.queue.enqueueMessage('b');
    h.queue.enqueueMessage('c');
    expect(h.queue.snapshot().waiting).toEqual(['c']);
    h.queue.stop('a');
    await settle();
    expect(h.runsOf('c')).toHaveLength(1);
  });

  it('starts a new run for the next message after a stop, which answers from a clean slate', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').fail(); // one failure before the stop: the stop forgets it
    await settle();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.runsOf('a')).toHaveLength(2);
    h.queue.stop('a');
    await settle();

    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(3);
    expect(h.last('a').work).toEqual({ kind: 'messages' });
    // The failure count started again: five retries before a give-up, not four.
    for (let attempt = 0; attempt < 5; attempt++) {
      h.last('a').fail();
      await settle();
      await vi.advanceTimersByTimeAsync(ALL_RETRIES_MS);
    }
    expect(h.gaveUp).toEqual([]);
    expect(h.runsOf('a')).toHaveLength(8);
  });

  it('takes a message that arrived while the stopped run was dying as a new trigger', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    const run = h.last('a');
    // Killed, but its exit is not reported yet: the run still holds the group's slot.
    run.kill = async () => {
      run.kills += 1;
    };
    h.queue.stop('a');
    h.queue.enqueueMessage('a'); // refused by the dying run, so it waits for it
    expect(h.runsOf('a')).toHaveLength(1);
    run.fail('killed');
    await settle();
    expect(h.runsOf('a')).toHaveLength(2);
    expect(h.gaveUp).toEqual([]);
  });

  it('says so when the group has no run to stop, and changes nothing', async () => {
    const h = harness();
    expect(h.queue.stop('nobody')).toEqual({ run: null, cancelledRetry: false });
    h.queue.enqueueMessage('a');
    h.last('a').succeed();
    await settle();
    expect(h.queue.stop('a')).toEqual({ run: null, cancelledRetry: false });
    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(2);
  });

  it('lets a warm, idle run go without killing it, and reports no run stopped', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    const run = h.last('a');
    run.idle = true;
    let stopRequested = false;
    run.requestStop = () => (stopRequested = true);
    expect(h.queue.stop('a')).toEqual({ run: null, cancelledRetry: false });
    expect(stopRequested).toBe(true);
    expect(run.kills).toBe(0);
  });

  it('cancels a retry that waits for its timer', async () => {
    const h = harness();
    h.queue.enqueueMessage('a');
    h.last('a').fail();
    await settle();
    expect(h.queue.snapshot().retrying).toEqual(['a']);

    expect(h.queue.stop('a')).toEqual({ run: null, cancelledRetry: true });
    expect(h.queue.snapshot().retrying).toEqual([]);
    await vi.advanceTimersByTimeAsync(ALL_RETRIES_MS);
    expect(h.runsOf('a')).toHaveLength(1);
    expect(h.gaveUp).toEqual([]);

    h.queue.enqueueMessage('a');
    expect(h.runsOf('a')).toHaveLength(2);
  });

  it('does not retry a stopped task run, and keeps the tasks queued behind it', async () => {
    const h = harness();
    h.queue.enqueueTask('a', 'briefing');
    h.queue.enqueueTask('a', 'digest');
    expect(h.last('a').work).toEqual({ kind: 'task', taskId: 'briefing' });
    h.queue.stop('a');
    await settle();
    await vi.advanceTimersByTimeAsync(ALL_RETRIES_MS);
    expect(h.runsOf('a').map((r) => r.work)).toEqual([
      { kind: 'task', taskId: 'briefing' },
      { kind: 'task', taskId: 'digest' },
    ]);
    expect(h.gaveUp).toEqual([]);
  });

  it('drops a failed task waiting for its retry, and only that one', async () => {
    const h = harness();
    h.queue.enqueueTask('a', 'briefing');
    h.last('a').fail();
    await settle();
    h.queue.enqueueTask('a', 'digest');
    expect(h.queue.stop('a')).toMatchObject({ cancelledRetry: true });

    h.queue.enqueueMessage('a'); // wakes the group: its queued task goes first
    expect(h.runsOf('a').map((r) => r.work)).toEqual([
      { kind: 'task', taskId: 'briefing' },
      { kind: 'task', taskId: 'digest' },
    ]);
  });
});
