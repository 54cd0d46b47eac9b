import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  checkMigrationList,
  DatabaseFromTheFutureError,
  migrate,
  MigrationError,
  openDatabase,
  type Db,
} from '../../main/core/store/database.js';
import { openStore } from '../../main/core/store/index.js';
import { migration001 } from '../../main/core/store/migrations/001-initial.js';
import { migration002 } from '../../main/core/store/migrations/002-outbox-worker.js';
import { MIGRATIONS, type Migration } from '../../main/core/store/migrations/index.js';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

let dir: string;
let file: string;
const opened: Db[] = [];

/** Keeps track of every connection so that a failing test still releases its file. */
function track(db: Db): Db {
  opened.push(db);
  return db;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-migrations-'));
  file = path.join(dir, 'clawbar.db');
});

afterEach(() => {
  for (const db of opened.splice(0)) if (db.open) db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const userVersion = (db: Db): number => db.pragma('user_version', { simple: true }) as number;

const tableNames = (db: Db): string[] =>
  (
    db
      .prepare(
        `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`,
      )
      .all() as Array<{ name: string }>
  ).map((row) => row.name);

const migration = (version: number, name = `step ${version}`): Migration => ({
  version,
  name,
  up: 'SELECT 1;',
});

describe('opening a database file', () => {
  it('brings a fresh file to the latest version, in WAL mode, with foreign keys enforced', () => {
    const db = track(openDatabase(file));

    expect(fs.existsSync(file)).toBe(true);
    expect(userVersion(db)).toBe(MIGRATIONS.length);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(() =>
      db
        .prepare(
          `INSERT INTO messages (chat_jid, id, sender, sender_name, text, timestamp) VALUES ('nobody', 'm1', 's', 'S', 't', 1)`,
        )
        .run(),
    ).toThrow(/FOREIGN KEY constraint failed/);
  });

  it('creates the folder the file lives in when it does not exist yet', () => {
    const nested = path.join(dir, 'home', 'data', 'clawbar.db');
    track(openDatabase(nested));

    expect(fs.existsSync(nested)).toBe(true);
  });

  it('reopens an up-to-date file without running any migration again, keeping its data', () => {
    const first = openStore(file);
    first.upsertChat({
      jid: 'local:family',
      name: 'Family',
      channel: 'local',
      isGroup: true,
      lastActivity: null,
    });
    first.insertMessage({
      chatJid: 'local:family',
      id: 'm1',
      sender: 'local:alice',
      senderName: 'Alice',
      text: 'hello',
      timestamp: 1000,
    });
    first.setSetting('theme', 'dark');
    first.close();

    // Every migration in the list would fail if run twice (CREATE TABLE without IF NOT EXISTS),
    // so reopening without an error is itself proof that nothing ran again.
    const reopened = openStore(file);
    try {
      expect(userVersion(reopened.db)).toBe(MIGRATIONS.length);
      expect(reopened.messagesSince('local:family', 0).map((m) => m.text)).toEqual(['hello']);
      expect(reopened.getSetting('theme')).toBe('dark');
      expect(() => migrate(reopened.db, MIGRATIONS)).not.toThrow();
      expect(reopened.recentMessages('local:family', 5).map((m) => m.seq)).toEqual([1]);
    } finally {
      reopened.close();
    }
  });

  it('skips the migrations another process applied after this one read the version', () => {
    const late = track(new Database(file));
    // migrate() reads user_version and then slices the list to the pending migrations. Between
    // the two, another process (here: another connection) opens the fresh file and migrates it.
    const raced = new Proxy([...MIGRATIONS], {
      get(target, property, receiver) {
        if (property !== 'slice') return Reflect.get(target, property, receiver) as unknown;
        return (start?: number, end?: number) => {
          openDatabase(file).close();
          return target.slice(start, end);
        };
      },
    });

    expect(() => migrate(late, raced)).not.toThrow();
    expect(userVersion(late)).toBe(MIGRATIONS.length);
    expect(tableNames(late)).toContain('messages');
  });

  it('lets several processes open one fresh file at the same instant, all of them successfully', async () => {
    // CLI and `serve` may both create the file on first start. Before the fix, under load, some
    // processes failed with "database is locked" (the WAL switch) or "table chats already exists".
    const databaseModule = pathToFileURL(
      path.join(projectRoot, 'main/core/store/database.ts'),
    ).href;
    const files = [path.join(dir, 'a', 'clawbar.db'), path.join(dir, 'b', 'clawbar.db')];
    const startAt = Date.now() + 4000;
    const script = `
      const { openDatabase } = await import(${JSON.stringify(databaseModule)});
      const [file, startAt] = [process.argv[1], Number(process.argv[2])];
      // Sleep until just before the start, then spin, so every process is on a CPU at the start.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(0, startAt - 100 - Date.now()));
      while (Date.now() < startAt);
      try {
        const db = openDatabase(file);
        console.log(JSON.stringify({ ok: true, version: db.pragma('user_version', { simple: true }) }));
        db.close();
      } catch (err) {
        console.log(JSON.stringify({ ok: false, error: err.name + ': ' + err.message }));
      }`;
    const runs = files.flatMap((target) =>
      Array.from({ length: 4 }, () => runNodeScript(script, [target, String(startAt)])),
    );

    const results = (await Promise.all(runs)).map((run) => {
      expect(run.stderr).toBe('');
      return JSON.parse(run.stdout) as { ok: boolean; version?: number; error?: string };
    });

    expect(results).toEqual(
      Array.from({ length: 8 }, () => ({ ok: true, version: MIGRATIONS.length })),
    );
  }, 30_000);
});

describe('migration 001 (initial schema)', () => {
  let db: Db;

  beforeEach(() => {
    db = track(new Database(file));
    db.pragma('foreign_keys = ON');
    migrate(db, [migration001]);
  });

  const addChat = (jid: string): void => {
    db.prepare(`INSERT INTO chats (jid, name, channel, is_group) VALUES (?, ?, 'local', 1)`).run(
      jid,
      jid,
    );
  };
  const addGroupRow = (jid: string, folder: string, name: string, isMain: 0 | 1): void => {
    addChat(jid);
    db.prepare(
      `INSERT INTO groups (jid, folder, name, trigger, is_main, created_at) VALUES (?, ?, ?, '@Andy', ?, 0)`,
    ).run(jid, folder, name, isMain);
  };

  it('sets user_version to 1 and creates every table the app relies on', () => {
    expect(userVersion(db)).toBe(1);
    expect(tableNames(db)).toEqual([
      'chats',
      'cursors',
      'groups',
      'messages',
      'outbox',
      'sessions',
      'settings',
      'usage',
    ]);
  });

  it('keeps a message unique per chat and id, while the same id may appear in another chat', () => {
    addChat('local:a');
    addChat('local:b');
    const insert = db.prepare(
      `INSERT INTO messages (chat_jid, id, sender, sender_name, text, timestamp) VALUES (?, ?, 's', 'S', 't', 1)`,
    );
    insert.run('local:a', 'm1');
    insert.run('local:b', 'm1');

    expect(() => insert.run('local:a', 'm1')).toThrow(
      /UNIQUE constraint failed: messages.chat_jid, messages.id/,
    );
    expect(db.prepare(`SELECT COUNT(*) AS n FROM messages`).get()).toEqual({ n: 2 });
  });

  it('allows at most one main group but any number of other groups', () => {
    addGroupRow('local:main', 'main', 'Main', 1);
    addGroupRow('local:a', 'a', 'A', 0);
    addGroupRow('local:b', 'b', 'B', 0);

    expect(() => addGroupRow('local:second-main', 'second', 'Second', 1)).toThrow(
      /UNIQUE constraint failed: groups.is_main/,
    );
    expect(db.prepare(`SELECT COUNT(*) AS n FROM groups WHERE is_main = 1`).get()).toEqual({
      n: 1,
    });
  });

  it('refuses two groups with the same folder', () => {
    addGroupRow('local:a', 'family', 'A', 0);

    expect(() => addGroupRow('local:b', 'family', 'B', 0)).toThrow(
      /UNIQUE constraint failed: groups.folder/,
    );
  });

  it('accepts only queued, sent and failed as outbox states', () => {
    addChat('local:a');
    const insert = db.prepare(
      `INSERT INTO outbox (chat_jid, text, state, created_at) VALUES ('local:a', 'hi', ?, 0)`,
    );
    for (const state of ['queued', 'sent', 'failed']) insert.run(state);

    expect(() => insert.run('delivered')).toThrow(/CHECK constraint failed/);
    expect(db.prepare(`SELECT state FROM outbox ORDER BY id`).all()).toEqual([
      { state: 'queued' },
      { state: 'sent' },
      { state: 'failed' },
    ]);
  });

  it('drops a group’s cursor and session with the group, but keeps its chat and messages', () => {
    addGroupRow('local:a', 'a', 'A', 0);
    db.prepare(
      `INSERT INTO messages (chat_jid, id, sender, sender_name, text, timestamp) VALUES ('local:a', 'm1', 's', 'S', 't', 1)`,
    ).run();
    db.prepare(`INSERT INTO cursors (group_jid, last_seq) VALUES ('local:a', 1)`).run();
    db.prepare(
      `INSERT INTO sessions (group_jid, session_ref, updated_at) VALUES ('local:a', 'sess', 0)`,
    ).run();

    db.prepare(`DELETE FROM groups WHERE jid = 'local:a'`).run();

    expect(db.prepare(`SELECT COUNT(*) AS n FROM cursors`).get()).toEqual({ n: 0 });
    expect(db.prepare(`SELECT COUNT(*) AS n FROM sessions`).get()).toEqual({ n: 0 });
    expect(db.prepare(`SELECT COUNT(*) AS n FROM messages`).get()).toEqual({ n: 1 });
    expect(db.prepare(`SELECT COUNT(*) AS n FROM chats`).get()).toEqual({ n: 1 });
  });
});

describe('migration 002 (case-insensitive group names, outbox worker state)', () => {
  let db: Db;

  const addGroupRow = (jid: string, folder: string, name: string): void => {
    db.prepare(`INSERT INTO chats (jid, name, channel, is_group) VALUES (?, ?, 'local', 1)`).run(
      jid,
      name,
    );
    db.prepare(
      `INSERT INTO groups (jid, folder, name, trigger, created_at) VALUES (?, ?, ?, '@Andy', 0)`,
    ).run(jid, folder, name);
  };

  beforeEach(() => {
    db = track(new Database(file));
    db.pragma('foreign_keys = ON');
    migrate(db, [migration001]);
  });

  it('renames groups whose names clash by case, keeping the oldest name, and then refuses such clashes', () => {
    addGroupRow('local:family', 'family', 'Family');
    addGroupRow('local:family-2', 'family-2', 'FAMILY');
    addGroupRow('local:work', 'work', 'Work');
    db.prepare(
      `INSERT INTO outbox (chat_jid, text, state, created_at) VALUES ('local:family', 'hi', 'queued', 1)`,
    ).run();

    migrate(db, [migration001, migration002]);

    expect(userVersion(db)).toBe(2);
    const names = db.prepare(`SELECT jid, name FROM groups ORDER BY rowid`).all();
    expect(names).toEqual([
      { jid: 'local:family', name: 'Family' },
      { jid: 'local:family-2', name: 'FAMILY (2)' },
      { jid: 'local:work', name: 'Work' },
    ]);
    expect(() => addGroupRow('local:work-2', 'work-2', 'wORK')).toThrow(/UNIQUE/);
    // Existing outbox rows get the new columns' defaults.
    expect(
      db.prepare(`SELECT kind, next_attempt_at, failed_at, attempts FROM outbox`).get(),
    ).toEqual({ kind: 'reply', next_attempt_at: null, failed_at: null, attempts: 0 });
  });

  it('accepts only reply and notice as outbox kinds', () => {
    migrate(db, [migration001, migration002]);
    addGroupRow('local:family', 'family', 'Family');
    const insert = (kind: string) =>
      db
        .prepare(
          `INSERT INTO outbox (chat_jid, text, kind, created_at) VALUES ('local:family', 'x', ?, 1)`,
        )
        .run(kind);
    expect(() => insert('notice')).not.toThrow();
    expect(() => insert('spam')).toThrow(/CHECK/);
  });
});

describe('a database from a newer Clawbar', () => {
  const futureVersion = MIGRATIONS.length + 3;

  beforeEach(() => {
    const store = openStore(file);
    store.upsertChat({
      jid: 'local:family',
      name: 'Family',
      channel: 'local',
      isGroup: true,
      lastActivity: null,
    });
    store.insertMessage({
      chatJid: 'local:family',
      id: 'm1',
      sender: 'local:alice',
      senderName: 'Alice',
      text: 'one',
      timestamp: 1,
    });
    store.insertMessage({
      chatJid: 'local:family',
      id: 'm2',
      sender: 'local:alice',
      senderName: 'Alice',
      text: 'two',
      timestamp: 2,
    });
    store.db.pragma(`user_version = ${futureVersion}`);
    store.close();
  });

  it('is refused with an error naming both versions, the file and what to do', () => {
    let error: unknown;
    try {
      track(openDatabase(file));
    } catch (err) {
      error = err;
    }

    expect(error).toBeInstanceOf(DatabaseFromTheFutureError);
    const future = error as DatabaseFromTheFutureError;
    expect(future.name).toBe('DatabaseFromTheFutureError');
    expect(future.dbVersion).toBe(futureVersion);
    expect(future.appVersion).toBe(MIGRATIONS.length);
    expect(future.message).toContain(file);
    expect(future.message).toContain(`schema version ${futureVersion}`);
    expect(future.message).toContain(`only knows up to ${MIGRATIONS.length}`);
    expect(future.message).toMatch(/upgrade Clawbar/);
    expect(future.message).toMatch(/CLAWBAR_HOME/);
  });

  it('is left untouched: same bytes, same user_version, every row still there', () => {
    const before = fs.readFileSync(file);

    expect(() => openStore(file)).toThrow(DatabaseFromTheFutureError);

    expect(fs.readFileSync(file).equals(before)).toBe(true);
    const raw = track(new Database(file, { readonly: true }));
    expect(userVersion(raw)).toBe(futureVersion);
    expect(raw.prepare(`SELECT text FROM messages ORDER BY seq`).all()).toEqual([
      { text: 'one' },
      { text: 'two' },
    ]);
  });

  it('is refused by migrate itself too, before any migration runs', () => {
    const raw = track(new Database(file));

    expect(() => migrate(raw, MIGRATIONS)).toThrow(DatabaseFromTheFutureError);
    expect(userVersion(raw)).toBe(futureVersion);
  });
});

describe('a migration that fails', () => {
  const broken: Migration = {
    version: MIGRATIONS.length + 1,
    name: 'broken on purpose',
    up: `
      CREATE TABLE half_made (id INTEGER PRIMARY KEY);
      INSERT INTO half_made (id) VALUES (1);
      INSERT INTO no_such_table (id) VALUES (1);
    `,
  };

  it('rolls back completely, keeps the previous version and names the migration', () => {
    const db = track(openDatabase(file));
    expect(userVersion(db)).toBe(MIGRATIONS.length);

    let error: unknown;
    try {
      migrate(db, [...MIGRATIONS, broken]);
    } catch (err) {
      error = err;
    }

    expect(error).toBeInstanceOf(MigrationError);
    expect((error as Error).message).toContain(
      `migration ${broken.version} (broken on purpose) failed`,
    );
    expect((error as Error).message).toContain('no such table: no_such_table');
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect(userVersion(db)).toBe(MIGRATIONS.length);
    expect(tableNames(db)).not.toContain('half_made');
    expect(db.inTransaction).toBe(false);
  });

  it('on a fresh file keeps the migrations before it, and a fixed list finishes the job later', () => {
    expect(() => openDatabase(file, [...MIGRATIONS, broken])).toThrow(MigrationError);

    const raw = track(new Database(file));
    expect(userVersion(raw)).toBe(MIGRATIONS.length);
    expect(tableNames(raw)).toContain('messages');
    expect(tableNames(raw)).not.toContain('half_made');
    raw.close();

    const fixed: Migration = { ...broken, up: 'CREATE TABLE half_made (id INTEGER PRIMARY KEY);' };
    const db = track(openDatabase(file, [...MIGRATIONS, fixed]));
    expect(userVersion(db)).toBe(MIGRATIONS.length + 1);
    expect(tableNames(db)).toContain('half_made');
  });
});

describe('checkMigrationList', () => {
  it('accepts the shipped list and an empty one', () => {
    expect(() => checkMigrationList(MIGRATIONS)).not.toThrow();
    expect(() => checkMigrationList([])).not.toThrow();
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, index) => index + 1));
  });

  it('rejects a gap in the versions', () => {
    expect(() => checkMigrationList([migration(1), migration(3, 'skips two')])).toThrow(
      /position 2 holds version 3 \(skips two\)/,
    );
  });

  it('rejects a repeated version', () => {
    expect(() => checkMigrationList([migration(1), migration(1, 'again')])).toThrow(MigrationError);
  });

  it('rejects versions out of order', () => {
    expect(() => checkMigrationList([migration(2), migration(1)])).toThrow(
      /position 1 holds version 2/,
    );
  });

  it('rejects a list that does not start at 1', () => {
    expect(() => checkMigrationList([migration(0)])).toThrow(MigrationError);
  });

  it('stops migrate before it touches the database', () => {
    const db = track(new Database(file));

    expect(() => migrate(db, [migration001, migration(3)])).toThrow(MigrationError);
    expect(userVersion(db)).toBe(0);
    expect(tableNames(db)).toEqual([]);
  });
});

/** Runs an ES module snippet in a separate Node process that can import the TypeScript sources. */
function runNodeScript(
  script: string,
  args: string[],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, ...args],
      {
        cwd: projectRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
