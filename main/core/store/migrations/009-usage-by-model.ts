import type { Migration } from './index.js';

/**
 * Usage per group, day and model (issue 10), so that a day's tokens can be priced: a group's
 * model can change during the day, and models are priced differently (pricing.ts). Also counts
 * the model calls behind each row.
 *
 * SQLite cannot change a primary key, so the table is rebuilt. Rows recorded before this
 * migration keep their counts under the model `''`: which model made them was not recorded,
 * and their cost is shown as unknown rather than guessed.
 */
export const migration009: Migration = {
  version: 9,
  name: 'usage per model',
  up: `
    ALTER TABLE usage RENAME TO usage_before_009;
    CREATE TABLE usage (
      group_jid TEXT NOT NULL,
      day TEXT NOT NULL,
      model TEXT NOT NULL DEFAULT '',
      calls INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
      input_tokens INTEGER NOT NULL DEFAULT 0,
      output_tokens INTEGER NOT NULL DEFAULT 0,
      cache_read_tokens INTEGER NOT NULL DEFAULT 0,
      cache_write_tokens INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (group_jid, day, model)
    );
    INSERT INTO usage (group_jid, day, model, calls, input_tokens, output_tokens,
      cache_read_tokens, cache_write_tokens)
    SELECT group_jid, day, '', 0, input_tokens, output_tokens, cache_read_tokens,
      cache_write_tokens
    FROM usage_before_009;
    DROP TABLE usage_before_009;
    CREATE INDEX usage_by_day ON usage (day);
  `,
};
