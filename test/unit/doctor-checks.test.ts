/** The pure checks of `clawbar doctor`, on real files in temp dirs. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  checkClock,
  checkDataDir,
  checkDatabase,
  checkKey,
  checkTimeZone,
  formatDoctor,
} from '../../main/cli/doctor.js';
import { openStore } from '../../main/core/store/index.js';
import { MIGRATIONS } from '../../main/core/store/migrations/index.js';

let dir = '';
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-doctor-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('clock', () => {
  const built = Date.UTC(2026, 6, 1);
  it('passes a clock after the build time', () => {
    expect(checkClock(built + 1000, built)).toMatchObject({
      status: 'ok',
      detail: '2026-07-01 00:00:01 UTC',
    });
  });
  it('fails a clock reset to 1970, with how to set it', () => {
    expect(checkClock(0, built)).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('before this Clawbar was built (2026-07-01)'),
      fix: expect.stringContaining('network time'),
    });
  });
  it('allows a day of slack for a copied build, and fails a clock in the 22nd century', () => {
    expect(checkClock(built - 3_600_000, built).status).toBe('ok');
    expect(checkClock(Date.UTC(2150, 0, 1), built).status).toBe('fail');
  });
});

describe('time zone', () => {
  it('takes TZ over the setting, and says what it resolves to', () => {
    const { check, valid } = checkTimeZone({ TZ: 'Asia/Tokyo' }, () => 'Europe/Paris');
    expect(valid).toBe(true);
    expect(check).toMatchObject({ status: 'ok', detail: 'Asia/Tokyo (GMT+09:00, from TZ)' });
  });
  it('reads the setting when TZ is unset, and fails an unknown zone there too', () => {
    expect(checkTimeZone({}, () => 'Narnia/Cair').check).toMatchObject({
      status: 'fail',
      detail: '"Narnia/Cair" (from the timezone setting) is not a known time zone',
    });
  });
});

describe('data dir', () => {
  it('passes a missing dir (first run) and a private one; fails an open one with chmod', () => {
    expect(checkDataDir(path.join(dir, 'none')).status).toBe('ok');
    fs.chmodSync(dir, 0o700);
    expect(checkDataDir(dir).status).toBe('ok');
    fs.chmodSync(dir, 0o750);
    expect(checkDataDir(dir)).toMatchObject({ status: 'fail', fix: `run chmod 700 ${dir}` });
  });
  it('fails a file where the dir should be', () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    expect(checkDataDir(file)).toMatchObject({
      status: 'fail',
      detail: `${file} is not a directory`,
    });
  });
});

describe('database', () => {
  it('passes a current database and hands out its settings, read-only', () => {
    const file = path.join(dir, 'clawbar.db');
    const store = openStore(file);
    store.db.prepare(`INSERT INTO settings (key, value) VALUES ('image', 'mine:1')`).run();
    store.close();
    const before = fs.statSync(file).mtimeMs;
    const { check, setting } = checkDatabase(file);
    expect(check).toMatchObject({ status: 'ok', detail: `${file} (schema current)` });
    expect(setting('image')).toBe('mine:1');
    expect(fs.statSync(file).mtimeMs).toBe(before);
  });
  it('fails a database from a newer Clawbar, and a file that is not a database', () => {
    const future = path.join(dir, 'future.db');
    const db = new Database(future);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(checkDatabase(future).check).toMatchObject({
      status: 'fail',
      fix: expect.stringContaining('upgrade Clawbar'),
    });
    const junk = path.join(dir, 'junk.db');
    fs.writeFileSync(
      junk,
      'this is not sqlite at all, just some text that is long enough'.repeat(20),
    );
    expect(checkDatabase(junk).check.status).toBe('fail');
  });
});

describe('api key', () => {
  it('never shows the key, and fails one with whitespace', () => {
    const key = 'sk-ant-secret-value';
    const check = checkKey(
      { apiKey: key, baseURL: 'http://127.0.0.1:9999' },
      { ANTHROPIC_API_KEY: key },
    );
    expect(check).toEqual({
      name: 'api key',
      status: 'ok',
      detail: 'set (from ANTHROPIC_API_KEY, for 127.0.0.1:9999)',
    });
    expect(formatDoctor([check])).not.toContain('secret');
    expect(checkKey({ apiKey: 'sk-ant x', baseURL: undefined }, {}).status).toBe('fail');
    expect(checkKey({ apiKey: undefined, baseURL: undefined }, {}).status).toBe('fail');
  });
});
