/**
 * The orchestrator's wiring of work items and engine outages, with the real runner as a plain
 * process (no Docker), a real SQLite file, and the real SDK against the fake Messages API.
 */
import { describe, expect, it, vi } from 'vitest';
import { taskTurn } from '../../main/core/agent/turns.js';
import type { TaskWork } from '../../main/core/scheduler/scheduler.js';
import { lastUserText, textTurn } from '../fakes/anthropic-api.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-core-work';
const suite = runnerSuite(API_KEY);

function makeCore(runtime: ProcessRuntime, maxConcurrency = 3): ProcessCore {
  const made = processCore({
    prefix: 'clawbar-core-',
    runtime,
    api: { url: suite.fake.url, apiKey: API_KEY },
    config: { idleTimeoutMs: 30_000, maxConcurrency },
    deps: { runtimeRecheckMs: 50 },
  });
  suite.defer(made.close);
  return made;
}

describe('Core run limits', () => {
  it('clamps every model call to the configured max tokens, whatever the runner asks for', async () => {
    const runtime = new ProcessRuntime();
    const made = processCore({
      prefix: 'clawbar-core-',
      runtime,
      api: { url: suite.fake.url, apiKey: API_KEY },
      config: { maxTokens: 1000 },
    });
    suite.defer(made.close);
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    suite.fake.script([textTurn('short answer')]);
    const posted = made.core.postLocal('Family', 'Alice', '@Andy hello');
    await made.core.waitForReply(group.jid, posted.message.seq, 20_000);
    // The runner asks for 8192.
    expect(suite.fake.requests.map((r) => r.body.max_tokens)).toEqual([1000]);
  });
});

describe('Core work items', () => {
  it('runs a queued task first, holds a chat message during it, then answers the message in its own run', async () => {
    const runtime = new ProcessRuntime();
    const { core, store } = makeCore(runtime);
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    suite.fake.script([
      () => textTurn('Here is your briefing.', { delayMs: 400 }),
      (request) => textTurn(`You said: ${lastUserText(request).includes('lunch') ? 'lunch' : '?'}`),
    ]);
    core.enqueueTask(
      group.jid,
      'briefing',
      workOf((g) =>
        taskTurn({
          store,
          group: g,
          prompt: 'Morning briefing, please.',
          history: null,
          timezone: 'UTC',
        }),
      ),
    );
    await suite.fake.waitForRequests(1);
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
    expect(JSON.stringify(suite.fake.requests[0]?.body.messages)).not.toContain('lunch');
  });

  it('with the engine down at start, says so at once, holds the work, and answers once the engine is back', async () => {
    const runtime = new ProcessRuntime();
    runtime.faults.engineUp = false;
    const { core } = makeCore(runtime);
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    const ready: boolean[] = [];
    core.events.on('setup:changed', (e) => ready.push(e.ready));
    suite.fake.script([textTurn('Back online.')]);
    const posted = core.postLocal('Family', 'Alice', '@Andy hello?');
    // The waiting client hears at once what is wrong and how to fix it, not after a timeout.
    await expect(core.waitForReply(group.jid, posted.message.seq, 20_000)).rejects.toThrow(
      /not answered yet: .*not reachable.*\(fix: .+\).*stored and will be answered/,
    );
    expect(runtime.startCalls).toBe(0);
    expect(core.queue.snapshot().waitingForSetup).toEqual([group.jid]);
    const status = await core.status();
    expect(status.setup.ready).toBe(false);
    expect(status.setup.problems.map((p) => p.kind)).toEqual(['engine']);
    expect(status.runtime).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not reachable/),
    });

    const answered = new Promise<void>((resolve) =>
      core.events.on('turn:finished', (e) => {
        if (e.groupJid === group.jid && (e.throughSeq ?? 0) >= posted.message.seq) resolve();
      }),
    );
    runtime.faults.engineUp = true;
    await answered;
    expect(runtime.startCalls).toBe(1);
    expect(ready).toEqual([true]); // only the fix is announced: the spell began before listening
    await vi.waitFor(() =>
      expect(core.messages(group.jid, 10).map((m) => m.text)).toEqual([
        '@Andy hello?',
        expect.stringMatching(/^I cannot answer yet: .*not reachable.*kept and will be answered/),
        'Back online.',
      ]),
    );
  });

  it('a task queued for a group that is removed before its turn never runs', async () => {
    const runtime = new ProcessRuntime();
    const { core, store } = makeCore(runtime, 1);
    await core.start();
    core.addGroup({ name: 'Busy' });
    const gone = core.addGroup({ name: 'Gone' });
    // Keep the one slot busy, so the task waits in line.
    suite.fake.script([textTurn('slow', { delayMs: 2_000 })]);
    core.postLocal('Busy', 'Alice', '@Andy take your time');
    expect(core.queue.snapshot().running).toHaveLength(1);
    let built = 0;
    const dropped: string[] = [];
    core.enqueueTask(gone.jid, 't1', {
      ...workOf((g) => {
        built += 1;
        return taskTurn({ store, group: g, prompt: 'x', history: null, timezone: 'UTC' });
      }),
      dropped: (reason) => dropped.push(reason),
    });
    expect(core.queue.snapshot().waiting).toEqual([gone.jid]);
    core.removeGroup(gone.jid);
    expect(core.queue.snapshot().waiting).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(built).toBe(0);
    expect(dropped).toEqual(['the group was removed']);
  });
});

/** A task's queue work that only builds its source: the scheduler's bookkeeping is not under test here. */
function workOf(source: TaskWork['source']): TaskWork {
  return { source, gaveUp: () => undefined, dropped: () => undefined };
}
