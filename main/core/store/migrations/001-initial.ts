import type { Migration } from './index.js';

/**
 * The first schema: chats, messages, groups and the state a run moves forward
 * (cursors, sessions, outbox, usage), plus settings.
 *
 * `messages.seq` is the insertion order. Cursors point at a `seq`, not at a timestamp,
 * because WhatsApp timestamps have one-second resolution and arrive out of order.
 */
export const migration001: Migration = {
  version: 1,
  name: 'initial schema',
  up: `
    CREATE TABLE chats (
      jid TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      channel TEXT NOT NULL,
      is_group INTEGER NOT NULL DEFAULT 0,
      last_activity INTEGER
    );

    CREATE TABLE messages (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      chat_jid TEXT NOT NULL REFERENCES chats(jid),
      id TEXT NOT NULL,
      sender TEXT NOT NULL,
      sender_name TEXT NOT NULL,
      text TEXT NOT NULL,
      timestamp INTEGER NOT NULL,
      from_me INTEGER NOT NULL DEFAULT 0,
      from_bot INTEGER NOT NULL DEFAULT 0,
      quoted_id TEXT,
      media_ref TEXT,
      turn_id TEXT,
      UNIQUE (chat_jid, id)
    );
    CREATE INDEX messages_by_chat ON messages (chat_jid, seq);
    CREATE INDEX messages_by_turn ON messages (turn_id) WHERE turn_id IS NOT NULL;

    CREATE TABLE groups (
      jid TEXT PRIMARY KEY REFERENCES chats(jid),
      folder TEXT NOT NULL UNIQUE,
      name TEXT NOT NULL UNIQUE,
      trigger TEXT NOT NULL,
      requires_trigger INTEGER NOT NULL DEFAULT 1,
      is_main INTEGER NOT NULL DEFAULT 0,
      paused INTEGER NOT NULL DEFAULT 0,
      network_allowed INTEGER NOT NULL DEFAULT 0,
      container_config TEXT,
      model TEXT,
      daily_token_budget INTEGER,
      created_at INTEGER NOT NULL
    );
    -- At most one main group: it is the admin channel.
    CREATE UNIQUE INDEX groups_one_main ON groups (is_main) WHERE is_main = 1;

    CREATE TABLE sessions (
      group_jid TEXT PRIMARY KEY REFERENCES groups(jid) ON DELETE CASCADE,
      session_ref TEXT,
      updated_at INTEGER NOT NULL
    );

    CREATE TABLE cursors (
      group_jid TEXT PRIMARY KEY REFERENCES groups(jid) ON DELETE CASCADE,
      last_seq INTEGER NOT NULL
    );

    CREATE TABLE outbox (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      chat_jid TEXT NOT NULL REFERENCES chats(jid),
      text TEXT NOT NULL,
      turn_id TEXT,
      state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
      attempts INTEGER NOT NULL DEFAULT 0,
      last_error TEXT,
      created_at INTEGER NOT NULL,
      sent_at INTEGER
    );
    CREATE INDEX outbox_queued ON outbox (state, id) WHERE state = 'queued';

    CREATE TABLE usage (
      group_jid TEXT NOT NULL,
      day TEXT NOT NULL,
      input_tokens INTEGER NOT NULL DEFAULT 0,
      output_tokens INTEGER NOT NULL DEFAULT 0,
      cache_read_tokens INTEGER NOT NULL DEFAULT 0,
      cache_write_tokens INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (group_jid, day)
    );

    CREATE TABLE settings (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    );
  `,
};
