import type { Migration } from './index.js';

/**
 * An outbox item may carry a file (issue 10, the agent's `send_file`): a copy the host staged
 * outside every group folder when the agent asked, so the agent cannot change or swap it
 * before it goes out, and so it survives a restart while the item waits.
 *
 * Columns, not a JSON blob, so that the database itself refuses a half-described file: either
 * every attachment column is set (with a known kind and a sane size) or none is.
 */
export const migration008: Migration = {
  version: 8,
  name: 'outbox items carry files',
  up: `
    ALTER TABLE outbox ADD COLUMN file_path TEXT;
    ALTER TABLE outbox ADD COLUMN file_name TEXT;
    ALTER TABLE outbox ADD COLUMN file_mimetype TEXT;
    ALTER TABLE outbox ADD COLUMN file_kind TEXT
      CHECK (file_kind IS NULL OR file_kind IN ('image', 'audio', 'document'));
    ALTER TABLE outbox ADD COLUMN file_bytes INTEGER CHECK (file_bytes IS NULL OR file_bytes > 0);
    CREATE TRIGGER outbox_file_complete_insert BEFORE INSERT ON outbox
      WHEN NOT (
        (NEW.file_path IS NULL AND NEW.file_name IS NULL AND NEW.file_mimetype IS NULL
          AND NEW.file_kind IS NULL AND NEW.file_bytes IS NULL)
        OR (NEW.file_path IS NOT NULL AND NEW.file_name IS NOT NULL AND NEW.file_mimetype IS NOT NULL
          AND NEW.file_kind IS NOT NULL AND NEW.file_bytes IS NOT NULL))
      BEGIN SELECT RAISE(ABORT, 'an outbox file needs every file column, or none'); END;
  `,
};
