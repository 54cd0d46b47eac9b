/** Migration 008: outbox items carry files, described completely or not at all. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate, type Db } from '../../main/core/store/database.js';
import { openStore } from '../../main/core/store/index.js';
import { MIGRATIONS } from '../../main/core/store/migrations/index.js';

let dir: string;
let file: string;
let db: Db;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-migration-008-'));
  file = path.join(dir, 'clawbar.db');
  db = new Database(file);
  db.pragma('foreign_keys = ON');
  migrate(db, MIGRATIONS.slice(0, 7));
  db.prepare(
    `INSERT INTO chats (jid, name, channel, is_group) VALUES ('local:family', 'Family', 'local', 1)`,
  ).run();
});

afterEach(() => {
  if (db.open) db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const insertFile = (columns: Record<string, unknown>) =>
  db
    .prepare(
      `INSERT INTO outbox (chat_jid, text, state, created_at, file_path, file_name, file_mimetype, file_kind, file_bytes)
       VALUES ('local:family', '', 'queued', 1, @file_path, @file_name, @file_mimetype, @file_kind, @file_bytes)`,
    )
    .run({
      file_path: '/h/outbox-files/staged/x',
      file_name: 'r.pdf',
      file_mimetype: 'application/pdf',
      file_kind: 'document',
      file_bytes: 10,
      ...columns,
    });

describe('migration 008 (outbox files)', () => {
  it('keeps queued items as they were: text replies with no file', () => {
    db.prepare(
      `INSERT INTO outbox (chat_jid, text, state, created_at) VALUES ('local:family', 'hi', 'queued', 1)`,
    ).run();
    migrate(db, MIGRATIONS.slice(0, 8));
    expect(db.pragma('user_version', { simple: true })).toBe(8);
    db.close();
    const store = openStore(file);
    try {
      expect(store.queuedOutbox()).toEqual([
        expect.objectContaining({ text: 'hi', attachment: null }),
      ]);
    } finally {
      store.close();
    }
  });

  it('accepts a file described completely, and refuses a partial one, an unknown kind or no bytes', () => {
    migrate(db, MIGRATIONS.slice(0, 8));
    expect(() => insertFile({})).not.toThrow();
    expect(() => insertFile({ file_mimetype: null })).toThrow(/every file column, or none/);
    expect(() => insertFile({ file_kind: 'video' })).toThrow(/CHECK/);
    expect(() => insertFile({ file_bytes: 0 })).toThrow(/CHECK/);
  });
});
