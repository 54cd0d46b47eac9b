/**
 * The router: which messages wake the agent, what prompt it gets, and how its replies are
 * cleaned before they reach the chat. Pure functions; no I/O.
 */
import type { Group, StoredMessage } from './store/index.js';

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

/** Whether this message, on its own, should wake the group's agent. */
export function isTriggerMessage(group: Group, message: StoredMessage): boolean {
  // Never answer ourselves: that way lies an infinite conversation.
  if (message.fromBot) return false;
  if (message.text.trim() === '') return false;
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

/**
 * The catch-up prompt: every message since the cursor, with sender and time, as XML. When the
 * backlog was cut for length, a note says how many earlier messages are not shown.
 * Message text is escaped, so a message cannot close the tag and forge another sender.
 */
export function buildPrompt(messages: readonly StoredMessage[], omitted = 0): string {
  const note =
    omitted > 0 ? [`<omitted count="${omitted}">earlier messages not shown</omitted>`] : [];
  const lines = messages.map(
    (m) =>
      `<message sender="${escapeXml(m.senderName)}" time="${new Date(m.timestamp).toISOString()}">${escapeXml(m.text)}</message>`,
  );
  return `<messages>\n${[...note, ...lines].join('\n')}\n</messages>`;
}

/**
 * Cleans agent text for the chat: drops `<internal>…</internal>` reasoning (closed or left
 * open at the end) and trims. Returns null when nothing is left to send.
 */
export function formatOutbound(text: string): string | null {
  const cleaned = text
    .replace(/<internal>[\s\S]*?<\/internal>/gi, '')
    .replace(/<internal>[\s\S]*$/i, '')
    .trim();
  return cleaned === '' ? null : cleaned;
}
