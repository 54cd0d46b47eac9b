/**
 * The orchestrator in-process with real parts: real Docker containers, a real SQLite file,
 * the real SDK against the fake API. Covers the global cap, what the container sees on the
 * wire, and containers that misbehave.
 */
import Docker from 'dockerode';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelBroker } from '../../main/core/agent/model-broker.js';
import { PROTOCOL_VERSION } from '../../main/core/agent/protocol.js';
import { loadConfig, type ClawbarConfig } from '../../main/core/config.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { Core } from '../../main/core/core.js';
import { silentLogger } from '../../main/core/logger.js';
import { DockerRuntime } from '../../main/core/sandbox/docker.js';
import {
  SCOPE_LABEL,
  scopeForHome,
  type ContainerRuntime,
  type ContainerSpec,
} from '../../main/core/sandbox/runtime.js';
import { openStore, type Store } from '../../main/core/store/index.js';
import {
  startFakeAnthropic,
  textTurn,
  type FakeAnthropic,
  type TurnFactory,
} from '../fakes/anthropic-api.js';
import { ensureAgentImage, requireBuild, tempHome, TEST_AGENT_IMAGE } from '../helpers/clawbar.js';
import { buildTestImage, removeTestImage, requireDocker } from '../helpers/docker.js';
import { scriptedRunner } from '../helpers/scripted-runner.js';

const API_KEY = 'sk-ant-test-WIRECANARY-91c2';

interface Harness {
  core: Core;
  store: Store;
  config: ClawbarConfig;
  /** Every byte written to or read from a container's stdio. */
  wire: string[];
  close(): Promise<void>;
}

const open: Harness[] = [];

function harness(
  fake: FakeAnthropic,
  over: Partial<ClawbarConfig> & { image?: string } = {},
): Harness {
  const home = tempHome('clawbar-orch-');
  const config = {
    ...loadConfig({ CLAWBAR_HOME: home, CLAWBAR_IMAGE: TEST_AGENT_IMAGE }, () => undefined),
    ...over,
  };
  const store = openStore(config.dbPath);
  const log = silentLogger();
  // Scoped by the resolved home, as serve does and as the leftover check below looks it up.
  const docker = new DockerRuntime({ log, scope: scopeForHome(config.home) });
  const wire: string[] = [];
  // Tap the container's stdio, to check what crosses into the sandbox.
  const runtime: ContainerRuntime = Object.assign(Object.create(docker) as DockerRuntime, {
    async start(spec: ContainerSpec) {
      const container = await docker.start(spec);
      const write = container.stdin.write.bind(container.stdin);
      container.stdin.write = ((chunk: unknown, ...rest: unknown[]) => {
        wire.push(String(chunk));
        return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof container.stdin.write;
      container.stdout.on('data', (d: Buffer | string) => wire.push(String(d)));
      return container;
    },
  });
  const broker = new ModelBroker({
    apiKey: API_KEY,
    baseURL: fake.url,
    model: config.model,
    log,
    maxRetries: 0,
  });
  const core = new Core({
    config,
    store,
    runtime,
    broker,
    log,
    channels: [localChannelFor(store)],
    retry: { baseDelayMs: 200, maxRetries: 1 },
  });
  const h: Harness = {
    core,
    store,
    config,
    wire,
    async close() {
      await core.shutdown(2_000);
      store.close();
    },
  };
  open.push(h);
  return h;
}

requireDocker('orchestrator with real containers', () => {
  let fake: FakeAnthropic;

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY });
    return () => fake.close();
  }, 180_000);

  afterEach(async () => {
    while (open.length) await open.pop()?.close();
    fake.reset();
  });

  it('runs at most two groups at once with a cap of 2, and all five finish', async () => {
    const h = harness(fake, { maxConcurrency: 2, idleTimeoutMs: 60_000 });
    // Slow answers make the runs overlap, so the cap is what limits them.
    scriptSlowAnswers(fake, 600);
    await h.core.start();
    let running = 0;
    let peak = 0;
    h.core.events.on('run:started', () => (peak = Math.max(peak, ++running)));
    h.core.events.on('run:finished', () => running--);

    const names = ['one', 'two', 'three', 'four', 'five'];
    const waits = names.map((name) => {
      h.core.addGroup({ name });
      const posted = h.core.postLocal(name, 'Tester', `@Andy hello ${name}`);
      return h.core.waitForReply(posted.group.jid, posted.message.seq, 60_000);
    });
    const replies = await Promise.all(waits);
    expect(replies.map((r) => r.replies.map((m) => m.text))).toEqual(
      names.map((n) => [`slow answer to ${n}`]),
    );
    expect(peak).toBe(2);
  }, 120_000);

  it('never sends the API key across the container boundary', async () => {
    const h = harness(fake);
    await h.core.start();
    h.core.addGroup({ name: 'wire' });
    fake.script([textTurn('hello from the model')]);
    const posted = h.core.postLocal('wire', 'Tester', '@Andy hi');
    await h.core.waitForReply(posted.group.jid, posted.message.seq, 60_000);
    const traffic = h.wire.join('');
    expect(traffic).toContain('"type":"model.result"');
    expect(traffic).toContain('hello from the model');
    expect(traffic).not.toContain(API_KEY);
    expect(traffic).not.toContain('WIRECANARY');
  }, 60_000);

  it('stores messages of a paused group without running it, and answers them in one batch on resume', async () => {
    const h = harness(fake);
    await h.core.start();
    h.core.addGroup({ name: 'holiday' });
    h.core.pauseGroup('holiday');
    const started: string[] = [];
    h.core.events.on('run:started', (e) => started.push(e.groupJid));
    h.core.postLocal('holiday', 'Ann', '@Andy first question');
    const second = h.core.postLocal('holiday', 'Ben', '@Andy second question');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(started).toEqual([]);
    expect(fake.requests).toHaveLength(0);

    fake.script([textTurn('Both answered.')]);
    h.core.resumeGroup('holiday');
    const reply = await h.core.waitForReply(second.group.jid, second.message.seq, 60_000);
    expect(reply.replies.map((m) => m.text)).toEqual(['Both answered.']);
    expect(fake.requests).toHaveLength(1);
    const prompt = JSON.stringify(fake.requests[0]?.body.messages.at(-1));
    expect(prompt).toContain('first question');
    expect(prompt).toContain('second question');
  }, 60_000);

  describe('misbehaving containers', () => {
    const docker = new Docker();
    const images: string[] = [];

    afterEach(async () => {
      while (images.length) await removeTestImage(docker, images.pop() as string);
    });

    it('survives garbage and oversized frames and still completes the turn', async () => {
      const image = await buildTestImage(docker, 'garbage-runner', {
        Dockerfile:
          'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY runner.mjs /runner.mjs\nENTRYPOINT ["node", "/runner.mjs"]\n',
        'runner.mjs': GARBAGE_RUNNER,
      });
      images.push(image);
      const h = harness(fake, { image });
      await h.core.start();
      h.core.addGroup({ name: 'noisy' });
      const posted = h.core.postLocal('noisy', 'Tester', '@Andy are you ok?');
      const reply = await h.core.waitForReply(posted.group.jid, posted.message.seq, 60_000);
      expect(reply.replies.map((m) => m.text)).toEqual(['survived the garbage']);
    }, 120_000);

    it('retries a container that crashes, then gives up and tells the chat', async () => {
      const image = await buildTestImage(docker, 'crashing-runner', {
        Dockerfile:
          'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENTRYPOINT ["sh", "-c", "echo not-a-frame; exit 3"]\n',
      });
      images.push(image);
      const h = harness(fake, { image });
      await h.core.start();
      h.core.addGroup({ name: 'crashy' });
      const runs: boolean[] = [];
      h.core.events.on('run:finished', (e) => runs.push(e.ok));
      const posted = h.core.postLocal('crashy', 'Tester', '@Andy hello');
      await expect(
        h.core.waitForReply(posted.group.jid, posted.message.seq, 60_000),
      ).rejects.toThrow(/gave up/);
      expect(runs).toEqual([false, false]); // the first try and one retry
      // The notice goes out through the outbox worker, just after the give-up.
      await expect
        .poll(() => h.core.messages(posted.group.jid, 10).map((m) => m.text))
        .toEqual([
          '@Andy hello',
          expect.stringMatching(/^Sorry, I could not answer \(2 attempts\)/),
        ]);
      expect(h.core.messages(posted.group.jid, 10)[1]?.fromBot).toBe(true);
      // The unanswered message is still pending: nothing was lost.
      expect(h.store.cursorOf(posted.group.jid)).toBeLessThan(posted.message.seq);
    }, 120_000);

    it('kills a run whose container goes silent past the hard timeout', async () => {
      const image = await buildTestImage(docker, 'silent-runner', {
        Dockerfile:
          'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENTRYPOINT ["node", "-e", "process.stdout.write(JSON.stringify({type:\'ready\',protocol:' +
          PROTOCOL_VERSION +
          "})+'\\\\n'); setInterval(()=>{}, 1000)\"]\n",
      });
      images.push(image);
      const h = harness(fake, { image, hardTimeoutMs: 1_500 });
      await h.core.start();
      h.core.addGroup({ name: 'silent' });
      const errors: string[] = [];
      h.core.events.on('run:finished', (e) => e.error && errors.push(e.error));
      const posted = h.core.postLocal('silent', 'Tester', '@Andy hello?');
      // Stopped once, not retried: the turn is closed with a notice that says why.
      await h.core.waitForReply(posted.group.jid, posted.message.seq, 60_000);
      await expect.poll(() => errors).toEqual(['the agent made no progress for 1500 ms']);
      await expect
        .poll(() => h.core.messages(posted.group.jid, 10).map((m) => m.text))
        .toEqual([
          '@Andy hello?',
          'Sorry, I could not answer that: the agent made no progress for 1500 ms',
        ]);
      const left = await docker.listContainers({
        filters: {
          label: ['dev.clawbar.group=silent', `${SCOPE_LABEL}=${scopeForHome(h.config.home)}`],
        },
      });
      expect(left).toEqual([]);
    }, 120_000);
  });
});

/** Scripts five answers, each after `delayMs`, saying "slow answer to <group>". */
function scriptSlowAnswers(fake: FakeAnthropic, delayMs: number): void {
  const answer: TurnFactory = (request) => {
    const name = /hello (\w+)/.exec(JSON.stringify(request.body.messages.at(-1)))?.[1] ?? 'unknown';
    return textTurn(`slow answer to ${name}`, { delayMs });
  };
  fake.script(Array.from({ length: 5 }, () => answer));
}

/** A runner that emits junk before behaving: not JSON, a wrong frame, a 5 MiB line. */
const GARBAGE_RUNNER = scriptedRunner({
  preamble: `
line('this is not json');
out({ type: 'nonsense' });
line('{"type":"output","text":' + '"' + 'x'.repeat(5 * 1024 * 1024) + '"}');
out({ type: 'ready', protocol: ${PROTOCOL_VERSION} });`,
  onPrompt: `
line('{ broken');
out({ type: 'output', text: 'survived the garbage' });
out({ type: 'done', usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 }, turn: [], status: 'ok' });`,
});
