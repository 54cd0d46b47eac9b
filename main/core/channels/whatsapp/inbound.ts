/**
 * Inbound normalization: one WhatsApp message (Baileys' `WAMessage`, a decoded
 * `proto.WebMessageInfo`) in, the fields the core stores out, or the reason it is ignored.
 * No I/O: the one lookup it needs (a LID to its phone number) is injected.
 *
 * Everything in a message is written by whoever sent it, so nothing here trusts its shape:
 * every field may be missing, null, or absurdly long.
 *
 * Decisions a reader should know:
 * - **Ephemeral, view-once, document-with-caption and edited wrappers** are unwrapped
 *   (Baileys' `normalizeMessageContent`). An edit (a `protocolMessage` of type MESSAGE_EDIT)
 *   becomes a new message with the edit's own id, its `quotedId` naming the message it
 *   corrects, and the corrected text. The agent sees the correction; in a group that needs the
 *   trigger it wakes the agent only if the corrected text starts with the trigger, as any
 *   message would.
 * - **Mentions.** A message whose `mentionedJid` names our own account (phone jid or LID) is
 *   addressed to the assistant: the `@<our number>` token in the text is replaced with the
 *   chat's trigger (e.g. `@Andy`), and when the text does not then start with the trigger, the
 *   trigger is put in front. So tapping the assistant's contact in WhatsApp's mention picker
 *   works like typing `@Andy`.
 * - **Context after the body.** The core matches the trigger at the start of the text, so a
 *   quoted reply's context goes on a line after the body: `[replying to NAME: "…"]`.
 * - **Our own messages.** `fromMe` is true for anything sent from the account, which is also
 *   the user's own phone when the assistant shares the number. A `fromMe` message whose text
 *   starts with the assistant-name prefix (`Andy: `) is one of the assistant's replies and
 *   is marked `fromBot`, so it never triggers the agent; the user typing on their own phone is
 *   a normal message.
 */
import {
  areJidsSameUser,
  isJidBroadcast,
  isJidGroup,
  isJidNewsletter,
  isJidStatusBroadcast,
  isLidUser,
  isPnUser,
  jidDecode,
  jidNormalizedUser,
  normalizeMessageContent,
  proto,
  type WAMessage,
} from '@whiskeysockets/baileys';

/** The kinds of media the media step can save. `voice` is a push-to-talk audio note. */
export type MediaKind = 'image' | 'video' | 'audio' | 'voice' | 'document' | 'sticker';

/** What arrived, for the media step to download; nothing is fetched here. */
export interface MediaDescriptor {
  kind: MediaKind;
  /** As the sender declared it: untrusted. */
  mimetype: string | null;
  /** A document's name, as the sender gave it: untrusted, never a path. */
  fileName: string | null;
  /** Declared size in bytes, when given: untrusted, check the real size while downloading. */
  declaredBytes: number | null;
}

/** One normalized inbound message. */
export interface NormalizedInbound {
  /** The chat, with a LID translated to the phone jid when it is known. */
  chatJid: string;
  isGroup: boolean;
  id: string;
  /** Who wrote it: a phone jid (or a LID when no translation is known). */
  sender: string;
  senderName: string;
  /** The body, with mention and quote context applied; may be '' for media without caption. */
  text: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  fromMe: boolean;
  fromBot: boolean;
  /** The id of the message this one replies to, or corrects (an edit). */
  quotedId: string | null;
  /** Whether the assistant's own account was mentioned. */
  mentionsAssistant: boolean;
  /** For an edit: the id of the message it corrects. */
  editOf: string | null;
  media: MediaDescriptor | null;
}

export type NormalizeResult =
  { kind: 'message'; message: NormalizedInbound } | { kind: 'ignored'; why: string };

export interface InboundContext {
  /** Our own account's ids (any device suffix is ignored). Unknown before pairing. */
  self: { pn?: string | undefined; lid?: string | undefined };
  /** The assistant's name: bot replies start with `NAME: `. */
  assistantName: string;
  /** The text a mention of the assistant becomes in this chat, e.g. `@Andy`. */
  mentionTrigger(chatJid: string): string;
  /** The phone jid of a LID, or null when unknown (backed by Baileys' `lidMapping`). */
  lidToPn(lid: string): Promise<string | null>;
  /** For a message without a timestamp. @default Date.now */
  now?: () => number;
}

/** Text longer than this is cut: WhatsApp allows ~65k characters; a prompt needs less. */
export const MAX_INBOUND_TEXT = 16_000;
/** How much of a quoted message is kept as context. */
export const MAX_QUOTE_CHARS = 200;
/** A display name longer than this is cut. */
const MAX_NAME_CHARS = 64;

/** The prefix that marks the assistant's own replies when it shares the user's number. */
export function botPrefix(assistantName: string): string {
  return `${assistantName}: `;
}

/** Turns one WhatsApp message into what the core stores, or says why it is ignored. */
export async function normalizeInbound(
  raw: WAMessage,
  context: InboundContext,
): Promise<NormalizeResult> {
  const key = raw.key ?? {};
  const remoteJid = str(key.remoteJid);
  const id = str(key.id);
  if (!remoteJid || !id) return ignored('no chat or message id');
  if (id.length > 128) return ignored('message id too long');
  if (isJidStatusBroadcast(remoteJid)) return ignored('status broadcast');
  if (isJidBroadcast(remoteJid) || isJidNewsletter(remoteJid)) {
    return ignored('broadcast list or channel');
  }

  const isGroup = isJidGroup(remoteJid) === true;
  if (!isGroup && !isPnUser(remoteJid) && !isLidUser(remoteJid)) {
    return ignored(`unsupported chat ${remoteJid}`);
  }
  const chatJid = isGroup
    ? remoteJid
    : await toPhoneJid(remoteJid, str(key.remoteJidAlt), context.lidToPn);

  const fromMe = key.fromMe === true;
  const sender = await senderOf(raw, { isGroup, fromMe, chatJid }, context);

  // Unwrap ephemeral / view-once / document-with-caption / edited wrappers.
  let content = normalizeMessageContent(raw.message ?? undefined);
  if (!content) return ignored('no message content');
  let editOf: string | null = null;
  const protocol = content.protocolMessage;
  if (protocol) {
    if (protocol.type !== proto.Message.ProtocolMessage.Type.MESSAGE_EDIT) {
      return ignored('protocol message');
    }
    content = normalizeMessageContent(protocol.editedMessage ?? undefined);
    editOf = str(protocol.key?.id) ?? null;
    if (!content) return ignored('edit without content');
  }
  if (content.reactionMessage) return ignored('reaction');

  const media = mediaOf(content);
  let body = clip(bodyText(content), MAX_INBOUND_TEXT);
  const contextInfo = contextInfoOf(content);

  const mentioned = (contextInfo?.mentionedJid ?? []).some((jid) => isSelf(str(jid), context.self));
  if (mentioned) body = applyMention(body, context.self, context.mentionTrigger(chatJid));

  const quoted = contextInfo?.quotedMessage ? quoteLine(contextInfo, context) : null;
  if (!body.trim() && !media) return ignored('no text or media');

  const text = quoted ? (body ? `${body}\n${quoted}` : quoted) : body;
  const fromBot = fromMe && body.startsWith(botPrefix(context.assistantName));
  const quotedId = editOf ?? str(contextInfo?.stanzaId) ?? null;

  return {
    kind: 'message',
    message: {
      chatJid,
      isGroup,
      id,
      sender,
      senderName: senderNameOf(raw, sender, fromMe, context.assistantName, fromBot),
      text,
      timestamp: timestampOf(raw, context.now ?? Date.now),
      fromMe,
      fromBot,
      quotedId: quotedId && quotedId.length <= 128 ? quotedId : null,
      mentionsAssistant: mentioned,
      editOf,
      media,
    },
  };
}

function ignored(why: string): NormalizeResult {
  return { kind: 'ignored', why };
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * A user jid as its phone jid, without a device suffix: `alt` when WhatsApp sent the phone form
 * along (the `*Alt` key fields), else the injected lookup, else the LID as it is.
 */
async function toPhoneJid(
  jid: string,
  alt: string | undefined,
  lidToPn: (lid: string) => Promise<string | null>,
): Promise<string> {
  if (!isLidUser(jid)) return jidNormalizedUser(jid) || jid;
  if (alt && isPnUser(alt)) return jidNormalizedUser(alt);
  // A failed lookup is not an error: the LID is kept.
  const pn = await Promise.resolve()
    .then(() => lidToPn(jid))
    .catch(() => null);
  if (pn && isPnUser(pn)) return jidNormalizedUser(pn);
  return jidNormalizedUser(jid) || jid;
}

async function senderOf(
  raw: WAMessage,
  at: { isGroup: boolean; fromMe: boolean; chatJid: string },
  context: InboundContext,
): Promise<string> {
  if (at.fromMe) {
    const self = context.self.pn ?? context.self.lid;
    if (self) return jidNormalizedUser(self) || self;
  }
  if (!at.isGroup) return at.chatJid;
  const participant = str(raw.key?.participant) ?? str(raw.participant);
  if (!participant) return at.chatJid;
  return toPhoneJid(participant, str(raw.key?.participantAlt), context.lidToPn);
}

function senderNameOf(
  raw: WAMessage,
  sender: string,
  fromMe: boolean,
  assistantName: string,
  fromBot: boolean,
): string {
  if (fromBot) return assistantName;
  const pushName = str(raw.pushName)
    ?.replace(/[\p{Cc}\p{Cf}]/gu, '')
    .trim();
  if (pushName) return clip(pushName, MAX_NAME_CHARS);
  if (fromMe) return 'me';
  const user = jidDecode(sender)?.user;
  return user ? `+${user}` : sender;
}

function timestampOf(raw: WAMessage, now: () => number): number {
  const ts = raw.messageTimestamp;
  const seconds =
    typeof ts === 'number' ? ts : ts && typeof ts === 'object' ? Number(ts.toString()) : NaN;
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : now();
}

function bodyText(content: proto.IMessage): string {
  return (
    str(content.conversation) ??
    str(content.extendedTextMessage?.text) ??
    str(content.imageMessage?.caption) ??
    str(content.videoMessage?.caption) ??
    str(content.documentMessage?.caption) ??
    ''
  );
}

/** The media in a message, described (not downloaded). */
export function mediaOf(content: proto.IMessage): MediaDescriptor | null {
  const describe = (
    kind: MediaKind,
    message: { mimetype?: string | null; fileLength?: unknown; fileName?: string | null },
  ): MediaDescriptor => ({
    kind,
    mimetype: str(message.mimetype) ?? null,
    fileName: str(message.fileName) ?? null,
    declaredBytes: declaredBytes(message.fileLength),
  });
  if (content.imageMessage) return describe('image', content.imageMessage);
  if (content.videoMessage) return describe('video', content.videoMessage);
  if (content.audioMessage) {
    return describe(content.audioMessage.ptt ? 'voice' : 'audio', content.audioMessage);
  }
  if (content.documentMessage) return describe('document', content.documentMessage);
  if (content.stickerMessage) return describe('sticker', content.stickerMessage);
  return null;
}

function declaredBytes(value: unknown): number | null {
  const n =
    typeof value === 'number'
      ? value
      : value && typeof value === 'object'
        ? Number(String(value))
        : NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function contextInfoOf(content: proto.IMessage): proto.IContextInfo | null {
  return (
    content.extendedTextMessage?.contextInfo ??
    content.imageMessage?.contextInfo ??
    content.videoMessage?.contextInfo ??
    content.audioMessage?.contextInfo ??
    content.documentMessage?.contextInfo ??
    content.stickerMessage?.contextInfo ??
    null
  );
}

function isSelf(jid: string | undefined, self: InboundContext['self']): boolean {
  if (!jid) return false;
  return (
    (self.pn !== undefined && areJidsSameUser(jid, self.pn)) ||
    (self.lid !== undefined && areJidsSameUser(jid, self.lid))
  );
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Replaces `@<our number or lid>` with the trigger, and puts the trigger first. */
function applyMention(body: string, self: InboundContext['self'], trigger: string): string {
  let text = body;
  for (const jid of [self.pn, self.lid]) {
    const user = jid ? jidDecode(jid)?.user : undefined;
    if (!user) continue;
    text = text.replace(new RegExp(`@${escapeRegExp(user)}(?!\\d)`, 'g'), trigger);
  }
  const startsWithTrigger = text.trimStart().toLowerCase().startsWith(trigger.toLowerCase());
  return startsWithTrigger ? text : `${trigger} ${text}`.trimEnd();
}

/** `[replying to NAME: "…"]` for a quoted message, its text clipped. */
function quoteLine(info: proto.IContextInfo, context: InboundContext): string {
  const quoted = normalizeMessageContent(info.quotedMessage ?? undefined);
  const media = quoted ? mediaOf(quoted) : null;
  const text = quoted ? bodyText(quoted) : '';
  const shown = text
    ? `"${clip(text.replace(/\s+/g, ' ').trim(), MAX_QUOTE_CHARS)}"`
    : media
      ? `[${media.kind}]`
      : '[a message]';
  const participant = str(info.participant);
  let who = 'someone';
  if (participant && isSelf(participant, context.self)) {
    who = text.startsWith(botPrefix(context.assistantName)) ? context.assistantName : 'me';
  } else if (participant) {
    const user = jidDecode(participant)?.user;
    who = user ? (isLidUser(participant) ? user : `+${user}`) : 'someone';
  }
  return `[replying to ${who}: ${shown}]`;
}
