/**
 * The orchestrator's wiring of work items and engine outages, with the real runner as a plain
 * process (no Docker), a real SQLite file, and the real SDK against the fake Messages API.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelBroker } from '../../main/core/agent/model-broker.js';
import { taskTurn } from '../../main/core/agent/turns.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { loadConfig } from '../../main/core/config.js';
import { Core } from '../../main/core/core.js';
import { silentLogger } from '../../main/core/logger.js';
import { openStore, type Store } from '../../main/core/store/index.js';
import {
  lastUserText,
  startFakeAnthropic,
  textTurn,
  type FakeAnthropic,
} from '../fakes/anthropic-api.js';
import { requireBuild } from '../helpers/clawbar.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';

const API_KEY = 'sk-ant-test-core-work';
let fake: FakeAnthropic;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  requireBuild();
  fake = await startFakeAnthropic({ apiKey: API_KEY });
});
afterAll(() => fake.close());
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
  fake.reset();
});

function makeCore(runtime: ProcessRuntime, maxConcurrency = 3): { core: Core; store: Store } {
  const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-core-')));
  const config = loadConfig({ CLAWBAR_HOME: home, TZ: 'UTC' }, () => undefined);
  const store = openStore(config.dbPath);
  const log = silentLogger();
  const core = new Core({
    config: { ...config, idleTimeoutMs: 30_000, maxConcurrency },
    store,
    runtime,
    broker: new ModelBroker({ apiKey: API_KEY, baseURL: fake.url, model: config.model, log }),
    log,
    channels: [localChannelFor(store)],
    retry: { baseDelayMs: 50, maxRetries: 1 },
    runtimeRecheckMs: 50,
  });
  cleanups.push(async () => {
    await core.shutdown(1_000);
    await runtime.cleanup();
    store.close();
    fs.rmSync(home, { recursive: true, force: true });
  });
  return { core, store };
}

describe('Core work items', () => {
  it('runs a queued task first, holds a chat message during it, then answers the message in its own run', async () => {
    const runtime = new ProcessRuntime();
    const { core, store } = makeCore(runtime);
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    fake.script([
      () => textTurn('Here is your briefing.', { delayMs: 400 }),
      (request) => textTurn(`You said: ${lastUserText(request).includes('lunch') ? 'lunch' : '?'}`),
    ]);
    core.enqueueTask(group.jid, 'briefing', (g) =>
      taskTurn({
        store,
        group: g,
        prompt: 'Morning briefing, please.',
        history: null,
        timezone: 'UTC',
      }),
    );
    await fake.waitForRequests(1);
    const posted = core.postLocal('Family', 'Alice', '@Andy what about lunch?');
    const reply = await core.waitForReply(group.jid, posted.message.seq, 20_000);
    expect(reply.replies.map((m) => m.text)).toEqual(['You said: lunch']);
    // The briefing is recorded when delivered: after the message that arrived during the task.
    expect(core.messages(group.jid, 10).map((m) => m.text)).toEqual([
      '@Andy what about lunch?',
      'Here is your briefing.',
      'You said: lunch',
    ]);
    // Two containers: the task's, then the chat's. The message never entered the task run.
    expect(runtime.started).toHaveLength(2);
    expect(runtime.started[0]?.stdinLines.map((l) => JSON.parse(l).type)).not.toContain('message');
    expect(JSON.stringify(fake.requests[0]?.body.messages)).not.toContain('lunch');
  });

  it('with the engine down at start, holds the work, then answers once the engine is back', async () => {
    const runtime = new ProcessRuntime();
    runtime.faults.engineUp = false;
    const { core } = makeCore(runtime);
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    const states: boolean[] = [];
    core.events.on('runtime:state', (e) => states.push(e.ok));
    fake.script([textTurn('Back online.')]);
    const posted = core.postLocal('Family', 'Alice', '@Andy hello?');
    const waiting = core.waitForReply(group.jid, posted.message.seq, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(runtime.startCalls).toBe(0);
    expect(core.queue.snapshot().waitingForRuntime).toEqual([group.jid]);
    const status = await core.status();
    expect(status.runtime).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not reachable/),
    });

    runtime.faults.engineUp = true;
    const reply = await waiting;
    expect(reply.replies.map((m) => m.text)).toEqual(['Back online.']);
    expect(runtime.startCalls).toBe(1);
    expect(states).toEqual([false, true]); // announced down once, then back
  });

  it('a task queued for a group that is removed before its turn never runs', async () => {
    const runtime = new ProcessRuntime();
    const { core, store } = makeCore(runtime, 1);
    await core.start();
    core.addGroup({ name: 'Busy' });
    const gone = core.addGroup({ name: 'Gone' });
    // Keep the one slot busy, so the task waits in line.
    fake.script([textTurn('slow', { delayMs: 2_000 })]);
    core.postLocal('Busy', 'Alice', '@Andy take your time');
    expect(core.queue.snapshot().running).toHaveLength(1);
    let built = 0;
    core.enqueueTask(gone.jid, 't1', (g) => {
      built += 1;
      return taskTurn({ store, group: g, prompt: 'x', history: null, timezone: 'UTC' });
    });
    expect(core.queue.snapshot().waiting).toEqual([gone.jid]);
    core.removeGroup(gone.jid);
    expect(core.queue.snapshot().waiting).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(built).toBe(0);
  });
});
