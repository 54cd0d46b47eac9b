/**
 * The local chat: the built-in channel that the CLI (and the tray window) use. Its chats
 * have jids `local:<folder>`. The messages table is the whole conversation, so sending
 * needs no transport: the outbox records the delivered reply in the chat history. A file the
 * agent sent is moved from the outbox's staging folder into the host's `sent` folder, and the
 * history records a line naming it with that path.
 */
import { randomUUID } from 'node:crypto';
import { archiveStagedFile, describeSentFile } from '../agent/send-file.js';
import type {
  Channel,
  ChannelHooks,
  ChannelState,
  ChatMetadata,
  InboundMessage,
  OutboundMessage,
  SentMessage,
} from './channel.js';

export const LOCAL_JID_PREFIX = 'local:';

export function localJid(folder: string): string {
  return `${LOCAL_JID_PREFIX}${folder}`;
}

export interface LocalChannelDeps {
  /** @default Date.now */
  now?: () => number;
  /** The name of a local chat, from the groups it belongs to; undefined for an unknown chat. */
  chatName(jid: string): string | undefined;
}

/** A local chat whose chats are named after the groups in `store`. */
export function localChannelFor(
  store: { getGroup(jid: string): { name: string } | undefined },
  now?: () => number,
): LocalChannel {
  return new LocalChannel({
    chatName: (jid) => store.getGroup(jid)?.name,
    ...(now ? { now } : {}),
  });
}

export class LocalChannel implements Channel {
  readonly name = 'local' as const;
  private current: ChannelState = { state: 'closed', reason: 'not connected', retrying: false };
  private hooks: ChannelHooks | null = null;
  private readonly typing = new Set<string>();
  private readonly now: () => number;

  constructor(private readonly deps: LocalChannelDeps) {
    this.now = deps.now ?? Date.now;
  }

  get state(): ChannelState {
    return this.current;
  }

  owns(chatJid: string): boolean {
    return chatJid.startsWith(LOCAL_JID_PREFIX);
  }

  async connect(hooks: ChannelHooks): Promise<void> {
    this.hooks = hooks;
    this.setState({ state: 'connecting' });
    this.setState({ state: 'open' });
  }

  async disconnect(): Promise<void> {
    this.typing.clear();
    this.setState({ state: 'closed', reason: 'disconnected', retrying: false });
    this.hooks = null;
  }

  async send(message: OutboundMessage): Promise<SentMessage> {
    if (this.current.state !== 'open') throw new Error('the local chat is not open');
    if (!this.owns(message.chatJid)) throw new Error(`${message.chatJid} is not a local chat`);
    // Derived from the outbox id, so a resend of the same item is the same message.
    const sent: SentMessage = { id: `out-${message.outboxId}`, timestamp: this.now() };
    if (!message.attachment) return sent;
    // A file is kept where the person at this computer can open it, and the history names it.
    const keptAt = archiveStagedFile(message.attachment);
    return { ...sent, recordedText: describeSentFile(message.attachment, message.text, keptAt) };
  }

  async setTyping(chatJid: string, typing: boolean): Promise<void> {
    if (typing) this.typing.add(chatJid);
    else this.typing.delete(chatJid);
  }

  /** Whether the assistant is "typing" in this chat (a turn for it is under way). */
  isTyping(chatJid: string): boolean {
    return this.typing.has(chatJid);
  }

  async chatMetadata(chatJid: string): Promise<ChatMetadata | null> {
    if (!this.owns(chatJid)) return null;
    const name = this.deps.chatName(chatJid);
    return name === undefined ? null : { jid: chatJid, name, isGroup: true, participants: [] };
  }

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

  private setState(state: ChannelState): void {
    this.current = state;
    this.hooks?.onState(state);
  }
}
