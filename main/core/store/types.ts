/** Row types the store hands out. Everything inside the core works with these, never raw rows. */

export type ChannelName = 'local' | 'whatsapp';

export interface Chat {
  jid: string;
  name: string;
  channel: ChannelName;
  isGroup: boolean;
  lastActivity: number | null;
}

export interface NewMessage {
  chatJid: string;
  /** The channel's message id; unique per chat. */
  id: string;
  sender: string;
  senderName: string;
  text: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  fromMe?: boolean;
  fromBot?: boolean;
  quotedId?: string | null;
  mediaRef?: string | null;
  /** For the assistant's own messages: the turn that sent it. */
  turnId?: string | null;
}

export interface StoredMessage extends Required<NewMessage> {
  /** Insertion order across all chats; cursors point at it. */
  seq: number;
}

export interface Group {
  jid: string;
  folder: string;
  name: string;
  /** e.g. `@Andy`; matched at the start of a message, case-insensitive. */
  trigger: string;
  requiresTrigger: boolean;
  isMain: boolean;
  paused: boolean;
  networkAllowed: boolean;
  /**
   * Who may wake the agent: normalized sender ids (phone jids like `15551234567@s.whatsapp.net`
   * or LID jids; for a local-chat group, sender names). null: anyone in the chat. Messages from
   * others are stored all the same, as context.
   */
  allowedSenders: string[] | null;
  createdAt: number;
}

export interface NewGroup {
  jid: string;
  folder: string;
  name: string;
  trigger: string;
  requiresTrigger: boolean;
  isMain: boolean;
  channel: ChannelName;
}

export type OutboxState = 'queued' | 'sent' | 'failed';

/** A reply (from a turn or send_message), or Clawbar's own notice about another item. */
export type OutboxKind = 'reply' | 'notice';

export interface OutboxItem {
  /** Stable across restarts: channels get it, so a resend after a crash can be made idempotent. */
  id: number;
  chatJid: string;
  text: string;
  turnId: string | null;
  kind: OutboxKind;
  state: OutboxState;
  /** Delivery attempts made (each call to a channel's `send`), across restarts. */
  attempts: number;
  lastError: string | null;
  /** Not to be tried again before this time (backoff); null means at once. */
  nextAttemptAt: number | null;
  createdAt: number;
  /** When it was given up, for a failed item. */
  failedAt: number | null;
}

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}
