/**
 * Baileys' authentication state, kept in Clawbar's SQLite database (migration 004) instead of
 * Baileys' `useMultiFileAuthState`, which its authors say not to use in production: it writes
 * one file per key with no transaction, so a crash mid-update can leave a session without its
 * keys. Here the credentials are one row, each `keys.set` is one transaction, and unlinking
 * wipes both in one transaction.
 *
 * Values are serialized with Baileys' own `BufferJSON` replacer and reviver, so the Buffers and
 * Uint8Arrays inside keys survive the round trip.
 */
import {
  BufferJSON,
  initAuthCreds,
  proto,
  type AuthenticationCreds,
  type AuthenticationState,
  type SignalDataSet,
  type SignalDataTypeMap,
  type SignalKeyStore,
} from '@whiskeysockets/baileys';
import type { Db } from '../../store/database.js';
import { waAuthQueries, type WaAuthQueries } from '../../store/wa-auth.js';

/** The stored state could not be read back: the row is not what Baileys wrote. */
export class AuthStateCorruptError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AuthStateCorruptError';
  }
}

export function serializeAuthValue(value: unknown): string {
  return JSON.stringify(value, BufferJSON.replacer);
}

export function deserializeAuthValue(text: string): unknown {
  return JSON.parse(text, BufferJSON.reviver);
}

/** The auth state of one socket, and how to persist it. */
export interface LoadedAuthState {
  state: AuthenticationState;
  /** Writes `state.creds` as it is now. Call it on every `creds.update`. */
  saveCreds(): void;
}

/** WhatsApp's authentication state in the database. One per channel. */
export class SqliteAuthState {
  private readonly queries: WaAuthQueries;

  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.queries = waAuthQueries(db);
  }

  /** Whether credentials are stored, i.e. the account was paired (or pairing began). */
  hasCreds(): boolean {
    return this.queries.readCreds() !== undefined;
  }

  /** Whether the stored credentials belong to a paired account (not just pairing keys). */
  isRegistered(): boolean {
    const creds = this.readCreds();
    return creds?.me?.id !== undefined && creds.me.id !== '';
  }

  /**
   * The state for a new socket: the stored credentials, or fresh ones (which need pairing)
   * when there are none. Each call reads the database again, so a socket made after
   * {@link clear} starts from fresh credentials.
   *
   * @throws {AuthStateCorruptError} when the stored credentials cannot be parsed
   */
  load(): LoadedAuthState {
    const creds = this.readCreds() ?? initAuthCreds();
    const keys: SignalKeyStore = {
      get: (type, ids) => this.getKeys(type, ids),
      set: (data) => this.setKeys(data),
      // No `clear`: wiping is `SqliteAuthState.clear`, creds and keys together, never keys alone.
    };
    return {
      state: { creds, keys },
      saveCreds: () => this.queries.writeCreds(serializeAuthValue(creds), this.now()),
    };
  }

  /** Wipes the credentials and every key, in one transaction. The next {@link load} pairs anew. */
  clear(): void {
    this.queries.clearAll();
  }

  /** How many keys are stored, per type. */
  keyCounts(): Record<string, number> {
    return this.queries.keyCounts();
  }

  private readCreds(): AuthenticationCreds | undefined {
    const text = this.queries.readCreds();
    if (text === undefined) return undefined;
    try {
      const value = deserializeAuthValue(text);
      if (typeof value !== 'object' || value === null || !('noiseKey' in value)) {
        throw new Error('the stored value is not a credentials object');
      }
      return value as AuthenticationCreds;
    } catch (err) {
      throw new AuthStateCorruptError(
        `WhatsApp credentials in the database cannot be read (${(err as Error).message}); ` +
          'run `clawbar pair` to unlink and pair again',
        { cause: err },
      );
    }
  }

  private getKeys<T extends keyof SignalDataTypeMap>(
    type: T,
    ids: string[],
  ): { [id: string]: SignalDataTypeMap[T] } {
    const found: { [id: string]: SignalDataTypeMap[T] } = {};
    for (const [id, text] of this.queries.readKeys(type, ids)) {
      let value: unknown;
      try {
        value = deserializeAuthValue(text);
      } catch {
        // One unreadable key must not take the socket down: Baileys treats a missing key as
        // "ask for it again" (a new session, a re-sent sender key).
        continue;
      }
      if (type === 'app-state-sync-key' && value) {
        // Baileys reads these as protobuf objects, not plain JSON.
        value = proto.Message.AppStateSyncKeyData.fromObject(value as Record<string, unknown>);
      }
      found[id] = value as SignalDataTypeMap[T];
    }
    return found;
  }

  private setKeys(data: SignalDataSet): void {
    const entries: { type: string; id: string; value: unknown }[] = [];
    for (const [type, byId] of Object.entries(data)) {
      for (const [id, value] of Object.entries(byId ?? {})) entries.push({ type, id, value });
    }
    this.queries.writeKeys(entries, ({ type, id, value }) => ({
      type,
      id,
      value: value === null || value === undefined ? null : serializeAuthValue(value),
    }));
  }
}
