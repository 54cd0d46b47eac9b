/**
 * The state a run moves forward: cursors, sessions (the conversation transcript), the outbox
 * and token usage. {@link runStateQueries.commitTurn} is the one place a turn's results become
 * durable.
 */
import { z } from 'zod';
import { BROKER_FEATURES, checkMessages } from '../agent/content-policy.js';
import { conversationProblem } from '../agent/conversation.js';
import { MessageParamSchema, type MessageParam } from '../agent/protocol.js';
import type { Logger } from '../logger.js';
import type { Db } from './database.js';
import type {
  OutboxAttachment,
  OutboxFileKind,
  OutboxItem,
  OutboxKind,
  OutboxState,
  TokenUsage,
} from './types.js';

interface OutboxRow {
  id: number;
  chat_jid: string;
  text: string;
  turn_id: string | null;
  kind: OutboxKind;
  state: OutboxState;
  attempts: number;
  last_error: string | null;
  next_attempt_at: number | null;
  created_at: number;
  failed_at: number | null;
  // Migration 008: all set or all null (a trigger refuses anything else).
  file_path: string | null;
  file_name: string | null;
  file_mimetype: string | null;
  file_kind: OutboxFileKind | null;
  file_bytes: number | null;
}

function toOutbox(row: OutboxRow): OutboxItem {
  return {
    id: row.id,
    chatJid: row.chat_jid,
    text: row.text,
    turnId: row.turn_id,
    kind: row.kind,
    state: row.state,
    attempts: row.attempts,
    lastError: row.last_error,
    nextAttemptAt: row.next_attempt_at,
    createdAt: row.created_at,
    failedAt: row.failed_at,
    attachment:
      row.file_path === null
        ? null
        : {
            stagedPath: row.file_path,
            fileName: row.file_name ?? 'file',
            mimetype: row.file_mimetype ?? 'application/octet-stream',
            kind: row.file_kind ?? 'document',
            bytes: row.file_bytes ?? 0,
          },
  };
}

/** What {@link runStateQueries} `recordFailedAttempt` is told about one failed delivery. */
export interface FailedAttempt {
  error: string;
  now: number;
  /** When to try again; ignored when `giveUp`. */
  nextAttemptAt: number;
  /** True when this was the last attempt: the item is marked failed for good. */
  giveUp: boolean;
}

interface UsageRow {
  group_jid: string;
  model: string;
  calls: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
}

/** One group's usage of one model on one day (migration 009). */
export interface ModelUsage {
  groupJid: string;
  /** `''` for usage recorded before the model was (migration 009). */
  model: string;
  /** Model calls counted; 0 for rows from before migration 009. */
  calls: number;
  usage: TokenUsage;
}

export interface TurnCommit {
  groupJid: string;
  /** The last message seq the turn's prompt covered. The cursor never moves backwards. */
  throughSeq: number;
  turnId: string;
  /** Replies to queue for delivery, already formatted. */
  replies: Array<{ chatJid: string; text: string }>;
  /**
   * The group's whole new transcript, already checked and trimmed, or null to leave the stored
   * one as it is (a turn whose messages the host refused).
   */
  transcript: MessageParam[] | null;
  now: number;
}

const StoredTranscriptSchema = z.array(MessageParamSchema);

/**
 * Parses a stored transcript: its messages, or why it is unusable (not JSON, the wrong shape,
 * a conversation the API would refuse, content the model broker would refuse).
 */
function parseTranscript(
  json: string | null | undefined,
): { messages: MessageParam[]; problem: null } | { messages: []; problem: string } {
  if (!json) return { messages: [], problem: null };
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return { messages: [], problem: 'it is not JSON' };
  }
  const parsed = StoredTranscriptSchema.safeParse(value);
  if (!parsed.success) return { messages: [], problem: 'it is not a list of messages' };
  const invalid = conversationProblem(parsed.data);
  if (invalid !== null)
    return { messages: [], problem: `it is not a valid conversation: ${invalid}` };
  const refused = checkMessages(parsed.data, BROKER_FEATURES);
  if (!refused.ok)
    return { messages: [], problem: `the model broker would refuse it: ${refused.reason}` };
  return { messages: parsed.data, problem: null };
}

export function runStateQueries(db: Db) {
  const getCursor = db.prepare(`SELECT last_seq FROM cursors WHERE group_jid = ?`);
  // A closed turn's attempt count (turn-attempts.ts) goes with it, in the same transaction.
  const clearTurnAttempts = db.prepare(`DELETE FROM turn_attempts WHERE group_jid = ?`);
  const advanceCursor = db.prepare(`
    INSERT INTO cursors (group_jid, last_seq) VALUES (@groupJid, @seq)
    ON CONFLICT (group_jid) DO UPDATE SET last_seq = MAX(last_seq, @seq)`);
  const getTranscript = db.prepare(`SELECT transcript FROM sessions WHERE group_jid = ?`);
  const setTranscript = db.prepare(`
    INSERT INTO sessions (group_jid, transcript, updated_at) VALUES (@groupJid, @transcript, @now)
    ON CONFLICT (group_jid) DO UPDATE SET transcript = @transcript, updated_at = @now`);
  const enqueue = db.prepare(`
    INSERT INTO outbox (chat_jid, text, turn_id, kind, state, created_at)
    VALUES (?, ?, ?, ?, 'queued', ?)`);
  const enqueueFile = db.prepare(`
    INSERT INTO outbox (chat_jid, text, turn_id, kind, state, created_at,
      file_path, file_name, file_mimetype, file_kind, file_bytes)
    VALUES (@chatJid, @text, @turnId, 'reply', 'queued', @now,
      @stagedPath, @fileName, @mimetype, @fileKind, @bytes)`);
  const outboxById = db.prepare(`SELECT * FROM outbox WHERE id = ?`);
  const queued = db.prepare(`SELECT * FROM outbox WHERE state = 'queued' ORDER BY id`);
  const chatsWithQueued = db.prepare(
    `SELECT DISTINCT chat_jid FROM outbox WHERE state = 'queued' ORDER BY chat_jid`,
  );
  const headOfChat = db.prepare(
    `SELECT * FROM outbox WHERE chat_jid = ? AND state = 'queued' ORDER BY id LIMIT 1`,
  );
  const undeliveredOfChat = db.prepare(
    `SELECT * FROM outbox WHERE chat_jid = ? AND state <> 'sent' ORDER BY id`,
  );
  const outboxOfTurn = db.prepare(`SELECT * FROM outbox WHERE turn_id = ? ORDER BY id`);
  const counts = db.prepare(`
    SELECT COALESCE(SUM(state = 'queued'), 0) AS queued, COALESCE(SUM(state = 'failed'), 0) AS failed
    FROM outbox`);
  const recentFailed = db.prepare(
    `SELECT * FROM outbox WHERE state = 'failed' ORDER BY id DESC LIMIT ?`,
  );
  const markSent = db.prepare(`
    UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?, next_attempt_at = NULL
    WHERE id = ? AND state <> 'sent'`);
  // Only a queued item can fail: a late failure report must not turn a sent reply into a failed one.
  const markAttempt = db.prepare(`
    UPDATE outbox SET attempts = attempts + 1, last_error = @error,
      next_attempt_at = CASE WHEN @giveUp THEN NULL ELSE @nextAttemptAt END,
      state = CASE WHEN @giveUp THEN 'failed' ELSE state END,
      failed_at = CASE WHEN @giveUp THEN @now ELSE failed_at END
    WHERE id = @id AND state = 'queued'`);
  const markUndeliverable = db.prepare(`
    UPDATE outbox SET state = 'failed', last_error = ?, failed_at = ?, next_attempt_at = NULL
    WHERE id = ? AND state = 'queued'`);
  const insertBotMessage = db.prepare(`
    INSERT INTO messages (chat_jid, id, sender, sender_name, text, timestamp, from_me, from_bot, turn_id)
    VALUES (@chatJid, @id, @sender, @senderName, @text, @timestamp, 1, 1, @turnId)
    ON CONFLICT (chat_jid, id) DO NOTHING`);
  // One row per group, day and model (migration 009); each call adds to its row.
  const addUsage = db.prepare(`
    INSERT INTO usage (group_jid, day, model, calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    VALUES (@groupJid, @day, @model, 1, @inputTokens, @outputTokens, @cacheReadTokens, @cacheWriteTokens)
    ON CONFLICT (group_jid, day, model) DO UPDATE SET
      calls = calls + 1,
      input_tokens = input_tokens + excluded.input_tokens,
      output_tokens = output_tokens + excluded.output_tokens,
      cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
      cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens`);
  const usageOf = db.prepare(`
    SELECT SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
      SUM(cache_read_tokens) AS cache_read_tokens, SUM(cache_write_tokens) AS cache_write_tokens
    FROM usage WHERE group_jid = ? AND day = ?`);
  const usageRowsOfDay = db.prepare(`SELECT * FROM usage WHERE day = ? ORDER BY group_jid, model`);
  const getSetting = db.prepare(`SELECT value FROM settings WHERE key = ?`);
  const setSetting = db.prepare(`
    INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT (key) DO UPDATE SET value = @value`);

  const enqueueOutbound = (
    chatJid: string,
    text: string,
    turnId: string | null,
    now: number,
    kind: OutboxKind = 'reply',
  ): OutboxItem =>
    toOutbox(
      outboxById.get(enqueue.run(chatJid, text, turnId, kind, now).lastInsertRowid) as OutboxRow,
    );
  const outboxItem = (id: number): OutboxItem | undefined => {
    const row = outboxById.get(id) as OutboxRow | undefined;
    return row && toOutbox(row);
  };

  return {
    cursorOf(groupJid: string): number {
      return (getCursor.get(groupJid) as { last_seq: number } | undefined)?.last_seq ?? 0;
    },
    /**
     * The group's conversation transcript, to resume in the next run; empty when there is
     * none or the stored one is unusable. Unusable is anything a request carrying it would be
     * refused for, by the API or by the model broker's content policy (a block stored before
     * the policy, or before a feature was turned off): it reads as a fresh conversation, so a
     * broken history cannot fail every future run of the group, and the next commit replaces
     * it. Never throws on a bad stored value.
     * @param log told, at warn, when a stored transcript is set aside as unusable
     */
    transcriptOf(groupJid: string, log?: Pick<Logger, 'warn'>): MessageParam[] {
      const row = getTranscript.get(groupJid) as { transcript: string | null } | undefined;
      const { messages, problem } = parseTranscript(row?.transcript);
      if (problem !== null) {
        log?.warn(
          { group: groupJid, problem },
          'the stored transcript is unusable; the conversation starts fresh',
        );
      }
      return messages;
    },
    /**
     * Replaces the group's transcript. For a write outside {@link commitTurn} (a scheduled
     * task's commit), to be run inside that commit's own transaction.
     */
    setTranscript(groupJid: string, transcript: readonly MessageParam[], now: number): void {
      setTranscript.run({ groupJid, transcript: JSON.stringify(transcript), now });
    },
    /** Queues one outgoing message (e.g. from the agent's send_message tool). */
    enqueueOutbound,
    /** Queues one outgoing file with its caption (`text`, maybe empty): the agent's send_file. */
    enqueueOutboundFile(
      chatJid: string,
      file: { text: string; turnId: string | null; now: number; attachment: OutboxAttachment },
    ): OutboxItem {
      const { attachment } = file;
      const id = enqueueFile.run({
        chatJid,
        text: file.text,
        turnId: file.turnId,
        now: file.now,
        stagedPath: attachment.stagedPath,
        fileName: attachment.fileName,
        mimetype: attachment.mimetype,
        fileKind: attachment.kind,
        bytes: attachment.bytes,
      }).lastInsertRowid;
      return toOutbox(outboxById.get(id) as OutboxRow);
    },
    outboxItem,
    queuedOutbox(): OutboxItem[] {
      return (queued.all() as OutboxRow[]).map(toOutbox);
    },
    /** Chats that have something waiting to be delivered. */
    chatsWithQueuedOutbox(): string[] {
      return (chatsWithQueued.all() as Array<{ chat_jid: string }>).map((r) => r.chat_jid);
    },
    /** The oldest queued item of a chat: the next one its delivery must send, to keep order. */
    nextOutboxItem(chatJid: string): OutboxItem | undefined {
      const row = headOfChat.get(chatJid) as OutboxRow | undefined;
      return row && toOutbox(row);
    },
    /** A chat's items that are not delivered (queued or failed), oldest first. */
    undeliveredOutbox(chatJid: string): OutboxItem[] {
      return (undeliveredOfChat.all(chatJid) as OutboxRow[]).map(toOutbox);
    },
    /** Everything a turn put in the outbox, in order. */
    outboxOfTurn(turnId: string): OutboxItem[] {
      return (outboxOfTurn.all(turnId) as OutboxRow[]).map(toOutbox);
    },
    outboxCounts(): { queued: number; failed: number } {
      return counts.get() as { queued: number; failed: number };
    },
    /** The most recent items that failed for good, newest first. */
    failedOutbox(limit: number): OutboxItem[] {
      return (recentFailed.all(limit) as OutboxRow[]).map(toOutbox);
    },
    /**
     * Makes a turn durable in one transaction: its replies enter the outbox, the cursor
     * moves past the messages it answered, and the transcript is recorded, so a
     * crash never leaves the transcript and the cursor disagreeing.
     * A crash before this commits re-runs the turn; a crash after it sends nothing twice.
     * Usage is not part of it: the broker records each model call's as it happens (issue 6).
     */
    commitTurn: db.transaction((turn: TurnCommit): OutboxItem[] => {
      const items = turn.replies.map((r) =>
        enqueueOutbound(r.chatJid, r.text, turn.turnId, turn.now),
      );
      advanceCursor.run({ groupJid: turn.groupJid, seq: turn.throughSeq });
      clearTurnAttempts.run(turn.groupJid);
      if (turn.transcript !== null) {
        setTranscript.run({
          groupJid: turn.groupJid,
          transcript: JSON.stringify(turn.transcript),
          now: turn.now,
        });
      }
      return items;
    }),
    /**
     * Closes a turn that can never succeed: the cursor moves past its messages and a notice
     * for the chat enters the outbox, in one transaction. The messages stay in the history.
     */
    skipTurn: db.transaction(
      (turn: {
        groupJid: string;
        throughSeq: number;
        turnId: string;
        notice: string;
        now: number;
      }): OutboxItem[] => {
        const item = enqueueOutbound(turn.groupJid, turn.notice, turn.turnId, turn.now, 'notice');
        advanceCursor.run({ groupJid: turn.groupJid, seq: turn.throughSeq });
        clearTurnAttempts.run(turn.groupJid);
        return [item];
      },
    ),
    /**
     * Records a delivered outbox item as a message of the chat and marks it sent, in one
     * transaction, so the history shows each reply exactly once. Returns false, and records
     * nothing, when the item was already sent: a second report (a retry racing its own
     * success) carries a new channel message id, so (chat, id) alone would not catch it.
     */
    markDelivered: db.transaction(
      (
        item: OutboxItem,
        delivered: {
          id: string;
          sender: string;
          senderName: string;
          timestamp: number;
          /** What the history records, when it is not the item's text (a file's description). */
          text?: string;
        },
      ): boolean => {
        if (markSent.run(delivered.timestamp, item.id).changes === 0) return false;
        insertBotMessage.run({
          chatJid: item.chatJid,
          id: delivered.id,
          sender: delivered.sender,
          senderName: delivered.senderName,
          text: delivered.text ?? item.text,
          timestamp: delivered.timestamp,
          turnId: item.turnId,
        });
        return true;
      },
    ),
    /**
     * Counts a failed delivery attempt and sets when to try again, or marks the item failed for
     * good. Returns the item as it now is, or undefined when it was no longer queued.
     */
    recordFailedAttempt(id: number, attempt: FailedAttempt): OutboxItem | undefined {
      const changed = markAttempt.run({
        id,
        error: attempt.error,
        now: attempt.now,
        nextAttemptAt: attempt.nextAttemptAt,
        giveUp: attempt.giveUp ? 1 : 0,
      }).changes;
      return changed === 1 ? outboxItem(id) : undefined;
    },
    /** Fails an item without an attempt: no channel can ever carry it. */
    markUndeliverable(id: number, error: string, now: number): OutboxItem | undefined {
      return markUndeliverable.run(error, now, id).changes === 1 ? outboxItem(id) : undefined;
    },
    /**
     * Adds one model call's usage to the group's row for the day and model.
     * @param model the model that made the call; `''` when unknown (never priced)
     */
    addUsage(groupJid: string, day: string, usage: TokenUsage, model = ''): void {
      addUsage.run({
        groupJid,
        day,
        model,
        inputTokens: usage.inputTokens,
        outputTokens: usage.outputTokens,
        cacheReadTokens: usage.cacheReadTokens,
        cacheWriteTokens: usage.cacheWriteTokens,
      });
    },
    /** Every group's usage on `day`, one entry per group and model. */
    usageOnDay(day: string): ModelUsage[] {
      return (usageRowsOfDay.all(day) as UsageRow[]).map((row) => ({
        groupJid: row.group_jid,
        model: row.model,
        calls: row.calls,
        usage: {
          inputTokens: row.input_tokens,
          outputTokens: row.output_tokens,
          cacheReadTokens: row.cache_read_tokens,
          cacheWriteTokens: row.cache_write_tokens,
        },
      }));
    },
    /** The group's usage on `day`, summed over models. */
    usageOf(groupJid: string, day: string): TokenUsage {
      const row = usageOf.get(groupJid, day) as Record<string, number | null> | undefined;
      return {
        inputTokens: row?.input_tokens ?? 0,
        outputTokens: row?.output_tokens ?? 0,
        cacheReadTokens: row?.cache_read_tokens ?? 0,
        cacheWriteTokens: row?.cache_write_tokens ?? 0,
      };
    },
    getSetting(key: string): string | undefined {
      return (getSetting.get(key) as { value: string } | undefined)?.value;
    },
    setSetting(key: string, value: string): void {
      setSetting.run({ key, value });
    },
  };
}
