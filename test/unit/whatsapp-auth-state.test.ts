import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Curve, proto, type SignalDataTypeMap } from '@whiskeysockets/baileys';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuthStateCorruptError,
  SqliteAuthState,
} from '../../main/core/channels/whatsapp/auth-state.js';
import { openStore, type Store } from '../../main/core/store/index.js';
import { migration004 } from '../../main/core/store/migrations/004-whatsapp-auth.js';
import { MIGRATIONS } from '../../main/core/store/migrations/index.js';

let dir: string;
let file: string;
const opened: Store[] = [];

function open(): Store {
  const store = openStore(file);
  opened.push(store);
  return store;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-wa-auth-'));
  file = path.join(dir, 'clawbar.db');
});

afterEach(() => {
  for (const store of opened.splice(0)) if (store.db.open) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('migration 004', () => {
  it('is registered as version 4 and creates the creds and keys tables', () => {
    expect(MIGRATIONS[3]).toBe(migration004);
    const store = open();
    const tables = (
      store.db
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'wa_auth%'`)
        .all() as { name: string }[]
    ).map((row) => row.name);
    expect(tables.sort()).toEqual(['wa_auth_creds', 'wa_auth_keys']);
  });
});

describe('WhatsApp auth state in SQLite', () => {
  it('starts with fresh, unregistered credentials and stores nothing until saved', () => {
    const auth = new SqliteAuthState(open().db);
    const { state } = auth.load();
    expect(state.creds.noiseKey.private).toBeInstanceOf(Uint8Array);
    expect(state.creds.me).toBeUndefined();
    expect(auth.hasCreds()).toBe(false);
    expect(auth.isRegistered()).toBe(false);
  });

  it('keeps credentials, Buffers intact, across closing and reopening the file', () => {
    const first = new SqliteAuthState(open().db);
    const loaded = first.load();
    loaded.state.creds.me = { id: '15550001111:3@s.whatsapp.net', name: 'Me' };
    loaded.state.creds.routingInfo = Buffer.from([1, 2, 3, 250]);
    loaded.saveCreds();
    const noisePrivate = Buffer.from(loaded.state.creds.noiseKey.private);
    const identityPublic = Buffer.from(loaded.state.creds.signedIdentityKey.public);
    opened[0]!.close();

    const again = new SqliteAuthState(open().db);
    expect(again.isRegistered()).toBe(true);
    const creds = again.load().state.creds;
    expect(Buffer.isBuffer(creds.noiseKey.private)).toBe(true);
    expect(Buffer.from(creds.noiseKey.private).equals(noisePrivate)).toBe(true);
    expect(Buffer.from(creds.signedIdentityKey.public).equals(identityPublic)).toBe(true);
    expect(creds.routingInfo?.equals(Buffer.from([1, 2, 3, 250]))).toBe(true);
    expect(creds.me?.id).toBe('15550001111:3@s.whatsapp.net');
    expect(creds.registrationId).toBe(loaded.state.creds.registrationId);
  });

  it('keeps keys of several types across a reopen, each read back as Baileys expects', async () => {
    const preKey = Curve.generateKeyPair();
    const session = new Uint8Array([9, 8, 7, 6]);
    const syncKey: SignalDataTypeMap['app-state-sync-key'] = {
      keyData: new Uint8Array([1, 1, 2, 3, 5, 8]),
      timestamp: 1_700_000_000,
    };
    const first = new SqliteAuthState(open().db);
    await first.load().state.keys.set({
      'pre-key': { '1': preKey },
      session: { '15550002222.0': session },
      'app-state-sync-key': { AAAA: syncKey },
      'lid-mapping': { '15550002222': '99990000@lid' },
      'device-list': { '15550002222': ['0', '2'] },
      'sender-key-memory': { '123@g.us': { '15550002222@s.whatsapp.net': true } },
    });
    opened[0]!.close();

    const keys = new SqliteAuthState(open().db).load().state.keys;
    const preKeys = await keys.get('pre-key', ['1', '2']);
    expect(Object.keys(preKeys)).toEqual(['1']);
    expect(Buffer.from(preKeys['1']!.private).equals(Buffer.from(preKey.private))).toBe(true);
    expect(Buffer.from(preKeys['1']!.public).equals(Buffer.from(preKey.public))).toBe(true);
    const sessions = await keys.get('session', ['15550002222.0']);
    expect(Buffer.from(sessions['15550002222.0']!).equals(Buffer.from(session))).toBe(true);
    const sync = (await keys.get('app-state-sync-key', ['AAAA']))['AAAA'];
    expect(sync).toBeInstanceOf(proto.Message.AppStateSyncKeyData);
    expect(Buffer.from(sync!.keyData!).equals(Buffer.from([1, 1, 2, 3, 5, 8]))).toBe(true);
    expect(await keys.get('lid-mapping', ['15550002222'])).toEqual({
      '15550002222': '99990000@lid',
    });
    expect(await keys.get('device-list', ['15550002222'])).toEqual({ '15550002222': ['0', '2'] });
    expect(await keys.get('sender-key-memory', ['123@g.us'])).toEqual({
      '123@g.us': { '15550002222@s.whatsapp.net': true },
    });
  });

  it('deletes a key set to null and leaves the others', async () => {
    const auth = new SqliteAuthState(open().db);
    const { keys } = auth.load().state;
    await keys.set({ session: { a: new Uint8Array([1]), b: new Uint8Array([2]) } });
    await keys.set({ session: { a: null } });
    expect(Object.keys(await keys.get('session', ['a', 'b']))).toEqual(['b']);
    expect(auth.keyCounts()).toEqual({ session: 1 });
  });

  it('writes nothing of a key set when one value in it cannot be stored', async () => {
    const auth = new SqliteAuthState(open().db);
    const { keys } = auth.load().state;
    await keys.set({ session: { old: new Uint8Array([1]) } });
    // A BigInt cannot be serialized: the throw comes after `a` was written in the transaction.
    const unstorable = { oops: 10n } as unknown as Uint8Array;
    await expect(
      Promise.resolve().then(() =>
        keys.set({
          session: { a: new Uint8Array([2]), old: null },
          'sender-key': { bad: unstorable },
        }),
      ),
    ).rejects.toThrow(/BigInt/);
    expect(Object.keys(await keys.get('session', ['a', 'old']))).toEqual(['old']);
    expect(auth.keyCounts()).toEqual({ session: 1 });
  });

  it('clears the credentials and every key, so the next load pairs anew', async () => {
    const auth = new SqliteAuthState(open().db);
    const loaded = auth.load();
    loaded.state.creds.me = { id: '15550001111:3@s.whatsapp.net' };
    loaded.saveCreds();
    await loaded.state.keys.set({
      session: { a: new Uint8Array([1]) },
      'pre-key': { '1': Curve.generateKeyPair() },
    });
    auth.clear();
    expect(auth.hasCreds()).toBe(false);
    expect(auth.keyCounts()).toEqual({});
    const fresh = auth.load().state.creds;
    expect(fresh.me).toBeUndefined();
    expect(
      Buffer.from(fresh.noiseKey.private).equals(Buffer.from(loaded.state.creds.noiseKey.private)),
    ).toBe(false);
  });

  it('says how to recover when the stored credentials are not what Baileys wrote', () => {
    const store = open();
    store.db.prepare(`INSERT INTO wa_auth_creds (id, value, updated_at) VALUES (1, '{', 0)`).run();
    const auth = new SqliteAuthState(store.db);
    expect(() => auth.load()).toThrow(AuthStateCorruptError);
    expect(() => auth.load()).toThrow(/clawbar pair/);
  });
});
