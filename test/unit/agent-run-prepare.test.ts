/**
 * AgentRun's pre-start hook (`TurnSource.prepare`, where compaction runs): it runs before the
 * container starts, the container's ready deadline does not tick meanwhile, and a stop during
 * it aborts it and ends the run without a container. The real runner bundle runs as a child
 * process (ProcessRuntime) against the fake Messages API.
 */
import { describe, expect, it } from 'vitest';
import { HostTools } from '../../main/core/agent/host-tools.js';
import { ModelBroker } from '../../main/core/agent/model-broker.js';
import { messageTurns, type TurnSource } from '../../main/core/agent/turns.js';
import { CoreEventBus } from '../../main/core/events.js';
import { OutboxWorker } from '../../main/core/outbox.js';
import { formatOutbound } from '../../main/core/router.js';
import { textTurn } from '../fakes/anthropic-api.js';
import { agentRunHome } from '../helpers/agent-run.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { runnerSuite } from '../helpers/runner-suite.js';

const API_KEY = 'sk-ant-test-agent-run-prepare';
const suite = runnerSuite(API_KEY);

/** A message source whose `prepare` waits until `release` (or the run's abort). */
function heldSource(base: TurnSource) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const seen: { signal: AbortSignal | null; containersAtPrepare: number | null } = {
    signal: null,
    containersAtPrepare: null,
  };
  let entered!: () => void;
  const preparing = new Promise<void>((resolve) => (entered = resolve));
  const source: TurnSource = {
    ...base,
    history: () => base.history(),
    next: () => base.next(),
    prepare: async (signal) => {
      seen.signal = signal;
      entered();
      await Promise.race([
        released,
        new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve())),
      ]);
    },
  };
  return { source, release, preparing, seen };
}

function harness() {
  const home = agentRunHome('clawbar-prepare-', 'UTC');
  const { store, group, log } = home;
  const runtime = new ProcessRuntime();
  const outbox = new OutboxWorker({ store, channels: [], assistantName: 'Andy', log });
  const hostTools = new HostTools({ store, outbox, formatOutbound, now: Date.now, log });
  const broker = new ModelBroker({
    apiKey: API_KEY,
    baseURL: suite.fake.url,
    model: home.config.model,
    log,
    maxRetries: 0,
  });
  const parts = { runtime, broker, hostTools, outbox, events: new CoreEventBus() };
  suite.defer(async () => {
    await home.stopRuns();
    await outbox.stop(0);
    await runtime.cleanup();
    home.close();
  });
  const base = (): TurnSource => messageTurns({ store, groupJid: group.jid, timezone: 'UTC', log });
  return { home, runtime, parts, base, store, group };
}

describe('AgentRun with a source that prepares', () => {
  it('prepares before the container starts, without the ready deadline ticking, then runs the turn', async () => {
    const h = harness();
    suite.fake.script([textTurn('Hello after preparing.')]);
    const seq = h.home.post('@Andy hi');
    const held = heldSource(h.base());
    const run = h.home.run(h.parts, { readyTimeoutMs: 1_500, idleTimeoutMs: 10 }, held.source);
    await held.preparing;
    expect(h.runtime.started).toHaveLength(0);
    // Past the 1.5 s ready deadline: had it been ticking, the run would fail as not ready.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(held.seen.signal?.aborted).toBe(false);
    held.release();
    // The deadline starts afresh for the container, which boots and answers.
    const outcome = await run.finished;
    expect(outcome).toMatchObject({ ok: true });
    expect(h.runtime.started).toHaveLength(1);
    // The turn was answered and committed.
    expect(suite.fake.requests).toHaveLength(1);
    expect(h.store.cursorOf(h.group.jid)).toBe(seq);
  });

  it('ends a run stopped while its source prepares, aborting the preparation, with no container', async () => {
    const h = harness();
    h.home.post('@Andy hi');
    const held = heldSource(h.base());
    const run = h.home.run(h.parts, {}, held.source);
    await held.preparing;
    await run.kill();
    const outcome = await run.finished;
    expect(held.seen.signal?.aborted).toBe(true);
    expect(outcome.ok).toBe(false);
    expect(h.runtime.started).toHaveLength(0);
    expect(suite.fake.requests).toHaveLength(0);
  });
});
