import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../main/core/config.js';
import { GroupAdmin } from '../../main/core/group-admin.js';
import { openStore, type Store } from '../../main/core/store/index.js';

describe('GroupAdmin', () => {
  let home: string;
  let store: Store;
  let admin: GroupAdmin;

  beforeEach(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-admin-'));
    const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
    store = openStore(config.dbPath);
    admin = new GroupAdmin({ store, config, now: () => 0 });
    admin.ensureLayout();
  });

  afterEach(() => {
    store.close();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it("keeps a removed group's folder, and never hands it to a new group", () => {
    const first = admin.add({ name: 'Family' });
    fs.writeFileSync(path.join(home, 'groups', first.folder, 'private.txt'), 'old chat');
    admin.remove('Family');
    expect(fs.existsSync(path.join(home, 'groups', 'family', 'private.txt'))).toBe(true);
    const second = admin.add({ name: 'Family' });
    expect(second.folder).toBe('family-2');
    expect(fs.existsSync(path.join(home, 'groups', 'family-2', 'private.txt'))).toBe(false);
  });

  it('makes no sessions folder, and leaves the one an older version made alone', () => {
    // The transcript lives in the database now; nothing mounts or reads <home>/sessions.
    expect(fs.existsSync(path.join(home, 'sessions'))).toBe(false);
    const old = path.join(home, 'sessions', 'family', 'transcript.json');
    fs.mkdirSync(path.dirname(old), { recursive: true });
    fs.writeFileSync(old, '[]');
    admin.ensureLayout();
    admin.add({ name: 'Family' });
    expect(fs.readFileSync(old, 'utf8')).toBe('[]');
  });

  it('never gives a group the global memory folder', () => {
    expect(admin.add({ name: 'Global' }).folder).not.toBe('global');
  });

  it('copies the memory template into a new group folder', () => {
    const main = admin.add({ name: 'Me', main: true });
    expect(fs.readFileSync(path.join(home, 'groups', main.folder, 'CLAUDE.md'), 'utf8')).toMatch(
      /^# Main group/,
    );
    expect(fs.readFileSync(path.join(home, 'groups', 'global', 'CLAUDE.md'), 'utf8')).toMatch(
      /^# Shared memory/,
    );
  });

  it.each([
    [{ name: '' }, /group name/],
    [{ name: 'a\u0007b' }, /control characters/],
    [{ name: 'Chat', jid: 'not-a-jid' }, /not a WhatsApp jid/],
    [{ name: 'Chat', trigger: 'two words' }, /trigger/],
  ])('refuses bad input %j with a clear error and stores nothing', (input, message) => {
    expect(() => admin.add(input)).toThrow(message);
    expect(store.listGroups()).toEqual([]);
  });

  it('refuses a second main group and a duplicate name, case-insensitively', () => {
    admin.add({ name: 'Me', main: true });
    expect(() => admin.add({ name: 'Other', main: true })).toThrow(/already a main group/);
    admin.add({ name: 'Family' });
    expect(() => admin.add({ name: 'FAMILY' })).toThrow(/already exists/);
  });
});
