/**
 * `groups stop` and the turn-attempt limit, through a real Core: a real SQLite file, the control
 * socket as `serve` runs it, and stand-in runners as plain child processes (no Docker, no model:
 * the scripted runners answer by themselves, or die).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_TURN_ATTEMPTS } from '../../main/core/agent/turns.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { loadConfig } from '../../main/core/config.js';
import { ControlClient } from '../../main/core/control/client.js';
import { controlHandlers, type GroupStopView } from '../../main/core/control/handlers.js';
import { ControlServer } from '../../main/core/control/server.js';
import { Core } from '../../main/core/core.js';
import type { CoreEvents } from '../../main/core/events.js';
import { silentLogger } from '../../main/core/logger.js';
import { openStore } from '../../main/core/store/index.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { scriptedRunner } from '../helpers/scripted-runner.js';
import { processCore, throwingBroker } from '../helpers/unit-core.js';

const DONE = `out({ type: 'done', status: 'ok', turn: [], usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 } });`;

/**
 * Answers each prompt with the words it saw, except a prompt that carries only "first": that
 * turn never ends, as a runner stuck in a long tool call would.
 */
const STUCK_ON_FIRST = scriptedRunner({
  onPrompt: `
    const prompt = frame.type === 'start' ? frame.prompt : frame.text;
    const seen = ['first', 'second'].filter((word) => prompt.includes(word));
    if (seen.join() !== 'first') {
      out({ type: 'output', text: 'answered: ' + seen.join(' and ') });
      ${DONE}
    }`,
});

/** Dies in the middle of every turn, as a runner that runs out of memory would. */
const DIES_MID_TURN = scriptedRunner({ onPrompt: `process.exit(3);` });

/** Answers every prompt. */
const ANSWERS = scriptedRunner({
  onPrompt: `out({ type: 'output', text: 'hello again' }); ${DONE}`,
});

/** Never finishes a turn, as a runner busy with a long tool call would. */
const BUSY_FOR_EVER = scriptedRunner({});

/**
 * Asks the model once per prompt, as the real runner does, and fails the turn with the host's
 * `model.error`, as the real runner does once its own retries are spent.
 */
const ASKS_THE_MODEL = scriptedRunner({
  onPrompt: `out({ type: 'model.request', requestId: 'r' + Date.now(), system: 'You are Andy.',
    messages: [{ role: 'user', content: 'hi' }], tools: [], maxTokens: 100 });`,
  onFrame: `if (frame.type === 'model.error') {
    out({ type: 'error', message: 'model call failed: ' + frame.message });
    out({ type: 'done', status: 'failed', turn: [], usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 } });
  }`,
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

async function startCore(runtime: ProcessRuntime) {
  const { core, store, config, close } = processCore({
    prefix: 'clawbar-stop-',
    runtime,
    config: { idleTimeoutMs: 30_000 },
    deps: { retry: { baseDelayMs: 20, maxRetries: 5 } },
  });
  const log = silentLogger();
  cleanups.push(close);
  await core.start();
  const server = new ControlServer(
    config.socketPath,
    controlHandlers({ core, serving: true }),
    log,
  );
  await server.listen();
  cleanups.push(() => server.close());
  const client = await ControlClient.connect(config.socketPath);
  cleanups.push(() => client.close());
  return { core, store, client };
}

/** Records every event of one kind the core announces. */
function record<K extends keyof CoreEvents>(core: Core, event: K): Array<CoreEvents[K]> {
  const seen: Array<CoreEvents[K]> = [];
  cleanups.push(core.events.on(event, (payload) => seen.push(payload)));
  return seen;
}

/** Resolves at the next event of one kind. */
function next<K extends keyof CoreEvents>(core: Core, event: K): Promise<CoreEvents[K]> {
  return new Promise((resolve) => {
    const off = core.events.on(event, (payload) => {
      off();
      resolve(payload);
    });
  });
}

/** Long enough for several retries of the 20 ms backoff to have happened, were any due. */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('clawbar groups stop', () => {
  it('ends a busy run now without retry; the next message gets a run that answers both', async () => {
    const runtime = new ProcessRuntime();
    runtime.useScript(STUCK_ON_FIRST);
    const { core, store, client } = await startCore(runtime);
    const group = core.addGroup({ name: 'Family' });
    const gaveUp = record(core, 'run:gave-up');
    const started = next(core, 'run:started');
    const first = core.postLocal('Family', 'Alice', '@Andy first');
    await started;
    await expect.poll(() => runtime.started[0]?.stdinLines.length ?? 0).toBeGreaterThan(0);

    const finished = next(core, 'run:finished');
    const stop = (await client.request('groups.stop', { group: 'family' })) as GroupStopView;

    expect(stop).toMatchObject({ group: { name: 'Family' }, stopped: true, cancelledRetry: false });
    await finished;
    await sleep(300);
    expect(runtime.startCalls).toBe(1);
    expect(gaveUp).toEqual([]);
    expect(store.queuedOutbox()).toEqual([]); // no notice, no reply
    expect(store.cursorOf(group.jid)).toBe(first.message.seq - 1);
    expect(store.turnAttemptOf(group.jid)?.attempts ?? 0).toBe(0); // a stop is not a failure
    expect(core.queue.snapshot().running).toEqual([]);

    const answered = (await client.request('send', {
      group: 'Family',
      text: '@Andy second',
      wait: true,
      timeoutMs: 20_000,
    })) as { replies: Array<{ text: string }> };

    expect(answered.replies.map((r) => r.text)).toEqual(['answered: first and second']);
    expect(runtime.startCalls).toBe(2);
  }, 30_000);

  it('answers a group with no run that there is nothing to stop', async () => {
    const runtime = new ProcessRuntime();
    const { core, client } = await startCore(runtime);
    core.addGroup({ name: 'Family' });
    expect(await client.request('groups.stop', { group: 'local:family' })).toEqual({
      group: expect.objectContaining({ name: 'Family', paused: false }),
      stopped: false,
      cancelledRetry: false,
    });
    await expect(client.request('groups.stop', { group: 'ghost' })).rejects.toMatchObject({
      code: 'not_found',
    });
    expect(runtime.startCalls).toBe(0);
  });
});

describe('a message whose runs keep failing', () => {
  it(`is given up with a notice after ${MAX_TURN_ATTEMPTS} attempts instead of being retried for ever`, async () => {
    const runtime = new ProcessRuntime();
    runtime.useScript(DIES_MID_TURN);
    const { core, store } = await startCore(runtime);
    const group = core.addGroup({ name: 'Family' });
    const gaveUp = record(core, 'run:gave-up');

    const posted = core.postLocal('Family', 'Alice', '@Andy the poisoned message');
    const reply = await core.waitForReply(group.jid, posted.message.seq, 20_000);

    expect(reply.replies.map((m) => m.text)).toEqual([
      `Sorry, I gave up on your last message after ${MAX_TURN_ATTEMPTS} attempts: ` +
        'the agent container exited (code 3) in the middle of a turn.',
    ]);
    // Each attempt had a container; the last start found the attempts spent and ran nothing.
    expect(runtime.startCalls).toBe(MAX_TURN_ATTEMPTS + 1);
    expect(gaveUp).toEqual([]); // closed by the attempt limit, not by the queue's retries
    expect(store.cursorOf(group.jid)).toBe(posted.message.seq);
    expect(store.turnAttemptOf(group.jid)).toBeUndefined();

    // The group goes on: the next message is answered from a clean count.
    runtime.useScript(ANSWERS);
    const later = core.postLocal('Family', 'Alice', '@Andy hello?');
    const answer = await core.waitForReply(group.jid, later.message.seq, 20_000);
    expect(answer.replies.map((m) => m.text)).toEqual(['hello again']);
  }, 30_000);
});

describe('attempts that are not the message’s fault', () => {
  /**
   * One `serve` over a data dir that outlives it: the store, a Core and a runtime, all closed
   * by the test (or, if it fails first, by the cleanup).
   */
  async function serve(home: string, script: string) {
    const runtime = new ProcessRuntime();
    runtime.useScript(script);
    const config = loadConfig({ CLAWBAR_HOME: home, TZ: 'UTC' }, () => undefined);
    const store = openStore(config.dbPath);
    const core = new Core({
      config: { ...config, idleTimeoutMs: 30_000 },
      store,
      runtime,
      broker: throwingBroker,
      log: silentLogger(),
      channels: [localChannelFor(store)],
      retry: { baseDelayMs: 20, maxRetries: 5 },
    });
    let open = true;
    const stop = async (graceMs: number) => {
      if (!open) return;
      open = false;
      await core.shutdown(graceMs);
      await runtime.cleanup();
      store.close();
    };
    cleanups.push(() => stop(0));
    await core.start();
    return { core, store, runtime, stop };
  }

  it(`a message whose turn is cut short by ${MAX_TURN_ATTEMPTS} shutdowns is still answered after the restart`, async () => {
    const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-restarts-')));
    cleanups.push(() => fs.rmSync(home, { recursive: true, force: true }));
    let groupJid = '';
    let seq = 0;
    for (let restart = 0; restart < MAX_TURN_ATTEMPTS; restart++) {
      const serving = await serve(home, BUSY_FOR_EVER);
      if (restart === 0) {
        groupJid = serving.core.addGroup({ name: 'Family' }).jid;
        seq = serving.core.postLocal('Family', 'Alice', '@Andy a long job').message.seq;
      } // Later starts pick the unanswered message up by themselves.
      await expect
        .poll(() => serving.runtime.started[0]?.stdinLines.length ?? 0, { timeout: 10_000 })
        .toBeGreaterThan(0);

      // The runner is still busy when the grace period ends: the shutdown kills it.
      await serving.core.shutdown(50);

      // Written before shutdown returned, while the store is open: the cut is forgiven.
      expect(serving.store.turnAttemptOf(groupJid)?.attempts, `restart ${restart}`).toBe(0);
      await serving.stop(0);
    }

    const serving = await serve(home, ANSWERS);
    const reply = await serving.core.waitForReply(groupJid, seq, 20_000);
    expect(reply.replies.map((m) => m.text)).toEqual(['hello again']);
    expect(serving.store.cursorOf(groupJid)).toBe(seq);
  }, 60_000);

  it(`messages of a user with no API key start no container, are told the fix once, and are never given up`, async () => {
    const runtime = new ProcessRuntime();
    runtime.useScript(ASKS_THE_MODEL);
    const { core, store, close } = processCore({
      prefix: 'clawbar-nokey-',
      runtime,
      config: { apiKey: '', idleTimeoutMs: 30_000 },
      // The real broker with no key (nothing listens at this address).
      api: { url: 'http://127.0.0.1:9', apiKey: '' },
      deps: { retry: { baseDelayMs: 20, maxRetries: 5 } },
    });
    cleanups.push(close);
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    const notices = () =>
      core
        .messages(group.jid, 100)
        .filter((m) => m.fromBot)
        .map((m) => m.text);

    const tries = MAX_TURN_ATTEMPTS + 1;
    for (let i = 1; i <= tries; i++) {
      const posted = core.postLocal('Family', 'Alice', `@Andy message ${i}`);
      // A waiting client hears the fix at once.
      await expect(core.waitForReply(group.jid, posted.message.seq, 10_000)).rejects.toThrow(
        /^not answered yet: no Anthropic API key is set \(fix: set ANTHROPIC_API_KEY .* restart it\)/,
      );
    }
    await expect.poll(notices, { timeout: 10_000 }).toHaveLength(1);

    // Not a run failure: no container, no attempt counted, nothing given up, all still pending.
    expect(runtime.startCalls).toBe(0);
    expect(notices()).toEqual([
      expect.stringMatching(
        /^I cannot answer yet: no Anthropic API key is set \(fix: .*ANTHROPIC_API_KEY.*\)\. Your message is kept/,
      ),
    ]);
    expect(store.cursorOf(group.jid)).toBe(0);
    expect(store.turnAttemptOf(group.jid)?.attempts ?? 0).toBe(0);
    expect(core.queue.snapshot().waitingForSetup).toEqual([group.jid]);
    expect((await core.status()).setup.problems.map((p) => p.kind)).toEqual(['no-key']);
  });
});
