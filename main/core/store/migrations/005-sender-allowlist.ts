import type { Migration } from './index.js';

/**
 * A group may name the senders who can wake its agent. `allowed_senders` is a JSON array of
 * sender ids (phone jids like `15551234567@s.whatsapp.net`, LID jids, or local-chat names);
 * NULL, what every existing group gets, means anyone in the chat may. Messages from others are
 * still stored, as context for the agent, but never start a run.
 */
export const migration005: Migration = {
  version: 5,
  name: 'sender allowlist per group',
  up: `
    ALTER TABLE groups ADD COLUMN allowed_senders TEXT
      CHECK (allowed_senders IS NULL OR json_type(allowed_senders) = 'array');
  `,
};
