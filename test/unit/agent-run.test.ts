/**
 * AgentRun's state machine without Docker: the real runner bundle (or a misbehaving script)
 * runs as a plain child process through {@link ProcessRuntime}, over a real SQLite file, with
 * the real model broker on the real SDK against the fake Messages API. Timeouts are short, so
 * every path (idle, ready, hard timeout, lost wait, stop during start, kill failure) is quick.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentRun, type AgentRunConfig } from '../../main/core/agent/agent-run.js';
import { HostTools } from '../../main/core/agent/host-tools.js';
import { ModelBroker } from '../../main/core/agent/model-broker.js';
import { messageTurns, taskTurn, type TurnSource } from '../../main/core/agent/turns.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { CoreEventBus } from '../../main/core/events.js';
import { OutboxWorker } from '../../main/core/outbox.js';
import type { RunOutcome } from '../../main/core/queue/group-queue.js';
import { formatOutbound } from '../../main/core/router.js';
import { UnsafePathError } from '../../main/core/safe-fs.js';
import type { Group, Store } from '../../main/core/store/index.js';
import { errorTurn, textTurn } from '../fakes/anthropic-api.js';
import { agentRunHome } from '../helpers/agent-run.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { scriptedRunner } from '../helpers/scripted-runner.js';

const API_KEY = 'sk-ant-test-agent-run';
const NO_USAGE = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };

interface Harness {
  store: Store;
  runtime: ProcessRuntime;
  events: CoreEventBus;
  group: Group;
  typing: Array<[string, boolean]>;
  idles: number;
  post(text: string): number;
  run(over?: Partial<AgentRunConfig>, source?: TurnSource): AgentRun;
  replies(): string[];
}

const suite = runnerSuite(API_KEY);

function harness(): Harness {
  const home = agentRunHome('clawbar-run-', 'Europe/Berlin');
  const { store, group, log } = home;
  const runtime = new ProcessRuntime();
  const events = new CoreEventBus();
  const local = localChannelFor(store);
  const outbox = new OutboxWorker({ store, channels: [local], assistantName: 'Andy', log });
  void local.connect({
    onMessage: () => undefined,
    onState: (state) => outbox.channelState(local, state),
    onChatMetadata: () => undefined,
  });
  const hostTools = new HostTools({ store, outbox, formatOutbound, now: Date.now, log });
  const broker = new ModelBroker({
    apiKey: API_KEY,
    baseURL: suite.fake.url,
    model: home.config.model,
    log,
    maxRetries: 0,
  });
  const h: Harness = {
    store,
    runtime,
    events,
    group,
    typing: [],
    idles: 0,
    post: (text) => home.post(text),
    run: (over, source) =>
      home.run(
        {
          runtime,
          broker,
          hostTools,
          outbox,
          events,
          isPaused: (jid) => store.getGroup(jid)?.paused ?? true,
          setTyping: (jid, typing) => h.typing.push([jid, typing]),
          onIdle: () => (h.idles += 1),
        },
        over,
        source,
      ),
    replies: () =>
      store
        .recentMessages(group.jid, 50)
        .filter((m) => m.fromBot)
        .map((m) => m.text),
  };
  suite.defer(async () => {
    await home.stopRuns();
    await outbox.stop(0);
    await runtime.cleanup();
    home.close();
  });
  return h;
}

/** Resolves with the outcome, or fails the test if the run has not settled in `ms`. */
async function settled(run: AgentRun, ms = 10_000): Promise<RunOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the run did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([run.finished, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function turnFinished(h: Harness): Promise<void> {
  return new Promise((resolve) => {
    const off = h.events.on('turn:finished', () => {
      off();
      resolve();
    });
  });
}

describe('AgentRun', () => {
  it('answers, commits the reply with the cursor, shows typing, then idles warm', async () => {
    const h = harness();
    const seq = h.post('@Andy hello');
    suite.fake.script([textTurn('Hello Alice!')]);
    const run = h.run();
    await turnFinished(h);
    expect(run.idle).toBe(true);
    expect(h.idles).toBe(1);
    expect(h.store.cursorOf(h.group.jid)).toBe(seq);
    await expect.poll(() => h.replies()).toEqual(['Hello Alice!']);
    expect(h.typing).toEqual([
      [h.group.jid, true],
      [h.group.jid, false],
    ]);
    // The prompt's time is local to the configured zone, with its offset.
    expect(JSON.stringify(suite.fake.requests[0]?.body.messages)).toMatch(
      /time=\\"[^"]+\+0[12]:00\\"/,
    );
  });

  it('stops at the idle timeout and settles cleanly', async () => {
    const h = harness();
    h.post('@Andy hi');
    const run = h.run({ idleTimeoutMs: 300 });
    expect(await settled(run)).toEqual({ ok: true });
    expect(h.runtime.started[0]?.child.exitCode).not.toBeNull();
  });

  it('fails as a retryable fault when the runner never says ready', async () => {
    const h = harness();
    h.post('@Andy hi');
    h.runtime.useScript('setInterval(() => {}, 1000);');
    const run = h.run({ readyTimeoutMs: 300 });
    const outcome = await settled(run);
    expect(outcome).toMatchObject({ ok: false, failure: 'retry' });
    expect((outcome as { error: Error }).error.message).toMatch(/did not become ready within/);
    await h.runtime.started[0]?.exited;
  });

  it('stops an agent that goes silent mid-turn (hard timeout): the turn is closed with a notice, and it is not retried', async () => {
    const h = harness();
    const seq = h.post('@Andy hi');
    h.runtime.useScript(scriptedRunner({ onPrompt: '/* says nothing */' }));
    const run = h.run({ hardTimeoutMs: 400 });
    const outcome = await settled(run);
    expect(outcome).toMatchObject({ ok: false, failure: 'final', notified: true });
    expect((outcome as { error: Error }).error.message).toBe(
      'the agent made no progress for 400 ms',
    );
    // Closed, so a hung turn cannot loop: the chat is told why.
    expect(h.store.cursorOf(h.group.jid)).toBe(seq);
    await expect
      .poll(() => h.replies())
      .toEqual(['Sorry, I could not answer that: the agent made no progress for 400 ms']);
  });

  it('a lost container is a failed run: waiting for the engine when it is down, a fault when it is up', async () => {
    for (const engineUp of [false, true]) {
      const h = harness();
      h.post('@Andy hi');
      h.runtime.useScript(scriptedRunner({ onPrompt: '/* busy forever */' }));
      h.runtime.faults.engineUp = engineUp;
      const run = h.run();
      await expect.poll(() => h.runtime.started[0]?.stdinLines.length ?? 0).toBeGreaterThan(0);
      h.runtime.started[0]?.loseWait();
      const outcome = await settled(run);
      expect(outcome).toMatchObject({
        ok: false,
        failure: engineUp ? 'retry' : 'not-ready',
      });
      expect((outcome as { error: Error }).error.message).toMatch(
        /lost track of the agent container/,
      );
      // It was killed (the engine answered) or left for orphan cleanup; either way not a clean exit.
      if (engineUp) await h.runtime.started[0]?.exited;
    }
  });

  it('kill() while the start is still under way ends the run at once', async () => {
    const h = harness();
    h.post('@Andy hi');
    h.runtime.faults.start = 'hang';
    const run = h.run();
    await expect.poll(() => h.runtime.startCalls).toBe(1);
    const began = Date.now();
    await run.kill();
    const outcome = await settled(run, 2_000);
    expect(outcome.ok).toBe(false);
    expect(Date.now() - began).toBeLessThan(1_000);
    expect(h.runtime.started).toEqual([]);
  });

  it('the ready deadline covers a wedged start, and a start that never answers cannot pin the run', async () => {
    const h = harness();
    h.post('@Andy hi');
    h.runtime.faults.start = 'hang-ignoring-abort';
    const run = h.run({ readyTimeoutMs: 200, stopTimeoutMs: 300 });
    const outcome = await settled(run, 3_000);
    expect(outcome).toMatchObject({ ok: false, failure: 'retry' });
    expect((outcome as { error: Error }).error.message).toMatch(/did not become ready within/);
  });

  it('a kill that fails (engine unreachable) still lets the run settle, without an unhandled rejection', async () => {
    const h = harness();
    h.post('@Andy hi');
    h.runtime.useScript(scriptedRunner({ onPrompt: '/* busy */' }));
    h.runtime.faults.killFails = true;
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    try {
      const run = h.run({ hardTimeoutMs: 300, stopTimeoutMs: 300 });
      const outcome = await settled(run, 3_000);
      expect(outcome).toMatchObject({ ok: false, failure: 'final' });
      await run.kill(); // a second, explicit kill fails too, quietly
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(rejections).toEqual([]);
    } finally {
      process.off('unhandledRejection', onRejection);
      h.runtime.faults.killFails = false;
    }
  });

  it('a run asked to stop finishes its turn but starts no new one', async () => {
    const h = harness();
    h.post('@Andy first');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    suite.fake.script([
      () => textTurn('first answer', { delayMs: 300 }),
      textTurn('second answer'),
    ]);
    const run = h.run();
    await suite.fake.waitForRequests(1);
    run.requestStop();
    h.post('@Andy second');
    expect(run.offerMessages()).toBe(false);
    release();
    await gate;
    expect(await settled(run)).toEqual({ ok: true });
    expect(h.replies()).toEqual(['first answer']);
    expect(suite.fake.requests).toHaveLength(1);
    const frames = h.runtime.started[0]?.stdinLines.map((l) => JSON.parse(l).type);
    expect(frames).not.toContain('message');
  });

  it('a throwing event listener cannot stop a run from settling', async () => {
    const h = harness();
    h.events.on('run:finished', () => {
      throw new Error('listener bug');
    });
    h.events.on('turn:finished', () => {
      throw new Error('listener bug');
    });
    h.post('@Andy hi');
    const run = h.run({ idleTimeoutMs: 200 });
    expect(await settled(run)).toEqual({ ok: true });
    await expect.poll(() => h.replies()).toEqual(['ok']);
  });

  it('records usage from the host’s own broker, never from the container’s done frame', async () => {
    const h = harness();
    h.post('@Andy hi');
    h.runtime.useScript(
      scriptedRunner({
        onPrompt: `out({ type: 'output', text: 'forged' }); out({ type: 'done', status: 'ok', turn: [], usage: { inputTokens: 999999, outputTokens: 999999, cacheReadTokens: 0, cacheWriteTokens: 0 } });`,
      }),
    );
    h.run();
    await turnFinished(h);
    const day = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Berlin' }).format(new Date());
    expect(h.store.usageOf(h.group.jid, day)).toEqual(NO_USAGE);
    await expect.poll(() => h.replies()).toEqual(['forged']);
  });

  it('a runner that refuses the start frame ends the run at once, as a final failure that says why', async () => {
    const h = harness();
    h.post('@Andy hi');
    h.runtime.useScript(
      scriptedRunner({
        onPrompt: `out({ type: 'error', code: 'bad_frame', message: 'bad frame from host: invalid' });`,
      }),
    );
    const began = Date.now();
    const outcome = await settled(h.run());
    expect(Date.now() - began).toBeLessThan(5_000);
    expect(outcome).toMatchObject({ ok: false, failure: 'final' });
    expect((outcome as { error: Error }).error.message).toMatch(
      /refused a frame from the host.*clawbar image build/,
    );
    expect(h.store.cursorOf(h.group.jid)).toBe(0); // the messages wait for a fixed image
  });

  it('a link planted in place of the group or global folder fails the run as final, before any container starts', async () => {
    // Its own data dir, so the test owns every path it plants links in.
    const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-run-link-')));
    suite.defer(() => fs.rmSync(home, { recursive: true, force: true }));
    const groupsDir = path.join(home, 'groups');
    const globalDir = path.join(groupsDir, 'global');
    // Stands in for a host directory such as /etc: it must be neither changed nor mounted.
    const hostDir = path.join(home, 'host');
    fs.mkdirSync(globalDir, { recursive: true });
    fs.mkdirSync(hostDir);
    fs.writeFileSync(path.join(hostDir, 'passwd'), 'root:x:0:0\n');

    const h = harness();
    h.post('@Andy hi');
    for (const planted of [path.join(groupsDir, h.group.folder), globalDir]) {
      fs.rmSync(planted, { recursive: true, force: true });
      fs.symlinkSync(hostDir, planted);
      const outcome = await settled(h.run({ home, groupsDir, globalDir }));
      expect(outcome).toMatchObject({ ok: false, failure: 'final' });
      const { error } = outcome as { error: Error };
      expect(error.message).toBe(
        `could not start the agent container: ${planted} is a symbolic link; host code does not follow links in folders a container can write, so it was left alone`,
      );
      expect(error.cause).toBeInstanceOf(UnsafePathError);
      expect(h.runtime.startCalls).toBe(0);
      expect(fs.lstatSync(planted).isSymbolicLink()).toBe(true);
      expect(fs.readdirSync(hostDir)).toEqual(['passwd']);
      fs.rmSync(planted);
      fs.mkdirSync(planted);
    }
    expect(h.store.cursorOf(h.group.jid)).toBe(0); // the message waits for the folder to be fixed
  });

  it('a prompt the protocol cannot carry is closed with a notice, not retried, and the run ends', async () => {
    const h = harness();
    const seq = h.post(`@Andy ${'x'.repeat(1_100_000)}`);
    const run = h.run(
      {},
      messageTurns({
        store: h.store,
        groupJid: h.group.jid,
        timezone: 'UTC',
        maxPromptBytes: 2_000_000,
      }),
    );
    expect(await settled(run)).toEqual({ ok: true });
    expect(h.store.cursorOf(h.group.jid)).toBe(seq);
    await expect
      .poll(() => h.replies())
      .toEqual([
        expect.stringMatching(/^Sorry, I could not answer that: the request could not be passed/),
      ]);
    expect(suite.fake.requests).toHaveLength(0);
  });

  it('a turn the agent fails on its own is closed with a notice, and the run goes on warm', async () => {
    const h = harness();
    const seq = h.post('@Andy hi');
    h.runtime.useScript(
      scriptedRunner({
        onPrompt: `out({ type: 'error', message: 'stopped after 50 model calls' }); out({ type: 'done', status: 'failed', turn: [], usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 } });`,
      }),
    );
    const run = h.run();
    await turnFinished(h);
    expect(run.idle).toBe(true);
    expect(h.store.cursorOf(h.group.jid)).toBe(seq);
    await expect
      .poll(() => h.replies())
      .toEqual([
        'Sorry, I could not answer that: the agent could not finish (stopped after 50 model calls)',
      ]);
  });

  it('a model error the runner could not get past is final: reported once, messages kept', async () => {
    const h = harness();
    h.post('@Andy hi');
    suite.fake.script([errorTurn(401, 'invalid x-api-key')]);
    const outcome = await settled(h.run());
    expect(outcome).toMatchObject({ ok: false, failure: 'final' });
    expect((outcome as { error: Error }).error.message).toMatch(/rejected the key/);
    expect(h.store.cursorOf(h.group.jid)).toBe(0);
    expect(suite.fake.requests).toHaveLength(1);
  });

  it('answers a 1.2 MB backlog (20 messages of 60 kB) in seconds, with the newest in the prompt', async () => {
    const h = harness();
    for (let i = 0; i < 19; i++) h.post(`${i}:${'x'.repeat(60_000)}`);
    const last = h.post(`@Andy 19:${'y'.repeat(60_000)}`);
    suite.fake.script([textTurn('Read the latest ones.')]);
    const began = Date.now();
    h.run();
    await turnFinished(h);
    expect(Date.now() - began).toBeLessThan(10_000);
    expect(h.store.cursorOf(h.group.jid)).toBe(last);
    const sent = JSON.stringify(suite.fake.requests[0]?.body.messages.at(-1));
    expect(sent).toContain('y'.repeat(60_000));
    expect(sent).toMatch(/omitted count=\\"1[0-9]\\"/);
    expect(sent.length).toBeLessThan(400_000);
  });

  it('a task run answers its one turn, takes no messages, and ends', async () => {
    const h = harness();
    suite.fake.script([textTurn('Your briefing.')]);
    const committed: string[] = [];
    const run = h.run(
      {},
      taskTurn({
        store: h.store,
        group: h.group,
        prompt: 'Write the morning briefing.',
        history: null,
        timezone: 'UTC',
        onCommit: (result) => committed.push(result.turnId),
      }),
    );
    h.post('@Andy are you there?');
    expect(run.offerMessages()).toBe(false);
    expect(await settled(run)).toEqual({ ok: true });
    expect(committed).toHaveLength(1);
    await expect.poll(() => h.replies()).toEqual(['Your briefing.']);
    expect(h.store.cursorOf(h.group.jid)).toBe(0); // the chat message waits for its own run
    expect(JSON.stringify(suite.fake.requests[0]?.body.messages)).toContain('morning briefing');
  });
});
