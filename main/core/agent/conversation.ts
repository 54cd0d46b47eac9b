/**
 * The rules of a conversation with the model, shared by the host and the in-container runner.
 *
 * The host keeps each group's transcript in its store (DESIGN.md §4) and hands it to the runner
 * in `start`; the runner reports each completed turn in `done`. Both sides must agree on what
 * a valid conversation is, how a model answer becomes an assistant message, and how an old
 * conversation is trimmed, so those rules live here. Like `protocol.ts`, this module is bundled
 * into the runner: plain TypeScript, no Node-only or Electron imports.
 *
 * A valid conversation is one the Messages API accepts as is: it starts with a user's plain
 * message, roles alternate, each assistant `tool_use` is answered by a `tool_result` in the
 * next user message, and it ends with an assistant message (only completed turns are kept).
 */
import type { ContentBlock, MessageParam } from './protocol.js';

/**
 * The JSON size past which the oldest turns of a stored transcript are dropped: a hard limit
 * behind compaction (compaction.ts), which summarises well before it.
 * @default 400 KB of JSON
 */
export const TRANSCRIPT_MAX_BYTES = 400_000;

/**
 * The message count past which the oldest turns are dropped. It keeps a resumed conversation
 * plus one turn well inside the protocol's 10,000 messages per request.
 * @default 5000
 */
export const TRANSCRIPT_MAX_MESSAGES = 5_000;

/**
 * Stands in for a model answer with no usable content: the API refuses an assistant message
 * with no content, or with empty text blocks, in later requests.
 */
export const EMPTY_REPLY = '(no reply)';

/** The user message that opens a turn: the prompt as plain text. */
export function promptMessage(prompt: string): MessageParam {
  return { role: 'user', content: prompt };
}

/**
 * A model answer's content as it is kept in the conversation: empty text blocks dropped, and
 * {@link EMPTY_REPLY} when nothing is left. The runner builds its assistant messages with it,
 * and the host rebuilds them with it to check the turn a runner reports.
 */
export function usableContent(content: readonly ContentBlock[]): ContentBlock[] {
  const kept = content.filter(
    (block) =>
      block.type !== 'text' || (typeof block.text === 'string' && block.text.trim() !== ''),
  );
  return kept.length > 0 ? kept : [{ type: 'text', text: EMPTY_REPLY }];
}

/** Whether a message opens a turn: a user message that is not answering tool calls. */
export function isTurnStart(message: MessageParam): boolean {
  if (message.role !== 'user') return false;
  if (typeof message.content === 'string') return true;
  return !message.content.some((block) => block.type === 'tool_result');
}

/**
 * Returns what makes a conversation invalid for the Messages API, or null when it is fine. An
 * empty conversation is fine.
 */
export function conversationProblem(messages: readonly MessageParam[]): string | null {
  if (messages.length === 0) return null;
  const first = messages[0];
  if (!first || !isTurnStart(first)) return 'it does not start with a user message';
  let openToolUses: string[] = [];
  for (const [index, message] of messages.entries()) {
    const expectedRole = index % 2 === 0 ? 'user' : 'assistant';
    if (message.role !== expectedRole) return `message ${index} should be from the ${expectedRole}`;
    const blocks = typeof message.content === 'string' ? [] : message.content;
    if (message.role === 'user') {
      const answered = blocks
        .filter((block) => block.type === 'tool_result')
        .map((block) => String(block.tool_use_id));
      const unanswered = openToolUses.filter((id) => !answered.includes(id));
      if (unanswered.length > 0)
        return `message ${index} does not answer tool call ${unanswered[0]}`;
      if (answered.length !== openToolUses.length)
        return `message ${index} answers a tool call that was not made`;
      openToolUses = [];
    } else {
      openToolUses = blocks
        .filter((block) => block.type === 'tool_use')
        .map((block) => String(block.id));
    }
  }
  if (messages[messages.length - 1]?.role !== 'assistant') return 'it ends in the middle of a turn';
  if (openToolUses.length > 0) return `tool call ${openToolUses[0]} is never answered`;
  return null;
}

/**
 * The UTF-8 size of a string that came out of `JSON.stringify`, without encoding it. Such a
 * string has no lone surrogates (they are escaped), so a surrogate pair is exactly 4 bytes.
 */
function jsonUtf8Bytes(json: string): number {
  let bytes = 0;
  for (let i = 0; i < json.length; i++) {
    const unit = json.charCodeAt(i);
    bytes += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit <= 0xdfff) ? 2 : 3;
  }
  return bytes;
}

/** The JSON size of a conversation in bytes, as a frame or the store holds it. */
export function conversationBytes(messages: readonly MessageParam[]): number {
  return jsonUtf8Bytes(JSON.stringify(messages));
}

/**
 * Drops the oldest turn: everything before the second turn start. Returns null when there is
 * only one turn left.
 */
export function dropOldestTurn(messages: readonly MessageParam[]): MessageParam[] | null {
  const next = messages.findIndex((message, index) => index > 0 && isTurnStart(message));
  return next === -1 ? null : messages.slice(next);
}

/**
 * Where the kept part of a conversation starts once whole turns are dropped from the front
 * until it is within `maxBytes` of JSON and `maxMessages`. When even the latest turn alone is
 * over, returns its start if `keepLatest`, else `messages.length` (nothing kept).
 *
 * Sizes are measured once per message, so trimming a long conversation stays linear.
 */
function keptFrom(
  messages: readonly MessageParam[],
  maxBytes: number,
  maxMessages: number,
  keepLatest: boolean,
): number {
  const sizes = messages.map((message) => jsonUtf8Bytes(JSON.stringify(message)));
  // `[` and `]`, each message, and a comma between two messages.
  let bytes = 2 + sizes.reduce((sum, size) => sum + size, 0) + Math.max(0, messages.length - 1);
  let start = 0;
  while (bytes > maxBytes || messages.length - start > maxMessages) {
    let next = start + 1;
    while (next < messages.length && !isTurnStart(messages[next]!)) next++;
    if (next >= messages.length) return keepLatest ? start : messages.length;
    for (let index = start; index < next; index++) bytes -= (sizes[index] ?? 0) + 1;
    start = next;
  }
  return start;
}

/**
 * Keeps a conversation under `maxBytes` of JSON and `maxMessages` by dropping whole turns from
 * the start, so it stays valid: it begins at a user's plain message and no tool_result loses
 * its tool_use. The latest turn is always kept, even when it alone is larger.
 *
 * This forgets old turns outright. It is the last resort: the host compacts a transcript
 * before it gets here (compaction.ts summarises the old turns and archives them to the group
 * folder), and archives what this drops at a commit.
 */
export function trimConversation(
  messages: readonly MessageParam[],
  maxBytes: number = TRANSCRIPT_MAX_BYTES,
  maxMessages: number = TRANSCRIPT_MAX_MESSAGES,
): MessageParam[] {
  return messages.slice(keptFrom(messages, maxBytes, maxMessages, true));
}

/**
 * Like {@link trimConversation}, but for a hard limit such as a frame's size: when the latest
 * turn alone is over `maxBytes`, nothing is kept and the conversation starts fresh.
 */
export function fitConversation(
  messages: readonly MessageParam[],
  maxBytes: number,
  maxMessages: number = TRANSCRIPT_MAX_MESSAGES,
): MessageParam[] {
  return messages.slice(keptFrom(messages, maxBytes, maxMessages, false));
}
