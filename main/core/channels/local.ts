/**
 * The local chat: the built-in channel that the CLI (and the tray window) use. Its chats
 * have jids `local:<folder>`. The messages table is the whole conversation, so sending
 * needs no transport: the core records the delivered reply in the same transaction.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, InboundMessage } from './channel.js';

export const LOCAL_JID_PREFIX = 'local:';

export function localJid(folder: string): string {
  return `${LOCAL_JID_PREFIX}${folder}`;
}

export class LocalChannel implements Channel {
  readonly name = 'local' as const;

  constructor(private readonly now: () => number = Date.now) {}

  owns(chatJid: string): boolean {
    return chatJid.startsWith(LOCAL_JID_PREFIX);
  }

  async send(_chatJid: string, _text: string): Promise<{ id: string; timestamp: number }> {
    return { id: `out-${randomUUID()}`, timestamp: this.now() };
  }

  async connect(): Promise<void> {}
  async disconnect(): Promise<void> {}

  /** Builds the inbound message for text a person typed into a local chat. */
  compose(chat: { jid: string; name: string }, from: string, text: string): InboundMessage {
    return {
      channel: 'local',
      chatJid: chat.jid,
      chatName: chat.name,
      isGroup: true,
      id: `in-${randomUUID()}`,
      sender: `local:${from.toLowerCase()}`,
      senderName: from,
      text,
      timestamp: this.now(),
    };
  }
}
