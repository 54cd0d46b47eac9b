/**
 * The store: every SQL statement in Clawbar lives below this folder, as named, prepared
 * queries grouped by table family.
 */
import { openDatabase, type Db, type OpenDatabaseOptions } from './database.js';
import { groupQueries } from './groups.js';
import { messageQueries } from './messages.js';
import { runStateQueries } from './run-state.js';
import { taskQueries } from './tasks.js';
import { turnAttemptQueries } from './turn-attempts.js';

export type Store = ReturnType<typeof messageQueries> &
  ReturnType<typeof groupQueries> &
  ReturnType<typeof runStateQueries> &
  ReturnType<typeof turnAttemptQueries> &
  ReturnType<typeof taskQueries> & {
    readonly db: Db;
    close(): void;
  };

function storeOver(db: Db): Store {
  return {
    db,
    ...messageQueries(db),
    ...groupQueries(db),
    ...runStateQueries(db),
    ...turnAttemptQueries(db),
    ...taskQueries(db),
    close: () => db.close(),
  };
}

/** Opens the database file (WAL, migrated) and prepares every query once. */
export function openStore(file: string, opts: OpenDatabaseOptions = {}): Store {
  return storeOver(openDatabase(file, undefined, opts));
}

export * from './types.js';
export { DEFAULT_GROUP_SETTINGS } from './groups.js';
export { DatabaseFromTheFutureError, MigrationError } from './database.js';
export type { FailedAttempt, TurnCommit } from './run-state.js';
export { MAX_TURN_ERROR_CHARS, type TurnAttempt } from './turn-attempts.js';
export {
  CorruptTaskError,
  INTERRUPTED_RUN_ERROR,
  MAX_TASK_ERROR_CHARS,
  MAX_TASK_PROMPT_CHARS,
  MAX_TASK_RESULT_CHARS,
  TaskNotFoundError,
  TaskValidationError,
  type ListTasksOptions,
} from './tasks.js';
