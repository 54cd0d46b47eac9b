/**
 * The conversation transcript, kept in the session folder so that the next container resumes
 * where this one stopped.
 *
 * The file holds only completed turns, and every saved conversation is one the Messages API
 * accepts as is: it starts with a user's plain message, roles alternate, and each assistant
 * `tool_use` is answered by a `tool_result` in the next user message.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { MessageParamSchema, type MessageParam } from '../../../main/core/agent/protocol.js';
import { fsErrorMessage } from './fs-errors.js';
import type { RunnerLog } from './log.js';

/** The transcript's file name in the session folder; also the `sessionRef` the host stores. */
export const TRANSCRIPT_FILE = 'transcript.json';

/**
 * The size past which the oldest turns are dropped when saving.
 * @default 400 KB of JSON
 */
export const TRANSCRIPT_MAX_BYTES = 400_000;

const TranscriptFileSchema = z.object({
  version: z.literal(1),
  messages: z.array(MessageParamSchema),
});

/** Thrown when the transcript cannot be written; the message names the file and the cause. */
export class TranscriptSaveError extends Error {
  override readonly name = 'TranscriptSaveError';
}

/**
 * Loads the transcript from `sessionDir`. A missing file means a fresh conversation. A file
 * that cannot be parsed, or whose conversation the API would reject, is moved aside to
 * `transcript.corrupt-<time>.json` for a human to look at, and a fresh conversation starts:
 * a broken history must not break every future run of the group.
 */
export function loadTranscript(
  sessionDir: string,
  log: RunnerLog,
  now: Date = new Date(),
): MessageParam[] {
  const file = path.join(sessionDir, TRANSCRIPT_FILE);
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (err) {
    log.warn(
      `no transcript to resume (${fsErrorMessage(err, file)}); starting a fresh conversation`,
    );
    return [];
  }
  let problem: string | null;
  let messages: MessageParam[] = [];
  try {
    const parsed = TranscriptFileSchema.safeParse(JSON.parse(raw));
    if (parsed.success) {
      messages = parsed.data.messages;
      problem = conversationProblem(messages);
    } else {
      problem = `unexpected shape: ${parsed.error.issues[0]?.message ?? 'invalid'}`;
    }
  } catch (err) {
    problem = `not JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (problem === null) return messages;

  const aside = path.join(
    sessionDir,
    `transcript.corrupt-${now.toISOString().replace(/[:.]/g, '-')}.json`,
  );
  try {
    fs.renameSync(file, aside);
    log.error(
      `transcript ${file} is unusable (${problem}); moved it to ${aside} and started a fresh conversation`,
    );
  } catch (err) {
    log.error(
      `transcript ${file} is unusable (${problem}) and could not be moved aside; starting a fresh conversation`,
      err,
    );
  }
  return [];
}

/**
 * Writes the transcript atomically: a temporary file in the same folder, then a rename, so a
 * crash mid-write leaves the previous transcript intact.
 * @throws {TranscriptSaveError} when the folder is not writable or the disk is full.
 */
export function saveTranscript(sessionDir: string, messages: readonly MessageParam[]): void {
  const file = path.join(sessionDir, TRANSCRIPT_FILE);
  const temporary = path.join(sessionDir, `.${TRANSCRIPT_FILE}.${process.pid}.tmp`);
  try {
    fs.mkdirSync(sessionDir, { recursive: true });
    fs.writeFileSync(temporary, JSON.stringify({ version: 1, messages }));
    fs.renameSync(temporary, file);
  } catch (err) {
    try {
      fs.rmSync(temporary, { force: true });
    } catch {
      // Nothing was written, or the folder is unusable; either way the cause below matters.
    }
    throw new TranscriptSaveError(`cannot save the transcript: ${fsErrorMessage(err, file)}`, {
      cause: err,
    });
  }
}

/** Whether a message opens a turn: a user message that is not answering tool calls. */
export function isTurnStart(message: MessageParam): boolean {
  if (message.role !== 'user') return false;
  if (typeof message.content === 'string') return true;
  return !message.content.some((block) => block.type === 'tool_result');
}

/**
 * Returns what makes a saved conversation invalid for the Messages API, or null when it is
 * fine. An empty conversation is fine.
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

/** The JSON size of a conversation, as the transcript file would hold it. */
export function conversationBytes(messages: readonly MessageParam[]): number {
  return Buffer.byteLength(JSON.stringify(messages));
}

/**
 * Drops the oldest turn: everything before the second turn start. Returns null when there is
 * only one turn left, which is never dropped.
 */
export function dropOldestTurn(messages: readonly MessageParam[]): MessageParam[] | null {
  const next = messages.findIndex((message, index) => index > 0 && isTurnStart(message));
  return next === -1 ? null : messages.slice(next);
}

/**
 * Keeps the conversation under `maxBytes` of JSON by dropping whole turns from the start, so
 * it stays valid: it begins at a user's plain message and no tool_result loses its tool_use.
 * The latest turn is always kept, even when it alone is larger.
 *
 * This forgets old turns outright. Proper compaction, which summarises them and archives the
 * full text to the group folder (DESIGN.md §4), comes later.
 */
export function trimConversation(
  messages: readonly MessageParam[],
  maxBytes: number = TRANSCRIPT_MAX_BYTES,
): MessageParam[] {
  let kept = [...messages];
  while (conversationBytes(kept) > maxBytes) {
    const shorter = dropOldestTurn(kept);
    if (shorter === null) break;
    kept = shorter;
  }
  return kept;
}
