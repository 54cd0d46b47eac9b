/**
 * The limits the host enforces on a run and on each of its turns (issue 6), against a hostile
 * container.
 *
 * Any process in a container can write frames to the runner's stdout, so most of these tests
 * skip the runner and play the container's stdout themselves: the container here is a pair of
 * streams (`StreamContainer`), which lets a test put two frames in one chunk, or stop writing,
 * exactly. Everything else is real: AgentRun, the SQLite store, the turn sources, the queue and
 * the core. The model broker is a stand-in that records what it was asked, so the tests can
 * assert on what reached it. The timing tests use fake timers. The last test floods frames from
 * inside the real runner bundle, run as a child process.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AgentRun,
  type AgentRunConfig,
  type ModelCaller,
} from '../../main/core/agent/agent-run.js';
import { HostTools } from '../../main/core/agent/host-tools.js';
import { ModelBroker, type ModelRequest } from '../../main/core/agent/model-broker.js';
import { ModelError } from '../../main/core/agent/model-errors.js';
import {
  HostCallArgsSchemas,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
} from '../../main/core/agent/protocol.js';
import {
  DEFAULT_RUN_LIMITS,
  MAX_CHAT_MESSAGE_CHARS,
  resolveRunLimits,
  RunLimitError,
  type RunLimits,
} from '../../main/core/agent/run-limits.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { loadConfig } from '../../main/core/config.js';
import { Core } from '../../main/core/core.js';
import { CoreEventBus } from '../../main/core/events.js';
import { silentLogger } from '../../main/core/logger.js';
import { GroupQueue, type GroupRun, type RunOutcome } from '../../main/core/queue/group-queue.js';
import { messageTurns } from '../../main/core/agent/turns.js';
import { formatOutbound } from '../../main/core/router.js';
import type {
  ContainerRuntime,
  ContainerSpec,
  RunningContainer,
} from '../../main/core/sandbox/runtime.js';
import { openStore, type Group, type Store } from '../../main/core/store/index.js';
import { DEFAULT_TURN_LIMITS } from '../../sandbox-images/agent/runner/agent-loop.js';
import { DEFAULT_MODEL_RETRY } from '../../sandbox-images/agent/runner/model-retry.js';
import { textTurn, toolUseTurn } from '../fakes/anthropic-api.js';
import { agentRunHome, type AgentRunHome, type RunParts } from '../helpers/agent-run.js';
import { ProcessRuntime, RUNNER_BUNDLE } from '../helpers/process-runtime.js';
import { runnerSuite } from '../helpers/runner-suite.js';

const NO_USAGE = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };

type Frame = Record<string, unknown> & { type: string };

/**
 * A container that is only its streams. The test writes the runner's side of stdout, as any
 * process in a real container could; what the host writes to stdin is parsed into `received`.
 * It exits on `shutdown` (as the runner does) or when killed.
 */
class StreamContainer implements RunningContainer {
  readonly id: string;
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  /** Frames the host sent, in order. */
  readonly received: Frame[] = [];
  killed = false;
  private pending = '';
  private exit!: (code: number) => void;
  private readonly exited = new Promise<number>((resolve) => (this.exit = resolve));

  constructor(readonly name: string) {
    this.id = name;
    this.stdin.setEncoding('utf8');
    this.stdin.on('data', (chunk: string) => {
      this.pending += chunk;
      let newline: number;
      while ((newline = this.pending.indexOf('\n')) !== -1) {
        const frame = JSON.parse(this.pending.slice(0, newline)) as Frame;
        this.pending = this.pending.slice(newline + 1);
        this.received.push(frame);
        if (frame.type === 'shutdown') this.close(0);
      }
    });
  }

  /** Writes frames to stdout, all in one chunk. */
  send(...frames: Frame[]): void {
    this.write(frames.map((f) => `${JSON.stringify(f)}\n`).join(''));
  }

  /** Writes raw text to stdout (after the container is gone, nothing). */
  write(text: string): void {
    if (!this.stdout.writableEnded) this.stdout.write(text);
  }

  receivedOfType(type: string): Frame[] {
    return this.received.filter((f) => f.type === type);
  }

  wait(): Promise<{ exitCode: number }> {
    return this.exited.then((exitCode) => ({ exitCode }));
  }

  async kill(): Promise<void> {
    this.killed = true;
    this.close(137);
  }

  private close(code: number): void {
    if (!this.stdout.writableEnded) this.stdout.end();
    if (!this.stderr.writableEnded) this.stderr.end();
    this.exit(code);
  }
}

/** A runtime whose containers are {@link StreamContainer}s. */
class StreamRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  readonly containers: StreamContainer[] = [];
  private readonly waiting: Array<() => void> = [];

  async check() {
    return { ok: true as const, version: 'streams' };
  }
  async inspectImage(image: string) {
    return { image, present: true };
  }
  async listOurs() {
    return [];
  }
  async removeOrphans(): Promise<number> {
    return 0;
  }
  async start(spec: ContainerSpec): Promise<RunningContainer> {
    const container = new StreamContainer(spec.name);
    this.containers.push(container);
    for (const wake of this.waiting.splice(0)) wake();
    return container;
  }

  /** The `index`th container started, once it is. */
  async started(index = 0): Promise<StreamContainer> {
    while (!this.containers[index]) await new Promise<void>((wake) => this.waiting.push(wake));
    return this.containers[index] as StreamContainer;
  }
}

/** A broker stand-in: records each request, answers "ok", and holds its answers when asked to. */
class RecordingBroker implements ModelCaller {
  readonly requests: ModelRequest[] = [];
  /** Calls cancelled through their abort signal. */
  aborted = 0;
  hold = false;
  /** Errors to throw, one a call, before it answers again. */
  readonly errors: Error[] = [];

  async complete(req: ModelRequest, opts: { signal?: AbortSignal } = {}) {
    this.requests.push(req);
    const error = this.errors.shift();
    if (error) throw error;
    if (this.hold) {
      await new Promise<never>((_, reject) =>
        opts.signal?.addEventListener(
          'abort',
          () => {
            this.aborted += 1;
            reject(new Error('aborted'));
          },
          { once: true },
        ),
      );
    }
    return {
      content: [{ type: 'text', text: 'ok' }],
      stopReason: 'end_turn',
      usage: { inputTokens: 3, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0 },
    };
  }
}

/** Lets stream events and promise callbacks run (setImmediate is never faked here). */
async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

const ready = (): Frame => ({ type: 'ready', protocol: PROTOCOL_VERSION });
const output = (text: string): Frame => ({ type: 'output', text });
/** `turn` for runners that report their turn, `sessionRef` for those before; each side ignores the other. */
const done = (status: 'ok' | 'failed' = 'ok'): Frame => ({
  type: 'done',
  status,
  usage: NO_USAGE,
  turn: [],
  sessionRef: null,
});
const modelRequest = (requestId: string, over: Partial<Frame> = {}): Frame => ({
  type: 'model.request',
  requestId,
  system: 'You are Andy.',
  messages: [{ role: 'user', content: 'hi' }],
  tools: [],
  maxTokens: 1000,
  ...over,
});
const hostCall = (callId: string): Frame => ({
  type: 'host.call',
  callId,
  name: 'no_such_call',
  args: {},
});

interface Harness {
  store: Store;
  runtime: StreamRuntime;
  broker: RecordingBroker;
  group: Group;
  post(text: string): number;
  run(over?: Partial<AgentRunConfig>): AgentRun;
  /** Starts a run for one posted trigger and plays the runner's `ready`; the first turn is under way. */
  boot(over?: Partial<AgentRunConfig>): Promise<{ run: AgentRun; container: StreamContainer }>;
  /** Texts queued for the chat, oldest first. */
  outboxTexts(): string[];
  cursor(): number;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

/** Host tools whose deliveries are never awaited: the host calls these tests make are refused first. */
function hostToolsFor(home: AgentRunHome): HostTools {
  return new HostTools({
    store: home.store,
    outbox: { notify: () => undefined, whenSettled: async () => 'queued' as const },
    formatOutbound,
    now: Date.now,
    log: home.log,
  });
}

function harness(): Harness {
  const home = agentRunHome('clawbar-limits-', 'UTC');
  const { store, group } = home;
  const runtime = new StreamRuntime();
  const broker = new RecordingBroker();
  const parts: RunParts = {
    runtime,
    broker,
    hostTools: hostToolsFor(home),
    outbox: { notify: () => undefined },
    events: new CoreEventBus(),
  };
  const h: Harness = {
    store,
    runtime,
    broker,
    group,
    post: (text) => home.post(text),
    run: (over = {}) =>
      home.run(parts, {
        idleTimeoutMs: 600_000,
        hardTimeoutMs: 600_000,
        readyTimeoutMs: 600_000,
        stopTimeoutMs: 5_000,
        ...over,
      }),
    async boot(over = {}) {
      h.post('@Andy hello');
      const index = runtime.containers.length;
      const run = h.run(over);
      const container = await runtime.started(index);
      container.send(ready());
      await flush();
      expect(container.receivedOfType('start')).toHaveLength(1);
      return { run, container };
    },
    outboxTexts: () =>
      (
        store.db
          .prepare('SELECT text FROM outbox WHERE chat_jid = ? ORDER BY id')
          .all(group.jid) as Array<{
          text: string;
        }>
      ).map((row) => row.text),
    cursor: () => store.cursorOf(group.jid),
  };
  cleanups.push(async () => {
    await home.stopRuns();
    home.close();
  });
  return h;
}

/** Whether the run has settled yet, without waiting for it. */
function tracker(run: AgentRun): { settled: () => boolean } {
  let settled = false;
  run.finished.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { settled: () => settled };
}

/** The run's failure, checked to be a final stop at `limit` that already told the chat. */
async function stoppedAt(run: AgentRun, limit: RunLimitError['limit']): Promise<RunLimitError> {
  const outcome: RunOutcome = await run.finished;
  expect(outcome).toMatchObject({ ok: false, failure: 'final', notified: true });
  const error = (outcome as { error: Error }).error;
  expect(error).toBeInstanceOf(RunLimitError);
  expect((error as RunLimitError).limit).toBe(limit);
  return error as RunLimitError;
}

const NOTICE = 'Sorry, I could not answer that: ';

describe('run limits: settings', () => {
  it('has documented defaults, takes overrides, and refuses values that are not positive whole numbers', () => {
    expect(resolveRunLimits()).toEqual({
      maxRepliesPerTurn: 20,
      maxReplyBytesPerTurn: 256 * 1024,
      maxOutputChars: 65_536,
      maxModelCallsPerTurn: 60,
      maxModelAttemptsPerTurn: 300,
      maxErrorFramesPerTurn: 20,
      maxRequestBytes: 2 * 1024 * 1024,
      maxTokens: 8192,
      maxHostCallsPerTurn: 100,
      turnWallClockMs: 30 * 60_000,
      runWallClockMs: 2 * 60 * 60_000,
      maxSendsPerTurn: 5,
      maxSendsPerMinute: 10,
    } satisfies RunLimits);
    expect(resolveRunLimits({ maxRepliesPerTurn: 3 }).maxRepliesPerTurn).toBe(3);
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => resolveRunLimits({ maxTokens: bad })).toThrow(/run limit maxTokens must be/);
    }
    expect(() => resolveRunLimits({ maxRequestBytes: MAX_FRAME_BYTES })).toThrow(
      /maxRequestBytes must be below the 4194304-byte frame limit/,
    );
  });

  it('holds a reply to the same size as a sent message', () => {
    expect(MAX_CHAT_MESSAGE_CHARS).toBe(DEFAULT_RUN_LIMITS.maxOutputChars);
    const schema = HostCallArgsSchemas.send_message;
    expect(schema.safeParse({ text: 'x'.repeat(MAX_CHAT_MESSAGE_CHARS) }).success).toBe(true);
    expect(schema.safeParse({ text: 'x'.repeat(MAX_CHAT_MESSAGE_CHARS + 1) }).success).toBe(false);
  });

  it('sits above what the real runner uses, so a well-behaved agent never meets it', () => {
    expect(DEFAULT_RUN_LIMITS.maxModelCallsPerTurn).toBeGreaterThan(
      DEFAULT_TURN_LIMITS.maxModelCalls,
    );
    // Every call retried as often as the runner retries one still fits.
    expect(DEFAULT_RUN_LIMITS.maxModelAttemptsPerTurn).toBeGreaterThanOrEqual(
      DEFAULT_TURN_LIMITS.maxModelCalls * (1 + DEFAULT_MODEL_RETRY.maxRetries),
    );
    expect(DEFAULT_RUN_LIMITS.maxTokens).toBeGreaterThanOrEqual(DEFAULT_TURN_LIMITS.maxTokens);
    expect(DEFAULT_RUN_LIMITS.maxRequestBytes).toBeGreaterThanOrEqual(
      DEFAULT_TURN_LIMITS.maxRequestBytes,
    );
  });
});

describe('run limits: replies', () => {
  it('commits 20 replies in one turn', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    container.send(...Array.from({ length: 20 }, (_, i) => output(`reply ${i}`)), done());
    await flush();
    expect(run.idle).toBe(true);
    expect(h.outboxTexts()).toHaveLength(20);
  });

  it('stops the run at the 21st reply: the turn is closed with one notice, the container killed, nothing committed', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    const seq = h.cursor();
    container.send(...Array.from({ length: 21 }, (_, i) => output(`reply ${i}`)));
    // What a flood sends after the limit is never looked at.
    container.send(...Array.from({ length: 200 }, (_, i) => output(`more ${i}`)), done());
    const error = await stoppedAt(run, 'maxRepliesPerTurn');
    expect(error.message).toBe('the agent sent more than 20 replies in one turn');
    expect(container.killed).toBe(true);
    expect(h.outboxTexts()).toEqual([`${NOTICE}the agent sent more than 20 replies in one turn`]);
    expect(h.cursor()).toBeGreaterThan(seq); // the messages are closed, so nothing loops
  });

  it('takes a reply of exactly a chat message’s size, and stops at one character more', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    container.send(output('x'.repeat(65_536)), done());
    await flush();
    expect(run.idle).toBe(true);
    expect(h.outboxTexts()[0]).toHaveLength(65_536);

    const h2 = harness();
    const second = await h2.boot();
    second.container.send(output('x'.repeat(65_537)));
    const error = await stoppedAt(second.run, 'maxOutputChars');
    expect(error.message).toBe(
      'the agent sent a reply of 65537 characters; a chat message holds at most 65536',
    );
    expect(h2.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
  });

  it('counts a turn’s reply bytes in UTF-8: up to the limit is kept, one byte more stops the run', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { maxReplyBytesPerTurn: 1000 } });
    // 250 × "é" is 500 bytes in 250 characters.
    container.send(output('é'.repeat(250)), output('é'.repeat(250)), done());
    await flush();
    expect(run.idle).toBe(true);
    expect(h.outboxTexts()).toHaveLength(2);

    const h2 = harness();
    const second = await h2.boot({ limits: { maxReplyBytesPerTurn: 1000 } });
    second.container.send(output('é'.repeat(250)), output('é'.repeat(250)), output('x'));
    const error = await stoppedAt(second.run, 'maxReplyBytesPerTurn');
    expect(error.message).toBe("the agent's replies in one turn came to more than 1000 bytes");
    expect(h2.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
  });
});

describe('run limits: model calls', () => {
  it('two model requests at once stop the run, and only the first reaches the broker (then is cancelled)', async () => {
    for (const together of [true, false]) {
      const h = harness();
      h.broker.hold = true;
      const { run, container } = await h.boot();
      if (together) {
        container.send(modelRequest('r1'), modelRequest('r2'));
      } else {
        container.send(modelRequest('r1'));
        await flush();
        expect(h.broker.requests).toHaveLength(1);
        container.send(modelRequest('r2'));
      }
      const error = await stoppedAt(run, 'protocol');
      expect(error.message).toBe(
        'the agent asked for a second model call while one was still under way',
      );
      expect(h.broker.requests).toHaveLength(1);
      expect(h.broker.aborted).toBe(1);
      expect(h.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
    }
  });

  it('caps max_tokens at the host’s setting before the broker sees the request', async () => {
    const h = harness();
    const { container } = await h.boot();
    container.send(modelRequest('r1', { maxTokens: 32_000 }));
    await flush();
    container.send(modelRequest('r2', { maxTokens: 1_000 }));
    await flush();
    expect(h.broker.requests.map((r) => r.maxTokens)).toEqual([8192, 1_000]);
    expect(container.receivedOfType('model.result')).toHaveLength(2);

    const h2 = harness();
    const second = await h2.boot({ limits: { maxTokens: 2_048 } });
    second.container.send(modelRequest('r1', { maxTokens: 4_096 }));
    await flush();
    expect(h2.broker.requests.map((r) => r.maxTokens)).toEqual([2_048]);
  });

  it('refuses a request over the byte limit with a model error, never calling the broker; the turn then closes and the run goes on', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { maxRequestBytes: 10_000 } });
    container.send(modelRequest('small', { system: 'x'.repeat(9_000) }));
    await flush();
    expect(h.broker.requests).toHaveLength(1);
    container.send(modelRequest('large', { system: 'x'.repeat(10_000) }));
    await flush();
    expect(h.broker.requests).toHaveLength(1);
    const refusal = container.receivedOfType('model.error')[0];
    expect(refusal).toMatchObject({ requestId: 'large', retryable: false });
    expect(refusal?.message).toMatch(
      /^the model request is 100\d\d bytes, over the host's limit of 10000 bytes/,
    );
    // The runner reports the failed turn, as it does for any model error it cannot get past.
    container.send(
      { type: 'error', message: `model call failed: ${String(refusal?.message)}` },
      done('failed'),
    );
    await flush();
    expect(run.idle).toBe(true);
    expect(h.outboxTexts()).toEqual([
      expect.stringMatching(
        /^Sorry, I could not answer that: the agent could not finish \(model call failed: the model request is/,
      ),
    ]);
  });

  it('counts model calls per turn: the limit is allowed in each turn, one more stops the run', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { maxModelCallsPerTurn: 3 } });
    for (const id of ['a', 'b', 'c']) {
      container.send(modelRequest(id));
      await flush();
    }
    container.send(done());
    await flush();
    expect(run.idle).toBe(true);
    // A new turn starts from zero.
    h.post('@Andy again');
    expect(run.offerMessages()).toBe(true);
    await flush();
    expect(container.receivedOfType('message')).toHaveLength(1);
    for (const id of ['d', 'e', 'f']) {
      container.send(modelRequest(id));
      await flush();
    }
    expect(h.broker.requests).toHaveLength(6);
    container.send(modelRequest('g'));
    const error = await stoppedAt(run, 'maxModelCallsPerTurn');
    expect(error.message).toBe('the agent made more than 3 model calls in one turn');
    expect(h.broker.requests).toHaveLength(6);
  });

  it('a model request while no turn runs stops the run before the broker is called', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    container.send(done());
    await flush();
    expect(run.idle).toBe(true);
    container.send(modelRequest('idle'));
    const outcome = await run.finished;
    // Idle, nothing of the chat's was pending: it is told nothing, by the run or the queue.
    expect(outcome).toMatchObject({ ok: false, failure: 'final', notified: true });
    expect(((outcome as { error: Error }).error as RunLimitError).limit).toBe('protocol');
    expect(h.broker.requests).toEqual([]);
    expect(h.outboxTexts()).toEqual([]);

    // Before the first turn, the messages the run was started for are unanswered: the
    // queue's give-up notice tells the chat.
    const h2 = harness();
    h2.post('@Andy hello');
    const early = h2.run();
    const second = await h2.runtime.started(0);
    second.send(modelRequest('early'));
    const earlyOutcome = await early.finished;
    expect(earlyOutcome).toMatchObject({ ok: false, failure: 'final' });
    expect(earlyOutcome).not.toHaveProperty('notified');
    expect(h2.broker.requests).toEqual([]);
  });

  it('a turn that ends while its model call is under way stops the run', async () => {
    const h = harness();
    h.broker.hold = true;
    const { run, container } = await h.boot();
    container.send(modelRequest('r1'), output('forged answer'), done());
    const error = await stoppedAt(run, 'protocol');
    expect(error.message).toBe('the agent ended a turn while its model call was still under way');
    expect(h.broker.aborted).toBe(1);
    expect(h.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
  });
});

describe('run limits: host calls', () => {
  it('answers host calls up to the per-turn limit and stops the run at one more', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { maxHostCallsPerTurn: 2 } });
    container.send(hostCall('c1'), hostCall('c2'));
    await flush();
    expect(container.receivedOfType('tool.result')).toHaveLength(2);
    container.send(hostCall('c3'));
    const error = await stoppedAt(run, 'maxHostCallsPerTurn');
    expect(error.message).toBe('the agent made more than 2 host calls in one turn');
    expect(container.receivedOfType('tool.result')).toHaveLength(2);
  });
});

describe('run limits: time', () => {
  beforeEach(() => {
    // setImmediate and nextTick stay real, so streams and flush() work.
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('blank lines on stdout do not hold off the silence timeout (a stopped runner is caught)', async () => {
    const h = harness();
    const { run, container } = await h.boot({ hardTimeoutMs: 1_000 });
    const state = tracker(run);
    for (let t = 0; t < 900; t += 100) {
      container.write('\n\n   \n');
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(state.settled()).toBe(false);
    container.write('\n');
    await vi.advanceTimersByTimeAsync(200);
    const error = await stoppedAt(run, 'silence');
    expect(error.message).toBe('the agent made no progress for 1 s');
    expect(container.killed).toBe(true);
    expect(h.outboxTexts()).toEqual([`${NOTICE}the agent made no progress for 1 s`]);
    // Every timer the run armed is gone with it.
    expect(vi.getTimerCount()).toBe(0);
  });

  it('bad frames and stderr do not hold off the silence timeout either', async () => {
    const h = harness();
    const { run, container } = await h.boot({ hardTimeoutMs: 1_000 });
    for (let t = 0; t < 1_200; t += 100) {
      container.write('{"type":"not-a-frame"}\nnot json\n');
      container.stderr.write('still here\n');
      await vi.advanceTimersByTimeAsync(100);
    }
    await stoppedAt(run, 'silence');
  });

  it('progress frames and the host’s answers reset the silence timeout', async () => {
    const h = harness();
    const { run, container } = await h.boot({ hardTimeoutMs: 1_000 });
    const state = tracker(run);
    const progress = [
      () => container.send(output('still working')),
      () => container.send(modelRequest(`r${Date.now()}`)),
      () => container.send(hostCall(`c${Date.now()}`)),
    ];
    // Ten gaps of 700 ms: 7 s in all, seven times the silence timeout.
    for (let i = 0; i < 10; i++) {
      await vi.advanceTimersByTimeAsync(700);
      progress[i % progress.length]?.();
      await flush();
    }
    expect(state.settled()).toBe(false);
    container.send(done());
    await flush();
    expect(run.idle).toBe(true);
    expect(h.broker.requests).toHaveLength(3);
    expect(h.outboxTexts()).toEqual(Array.from({ length: 4 }, () => 'still working'));
  });

  it('a turn is stopped at its wall-clock cap however busy it looks', async () => {
    const h = harness();
    const { run, container } = await h.boot({
      hardTimeoutMs: 1_000,
      limits: { turnWallClockMs: 3_000 },
    });
    const state = tracker(run);
    for (let t = 0; t < 2_900; t += 500) {
      await vi.advanceTimersByTimeAsync(Math.min(500, 2_900 - t));
      container.send(hostCall(`c${t}`));
      await flush();
    }
    expect(state.settled()).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    const error = await stoppedAt(run, 'turnWallClockMs');
    expect(error.message).toBe('the agent worked on one turn for more than 3 s');
    expect(h.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('past the run’s wall-clock cap, the turn under way finishes, no new turn starts, and waiting messages are handed back', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { runWallClockMs: 5_000 } });
    container.send(done());
    await flush();
    expect(run.idle).toBe(true);

    await vi.advanceTimersByTimeAsync(1_000);
    h.post('@Andy second');
    expect(run.offerMessages()).toBe(true); // idle: it starts a turn at once
    await flush();
    expect(container.receivedOfType('message')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    h.post('@Andy third');
    expect(run.offerMessages()).toBe(true); // busy: taken for a later turn

    await vi.advanceTimersByTimeAsync(3_500);
    expect(run.idle).toBe(false);
    h.post('@Andy fourth');
    expect(run.offerMessages()).toBe(false); // past the cap: the queue keeps it
    container.send(output('second answer'), done());
    const outcome = await run.finished;
    expect(outcome).toEqual({ ok: true, messagesLeft: true });
    expect(container.received.map((f) => f.type)).toEqual(['start', 'message', 'shutdown']);
    expect(h.outboxTexts()).toEqual(['second answer']);
  });

  it('an idle run past its wall-clock cap stops at once', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { runWallClockMs: 2_000 } });
    container.send(done());
    await flush();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await run.finished).toEqual({ ok: true });
    expect(container.receivedOfType('shutdown')).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('run limits: the queue and the core', () => {
  /** A run as the queue sees it, settled by the test. */
  function settledRun(outcome: RunOutcome): GroupRun {
    return {
      idle: false,
      offerMessages: () => false,
      requestStop: () => undefined,
      kill: async () => undefined,
      finished: Promise.resolve(outcome),
    };
  }

  it('the queue passes `notified` to its give-up, retries nothing, and dispatches messages a run handed back', async () => {
    const outcomes: RunOutcome[] = [
      { ok: false, error: new Error('the agent sent too much'), failure: 'final', notified: true },
      { ok: true, messagesLeft: true },
      { ok: true },
    ];
    const started: string[] = [];
    const gaveUp: Array<{ attempts: number; details: unknown }> = [];
    const queue = new GroupQueue({
      maxConcurrency: 1,
      log: silentLogger(),
      isPaused: () => false,
      retry: { baseDelayMs: 1, maxRetries: 5 },
      onGiveUp: (_jid, _error, attempts, _work, details) => gaveUp.push({ attempts, details }),
      onNotReady: () => undefined,
      startRun: (jid) => {
        started.push(jid);
        const outcome = outcomes.shift();
        return outcome ? settledRun(outcome) : null;
      },
    });
    queue.enqueueMessage('g');
    await flush();
    expect(gaveUp).toEqual([{ attempts: 1, details: { notified: true } }]);
    expect(queue.snapshot().retrying).toEqual([]);
    expect(started).toEqual(['g']);
    // A run that ends with messages it took but never answered hands them back.
    queue.enqueueMessage('g');
    await flush();
    expect(started).toEqual(['g', 'g', 'g']);
    expect(outcomes).toEqual([]);
  });

  it('a run stopped at a limit is not retried, and the chat gets one notice, not two', async () => {
    // A retry, if one were made, would come at once (1 ms).
    const { core, store, runtime } = streamCore('clawbar-limits-core-', { maxRepliesPerTurn: 2 });
    await core.start();
    const group = core.addGroup({ name: 'Limits' });
    const gaveUp = new Promise<{ error: string; attempts: number }>((resolve) =>
      core.events.on('run:gave-up', (e) => resolve(e)),
    );
    core.postLocal(group.jid, 'Alice', '@Andy hello');
    const container = await runtime.started(0);
    container.send(ready());
    await flush();
    container.send(output('one'), output('two'), output('three'));
    expect(await gaveUp).toMatchObject({
      error: 'the agent sent more than 2 replies in one turn',
      attempts: 1,
    });
    expect(core.queue.snapshot().retrying).toEqual([]);
    await vi.waitFor(() => expect(core.queue.snapshot().running).toEqual([]));
    expect(runtime.containers).toHaveLength(1);
    const outbox = store.db
      .prepare('SELECT text FROM outbox WHERE chat_jid = ? ORDER BY id')
      .all(group.jid) as Array<{ text: string }>;
    expect(outbox.map((row) => row.text)).toEqual([
      `${NOTICE}the agent sent more than 2 replies in one turn`,
    ]);
  });
});

/**
 * A Core in its own temp home whose containers are in-memory streams the test writes to, with
 * a recording broker and retries that would come at once; shut down after the test.
 */
function streamCore(prefix: string, runLimits: Partial<RunLimits>) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
  const store = openStore(config.dbPath);
  const runtime = new StreamRuntime();
  const core = new Core({
    config,
    store,
    runtime,
    broker: new RecordingBroker(),
    log: silentLogger(),
    channels: [localChannelFor(store)],
    retry: { baseDelayMs: 1, maxRetries: 5 },
    runLimits,
  });
  cleanups.push(async () => {
    await core.shutdown(0);
    store.close();
    fs.rmSync(home, { recursive: true, force: true });
  });
  return { core, store, runtime };
}

describe('run limits: a flood from inside the real runner', () => {
  const API_KEY = 'sk-ant-test-run-limits';
  const suite = runnerSuite(API_KEY);

  it('a bash command writing output frames to the runner’s stdout stops the run at the reply limit, and the flood is cut off', async () => {
    const home = agentRunHome('clawbar-flood-', 'UTC');
    const { store, group, log, config } = home;
    // The real runner, with its stdout made a pipe as a container's is (Node would hand it a
    // socket, which /proc/<pid>/fd/1 cannot open). `exec` keeps the runner the process the
    // runtime kills; `cat` carries the pipe on to the host and ends when the runner does.
    const runtime = new ProcessRuntime([
      'bash',
      '-c',
      `exec "${process.execPath}" "${RUNNER_BUNDLE}" > >(exec cat)`,
    ]);
    const counter = path.join(home.dir, 'flood-count');
    const finished = path.join(home.dir, 'flood-finished');
    const FRAMES = 5_000;
    // What a prompt injection could run: 5,000 forged replies of 60 kB each (300 MB), written
    // straight to the runner's stdout (its parent's fd 1), one line a write, each counted in a
    // file. Once the runner is gone, its fd 1 is too, and the loop ends.
    const frame = JSON.stringify({ type: 'output', text: 'x'.repeat(60_000) });
    const command =
      `frame='${frame}'; out=/proc/$PPID/fd/1; ` +
      `for i in $(seq 1 ${FRAMES}); do printf '%s\\n' "$frame" 2>/dev/null > "$out" || break; echo "$i" >> '${counter}'; done; ` +
      `touch '${finished}'`;
    suite.fake.script([
      toolUseTurn('bash', { command, timeout_ms: 120_000 }),
      textTurn('never sent'),
    ]);
    const broker = new ModelBroker({
      apiKey: API_KEY,
      baseURL: suite.fake.url,
      model: config.model,
      log,
      maxRetries: 0,
    });
    store.insertMessage({
      chatJid: group.jid,
      id: 'm1',
      sender: 'local:mallory',
      senderName: 'Mallory',
      text: '@Andy summarise this web page',
      timestamp: Date.now(),
    });
    const run = home.run({
      runtime,
      broker,
      hostTools: hostToolsFor(home),
      outbox: { notify: () => undefined },
      events: new CoreEventBus(),
    });
    suite.defer(async () => {
      await home.stopRuns();
      await runtime.cleanup();
      home.close();
    });

    const error = await stoppedAt(run, 'maxReplyBytesPerTurn');
    expect(error.message).toBe("the agent's replies in one turn came to more than 256 KiB");
    // The runner process was killed mid-flood, so the rest of the 300 MB never came.
    await vi.waitFor(() => expect(fs.existsSync(finished)).toBe(true), { timeout: 30_000 });
    const written = fs.readFileSync(counter, 'utf8').trim().split('\n').length;
    expect(written).toBeLessThan(FRAMES);
    // The host kept none of it: the chat gets the notice alone, and the model was called once.
    const outbox = store.db
      .prepare('SELECT text FROM outbox WHERE chat_jid = ?')
      .all(group.jid) as Array<{ text: string }>;
    expect(outbox.map((row) => row.text)).toEqual([`${NOTICE}${error.message}`]);
    expect(suite.fake.requests).toHaveLength(1);
  }, 60_000);
});

describe('run limits: error reports, bad frames and the log', () => {
  const errorFrame = (message: string): Frame => ({ type: 'error', message });

  /**
   * A booted run, as {@link harness} makes them, whose log lines are kept (parsed) in `lines`:
   * what a container makes the host log is bounded too.
   */
  async function bootLogged(): Promise<{
    run: AgentRun;
    container: StreamContainer;
    lines: Array<Record<string, unknown>>;
  }> {
    const home = agentRunHome('clawbar-limits-log-', 'UTC');
    const runtime = new StreamRuntime();
    const lines: Array<Record<string, unknown>> = [];
    const log = pino(
      { level: 'debug' },
      { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    home.post('@Andy hello');
    const run = new AgentRun(
      {
        runtime,
        broker: new RecordingBroker(),
        hostTools: hostToolsFor(home),
        outbox: { notify: () => undefined },
        events: new CoreEventBus(),
        isPaused: () => false,
        setTyping: () => undefined,
        onIdle: () => undefined,
        config: {
          home: home.config.home,
          groupsDir: home.config.groupsDir,
          globalDir: home.config.globalDir,
          image: 'unused',
          assistantName: 'Andy',
          timezone: 'UTC',
          idleTimeoutMs: 600_000,
          hardTimeoutMs: 600_000,
          readyTimeoutMs: 600_000,
          stopTimeoutMs: 5_000,
        },
        now: Date.now,
        log,
      },
      home.group,
      messageTurns({ store: home.store, groupJid: home.group.jid, timezone: 'UTC' }),
    );
    cleanups.push(async () => {
      await run.kill();
      await run.finished;
      home.close();
    });
    const container = await runtime.started(0);
    container.send(ready());
    await flush();
    return { run, container, lines };
  }

  it('takes 20 error reports in a turn and stops the run at the 21st', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    const state = tracker(run);
    container.send(...Array.from({ length: 20 }, (_, i) => errorFrame(`warning ${i}`)));
    await flush();
    expect(state.settled()).toBe(false);
    container.send(
      errorFrame('one too many'),
      ...Array.from({ length: 500 }, () => errorFrame('flood')),
    );
    const error = await stoppedAt(run, 'maxErrorFramesPerTurn');
    expect(error.message).toBe('the agent reported more than 20 errors in one turn');
    expect(h.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
  });

  it('counts an error report outside a turn as a malformed frame: past 20, the run is stopped, quietly', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    container.send(done());
    await flush();
    expect(run.idle).toBe(true);
    container.send(...Array.from({ length: 21 }, (_, i) => errorFrame(`between turns ${i}`)));
    const outcome = await run.finished;
    // Idle: nothing of the chat's was pending, so it is told nothing.
    expect(outcome).toMatchObject({ ok: false, failure: 'final', notified: true });
    expect(((outcome as { error: Error }).error as RunLimitError).limit).toBe('protocol');
    expect(h.outboxTexts()).toEqual([]);
  });

  it('stops a run that sends more than 20 malformed frames, and does not retry it', async () => {
    const h = harness();
    const { run, container } = await h.boot();
    container.write('not json\n'.repeat(20));
    await flush();
    expect(tracker(run).settled()).toBe(false);
    container.write('{"type":"not-a-frame"}\n');
    const error = await stoppedAt(run, 'protocol');
    expect(error.message).toBe('the agent sent more than 20 malformed or misplaced frames');
    expect(h.outboxTexts()).toEqual([`${NOTICE}${error.message}`]);
  });

  it('logs an error report clipped, and at most 64 KiB of stderr a run, then one line that says the rest is not logged', async () => {
    const { run, container, lines } = await bootLogged();
    container.send(errorFrame(`E${'x'.repeat(9_999)}`));
    for (let i = 0; i < 50; i++) container.stderr.write(`${'s'.repeat(4_095)}\n`);
    await flush();
    expect(run.idle).toBe(false);

    const reported = lines.filter((line) => line.msg === 'runner reported an error');
    expect(reported).toHaveLength(1);
    expect(String(reported[0]?.message)).toMatch(/^Ex+… \(10000 characters\)$/);
    expect(String(reported[0]?.message).length).toBeLessThan(1_100);

    const stderr = lines.filter((line) => line.msg === 'runner');
    const logged = stderr.reduce((sum, line) => sum + String(line.stderr).length, 0);
    expect(logged).toBeLessThanOrEqual(64 * 1024);
    expect(logged).toBeGreaterThan(60 * 1024);
    expect(
      lines.filter((line) => String(line.msg).startsWith('runner stderr suppressed')),
    ).toHaveLength(1);
  });
});

describe('run limits: messages that arrive while a run ends', () => {
  it('a message taken for a later turn is handed back when the turn is stopped at a limit', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { maxRepliesPerTurn: 1 } });
    h.post('@Andy and another thing');
    expect(run.offerMessages()).toBe(true); // busy: taken for the next turn
    container.send(output('one'), output('two'));
    const outcome = await run.finished;
    expect(outcome).toMatchObject({
      ok: false,
      failure: 'final',
      notified: true,
      messagesLeft: true,
    });
    expect(container.receivedOfType('message')).toEqual([]);
  });

  it('a run asked to stop before its runner is ready hands back the messages it was started for', async () => {
    const h = harness();
    h.post('@Andy hello');
    const run = h.run();
    const container = await h.runtime.started(0);
    run.requestStop(); // a task became due for the group, say
    container.send(ready());
    expect(await run.finished).toEqual({ ok: true, messagesLeft: true });
    expect(container.received.map((frame) => frame.type)).toEqual(['shutdown']);
    expect(h.cursor()).toBe(0);
  });
});

describe('run limits: model calls answered and attempted', () => {
  const rateLimited = (): ModelError =>
    new ModelError('The API is rate limiting requests (429).', {
      kind: 'rate_limit',
      retryable: true,
      status: 429,
    });

  it('counts only answered calls against maxModelCallsPerTurn, so an honest turn in a storm of 429s goes on', async () => {
    const h = harness();
    const { run, container } = await h.boot({
      limits: { maxModelCallsPerTurn: 2, maxModelAttemptsPerTurn: 10 },
    });
    h.broker.errors.push(rateLimited(), rateLimited(), rateLimited(), rateLimited());
    for (let i = 0; i < 6; i++) {
      container.send(modelRequest(`r${i}`));
      await flush();
    }
    expect(tracker(run).settled()).toBe(false);
    expect(container.receivedOfType('model.error')).toHaveLength(4);
    expect(container.receivedOfType('model.result')).toHaveLength(2);
    container.send(modelRequest('third-answer'));
    const error = await stoppedAt(run, 'maxModelCallsPerTurn');
    expect(error.message).toBe('the agent made more than 2 model calls in one turn');
    expect(h.broker.requests).toHaveLength(6);
  });

  it('counts every request, failed ones included, against maxModelAttemptsPerTurn', async () => {
    const h = harness();
    const { run, container } = await h.boot({ limits: { maxModelAttemptsPerTurn: 3 } });
    h.broker.errors.push(...Array.from({ length: 10 }, rateLimited));
    for (let i = 0; i < 3; i++) {
      container.send(modelRequest(`r${i}`));
      await flush();
    }
    container.send(modelRequest('r3'));
    const error = await stoppedAt(run, 'maxModelAttemptsPerTurn');
    expect(error.message).toBe(
      'the agent asked for more than 3 model calls in one turn, failed ones included',
    );
    expect(h.broker.requests).toHaveLength(3);
  });
});

describe('run limits: a request the API refuses', () => {
  const EARLIER = [
    { role: 'user' as const, content: 'earlier question' },
    { role: 'assistant' as const, content: [{ type: 'text', text: 'earlier answer' }] },
  ];
  const refused = (kind: 'bad_request' | 'refused' | 'server'): ModelError =>
    new ModelError(`The API refused the request (${kind}).`, {
      kind,
      retryable: false,
      status: kind === 'refused' ? null : kind === 'server' ? 500 : 400,
    });

  /** Boots a run over the stored `history`, fails its model call with `error`, and ends the turn. */
  async function failTurn(history: typeof EARLIER | [], error: ModelError) {
    const h = harness();
    if (history.length > 0) h.store.setTranscript(h.group.jid, history, Date.now());
    h.broker.errors.push(error);
    const { run, container } = await h.boot();
    expect((container.receivedOfType('start')[0]?.history as unknown[]).length).toBe(
      history.length,
    );
    container.send(modelRequest('r1'));
    await flush();
    container.send({ type: 'error', message: 'model call failed' }, done('failed'));
    const outcome = await run.finished;
    expect(outcome).toMatchObject({ ok: false, failure: 'final' });
    return { h, message: (outcome as { error: Error }).error.message };
  }

  it('clears the stored conversation the turn carried, so the next attempt starts fresh', async () => {
    const { h, message } = await failTurn(EARLIER, refused('bad_request'));
    expect(h.store.transcriptOf(h.group.jid)).toEqual([]);
    expect(message).toBe(
      'The API refused the request (bad_request); the conversation so far is forgotten, so the next attempt starts fresh',
    );
    expect(h.cursor()).toBe(0); // the messages stay pending
  });

  it('keeps the conversation when the API did not refuse the request itself, or the broker did', async () => {
    // The broker's refusal is never the stored conversation's doing (it passed the same policy
    // on the way in and out), and one forged request must not wipe the group's memory.
    for (const kind of ['server', 'refused'] as const) {
      const { h, message } = await failTurn(EARLIER, refused(kind));
      expect(h.store.transcriptOf(h.group.jid)).toEqual(EARLIER);
      expect(message).toBe(`The API refused the request (${kind}).`);
    }
  });

  it('says nothing of a conversation when the turn carried none', async () => {
    const { message } = await failTurn([], refused('bad_request'));
    expect(message).toBe('The API refused the request (bad_request).');
  });
});

describe('run limits: messages that arrive while a run ends, through the core', () => {
  it('a message that arrives during a turn stopped at a limit gets a run of its own, which answers only it', async () => {
    const { core, runtime } = streamCore('clawbar-limits-left-', { maxRepliesPerTurn: 1 });
    await core.start();
    const group = core.addGroup({ name: 'Limits' });
    core.postLocal(group.jid, 'Alice', '@Andy hello');
    const first = await runtime.started(0);
    first.send(ready());
    await flush();
    core.postLocal(group.jid, 'Alice', '@Andy second question');
    await flush();
    first.send(output('one'), output('two'));

    const second = await runtime.started(1);
    second.send(ready());
    await flush();
    const prompt = String(second.receivedOfType('start')[0]?.prompt);
    expect(prompt).toContain('second question');
    expect(prompt).not.toContain('hello');
  });
});
