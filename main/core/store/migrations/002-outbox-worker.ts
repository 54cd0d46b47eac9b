import type { Migration } from './index.js';

/**
 * Group names become unique whatever their case, since every command finds a group by name
 * case-insensitively: "Family" and "family" could not both be named. Names that clash in an
 * existing database keep the oldest group's name; the others get their row number appended.
 *
 * The outbox gains what its delivery worker needs: when an item may be tried again (backoff),
 * whether it is a notice about another item (a notice that fails is not itself reported, so
 * a dead channel cannot breed notices), and when it failed for good.
 */
export const migration002: Migration = {
  version: 2,
  name: 'case-insensitive group names; outbox worker state',
  up: `
    UPDATE groups SET name = name || ' (' || rowid || ')'
    WHERE rowid NOT IN (SELECT MIN(rowid) FROM groups GROUP BY name COLLATE NOCASE);
    CREATE UNIQUE INDEX groups_name_nocase ON groups (name COLLATE NOCASE);

    ALTER TABLE outbox ADD COLUMN next_attempt_at INTEGER;
    ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'reply'
      CHECK (kind IN ('reply', 'notice'));
    ALTER TABLE outbox ADD COLUMN failed_at INTEGER;
    CREATE INDEX outbox_queued_by_chat ON outbox (chat_jid, id) WHERE state = 'queued';
    CREATE INDEX outbox_failed_by_chat ON outbox (chat_jid, id) WHERE state = 'failed';
  `,
};
