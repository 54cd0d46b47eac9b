/**
 * Turn attempts: how many times a group's pending messages were handed to an agent without the
 * turn being closed. One row per group, for the messages after one cursor position (`after_seq`)
 * up to the last one the latest attempt carried (`through_seq`).
 *
 * The count lives in the database, not in memory, because the failure it guards against may take
 * the host down with it: a message whose run crashes serve would otherwise be queued again at
 * every restart, for ever. The turn's commit or skip deletes the row in its own transaction
 * ({@link runStateQueries}), so a closed turn never leaves a count behind.
 */
import type { Db } from './database.js';

/** One group's count of unclosed attempts at the messages after `afterSeq`. */
export interface TurnAttempt {
  groupJid: string;
  /** The group's cursor when the attempts were planned: they covered the messages after it. */
  afterSeq: number;
  /**
   * The last message the latest attempt carried. Messages after it arrived since and were
   * never handed to an agent, so a give-up leaves them to a turn of their own.
   */
  throughSeq: number;
  attempts: number;
  /** Why the last attempt failed, when the run lived to say; null after a crash of the host. */
  lastError: string | null;
  updatedAt: number;
}

/**
 * The longest error kept. An error can carry a container's stderr, which is hostile and
 * unbounded; it is shown in the chat when the messages are given up.
 */
export const MAX_TURN_ERROR_CHARS = 500;

interface TurnAttemptRow {
  group_jid: string;
  after_seq: number;
  through_seq: number;
  attempts: number;
  last_error: string | null;
  updated_at: number;
}

function toTurnAttempt(row: TurnAttemptRow): TurnAttempt {
  return {
    groupJid: row.group_jid,
    afterSeq: row.after_seq,
    throughSeq: row.through_seq,
    attempts: row.attempts,
    lastError: row.last_error,
    updatedAt: row.updated_at,
  };
}

function boundedError(error: string): string {
  return error.length > MAX_TURN_ERROR_CHARS ? `${error.slice(0, MAX_TURN_ERROR_CHARS)}…` : error;
}

export function turnAttemptQueries(db: Db) {
  // In an UPDATE, every expression reads the row as it was, so `after_seq` below is the old one.
  const record = db.prepare(`
    INSERT INTO turn_attempts (group_jid, after_seq, through_seq, attempts, last_error, updated_at)
    VALUES (@groupJid, @afterSeq, @throughSeq, 1, NULL, @now)
    ON CONFLICT (group_jid) DO UPDATE SET
      attempts = CASE WHEN after_seq = excluded.after_seq THEN attempts + 1 ELSE 1 END,
      last_error = CASE WHEN after_seq = excluded.after_seq THEN last_error ELSE NULL END,
      after_seq = excluded.after_seq,
      through_seq = excluded.through_seq,
      updated_at = excluded.updated_at
    RETURNING *`);
  const byGroup = db.prepare(`SELECT * FROM turn_attempts WHERE group_jid = ?`);
  const setError = db.prepare(`
    UPDATE turn_attempts SET last_error = @error, updated_at = @now
    WHERE group_jid = @groupJid AND after_seq = @afterSeq`);
  const forgive = db.prepare(`
    UPDATE turn_attempts SET attempts = MAX(attempts - 1, 0), updated_at = @now
    WHERE group_jid = @groupJid AND after_seq = @afterSeq`);
  const clear = db.prepare(`DELETE FROM turn_attempts WHERE group_jid = ?`);

  return {
    /**
     * Counts one attempt at the group's messages after `turn.afterSeq`, through
     * `turn.throughSeq`: one more when the last attempt was at the same cursor, else a fresh
     * count of 1 (the cursor moved, so these are other messages). The count then covers the
     * messages through this attempt's last one, which may be later than the previous
     * attempt's (messages arrived in between; they too have now been tried). Returns the count
     * as it now stands.
     */
    recordTurnAttempt(
      groupJid: string,
      turn: { afterSeq: number; throughSeq: number },
      now: number,
    ): TurnAttempt {
      const row = record.get({
        groupJid,
        afterSeq: turn.afterSeq,
        throughSeq: turn.throughSeq,
        now,
      }) as TurnAttemptRow;
      return toTurnAttempt(row);
    },
    /** The group's unclosed attempts, if any. */
    turnAttemptOf(groupJid: string): TurnAttempt | undefined {
      const row = byGroup.get(groupJid) as TurnAttemptRow | undefined;
      return row && toTurnAttempt(row);
    },
    /**
     * Keeps why the attempt at `afterSeq` failed (cut to {@link MAX_TURN_ERROR_CHARS}). Does
     * nothing when the group's count is for another cursor by now.
     */
    recordTurnError(groupJid: string, afterSeq: number, error: string, now: number): void {
      setError.run({ groupJid, afterSeq, error: boundedError(error), now });
    },
    /**
     * Takes back one attempt at `afterSeq` that was not the messages' fault: the user stopped
     * the run, Clawbar shut down under it, or the container engine, the key or the account
     * failed it (see `runEnded` in turns.ts).
     */
    forgiveTurnAttempt(groupJid: string, afterSeq: number, now: number): void {
      forgive.run({ groupJid, afterSeq, now });
    },
    /** Forgets the group's count (its turn was closed some other way, or it was stopped). */
    clearTurnAttempts(groupJid: string): void {
      clear.run(groupJid);
    },
  };
}
