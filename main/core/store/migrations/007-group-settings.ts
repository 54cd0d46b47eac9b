import type { Migration } from './index.js';

/**
 * Per-group settings of the agent (issue 10):
 * - `model` (a column since migration 001, unused until now): the model the group's calls use;
 *   NULL for the configured default.
 * - `web_search` (on by default) and `web_fetch` (off by default): Anthropic's server-side web
 *   tools, which the broker adds to the group's calls. Fetch is off until switched on for a
 *   group, because a prompt-injected agent can put data into a URL it fetches.
 * - `daily_token_budget` (since migration 001, unused until now) and `daily_budget_usd`: caps
 *   on the group's usage per local day; NULL for none. When either is reached, the group's runs
 *   stop until local midnight. Added columns can carry CHECKs; the old one is checked in code.
 * - `extra_mounts`: host folders the group asks to see, as a JSON array of requests; each is
 *   checked against the mount allowlist file at every run, never trusted as stored.
 */
export const migration007: Migration = {
  version: 7,
  name: 'per-group web tools, daily budget and extra mounts',
  up: `
    ALTER TABLE groups ADD COLUMN web_search INTEGER NOT NULL DEFAULT 1 CHECK (web_search IN (0, 1));
    ALTER TABLE groups ADD COLUMN web_fetch INTEGER NOT NULL DEFAULT 0 CHECK (web_fetch IN (0, 1));
    ALTER TABLE groups ADD COLUMN daily_budget_usd REAL
      CHECK (daily_budget_usd IS NULL OR daily_budget_usd > 0);
    ALTER TABLE groups ADD COLUMN extra_mounts TEXT
      CHECK (extra_mounts IS NULL OR json_type(extra_mounts) = 'array');
  `,
};
