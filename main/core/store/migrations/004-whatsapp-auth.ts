import type { Migration } from './index.js';

/**
 * WhatsApp's authentication state lives in the database, next to everything else Clawbar keeps,
 * so it is written in transactions and wiped in one (unlink). Baileys warns against its own
 * folder-of-JSON-files store for anything but demos.
 *
 * - `wa_auth_creds` holds one row: the account's credentials (identity and noise keys, the
 *   paired account), as Baileys' BufferJSON text.
 * - `wa_auth_keys` holds the Signal keys, one row per (type, id): pre-keys, sessions, sender
 *   keys, app-state sync keys and versions, LID mappings, device lists and the like.
 */
export const migration004: Migration = {
  version: 4,
  name: 'WhatsApp auth state',
  up: `
    CREATE TABLE wa_auth_creds (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      value TEXT NOT NULL,
      updated_at INTEGER NOT NULL
    );

    CREATE TABLE wa_auth_keys (
      type TEXT NOT NULL,
      id TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (type, id)
    ) WITHOUT ROWID;
  `,
};
