/**
 * The control socket as `serve` runs it: a real ControlServer on a unix socket in a temp
 * CLAWBAR_HOME, a real Core on a real SQLite file, and a container runtime that is never
 * available (nothing here starts an agent).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type ClawbarConfig } from '../../main/core/config.js';
import { ControlClient, ControlRequestError } from '../../main/core/control/client.js';
import {
  controlHandlers,
  type GroupView,
  type MessageView,
} from '../../main/core/control/handlers.js';
import { MAX_REQUEST_BYTES } from '../../main/core/control/protocol.js';
import { ControlServer, ServeAlreadyRunningError } from '../../main/core/control/server.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { Core, type CoreStatus } from '../../main/core/core.js';
import { silentLogger } from '../../main/core/logger.js';
import type { ContainerRuntime, ContainerSpec } from '../../main/core/sandbox/runtime.js';
import { openStore, type Store } from '../../main/core/store/index.js';

const SECRET_KEY = 'sk-ant-test-never-in-a-container';

/**
 * An engine that answers its health check and has the image, but cannot start a container:
 * every start is recorded and fails as a fault. (An engine that does not answer, or has no
 * image, makes the core hold work until it is fixed, which these tests do not want.)
 */
class UnavailableRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  readonly starts: ContainerSpec[] = [];
  private notifyStart: (() => void) | null = null;

  async check() {
    return { ok: true as const, version: 'test' };
  }
  async inspectImage(image: string) {
    return { image, present: true };
  }
  async start(spec: ContainerSpec): Promise<never> {
    this.starts.push(spec);
    this.notifyStart?.();
    throw new Error('containers are not available in this test');
  }
  async listOurs() {
    return [];
  }
  async removeOrphans() {
    return 0;
  }
  /** Resolves at the next start (or at once if one already happened). */
  started(): Promise<void> {
    if (this.starts.length > 0) return Promise.resolve();
    return new Promise((resolve) => (this.notifyStart = resolve));
  }
}

const unusedBroker = {
  complete: async (): Promise<never> => {
    throw new Error('unused');
  },
};

/** This test's own temp dir; the data root is `home` inside it, so its parent is ours too. */
let box: string;
let home: string;
let config: ClawbarConfig;
const cleanups: Array<() => unknown> = [];

function makeCore(store: Store, runtime: ContainerRuntime, dispatch = true): Core {
  const core = new Core({
    config,
    store,
    runtime,
    broker: unusedBroker,
    log: silentLogger(),
    channels: [localChannelFor(store)],
    dispatch,
    retry: { baseDelayMs: 60_000, maxRetries: 5 },
  });
  cleanups.push(() => core.shutdown(100));
  return core;
}

function makeStore(): Store {
  const store = openStore(config.dbPath);
  cleanups.push(() => store.close());
  return store;
}

beforeEach(() => {
  // Real path: the mount policy refuses a data root reached through a symlink.
  box = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-ctl-')));
  home = path.join(box, 'home');
  fs.mkdirSync(home);
  config = loadConfig({ CLAWBAR_HOME: home, ANTHROPIC_API_KEY: SECRET_KEY }, () => undefined);
});

afterEach(async () => {
  // Last made, first undone: servers and cores before the stores they use.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  fs.rmSync(box, { recursive: true, force: true });
});

/** Lets pending callbacks (a queued run, a container start) happen before checking they did not. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

describe('a serving control socket', () => {
  let store: Store;
  let runtime: UnavailableRuntime;
  let core: Core;
  let client: ControlClient;

  beforeEach(async () => {
    store = makeStore();
    runtime = new UnavailableRuntime();
    core = makeCore(store, runtime);
    await core.start();
    const server = new ControlServer(
      config.socketPath,
      controlHandlers({ core, serving: true }),
      silentLogger(),
    );
    await server.listen();
    cleanups.push(() => server.close());
    client = await ControlClient.connect(config.socketPath);
    cleanups.push(() => client.close());
  });

  async function expectRequestError(
    promise: Promise<unknown>,
    code: string,
    message: RegExp | string,
  ): Promise<void> {
    const err = await promise.then(
      () => {
        throw new Error('expected the request to fail');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ControlRequestError);
    expect((err as ControlRequestError).code).toBe(code);
    if (typeof message === 'string') expect((err as Error).message).toBe(message);
    else expect((err as Error).message).toMatch(message);
  }

  it('shows a reply that failed for good in messages and in status, and one still queued as waiting', async () => {
    await client.request('groups.add', { name: 'Family' });
    const posted = core.postLocal('family', 'Alice', 'hello');
    const failed = store.enqueueOutbound('local:family', 'lost reply', 't1', Date.now());
    store.recordFailedAttempt(failed.id, {
      error: 'the chat refused it',
      giveUp: true,
      nextAttemptAt: 0,
      now: Date.now(),
    });
    // Delivery of this one is held back: the local chat is closed for the moment.
    await core.local?.disconnect();
    core.outbox.channelState(core.local!, core.local!.state);
    store.enqueueOutbound('local:family', 'later reply', 't2', Date.now());

    const history = (await client.request('messages', { group: 'family' })) as MessageView[];
    expect(history.map((m) => [m.text, m.fromAssistant, m.delivery ?? 'delivered'])).toEqual([
      [posted.message.text, false, 'delivered'],
      ['lost reply', true, 'failed'],
      ['later reply', true, 'queued'],
    ]);
    expect(history[1]?.error).toBe('the chat refused it');

    const status = (await client.request('status', {})) as CoreStatus;
    expect(status.outbox).toMatchObject({ queued: 1, failed: 1 });
    expect(status.outbox.recentFailures).toEqual([
      expect.objectContaining({
        id: failed.id,
        chatJid: 'local:family',
        error: 'the chat refused it',
      }),
    ]);
    expect(status.channels).toEqual([
      { name: 'local', state: { state: 'closed', reason: 'disconnected', retrying: false } },
    ]);
  });

  it('a send --wait whose client goes away is cancelled: no listener or timer is left behind', async () => {
    await client.request('groups.add', { name: 'Family' });
    const before = core.events.listenerCount();
    const other = await ControlClient.connect(config.socketPath);
    const pending = other
      .request('send', { group: 'family', text: '@Andy hello', wait: true })
      .catch((err: unknown) => err);
    await expect.poll(() => core.events.listenerCount()).toBeGreaterThan(before);
    other.close();
    expect(await pending).toBeInstanceOf(Error);
    await expect.poll(() => core.events.listenerCount()).toBe(before);
  });

  it('creates the socket file readable and writable by its owner only', () => {
    const stat = fs.statSync(config.socketPath);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
  });

  it('adds, lists, pauses, resumes and removes a group', async () => {
    const added = (await client.request('groups.add', { name: 'Family' })) as GroupView;
    expect(added).toEqual({
      name: 'Family',
      folder: 'family',
      jid: 'local:family',
      channel: 'local',
      trigger: '@Andy',
      main: false,
      paused: false,
      network: false,
      webFetch: false,
    });
    expect(fs.existsSync(path.join(home, 'groups', 'family', 'CLAUDE.md'))).toBe(true);
    expect(await client.request('groups.list', {})).toEqual([
      { ...added, usageToday: expect.objectContaining({ tokens: 0, calls: 0, costUsd: 0 }) },
    ]);

    expect(await client.request('groups.pause', { group: 'family' })).toMatchObject({
      paused: true,
    });
    expect(await client.request('groups.list', {})).toEqual([
      { ...added, paused: true, usageToday: expect.objectContaining({ tokens: 0 }) },
    ]);
    expect(await client.request('groups.resume', { group: 'local:family' })).toMatchObject({
      paused: false,
    });
    expect(await client.request('groups.list', {})).toEqual([
      { ...added, usageToday: expect.objectContaining({ tokens: 0 }) },
    ]);

    expect(await client.request('groups.remove', { group: 'FAMILY' })).toMatchObject({
      name: 'Family',
    });
    expect(await client.request('groups.list', {})).toEqual([]);
    // The folder stays: nothing the user made is lost.
    expect(fs.existsSync(path.join(home, 'groups', 'family'))).toBe(true);
  });

  it('refuses a second group with the same name', async () => {
    await client.request('groups.add', { name: 'Family' });
    await expectRequestError(
      client.request('groups.add', { name: 'family' }),
      'bad_request',
      'a group named "family" already exists',
    );
  });

  it('answers a send to an unknown group with not_found and a clear message', async () => {
    await expectRequestError(
      client.request('send', { group: 'nope', text: '@Andy hi' }),
      'not_found',
      'no group named "nope" (by name, folder or jid); see `clawbar groups list`',
    );
  });

  it('answers pause, resume, remove and messages of an unknown group with not_found', async () => {
    for (const method of ['groups.pause', 'groups.resume', 'groups.remove', 'messages'] as const) {
      await expectRequestError(
        client.request(method, { group: 'ghost' }),
        'not_found',
        /no group named "ghost"/,
      );
    }
  });

  it('refuses empty and whitespace-only text with bad_request and stores nothing', async () => {
    await client.request('groups.add', { name: 'Family' });
    await expectRequestError(
      client.request('send', { group: 'family', text: '' }),
      'bad_request',
      'the message is empty',
    );
    await expectRequestError(
      client.request('send', { group: 'family', text: ' \n\t ' }),
      'bad_request',
      'the message is empty',
    );
    expect(await client.request('messages', { group: 'family' })).toEqual([]);
    expect(store.recentMessages('local:family', 10)).toEqual([]);
  });

  it('refuses text over 65536 characters with bad_request and stores nothing', async () => {
    await client.request('groups.add', { name: 'Family' });
    await expectRequestError(
      client.request('send', { group: 'family', text: 'x'.repeat(65_537) }),
      'bad_request',
      'text: a message may be at most 65536 characters',
    );
    expect(store.recentMessages('local:family', 10)).toEqual([]);
    // The limit itself is fine.
    await client.request('send', { group: 'family', text: 'x'.repeat(65_536) });
    expect(store.recentMessages('local:family', 10)).toHaveLength(1);
  });

  it('turns a group name of ../x into folder x and creates nothing outside $CLAWBAR_HOME/groups', async () => {
    // The parent is this test's own dir (never the shared system temp dir), so an escaped "x"
    // would show up in its whole listing.
    const parent = path.dirname(home);
    expect(parent).toBe(box);
    const parentBefore = fs.readdirSync(parent).sort();
    const homeBefore = fs.readdirSync(home).sort();

    const added = (await client.request('groups.add', { name: '../x' })) as GroupView;
    expect(added).toMatchObject({ name: '../x', folder: 'x', jid: 'local:x' });
    expect(fs.statSync(path.join(home, 'groups', 'x')).isDirectory()).toBe(true);
    expect(fs.readdirSync(home).sort()).toEqual(homeBefore);
    expect(fs.readdirSync(parent).sort()).toEqual(parentBefore);
    // The group is still found by the name it was given.
    expect(await client.request('groups.pause', { group: '../x' })).toMatchObject({
      folder: 'x',
      paused: true,
    });
  });

  it("stores a paused group's messages and reports them triggered, but dispatches nothing until resume", async () => {
    await client.request('groups.add', { name: 'Family' });
    await client.request('groups.pause', { group: 'family' });

    const sent = (await client.request('send', {
      group: 'family',
      from: 'Alice',
      text: '@Andy are you there?',
    })) as {
      stored: MessageView;
      triggered: boolean;
      paused?: boolean;
    };
    expect(sent.triggered).toBe(true);
    expect(sent.paused).toBe(true);
    expect(sent.stored).toMatchObject({
      from: 'Alice',
      text: '@Andy are you there?',
      fromAssistant: false,
    });
    const history = (await client.request('messages', { group: 'family' })) as MessageView[];
    expect(history.map((m) => m.text)).toEqual(['@Andy are you there?']);

    // `wait` on a paused group returns at once rather than waiting for a run that cannot start.
    const waited = (await client.request('send', {
      group: 'family',
      text: '@Andy still?',
      wait: true,
    })) as {
      paused?: boolean;
      replies: unknown[];
    };
    expect(waited).toMatchObject({ paused: true, replies: [] });

    await settle();
    expect(runtime.starts).toEqual([]);
    expect(core.queue.snapshot()).toMatchObject({ running: [], waiting: [], retrying: [] });

    await client.request('groups.resume', { group: 'family' });
    await runtime.started();
    expect(runtime.starts).toHaveLength(1);
  });

  it('rejects a request line over 1 MiB with a clear error instead of leaving the client waiting', async () => {
    await client.request('groups.add', { name: 'Family' });
    await expectRequestError(
      client.request('send', { group: 'family', text: 'x'.repeat(MAX_REQUEST_BYTES + 10) }),
      'bad_request',
      /^request too large/,
    );
    // The same connection still serves.
    expect(await client.request('groups.list', {})).toHaveLength(1);
    expect(store.recentMessages('local:family', 10)).toEqual([]);
  });
});

/** A raw connection that writes lines and reads answer lines, for speaking bad protocol. */
class RawConnection {
  private buffer = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | null = null;
  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let newline: number;
      while ((newline = this.buffer.indexOf('\n')) !== -1) {
        this.lines.push(this.buffer.slice(0, newline));
        this.buffer = this.buffer.slice(newline + 1);
      }
      this.waiter?.();
    });
  }

  static open(socketPath: string): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** The next answer line, parsed. */
  async next(timeoutMs = 5_000): Promise<{
    id: number;
    ok: boolean;
    result?: unknown;
    error?: { code: string; message: string };
  }> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.socket.destroyed || Date.now() > deadline)
        throw new Error(`no answer (socket ${this.socket.destroyed ? 'closed' : 'open'})`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    return JSON.parse(this.lines.shift() as string);
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('the control socket under bad input', () => {
  let raw: RawConnection;
  let core: Core;

  beforeEach(async () => {
    const store = makeStore();
    core = makeCore(store, new UnavailableRuntime());
    const server = new ControlServer(
      config.socketPath,
      controlHandlers({ core, serving: true }),
      silentLogger(),
    );
    await server.listen();
    cleanups.push(() => server.close());
    raw = await RawConnection.open(config.socketPath);
    cleanups.push(() => raw.close());
  });

  const good = (id: number) => `${JSON.stringify({ id, method: 'groups.list', params: {} })}\n`;

  it.each([
    ['a line that is not JSON', 'this is not json\n', 0, 'request is not JSON'],
    ['JSON without a method', '{"id": 4}\n', 0, 'request needs id, method, params'],
    ['JSON that is not an object', '[1, 2, 3]\n', 0, 'request needs id, method, params'],
    [
      'a string id',
      '{"id": "4", "method": "groups.list"}\n',
      0,
      'request needs id, method, params',
    ],
    [
      'an unknown method',
      '{"id": 5, "method": "groups.nuke", "params": {}}\n',
      5,
      'unknown method "groups.nuke"',
    ],
    [
      'an inherited property as method',
      '{"id": 6, "method": "constructor", "params": {}}\n',
      6,
      'unknown method "constructor"',
    ],
    [
      'a number where the group should be',
      '{"id": 7, "method": "send", "params": {"group": 5, "text": "hi"}}\n',
      7,
      /^group: /,
    ],
    [
      'a string where wait should be a boolean',
      '{"id": 8, "method": "send", "params": {"group": "g", "text": "hi", "wait": "yes"}}\n',
      8,
      /^wait: /,
    ],
    [
      'params that are not an object',
      '{"id": 9, "method": "groups.add", "params": "Family"}\n',
      9,
      /expected object/,
    ],
    [
      'a limit that is not a whole number',
      '{"id": 10, "method": "messages", "params": {"group": "g", "limit": 1.5}}\n',
      10,
      /^limit: /,
    ],
  ])(
    'answers %s with a clear bad_request error, then serves the next request on the same connection',
    async (_label, line, id, message) => {
      raw.write(line);
      const answer = await raw.next();
      expect(answer.id).toBe(id);
      expect(answer.ok).toBe(false);
      expect(answer.error?.code).toBe('bad_request');
      if (typeof message === 'string') expect(answer.error?.message).toBe(message);
      else expect(answer.error?.message).toMatch(message);

      raw.write(good(11));
      expect(await raw.next()).toEqual({ id: 11, ok: true, result: [] });
    },
  );

  it('ignores blank lines', async () => {
    raw.write('\n   \n');
    raw.write(good(1));
    expect(await raw.next()).toEqual({ id: 1, ok: true, result: [] });
  });

  it('answers a line over 1 MiB with "request too large", skips the rest of it, and keeps serving', async () => {
    const huge = `{"id": 12, "method": "groups.add", "params": {"name": "${'y'.repeat(MAX_REQUEST_BYTES + 1024)}"}}\n`;
    raw.write(huge);
    const answer = await raw.next();
    expect(answer).toMatchObject({ id: 0, ok: false, error: { code: 'bad_request' } });
    expect(answer.error?.message).toMatch(/^request too large/);

    // The tail of the huge line is not read as a request of its own: the next answer is the good one.
    raw.write(good(13));
    expect(await raw.next()).toEqual({ id: 13, ok: true, result: [] });

    const fresh = await RawConnection.open(config.socketPath);
    cleanups.push(() => fresh.close());
    fresh.write(good(14));
    expect(await fresh.next()).toEqual({ id: 14, ok: true, result: [] });
    expect(core.groups.list()).toEqual([]);
  });

  it('refuses an oversized line even when it arrives together with its newline', async () => {
    // One write of just over the limit plus the newline and a good request after it.
    raw.write(`${'z'.repeat(MAX_REQUEST_BYTES + 1)}\n${good(15)}`);
    const first = await raw.next();
    expect(first.ok).toBe(false);
    expect(first.error?.message).toMatch(/^request too large/);
    expect(await raw.next()).toEqual({ id: 15, ok: true, result: [] });
  });

  it('answers several requests written at once, each with its own id', async () => {
    raw.write(`${good(21)}not json\n${good(22)}`);
    const answers = [await raw.next(), await raw.next(), await raw.next()];
    expect(answers).toEqual(
      expect.arrayContaining([
        { id: 21, ok: true, result: [] },
        { id: 22, ok: true, result: [] },
        { id: 0, ok: false, error: { code: 'bad_request', message: 'request is not JSON' } },
      ]),
    );
  });
});

describe('one serve per data directory', () => {
  it('a second server on the same socket path refuses with ServeAlreadyRunningError', async () => {
    const core = makeCore(makeStore(), new UnavailableRuntime());
    const first = new ControlServer(
      config.socketPath,
      controlHandlers({ core, serving: true }),
      silentLogger(),
    );
    await first.listen();
    cleanups.push(() => first.close());

    const second = new ControlServer(
      config.socketPath,
      controlHandlers({ core, serving: true }),
      silentLogger(),
    );
    await expect(second.listen()).rejects.toBeInstanceOf(ServeAlreadyRunningError);
    await expect(second.listen()).rejects.toThrow(/clawbar serve is already running/);

    // The first one is unharmed.
    const client = await ControlClient.connect(config.socketPath);
    cleanups.push(() => client.close());
    expect(await client.request('groups.list', {})).toEqual([]);
  });

  it('replaces a stale socket file that has no listener (left by a crash)', async () => {
    // A process that dies by SIGKILL leaves its socket file behind.
    const child = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(config.socketPath)}, () => console.log('up'))`,
    ]);
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`listener exited early (${code})`)));
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect(fs.statSync(config.socketPath).isSocket()).toBe(true);

    const core = makeCore(makeStore(), new UnavailableRuntime());
    const server = new ControlServer(
      config.socketPath,
      controlHandlers({ core, serving: true }),
      silentLogger(),
    );
    await server.listen();
    cleanups.push(() => server.close());
    const client = await ControlClient.connect(config.socketPath);
    cleanups.push(() => client.close());
    expect(await client.request('groups.list', {})).toEqual([]);
    expect(fs.statSync(config.socketPath).mode & 0o777).toBe(0o600);
  });

  it('removes its socket file when it closes', async () => {
    const core = makeCore(makeStore(), new UnavailableRuntime());
    const server = new ControlServer(
      config.socketPath,
      controlHandlers({ core, serving: true }),
      silentLogger(),
    );
    await server.listen();
    await server.close();
    expect(fs.existsSync(config.socketPath)).toBe(false);
  });
});

describe('recovery at start', () => {
  it('queues messages stored while dispatch was off when a dispatching core starts', async () => {
    // The CLI without serve: the message is stored and routed, no agent runs.
    const offline = makeStore();
    const offlineRuntime = new UnavailableRuntime();
    const cliCore = makeCore(offline, offlineRuntime, false);
    cliCore.groups.ensureLayout();
    cliCore.addGroup({ name: 'Family' });
    const posted = cliCore.postLocal('family', 'Alice', '@Andy what is for dinner?');
    expect(posted.triggered).toBe(true);
    await settle();
    expect(offlineRuntime.starts).toEqual([]);
    await cliCore.shutdown(100);
    offline.close();

    // Then serve starts on the same database.
    const runtime = new UnavailableRuntime();
    const core = makeCore(makeStore(), runtime);
    await core.start();
    await runtime.started();
    expect(runtime.starts).toHaveLength(1);
    const spec = runtime.starts[0] as ContainerSpec;

    // The model key never enters a container.
    for (const [name, value] of Object.entries(spec.env)) {
      expect(name).not.toMatch(/ANTHROPIC/i);
      expect(value).not.toContain(SECRET_KEY);
    }
    expect(JSON.stringify(spec)).not.toContain(SECRET_KEY);

    // A non-main group sees exactly its folder (rw) and global memory (ro); the transcript stays
    // in the host's store, so there is no session folder.
    expect(spec.mounts).toEqual([
      {
        hostPath: path.join(home, 'groups', 'family'),
        containerPath: '/workspace/group',
        readOnly: false,
      },
      {
        hostPath: path.join(home, 'groups', 'global'),
        containerPath: '/workspace/global',
        readOnly: true,
      },
    ]);
    expect(spec.network).toBe(false);

    // The failed start is retried later (60 s here), not given up, and the message stays pending.
    await settle();
    expect(core.queue.snapshot().retrying).toEqual(['local:family']);
    await core.shutdown(100);
  });

  it('does not re-queue a paused group at start', async () => {
    const offline = makeStore();
    const cliCore = makeCore(offline, new UnavailableRuntime(), false);
    cliCore.groups.ensureLayout();
    cliCore.addGroup({ name: 'Family' });
    cliCore.pauseGroup('family');
    cliCore.postLocal('family', 'Alice', '@Andy hello');

    const runtime = new UnavailableRuntime();
    const core = makeCore(offline, runtime);
    await core.start();
    await settle();
    expect(runtime.starts).toEqual([]);
  });
});
