/**
 * What the host keeps in `$CLAWBAR_HOME` is private (issue 6): the home and `logs/` are 0700,
 * the database with its `-wal`/`-shm` files and the control socket are 0600, whatever the
 * umask, and an existing home that is looser is closed with a log line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { bootCore } from '../../main/core/boot.js';
import { ensurePrivateHome } from '../../main/core/config.js';
import type { ControlHandlers } from '../../main/core/control/handlers.js';
import { ControlServer } from '../../main/core/control/server.js';
import { silentLogger } from '../../main/core/logger.js';
import { openDatabase } from '../../main/core/store/database.js';

let base: string;

beforeEach(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-private-')));
});

afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

function modeOf(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

/** Runs `body` with the process umask set to `mask`, then restores it. */
async function withUmask<T>(mask: number, body: () => T | Promise<T>): Promise<T> {
  const previous = process.umask(mask);
  try {
    return await body();
  } finally {
    process.umask(previous);
  }
}

describe('the database file', () => {
  it('is created 0600 with its -wal and -shm, even under a permissive umask', async () => {
    const file = path.join(base, 'home', 'clawbar.db');
    const db = await withUmask(0o000, () => openDatabase(file));
    try {
      db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
      for (const p of [file, `${file}-wal`, `${file}-shm`])
        expect([p, modeOf(p)]).toEqual([p, 0o600]);
      expect(modeOf(path.dirname(file))).toBe(0o700);
    } finally {
      db.close();
    }
  });

  it('is closed to 0600 when an older one was looser, with its side files', () => {
    const file = path.join(base, 'clawbar.db');
    openDatabase(file).close();
    // A database an older Clawbar left open to others, with side files of a crash.
    for (const p of [file, `${file}-wal`, `${file}-shm`]) {
      fs.writeFileSync(p, '', { flag: 'a' });
      fs.chmodSync(p, 0o644);
    }
    const db = openDatabase(file);
    try {
      for (const p of [file, `${file}-wal`, `${file}-shm`])
        expect([p, modeOf(p)]).toEqual([p, 0o600]);
    } finally {
      db.close();
    }
  });
});

describe('ensurePrivateHome', () => {
  it('creates the home and logs/ 0700 whatever the umask, and reports nothing', async () => {
    const home = path.join(base, 'new-home');
    const tightened = await withUmask(0o000, () => ensurePrivateHome(home));
    expect(tightened).toEqual([]);
    expect(modeOf(home)).toBe(0o700);
    expect(modeOf(path.join(home, 'logs'))).toBe(0o700);
  });

  it('closes a home and logs/ that others could read, and says what they were', () => {
    const home = path.join(base, 'open-home');
    fs.mkdirSync(path.join(home, 'logs'), { recursive: true });
    fs.chmodSync(home, 0o755);
    fs.chmodSync(path.join(home, 'logs'), 0o777);
    expect(ensurePrivateHome(home)).toEqual([
      { dir: home, was: 0o755 },
      { dir: path.join(home, 'logs'), was: 0o777 },
    ]);
    expect(modeOf(home)).toBe(0o700);
    expect(modeOf(path.join(home, 'logs'))).toBe(0o700);
    expect(ensurePrivateHome(home)).toEqual([]);
  });

  it('does not chmod what a logs link points at', () => {
    const home = path.join(base, 'home');
    const elsewhere = path.join(base, 'elsewhere');
    fs.mkdirSync(home, { mode: 0o700 });
    fs.mkdirSync(elsewhere, { mode: 0o755 });
    fs.chmodSync(elsewhere, 0o755);
    fs.symlinkSync(elsewhere, path.join(home, 'logs'));
    expect(() => ensurePrivateHome(home)).toThrow(/logs is not a directory/);
    expect(modeOf(elsewhere)).toBe(0o755);
  });
});

describe('bootCore', () => {
  it('makes an open home private before it writes there, and logs that it did', async () => {
    const home = path.join(base, 'home');
    fs.mkdirSync(home, { mode: 0o755 });
    fs.chmodSync(home, 0o755);
    const lines: string[] = [];
    const log = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          lines.push(chunk.toString('utf8'));
          callback();
        },
      }),
    );
    const booted = bootCore({ env: { CLAWBAR_HOME: home }, dispatch: false, log });
    try {
      expect(modeOf(home)).toBe(0o700);
      expect(modeOf(path.join(home, 'clawbar.db'))).toBe(0o600);
      const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(warnings).toContainEqual(
        expect.objectContaining({
          dir: home,
          was: '755',
          msg: 'data directory was open to other users; made it 0700',
        }),
      );
    } finally {
      await booted.close(1000);
    }
  });
});

describe('the control socket', () => {
  it('is 0600 under a permissive umask, and the umask is back as it was once listen returns', async () => {
    const socketPath = path.join(base, 'clawbar.sock');
    const server = new ControlServer(socketPath, {} as ControlHandlers, silentLogger());
    await withUmask(0o002, async () => {
      await server.listen();
      // Reading the umask means setting it; set it to what it should already be.
      expect(process.umask(0o002)).toBe(0o002);
    });
    try {
      expect(fs.statSync(socketPath).isSocket()).toBe(true);
      expect(modeOf(socketPath)).toBe(0o600);
    } finally {
      await server.close();
    }
  });
});
