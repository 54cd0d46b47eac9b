/**
 * Delivery of queued outgoing messages. Replies are first made durable in the outbox
 * (with the cursor move, see `commitTurn`); this module then hands them to their channel
 * and records each delivered one as a chat message, once.
 */
import type { Channel } from './channels/channel.js';
import type { Logger } from './logger.js';
import type { OutboxItem, Store } from './store/index.js';

/** Attempts before an item is marked failed and left for inspection. @default 5 */
export const MAX_DELIVERY_ATTEMPTS = 5;

export interface OutboxDeps {
  store: Store;
  channels: readonly Channel[];
  assistantName: string;
  log: Logger;
}

export class Outbox {
  private readonly log: Logger;
  /** Items being delivered now, so a flush during a delivery does not send one twice. */
  private readonly inFlight = new Set<number>();

  constructor(private readonly deps: OutboxDeps) {
    this.log = deps.log.child({ mod: 'outbox' });
  }

  /** Delivers the given items in order. Failures are recorded, never thrown. */
  async deliver(items: readonly OutboxItem[]): Promise<void> {
    for (const item of items) {
      if (this.inFlight.has(item.id)) continue;
      this.inFlight.add(item.id);
      try {
        await this.deliverOne(item);
      } finally {
        this.inFlight.delete(item.id);
      }
    }
  }

  /** Delivers everything still queued, e.g. after a crash between commit and delivery. */
  async flush(): Promise<void> {
    await this.deliver(this.deps.store.queuedOutbox());
  }

  private async deliverOne(item: OutboxItem): Promise<void> {
    const channel = this.deps.channels.find((c) => c.owns(item.chatJid));
    if (!channel) {
      this.log.error(
        { outboxId: item.id, chat: item.chatJid },
        'no channel carries this chat; message kept in outbox',
      );
      this.deps.store.markDeliveryFailed(
        item.id,
        'no channel for this chat',
        MAX_DELIVERY_ATTEMPTS,
      );
      return;
    }
    try {
      const sent = await channel.send(item.chatJid, item.text);
      this.deps.store.markDelivered(item, {
        id: sent.id,
        sender: 'assistant',
        senderName: this.deps.assistantName,
        timestamp: sent.timestamp,
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.warn({ outboxId: item.id, chat: item.chatJid, err }, 'delivery failed');
      this.deps.store.markDeliveryFailed(item.id, message, MAX_DELIVERY_ATTEMPTS);
    }
  }
}
