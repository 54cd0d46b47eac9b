/**
 * A channel carries messages between people and Clawbar: WhatsApp, or the built-in local
 * chat. Channels are injected into the core: it hands each one its {@link ChannelHooks} at
 * `connect`, and from then on the channel reports what happens (messages, connection state,
 * chat names) through them. Outbound messages reach a channel only through the outbox worker,
 * and only while the channel says it is open.
 */
import type { ChannelName, NewMessage, OutboxAttachment } from '../store/index.js';

export type { ChannelName };

/** A message as a channel hands it to the core, before it is stored. */
export interface InboundMessage extends NewMessage {
  channel: ChannelName;
  /** The chat's display name, to keep the chats table current. */
  chatName: string;
  isGroup: boolean;
}

/**
 * Where a channel's connection stands. Every change is reported through
 * {@link ChannelHooks.onState}; the outbox delivers only while the state is `open`.
 */
export type ChannelState =
  | { state: 'connecting' }
  /** Waiting for a phone to scan this QR payload (it refreshes: each new one is reported). */
  | { state: 'qr'; qr: string }
  /** Waiting for this code to be typed on the phone. */
  | { state: 'pairing-code'; code: string }
  | { state: 'open' }
  /**
   * Not connected. `code` is the channel's own number for the reason (WhatsApp's disconnect
   * status codes); `retrying` says whether the channel will try again by itself.
   */
  | { state: 'closed'; reason: string; code?: number; retrying: boolean }
  /**
   * Not connected, and it never will be by itself: the account was logged out (or never
   * paired), its credentials are gone, and a person must pair again (`clawbar pair`).
   * `code` is the disconnect status that led here, when there was one.
   */
  | { state: 'needs-pairing'; reason: string; code?: number };

export type ChannelStateName = ChannelState['state'];

/** What a channel knows about one chat. */
export interface ChatMetadata {
  jid: string;
  name: string;
  isGroup: boolean;
  /** Member jids for a group chat; empty when unknown or not a group. */
  participants: string[];
  /** When a message in it was last seen (epoch ms); absent for a name or member update. */
  lastActivity?: number;
}

/** One outbox item on its way to a channel. */
export interface OutboundMessage {
  /**
   * The outbox item's id. It is the same on every attempt, across restarts, so a channel can
   * make a resend after a crash idempotent (e.g. derive its own message id from it).
   */
  outboxId: number;
  chatJid: string;
  /** The message; with an attachment, its caption (may be empty). */
  text: string;
  /**
   * A file to send, staged by the host outside every group folder. A channel that cannot
   * carry files rejects the message.
   */
  attachment?: OutboxAttachment;
}

/** What the channel reports back for a message it sent. */
export interface SentMessage {
  /** The channel's id for the sent message; recorded in the chat history. */
  id: string;
  timestamp: number;
  /**
   * What the chat history records for it, when that is not the message's text: a file is
   * recorded as a line that names it (and, for the local chat, where it is kept).
   */
  recordedText?: string;
}

/** How the core hears from a channel. The core supplies these at {@link Channel.connect}. */
export interface ChannelHooks {
  /** A message arrived. The core stores it before anything acts on it. */
  onMessage(message: InboundMessage): void;
  /** The connection changed state. */
  onState(state: ChannelState): void;
  /** The channel learnt a chat's name or members (e.g. a group was renamed). */
  onChatMetadata(chat: ChatMetadata): void;
}

/**
 * How often a channel may send. The outbox worker spreads deliveries to stay inside it.
 * `perSecond: Infinity` means no limit.
 */
export interface RateLimit {
  /** Sustained messages a second. */
  perSecond: number;
  /** Messages that may go at once after a quiet spell. */
  burst: number;
}

export interface Channel {
  readonly name: ChannelName;
  /** @default no limit */
  readonly rateLimit?: RateLimit;
  /** The current connection state (the last one reported through `onState`). */
  readonly state: ChannelState;
  /** Whether this channel carries the chat with this jid. */
  owns(chatJid: string): boolean;
  /**
   * Starts connecting. Resolving means the attempt is under way, not that the channel is open:
   * `open` is reported through `hooks.onState`.
   */
  connect(hooks: ChannelHooks): Promise<void>;
  disconnect(): Promise<void>;
  /** Sends one outbox item. Rejects when it could not be sent; the worker retries. */
  send(message: OutboundMessage): Promise<SentMessage>;
  /** Shows or clears "typing…" in a chat. Best effort: it never rejects for a closed channel. */
  setTyping(chatJid: string, typing: boolean): Promise<void>;
  /** What the channel knows about a chat, or null when it knows nothing. */
  chatMetadata(chatJid: string): Promise<ChatMetadata | null>;
}
