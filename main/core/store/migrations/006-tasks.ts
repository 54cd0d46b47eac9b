import type { Migration } from './index.js';

/**
 * Scheduled tasks and the log of their runs.
 *
 * - `tasks` holds one row per task. `kind` is repeated outside `spec` (the schedule as JSON:
 *   a cron expression and its timezone, an interval and its anchor, or a one-off time) so that
 *   the CHECKs and queries can see it; the store checks on read that the two agree.
 * - `task_runs` logs every due time of a task: a run (running, then success, error or
 *   timeout), or one that did not happen (skipped, missed). UNIQUE (task_id, due_at) is what
 *   makes firing exactly-once across restarts: a run is claimed by inserting its row, in a
 *   transaction, before it starts, so a second claim of the same due time (after a restart, or
 *   from a duplicate timer) finds the row and does not run. A row still 'running' at start was
 *   cut off by a crash; it is marked as interrupted, never run again.
 *
 * Removing a group removes its tasks and their run logs (ON DELETE CASCADE), as it already
 * removes its cursor and session: a task is a group's, and runs its agent in the group's
 * folder, so it cannot outlive it. The scheduler must find a task gone at fire time and do
 * nothing. Removing a task likewise removes its run log.
 */
export const migration006: Migration = {
  version: 6,
  name: 'scheduled tasks and their runs',
  up: `
    CREATE TABLE tasks (
      id TEXT PRIMARY KEY,
      group_jid TEXT NOT NULL REFERENCES groups(jid) ON DELETE CASCADE,
      prompt TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'once')),
      spec TEXT NOT NULL CHECK (json_valid(spec)),
      timezone TEXT NOT NULL,
      context_mode TEXT NOT NULL CHECK (context_mode IN ('group', 'isolated')),
      post_result INTEGER NOT NULL DEFAULT 1 CHECK (post_result IN (0, 1)),
      status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'done')),
      paused_reason TEXT,
      next_run INTEGER,
      last_run INTEGER,
      last_status TEXT,
      last_result TEXT,
      last_error TEXT,
      consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
      created_by TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE INDEX tasks_by_next_run ON tasks (next_run) WHERE status = 'active';
    CREATE INDEX tasks_by_group ON tasks (group_jid);

    CREATE TABLE task_runs (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
      due_at INTEGER NOT NULL,
      started_at INTEGER,
      finished_at INTEGER,
      duration_ms INTEGER,
      status TEXT NOT NULL
        CHECK (status IN ('running', 'success', 'error', 'skipped', 'missed', 'timeout')),
      result_summary TEXT,
      error TEXT,
      input_tokens INTEGER,
      output_tokens INTEGER,
      -- Also the per-task index: a task's runs by due time, for its run log.
      UNIQUE (task_id, due_at)
    );
    CREATE INDEX task_runs_running ON task_runs (id) WHERE status = 'running';
  `,
};
