/**
 * The outbox worker against channels that fail, are slow, and reconnect, over a real SQLite
 * file. Fake timers drive the backoff and rate-limit waits; `now` follows the fake clock.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type {
  Channel,
  ChannelHooks,
  ChannelState,
  OutboundMessage,
  RateLimit,
  SentMessage,
} from '../../main/core/channels/channel.js';
import { silentLogger } from '../../main/core/logger.js';
import { OutboxWorker, type OutboxPolicy } from '../../main/core/outbox.js';
import { openStore, type OutboxItem, type Store } from '../../main/core/store/index.js';

const A = 'wa:a';
const B = 'wa:b';

type Plan = 'ok' | 'fail' | { wait: Promise<void>; then: 'ok' | 'fail' };

/** A channel whose every send follows a plan, and which records each attempt. */
class ScriptedChannel implements Channel {
  readonly name = 'whatsapp' as const;
  state: ChannelState = { state: 'closed', reason: 'not connected', retrying: false };
  readonly attempts: OutboundMessage[] = [];
  readonly delivered: OutboundMessage[] = [];
  private hooks: ChannelHooks | null = null;
  private readonly plans = new Map<string, Plan[]>();
  /** What a send does when no plan is left. */
  fallback: Plan = 'ok';

  constructor(readonly rateLimit?: RateLimit) {}

  owns(chatJid: string): boolean {
    return chatJid.startsWith('wa:');
  }
  /** What the next sends to `chatJid` do, in order. */
  plan(chatJid: string, ...plans: Plan[]): void {
    this.plans.set(chatJid, [...(this.plans.get(chatJid) ?? []), ...plans]);
  }
  async connect(hooks: ChannelHooks): Promise<void> {
    this.hooks = hooks;
  }
  open(): void {
    this.setState({ state: 'open' });
  }
  close(): void {
    this.setState({ state: 'closed', reason: 'connection lost', code: 428, retrying: true });
  }
  async disconnect(): Promise<void> {}
  async setTyping(): Promise<void> {}
  async chatMetadata(): Promise<null> {
    return null;
  }
  async send(message: OutboundMessage): Promise<SentMessage> {
    this.attempts.push(message);
    const plan = this.plans.get(message.chatJid)?.shift() ?? this.fallback;
    let outcome: 'ok' | 'fail';
    if (typeof plan === 'string') outcome = plan;
    else {
      await plan.wait;
      outcome = plan.then;
    }
    if (outcome === 'fail') throw new Error('send failed');
    this.delivered.push(message);
    return { id: `wamid-${message.outboxId}`, timestamp: Date.now() };
  }
  private setState(state: ChannelState): void {
    this.state = state;
    this.hooks?.onState(state);
  }
}

let dir: string;
let store: Store;
let workers: OutboxWorker[];
let settled: Array<{ id: number; outcome: string }>;

function worker(channel: ScriptedChannel, policy: Partial<OutboxPolicy> = {}): OutboxWorker {
  const w = new OutboxWorker({
    store,
    channels: [channel],
    assistantName: 'Andy',
    log: silentLogger(),
    now: () => Date.now(),
    random: () => 0.5, // no jitter: delays are exactly base × 2^(n-1)
    policy: { baseDelayMs: 1_000, maxDelayMs: 8_000, maxAttempts: 6, ...policy },
    onSettled: (item, outcome) => settled.push({ id: item.id, outcome }),
  });
  workers.push(w);
  void channel.connect({
    onMessage: () => undefined,
    onState: (state) => w.channelState(channel, state),
    onChatMetadata: () => undefined,
  });
  return w;
}

function queue(chatJid: string, text: string, kind: 'reply' | 'notice' = 'reply'): OutboxItem {
  return store.enqueueOutbound(chatJid, text, null, Date.now(), kind);
}

const flush = () => vi.advanceTimersByTimeAsync(0);
const texts = (messages: OutboundMessage[]) => messages.map((m) => m.text);

beforeEach(() => {
  vi.useFakeTimers({ now: Date.UTC(2026, 10, 25, 12, 0) });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-outbox-'));
  store = openStore(path.join(dir, 'clawbar.db'));
  for (const jid of [A, B]) {
    store.upsertChat({ jid, name: jid, channel: 'whatsapp', isGroup: true, lastActivity: null });
  }
  workers = [];
  settled = [];
});

afterEach(async () => {
  for (const w of workers) await w.stop(0);
  vi.useRealTimers();
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the outbox worker', () => {
  it('waits for the channel to report open, then delivers each chat in order with its item ids', async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel);
    const items = [queue(A, 'a1'), queue(B, 'b1'), queue(A, 'a2')];
    w.notify();
    await flush();
    expect(channel.attempts).toEqual([]); // connected is not open

    channel.open();
    await flush();
    expect(texts(channel.delivered.filter((m) => m.chatJid === A))).toEqual(['a1', 'a2']);
    expect(texts(channel.delivered.filter((m) => m.chatJid === B))).toEqual(['b1']);
    expect(channel.attempts.map((m) => m.outboxId).sort()).toEqual(items.map((i) => i.id).sort());
    expect(store.queuedOutbox()).toEqual([]);
    // Recorded once each in the chat history, under the channel's ids.
    expect(store.recentMessages(A, 10).map((m) => [m.id, m.text, m.fromBot])).toEqual([
      [`wamid-${items[0]!.id}`, 'a1', true],
      [`wamid-${items[2]!.id}`, 'a2', true],
    ]);
  });

  it("retries a failing item with bounded backoff, holding that chat's later items but not other chats", async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel);
    channel.open();
    channel.plan(A, 'fail', 'fail', 'fail', 'fail', 'fail');
    const first = queue(A, 'a1');
    queue(A, 'a2');
    w.notify();
    await flush();
    expect(texts(channel.attempts)).toEqual(['a1']);

    queue(B, 'b1');
    w.notify();
    await flush();
    expect(texts(channel.delivered)).toEqual(['b1']); // B is not held up by A

    // 1 s, 2 s, 4 s, 8 s, then capped at 8 s.
    const gaps: number[] = [];
    let last = Date.now();
    while (channel.delivered.filter((m) => m.chatJid === A).length < 2) {
      const before = channel.attempts.length;
      await vi.advanceTimersByTimeAsync(250);
      if (channel.attempts.length > before) {
        gaps.push(Date.now() - last);
        last = Date.now();
      }
    }
    expect(gaps).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
    expect(texts(channel.delivered)).toEqual(['b1', 'a1', 'a2']);
    expect(store.outboxItem(first.id)).toMatchObject({ state: 'sent', attempts: 6 });
  });

  it('spends no attempts while the channel is closed, and delivers once it reopens', async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel);
    channel.open();
    channel.plan(A, 'fail');
    const item = queue(A, 'a1');
    w.notify();
    await flush();
    channel.close();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(channel.attempts).toHaveLength(1);
    expect(store.outboxItem(item.id)?.attempts).toBe(1);

    channel.open();
    await flush();
    expect(texts(channel.delivered)).toEqual(['a1']);
    expect(store.outboxItem(item.id)).toMatchObject({ state: 'sent', attempts: 2 });
  });

  it('sends each item exactly once however often it is told to look, even with a slow channel', async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel);
    channel.open();
    let release!: () => void;
    channel.plan(A, { wait: new Promise((r) => (release = r)), then: 'ok' });
    const items = [queue(A, 'a1'), queue(A, 'a2'), queue(B, 'b1')];
    for (let i = 0; i < 20; i++) w.notify();
    await flush();
    for (let i = 0; i < 20; i++) w.notify();
    await flush();
    // a1 is stuck in a slow send: a2 waits behind it, b1 goes on.
    expect(texts(channel.attempts)).toEqual(['a1', 'b1']);
    release();
    await flush();
    expect(channel.attempts.map((m) => m.outboxId)).toEqual([
      items[0]!.id,
      items[2]!.id,
      items[1]!.id,
    ]);
    expect(settled.filter((s) => s.outcome === 'sent')).toHaveLength(3);
  });

  it('after a crash mid-send, the next worker sends the same item again under the same id', async () => {
    const channel = new ScriptedChannel();
    const first = worker(channel);
    channel.open();
    channel.plan(A, { wait: new Promise(() => undefined), then: 'ok' }); // never answers
    const item = queue(A, 'a1');
    first.notify();
    await flush();
    await first.stop(0); // the process "dies" with the send in flight

    const restarted = new ScriptedChannel();
    const second = worker(restarted);
    restarted.open();
    await flush();
    expect(restarted.delivered.map((m) => m.outboxId)).toEqual([item.id]);
    expect(channel.attempts.map((m) => m.outboxId)).toEqual([item.id]);
    expect(store.outboxItem(item.id)).toMatchObject({ state: 'sent', attempts: 1 });
    await second.stop(0);
  });

  it('fails an item for good after the last attempt, tells the chat once, and does not report a failed notice', async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel, { maxAttempts: 3 });
    channel.open();
    channel.plan(A, 'fail', 'fail', 'fail');
    const doomed = queue(A, 'a1');
    const next = queue(A, 'a2');
    w.notify();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(store.outboxItem(doomed.id)).toMatchObject({ state: 'failed', attempts: 3 });
    expect(settled).toContainEqual({ id: doomed.id, outcome: 'failed' });
    // The chat goes on: a2, then the notice about a1.
    expect(texts(channel.delivered)).toEqual([
      'a2',
      expect.stringMatching(/^A reply could not be delivered after 3 attempts \(send failed\)/),
    ]);
    expect(store.outboxItem(next.id)?.state).toBe('sent');
    expect(store.outboxCounts()).toEqual({ queued: 0, failed: 1 });

    // A notice that fails for good breeds no further notice.
    channel.fallback = 'fail';
    const notice = queue(B, 'about something', 'notice');
    w.notify();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(store.outboxItem(notice.id)?.state).toBe('failed');
    expect(store.queuedOutbox()).toEqual([]);
  });

  it('keeps within the channel rate limit', async () => {
    const channel = new ScriptedChannel({ perSecond: 2, burst: 2 });
    const w = worker(channel);
    channel.open();
    for (let i = 0; i < 6; i++) queue(i % 2 ? A : B, `m${i}`);
    w.notify();
    await flush();
    expect(channel.delivered).toHaveLength(2); // the burst
    await vi.advanceTimersByTimeAsync(1_000);
    expect(channel.delivered).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(channel.delivered).toHaveLength(6);
  });

  it('fails an item no channel can carry at once, without blocking anything', async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel);
    channel.open();
    store.upsertChat({
      jid: 'x:nowhere',
      name: 'x',
      channel: 'local',
      isGroup: true,
      lastActivity: null,
    });
    const lost = queue('x:nowhere', 'lost');
    queue(A, 'a1');
    w.notify();
    await flush();
    expect(store.outboxItem(lost.id)).toMatchObject({ state: 'failed', attempts: 0 });
    expect(texts(channel.delivered)).toEqual(['a1']);
  });

  it('answers waiters truthfully, and with "queued" at its deadline or at stop', async () => {
    const channel = new ScriptedChannel();
    const w = worker(channel);
    const item = queue(A, 'a1');
    const early = w.whenSettled(item.id, 1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await early).toBe('queued');

    const late = w.whenSettled(item.id, 60_000);
    channel.open();
    await flush();
    expect(await late).toBe('sent');
    expect(await w.whenSettled(item.id, 10)).toBe('sent');

    const other = queue(B, 'b1');
    channel.close();
    const pending = w.whenSettled(other.id, 60_000);
    await w.stop(0);
    expect(await pending).toBe('queued');
    expect(vi.getTimerCount()).toBe(0);
  });
});
