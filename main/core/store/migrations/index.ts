/**
 * The ordered list of schema migrations. Append only: never edit or reorder a migration
 * that has shipped. Each runs in its own transaction and sets `PRAGMA user_version`.
 */
import { migration001 } from './001-initial.js';
import { migration002 } from './002-outbox-worker.js';
import { migration003 } from './003-host-transcript.js';
import { migration004 } from './004-whatsapp-auth.js';
import { migration005 } from './005-sender-allowlist.js';
import { migration006 } from './006-tasks.js';
import { migration007 } from './007-group-settings.js';
import { migration008 } from './008-outbox-files.js';
import { migration009 } from './009-usage-by-model.js';

export interface Migration {
  /** Equals its position in {@link MIGRATIONS}, starting at 1. */
  version: number;
  name: string;
  /** SQL run inside the migration's transaction. */
  up: string;
}

export const MIGRATIONS: readonly Migration[] = [
  migration001,
  migration002,
  migration003,
  migration004,
  migration005,
  migration006,
  migration007,
  migration008,
  migration009,
];
