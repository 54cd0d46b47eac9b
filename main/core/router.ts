/**
 * The router: which messages wake the agent, what prompt it gets, and how its replies are
 * cleaned before they reach the chat. No I/O of its own: it reads the store it is given.
 */
import { stripInternal } from './agent/protocol.js';
import type { Group, Store, StoredMessage } from './store/index.js';
import { isoInZone } from './time.js';

/** The trigger a new group gets: `@` and the assistant's name. */
export function defaultTrigger(assistantName: string): string {
  return `@${assistantName}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Matches the trigger at the very start of a message (after leading spaces),
 * case-insensitive, ending on a word boundary: `@andy hi` and `@Andy, hi` match,
 * `@Andyroo` and `hi @Andy` do not.
 */
export function triggerPattern(trigger: string): RegExp {
  return new RegExp(`^\\s*${escapeRegExp(trigger)}(?![\\p{L}\\p{N}_])`, 'iu');
}

/** A WhatsApp user jid, with an optional device suffix (`:12`); `c.us` is the old server name. */
const USER_JID = /^(\d{5,20})(?::\d{1,5})?@(s\.whatsapp\.net|c\.us|lid)$/i;

/**
 * A sender id in the one form allowlists are compared in. WhatsApp: the user jid without its
 * device suffix, `@c.us` as `@s.whatsapp.net`, lower case. Local chat (`local:<name>`, the name
 * lower-cased by the channel): as it is. Anything else, as it is: it matches only itself.
 */
export function senderKey(sender: string): string {
  const trimmed = sender.trim();
  const jid = USER_JID.exec(trimmed);
  if (!jid) return trimmed;
  const server = (jid[2] as string).toLowerCase();
  return `${jid[1] as string}@${server === 'c.us' ? 's.whatsapp.net' : server}`;
}

/**
 * The sender key one allowlist entry stands for. A local-chat group's entries are names, which
 * the local chat stores as `local:<name in lower case>`, so they match whatever the case.
 */
export function allowlistKey(group: Pick<Group, 'jid'>, entry: string): string {
  return group.jid.startsWith('local:') ? `local:${entry.trim().toLowerCase()}` : senderKey(entry);
}

/**
 * Whether the group's sender policy lets this message wake its agent. No allowlist: anyone.
 * The account owner's own messages (sent from the linked phone) always may, so an allowlist
 * can never lock the owner out of their own assistant (the main group is often the self-chat).
 */
export function senderMayTrigger(group: Group, message: StoredMessage): boolean {
  if (group.allowedSenders === null) return true;
  if (message.fromMe) return true;
  const sender = senderKey(message.sender);
  return group.allowedSenders.some((entry) => allowlistKey(group, entry) === sender);
}

/** Whether this message, on its own, should wake the group's agent. */
export function isTriggerMessage(group: Group, message: StoredMessage): boolean {
  // Never answer ourselves: that way lies an infinite conversation.
  if (message.fromBot) return false;
  if (message.text.trim() === '') return false;
  // Checked before the main-group and no-trigger shortcuts: the policy holds in every group.
  if (!senderMayTrigger(group, message)) return false;
  if (group.isMain || !group.requiresTrigger) return true;
  return triggerPattern(group.trigger).test(message.text);
}

/** Messages the agent should see: everything but its own replies. */
export function promptMessages(messages: readonly StoredMessage[]): StoredMessage[] {
  return messages.filter((m) => !m.fromBot);
}

function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** The most messages one prompt carries; older pending ones are summarised as a count. */
export const MAX_PROMPT_MESSAGES = 200;

/**
 * The most UTF-8 bytes of messages one prompt carries. It keeps a prompt well inside the
 * protocol's 1 MB text limit and the model's context, whatever the backlog holds.
 * @default 256 KiB
 */
export const MAX_PROMPT_BYTES = 256 * 1024;

/** Messages read from the store at a time while paging through a backlog. */
const PAGE = 500;

/** What {@link pendingTurn} reads from the store. */
export type PendingTurnStore = Pick<Store, 'cursorOf' | 'messagesSince'>;

export interface PromptOptions {
  /** IANA zone the message times are written in, with their offset. */
  timezone: string;
  /** @default MAX_PROMPT_BYTES */
  maxBytes?: number;
  /** @default MAX_PROMPT_MESSAGES */
  maxMessages?: number;
}

export interface PendingTurn {
  /** The prompt: the newest pending messages that fit, oldest first, as XML. */
  prompt: string;
  /** How many messages the prompt carries whole (one may be cut if it alone is too long). */
  included: number;
  /** Pending messages left out of the prompt for length. */
  omitted: number;
  /** The cursor moves here once the turn commits: past every pending message, shown or not. */
  throughSeq: number;
}

/**
 * Whether anything since the group's cursor would wake its agent: a cheap yes or no for the
 * queue, which stops at the first trigger and formats nothing.
 */
export function hasPendingTrigger(store: PendingTurnStore, group: Group): boolean {
  let after = store.cursorOf(group.jid);
  for (;;) {
    const page = store.messagesSince(group.jid, after, PAGE);
    if (page.some((m) => isTriggerMessage(group, m))) return true;
    if (page.length < PAGE) return false;
    after = (page.at(-1) as StoredMessage).seq;
  }
}

/**
 * What a new turn for `group` would answer: every message since the cursor, or null when
 * none of them is a trigger (they stay stored and ride along with the next triggered turn).
 * Pages through the whole backlog, so a trigger behind a long quiet stretch is still seen.
 *
 * The prompt is capped by count and by bytes: the newest messages go in whole, older ones are
 * left out with a line saying how many, so a huge backlog is answered at once rather than
 * building a prompt the runner must refuse.
 */
export function pendingTurn(
  store: PendingTurnStore,
  group: Group,
  opts: PromptOptions,
): PendingTurn | null {
  const maxMessages = opts.maxMessages ?? MAX_PROMPT_MESSAGES;
  let after = store.cursorOf(group.jid);
  let triggered = false;
  let newest: StoredMessage[] = [];
  let skipped = 0;
  for (;;) {
    const page = store.messagesSince(group.jid, after, PAGE);
    if (page.length === 0) break;
    triggered ||= page.some((m) => isTriggerMessage(group, m));
    newest = newest.concat(promptMessages(page));
    if (newest.length > maxMessages) {
      skipped += newest.length - maxMessages;
      newest = newest.slice(-maxMessages);
    }
    after = (page.at(-1) as StoredMessage).seq;
    if (page.length < PAGE) break;
  }
  if (!triggered) return null;
  const { lines, omitted } = fitLines(newest, opts.timezone, opts.maxBytes ?? MAX_PROMPT_BYTES);
  const note = skipped + omitted;
  const head = note > 0 ? [`<omitted count="${note}">earlier messages not shown</omitted>`] : [];
  return {
    prompt: `<messages>\n${[...head, ...lines].join('\n')}\n</messages>`,
    included: lines.length,
    omitted: note,
    throughSeq: after,
  };
}

/**
 * Formats messages newest first until the byte budget is spent. The newest message always goes
 * in, cut short if it alone is over the budget, so a turn is never empty.
 */
function fitLines(
  messages: readonly StoredMessage[],
  timezone: string,
  maxBytes: number,
): { lines: string[]; omitted: number } {
  const lines: string[] = [];
  let bytes = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i] as StoredMessage;
    let line = messageLine(message, timezone);
    if (bytes + Buffer.byteLength(line) > maxBytes) {
      if (lines.length > 0) return { lines: lines.reverse(), omitted: i + 1 };
      line = messageLine(message, timezone, maxBytes);
    }
    lines.push(line);
    bytes += Buffer.byteLength(line);
  }
  return { lines: lines.reverse(), omitted: 0 };
}

/**
 * One message as a prompt line, with sender and local time. The text is escaped, so a message
 * cannot close the tag and forge another sender. With `maxBytes`, text past it is cut and the
 * cut is said.
 */
function messageLine(message: StoredMessage, timezone: string, maxBytes?: number): string {
  let text = escapeXml(message.text);
  if (maxBytes !== undefined && Buffer.byteLength(text) > maxBytes) {
    // Cut the escaped text by bytes, then drop a split character or a split entity at the end.
    const head = Buffer.from(text)
      .subarray(0, maxBytes)
      .toString('utf8')
      .replace(/\uFFFD$/, '')
      .replace(/&[a-z]*$/, '');
    text = `${head} [… cut: the message is longer than a prompt may be]`;
  }
  const time = isoInZone(message.timestamp, timezone);
  return `<message sender="${escapeXml(message.senderName)}" time="${time}">${text}</message>`;
}

/**
 * Cleans agent text for the chat: drops `<internal>…</internal>` reasoning (closed or left
 * open at the end) and trims. Returns null when nothing is left to send.
 */
export function formatOutbound(text: string): string | null {
  const cleaned = stripInternal(text).trim();
  return cleaned === '' ? null : cleaned;
}
