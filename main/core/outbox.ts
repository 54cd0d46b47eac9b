/**
 * The outbox worker: delivers queued outgoing messages, apart from the runs that made them.
 *
 * A turn commits its replies to the outbox (with the cursor move, see `commitTurn`) and is
 * done. This worker then hands each item to its channel:
 *
 * - per chat, strictly in order: a chat's next item waits until the one before it is
 *   delivered or has failed for good; other chats are not held up;
 * - only while the channel says it is open (a `closed` channel's items wait, without spending
 *   attempts), starting when a channel first reports `open`;
 * - within the channel's rate limit;
 * - with backoff after a failed attempt, and after the last attempt the item is marked failed,
 *   kept for inspection, and the chat is told.
 *
 * An item may carry a file (the agent's send_file): the channel gets its staged copy, and the
 * copy is removed once the item is sent or failed for good.
 *
 * Every item keeps its id from the first attempt to the last, across restarts, and the channel
 * receives it, so a channel can make a resend after a crash idempotent. Nothing here polls:
 * it works when it is told something was queued, when a channel opens, or when a backoff or
 * rate-limit timer it set itself runs out.
 */
import fs from 'node:fs';
import { describeSentFile } from './agent/send-file.js';
import type { Channel, ChannelName, ChannelState } from './channels/channel.js';
import type { Logger } from './logger.js';
import type { OutboxItem, Store } from './store/index.js';

export interface OutboxPolicy {
  /** Attempts before an item is marked failed. @default 6 */
  maxAttempts: number;
  /** Wait before the first retry; each next one doubles. @default 2000 */
  baseDelayMs: number;
  /** The longest wait between two attempts. @default 300000 (5 min) */
  maxDelayMs: number;
}

export const DEFAULT_OUTBOX_POLICY: OutboxPolicy = {
  maxAttempts: 6,
  baseDelayMs: 2_000,
  maxDelayMs: 5 * 60_000,
};

/** How a wait for one item ended: delivered, failed for good, or still queued at the deadline. */
export type DeliveryOutcome = 'sent' | 'failed' | 'queued';

export interface OutboxDeps {
  store: Store;
  channels: readonly Channel[];
  /** The sender name recorded on delivered replies. */
  assistantName: string;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
  /** @default DEFAULT_OUTBOX_POLICY */
  policy?: Partial<OutboxPolicy>;
  /** Spreads retries of many items apart. @default Math.random */
  random?: () => number;
  /** Called once for each item that was delivered or failed for good. Must not throw. */
  onSettled?(item: OutboxItem, outcome: 'sent' | 'failed'): void;
}

/** A token bucket: `burst` sends at once, refilled at `perSecond`. */
class RateBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes a token, or returns how many ms until one is there. */
  take(now: number): number {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
  }
}

export class OutboxWorker {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly policy: OutboxPolicy;
  private readonly openChannels = new Set<ChannelName>();
  /** Chats with a send in flight: their next item waits for it. */
  private readonly sending = new Set<string>();
  /** Chats waiting on a backoff or rate-limit timer. */
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly buckets = new Map<ChannelName, RateBucket>();
  private readonly waiters = new Map<number, Set<(outcome: DeliveryOutcome) => void>>();
  private readonly inFlight = new Set<Promise<void>>();
  private pumpScheduled: ReturnType<typeof setImmediate> | null = null;
  private stopped = false;

  constructor(private readonly deps: OutboxDeps) {
    this.log = deps.log.child({ mod: 'outbox' });
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.policy = { ...DEFAULT_OUTBOX_POLICY, ...deps.policy };
  }

  /** A channel reported a new state: deliver for it while it is open, hold its items otherwise. */
  channelState(channel: Channel, state: ChannelState): void {
    if (state.state === 'open') {
      this.openChannels.add(channel.name);
      this.notify();
    } else {
      this.openChannels.delete(channel.name);
    }
  }

  /** Something was queued (or may be due): look for work soon. Cheap to call often. */
  notify(): void {
    if (this.stopped || this.pumpScheduled) return;
    this.pumpScheduled = setImmediate(() => {
      this.pumpScheduled = null;
      this.pump();
    });
  }

  /**
   * Resolves when the item is delivered or fails for good, or with `queued` after `timeoutMs`
   * (or at shutdown). Never rejects.
   */
  whenSettled(id: number, timeoutMs: number): Promise<DeliveryOutcome> {
    const item = this.deps.store.outboxItem(id);
    if (!item) return Promise.resolve('failed');
    if (item.state !== 'queued') return Promise.resolve(item.state);
    if (this.stopped) return Promise.resolve('queued');
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      const waiter = (outcome: DeliveryOutcome): void => {
        clearTimeout(timer);
        resolve(outcome);
      };
      const timer = setTimeout(() => {
        set.delete(waiter);
        if (set.size === 0) this.waiters.delete(id);
        resolve('queued');
      }, timeoutMs);
      timer.unref();
      set.add(waiter);
    });
  }

  /**
   * Stops delivering: clears every timer, answers every waiter with `queued`, and waits (at most
   * `graceMs`) for sends already handed to a channel. Queued items stay for the next start.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopped = true;
    if (this.pumpScheduled) clearImmediate(this.pumpScheduled);
    this.pumpScheduled = null;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const [id, set] of this.waiters) {
      for (const waiter of set) waiter('queued');
      this.waiters.delete(id);
    }
    if (this.inFlight.size === 0 || graceMs <= 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
  }

  // ── internals ──────────────────────────────────────────────────────────

  private pump(): void {
    if (this.stopped) return;
    for (const chatJid of this.deps.store.chatsWithQueuedOutbox()) this.deliverNext(chatJid);
  }

  /** Sends the chat's oldest queued item, if nothing holds the chat back. */
  private deliverNext(chatJid: string): void {
    if (this.stopped || this.sending.has(chatJid) || this.timers.has(chatJid)) return;
    const { store } = this.deps;
    const item = store.nextOutboxItem(chatJid);
    if (!item) return;
    const channel = this.deps.channels.find((c) => c.owns(chatJid));
    if (!channel) {
      // Nothing can ever carry it: fail it now, so it does not block the chat's later items.
      this.log.error({ outboxId: item.id, chat: chatJid }, 'no channel carries this chat');
      const failed = store.markUndeliverable(item.id, 'no channel carries this chat', this.now());
      if (failed) this.settled(failed, 'failed');
      this.deliverNext(chatJid);
      return;
    }
    if (!this.openChannels.has(channel.name)) return; // Goes out when the channel opens.

    const now = this.now();
    const due = item.nextAttemptAt ?? 0;
    if (due > now) {
      this.wakeLater(chatJid, due - now);
      return;
    }
    const wait = this.bucketFor(channel, now)?.take(now) ?? 0;
    if (wait > 0) {
      this.wakeLater(chatJid, wait);
      return;
    }

    this.sending.add(chatJid);
    const attempt = this.attempt(channel, item).finally(() => {
      this.inFlight.delete(attempt);
      this.sending.delete(chatJid);
      this.deliverNext(chatJid);
    });
    this.inFlight.add(attempt);
  }

  /** One attempt at one item. Records the result; never rejects. */
  private async attempt(channel: Channel, item: OutboxItem): Promise<void> {
    const { store } = this.deps;
    try {
      const sent = await channel.send({
        outboxId: item.id,
        chatJid: item.chatJid,
        text: item.text,
        ...(item.attachment ? { attachment: item.attachment } : {}),
      });
      const recorded = store.markDelivered(item, {
        id: sent.id,
        sender: 'assistant',
        senderName: this.deps.assistantName,
        timestamp: sent.timestamp,
        ...recordedText(item, sent.recordedText),
      });
      if (recorded) {
        this.log.debug({ outboxId: item.id, chat: item.chatJid }, 'delivered');
        this.settled({ ...item, state: 'sent', attempts: item.attempts + 1 }, 'sent');
      }
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      const attempts = item.attempts + 1;
      const giveUp = attempts >= this.policy.maxAttempts;
      const delay = this.backoff(attempts);
      const updated = store.recordFailedAttempt(item.id, {
        error,
        now: this.now(),
        nextAttemptAt: this.now() + delay,
        giveUp,
      });
      if (!updated) return;
      if (giveUp) {
        this.log.error(
          { outboxId: item.id, chat: item.chatJid, attempts, err },
          'delivery failed for good; the item is kept as failed',
        );
        this.settled(updated, 'failed');
        this.tellChat(updated);
      } else {
        this.log.warn(
          { outboxId: item.id, chat: item.chatJid, attempt: attempts, retryInMs: delay, err },
          'delivery failed; will retry',
        );
      }
    }
  }

  /** Tells the chat that a reply could not be delivered, unless that reply was itself a notice. */
  private tellChat(item: OutboxItem): void {
    if (item.kind === 'notice') return;
    this.deps.store.enqueueOutbound(
      item.chatJid,
      `A reply could not be delivered after ${item.attempts} attempts (${item.lastError ?? 'unknown error'}). ` +
        'It is kept in Clawbar: see `clawbar messages`.',
      item.turnId,
      this.now(),
      'notice',
    );
    this.notify();
  }

  private settled(item: OutboxItem, outcome: 'sent' | 'failed'): void {
    this.removeStagedFile(item);
    const set = this.waiters.get(item.id);
    this.waiters.delete(item.id);
    for (const waiter of set ?? []) waiter(outcome);
    try {
      this.deps.onSettled?.(item, outcome);
    } catch (err) {
      this.log.error({ err, outboxId: item.id }, 'an outbox listener threw');
    }
  }

  /**
   * A file item's staged copy is needed until the item is sent or failed for good, across
   * restarts; then it goes. (The local chat has moved it into its archive by then, if it kept
   * it.) A failure to remove it is logged, never thrown: delivery is already recorded.
   */
  private removeStagedFile(item: OutboxItem): void {
    if (!item.attachment) return;
    try {
      fs.rmSync(item.attachment.stagedPath, { force: true });
    } catch (err) {
      this.log.warn(
        { err, outboxId: item.id },
        'the staged file of a settled item was not removed',
      );
    }
  }

  private backoff(attempts: number): number {
    const exact = Math.min(this.policy.baseDelayMs * 2 ** (attempts - 1), this.policy.maxDelayMs);
    // ±20%, so items that failed together do not all retry in the same instant.
    return Math.round(exact * (0.8 + 0.4 * this.random()));
  }

  private wakeLater(chatJid: string, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(chatJid);
      this.deliverNext(chatJid);
    }, ms);
    this.timers.set(chatJid, timer);
  }

  private bucketFor(channel: Channel, now: number): RateBucket | null {
    const limit = channel.rateLimit;
    if (!limit || !Number.isFinite(limit.perSecond)) return null;
    let bucket = this.buckets.get(channel.name);
    if (!bucket) {
      bucket = new RateBucket(limit.perSecond, Math.max(1, limit.burst), now);
      this.buckets.set(channel.name, bucket);
    }
    return bucket;
  }
}

/**
 * What the history records for a delivered item, when not its text: the channel's own words,
 * else, for a file, a line naming it (its caption alone may be empty).
 */
function recordedText(item: OutboxItem, fromChannel: string | undefined): { text?: string } {
  if (fromChannel !== undefined) return { text: fromChannel };
  if (item.attachment) return { text: describeSentFile(item.attachment, item.text) };
  return {};
}
