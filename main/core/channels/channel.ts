/**
 * A channel carries messages between people and Clawbar: WhatsApp, or the built-in local
 * chat. Inbound messages go to the core through the `onMessage` callback the channel is
 * given; outbound ones arrive through {@link Channel.send}.
 */
import type { ChannelName, NewMessage } from '../store/index.js';

/** A message as a channel hands it to the core, before it is stored. */
export interface InboundMessage extends NewMessage {
  channel: ChannelName;
  /** The chat's display name, to keep the chats table current. */
  chatName: string;
  isGroup: boolean;
}

export interface Channel {
  readonly name: ChannelName;
  /** Whether this channel carries the chat with this jid. */
  owns(chatJid: string): boolean;
  /** Sends text to a chat. Resolves with the channel's id for the sent message. */
  send(chatJid: string, text: string): Promise<{ id: string; timestamp: number }>;
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}
