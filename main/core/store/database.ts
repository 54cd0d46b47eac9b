/**
 * Opening the SQLite database and bringing its schema up to date.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS, type Migration } from './migrations/index.js';

export type Db = Database.Database;

/** The database was written by a newer Clawbar; opening it could corrupt it. */
export class DatabaseFromTheFutureError extends Error {
  constructor(
    readonly dbVersion: number,
    readonly appVersion: number,
    file: string,
  ) {
    super(
      `${file} has schema version ${dbVersion}, but this Clawbar only knows up to ${appVersion}. ` +
        'It was written by a newer Clawbar: upgrade Clawbar, or point CLAWBAR_HOME elsewhere.',
    );
    this.name = 'DatabaseFromTheFutureError';
  }
}

/** How long a connection waits for another process's lock before giving up. */
const BUSY_TIMEOUT_MS = 5000;

export class MigrationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigrationError';
  }
}

export interface OpenDatabaseOptions {
  /**
   * The better-sqlite3 addon (`better_sqlite3.node`) to load instead of the one in
   * node_modules. `npm start` builds a separate copy for Electron's ABI, so the installed one
   * stays built for Node and the CLI and tests keep working beside the app
   * (scripts/start-electron.ts). @default the installed addon
   */
  nativeBinding?: string;
}

/**
 * Opens (creating if needed) the database file in WAL mode and migrates it.
 * Pass `':memory:'` for a throwaway database in tests.
 */
export function openDatabase(
  file: string,
  migrations: readonly Migration[] = MIGRATIONS,
  opts: OpenDatabaseOptions = {},
): Db {
  if (file !== ':memory:') {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    makePrivate(file);
  }
  const db = new Database(file, opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {});
  try {
    // The CLI and `serve` may touch the file at once; wait rather than fail on a lock.
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    switchToWal(db);
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    migrate(db, migrations, file);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Owner read and write only: the database holds every message, and WhatsApp's keys. */
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates the database file, or tightens an existing one, as owner-only (0600), before SQLite
 * opens it. SQLite makes its `-wal` and `-shm` files with the database file's own mode
 * (os_unix.c `findCreateFileMode`, then an `fchmod` past the umask), so a private database
 * keeps its side files private too; ones left by an older, looser file are tightened here.
 * The mode is set with `fchmod`, so the umask cannot loosen or narrow it.
 */
function makePrivate(file: string): void {
  // O_CREAT without O_EXCL: an existing database opens as it is (its content untouched).
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, PRIVATE_FILE_MODE);
  try {
    if ((fs.fstatSync(fd).mode & 0o777) !== PRIVATE_FILE_MODE) fs.fchmodSync(fd, PRIVATE_FILE_MODE);
  } finally {
    fs.closeSync(fd);
  }
  for (const side of [`${file}-wal`, `${file}-shm`, `${file}-journal`]) {
    try {
      const stat = fs.lstatSync(side);
      // chmod follows links; only a plain file is SQLite's own.
      if (stat.isFile() && (stat.mode & 0o777) !== PRIVATE_FILE_MODE)
        fs.chmodSync(side, PRIVATE_FILE_MODE);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    }
  }
}

/**
 * Puts the file in WAL mode. Converting the journal needs an exclusive lock, and SQLite does
 * not run the busy handler for it: two processes opening a fresh file at once got
 * "database is locked" whatever busy_timeout said. WAL is stored in the file, so once it is
 * set there is nothing to do and no lock to take; until then, retry within the busy budget.
 */
function switchToWal(db: Db): void {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      if (db.pragma('journal_mode', { simple: true }) !== 'wal') db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

function userVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** Applies every migration newer than the file's `user_version`, each in one transaction. */
export function migrate(db: Db, migrations: readonly Migration[], file = 'the database'): void {
  checkMigrationList(migrations);
  const latest = migrations.length;
  const current = userVersion(db);
  if (current > latest) throw new DatabaseFromTheFutureError(current, latest, file);
  for (const migration of migrations.slice(current)) {
    // The version is read again under the write lock (IMMEDIATE): another process opening the
    // same fresh file may have applied this migration since the read above.
    const apply = db.transaction(() => {
      const now = userVersion(db);
      if (now > latest) throw new DatabaseFromTheFutureError(now, latest, file);
      if (now >= migration.version) return;
      db.exec(migration.up);
      db.pragma(`user_version = ${migration.version}`);
    });
    try {
      apply.immediate();
    } catch (err) {
      if (err instanceof DatabaseFromTheFutureError) throw err;
      throw new MigrationError(
        `migration ${migration.version} (${migration.name}) failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }
}

/** Versions must run 1, 2, 3… with no gap or repeat; a mistake here is a bug, caught at open. */
export function checkMigrationList(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new MigrationError(
        `migration list is out of order: position ${index + 1} holds version ${migration.version} (${migration.name})`,
      );
    }
  });
}
