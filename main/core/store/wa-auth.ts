/**
 * WhatsApp's authentication state (migration 004): the credentials row and the Signal keys.
 * Values are opaque text here (Baileys' BufferJSON); the WhatsApp channel serializes them.
 * Every write that touches more than one row is one transaction, so a crash or a throw never
 * leaves a half-written key set (a session without its pre-key, creds without their keys).
 */
import type { Db } from './database.js';

/** One key to write: `value` null deletes it. */
export interface WaAuthKeyWrite {
  type: string;
  id: string;
  /** Serialized value, or null to delete the key. */
  value: string | null;
}

export interface WaAuthQueries {
  /** The stored credentials text, or undefined before the first pairing. */
  readCreds(): string | undefined;
  writeCreds(value: string, now: number): void;
  /** The stored values of one key type, by id; missing ids are absent from the map. */
  readKeys(type: string, ids: readonly string[]): Map<string, string>;
  /**
   * Writes (or deletes, for a null value) every key in one transaction. `toWrite` is called
   * inside it, so a value that cannot be serialized rolls the whole set back.
   */
  writeKeys<T>(entries: Iterable<T>, toWrite: (entry: T) => WaAuthKeyWrite): void;
  /** Removes the credentials and every key, in one transaction (unlink). */
  clearAll(): void;
  /** How many keys are stored, per type: for `status` and tests. */
  keyCounts(): Record<string, number>;
}

export function waAuthQueries(db: Db): WaAuthQueries {
  const readCreds = db.prepare(`SELECT value FROM wa_auth_creds WHERE id = 1`);
  const writeCreds = db.prepare(`
    INSERT INTO wa_auth_creds (id, value, updated_at) VALUES (1, ?, ?)
    ON CONFLICT (id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`);
  const readKey = db.prepare(`SELECT value FROM wa_auth_keys WHERE type = ? AND id = ?`);
  const upsertKey = db.prepare(`
    INSERT INTO wa_auth_keys (type, id, value) VALUES (?, ?, ?)
    ON CONFLICT (type, id) DO UPDATE SET value = excluded.value`);
  const deleteKey = db.prepare(`DELETE FROM wa_auth_keys WHERE type = ? AND id = ?`);
  const deleteAllKeys = db.prepare(`DELETE FROM wa_auth_keys`);
  const deleteCreds = db.prepare(`DELETE FROM wa_auth_creds`);
  const counts = db.prepare(`SELECT type, COUNT(*) AS n FROM wa_auth_keys GROUP BY type`);

  const writeKeys = db.transaction(
    (entries: Iterable<unknown>, toWrite: (entry: unknown) => WaAuthKeyWrite) => {
      for (const entry of entries) {
        const { type, id, value } = toWrite(entry);
        if (value === null) deleteKey.run(type, id);
        else upsertKey.run(type, id, value);
      }
    },
  );
  const clearAll = db.transaction(() => {
    deleteAllKeys.run();
    deleteCreds.run();
  });

  return {
    readCreds() {
      return (readCreds.get() as { value: string } | undefined)?.value;
    },
    writeCreds(value, now) {
      writeCreds.run(value, now);
    },
    readKeys(type, ids) {
      const found = new Map<string, string>();
      for (const id of ids) {
        const row = readKey.get(type, id) as { value: string } | undefined;
        if (row) found.set(id, row.value);
      }
      return found;
    },
    writeKeys(entries, toWrite) {
      writeKeys(entries, toWrite as (entry: unknown) => WaAuthKeyWrite);
    },
    clearAll() {
      clearAll();
    },
    keyCounts() {
      const result: Record<string, number> = {};
      for (const row of counts.all() as { type: string; n: number }[]) result[row.type] = row.n;
      return result;
    },
  };
}
