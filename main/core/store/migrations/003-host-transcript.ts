import type { Migration } from './index.js';

/**
 * The conversation transcript moves from the container's session folder into the host's store,
 * where no container can rewrite it: a turn's part is committed in the same transaction as its
 * replies and the cursor, and the whole is handed to the runner in `start`. A transcript left in
 * a session folder by an older version is not imported (a container could have written it); the
 * group starts a fresh conversation.
 *
 * `turn_attempts` counts, per group, how many times the messages after its cursor were handed
 * to an agent without the turn being closed. It lives in the database so that a message whose
 * runs keep failing, or whose run took the process down, is given up after a few attempts
 * instead of crash-looping serve. `through_seq` is the last message the latest attempt carried:
 * a give-up closes the messages up to it, never ones that arrived after and were never tried.
 */
export const migration003: Migration = {
  version: 3,
  name: 'transcript in the store; turn attempts',
  up: `
    ALTER TABLE sessions ADD COLUMN transcript TEXT;
    UPDATE sessions SET session_ref = NULL;

    CREATE TABLE turn_attempts (
      group_jid TEXT PRIMARY KEY REFERENCES groups(jid) ON DELETE CASCADE,
      after_seq INTEGER NOT NULL,
      through_seq INTEGER NOT NULL CHECK (through_seq > after_seq),
      attempts INTEGER NOT NULL CHECK (attempts >= 0),
      last_error TEXT,
      updated_at INTEGER NOT NULL
    );
  `,
};
