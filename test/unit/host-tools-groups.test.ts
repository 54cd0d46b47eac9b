/**
 * register_group and unregister_group over a real SQLite store and the real GroupAdmin. Each
 * rule is tested allowed and refused: only the main group may call them, whatever the payload.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostTools, type RunBinding } from '../../main/core/agent/host-tools.js';
import { loadConfig } from '../../main/core/config.js';
import { GroupAdmin } from '../../main/core/group-admin.js';
import { formatOutbound } from '../../main/core/router.js';
import { openStore, type Group, type Store } from '../../main/core/store/index.js';

const WA_CHAT = '120363012345678901@g.us';
const OTHER_CHAT = '120363099999999999@g.us';

let home: string;
let store: Store;
let admin: GroupAdmin;
let tools: HostTools;
let logged: Array<Record<string, unknown>>;
let main: Group;
let family: Group;

const bindingOf = (group: Group): RunBinding => ({
  groupJid: group.jid,
  chatJid: group.jid,
  folder: group.folder,
  isMain: group.isMain,
  turnId: `turn-${group.folder}`,
});

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-host-groups-'));
  const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
  store = openStore(config.dbPath);
  admin = new GroupAdmin({ store, config, now: () => 0 });
  admin.ensureLayout();
  main = admin.add({ name: 'Owner', main: true });
  family = admin.add({ name: 'Family' });
  store.upsertChat({
    jid: WA_CHAT,
    name: 'Book club\u202e',
    channel: 'whatsapp',
    isGroup: true,
    lastActivity: 1,
  });
  logged = [];
  tools = new HostTools({
    store,
    outbox: { notify: () => undefined, whenSettled: async () => 'sent' },
    formatOutbound,
    now: () => 0,
    log: pino(
      { level: 'info' },
      { write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>) },
    ),
    groups: { add: (input) => admin.add(input), remove: (ref) => admin.remove(ref) },
  });
});

afterEach(() => {
  store.close();
  fs.rmSync(home, { recursive: true, force: true });
});

const denials = () =>
  logged.filter((line) => line.level === 40 && String(line.msg).startsWith('denied: '));

describe('register_group', () => {
  it('lets the main group enable a known WhatsApp chat, named after the chat', async () => {
    const answer = await tools.call(bindingOf(main), 'register_group', { chat_jid: WA_CHAT });
    expect(answer.ok).toBe(true);
    const group = store.getGroup(WA_CHAT);
    // The chat's name came from strangers: its bidi override is gone.
    expect(group).toMatchObject({ name: 'Book club', isMain: false, requiresTrigger: true });
    expect(answer.result).toBe(
      `Registered Book club (${WA_CHAT}) as a group, folder ${group?.folder}; messages starting with @Andy wake the assistant.`,
    );
    expect(denials()).toEqual([]);
  });

  it('takes a name, trigger and requires_trigger from the main group', async () => {
    const answer = await tools.call(bindingOf(main), 'register_group', {
      chat_jid: WA_CHAT,
      name: 'Books',
      trigger: '@Bot',
      requires_trigger: false,
    });
    expect(answer.ok).toBe(true);
    expect(store.getGroup(WA_CHAT)).toMatchObject({
      name: 'Books',
      trigger: '@Bot',
      requiresTrigger: false,
    });
  });

  it('refuses a non-main group, logs it, and registers nothing', async () => {
    const answer = await tools.call(bindingOf(family), 'register_group', { chat_jid: WA_CHAT });
    expect(answer).toEqual({
      ok: false,
      result: 'not allowed: only the main group may register a group',
    });
    expect(store.getGroup(WA_CHAT)).toBeUndefined();
    expect(denials()).toHaveLength(1);
  });

  it('refuses a payload that claims to make the group main, or names its own authority', async () => {
    for (const extra of [{ is_main: true }, { main: true }, { isMain: true }]) {
      const answer = await tools.call(bindingOf(main), 'register_group', {
        chat_jid: WA_CHAT,
        ...extra,
      });
      expect(answer.ok).toBe(false);
      expect(answer.result).toMatch(/^bad arguments for register_group/);
    }
    expect(store.getGroup(WA_CHAT)).toBeUndefined();
  });

  it('answers with the fix for an unknown chat, a local chat, or a chat already enabled', async () => {
    const unknown = await tools.call(bindingOf(main), 'register_group', { chat_jid: OTHER_CHAT });
    expect(unknown.result).toContain('list_chats shows the chats');
    const local = await tools.call(bindingOf(main), 'register_group', { chat_jid: family.jid });
    expect(local.result).toContain('local-chat groups are added with `clawbar groups add`');
    expect((await tools.call(bindingOf(main), 'register_group', { chat_jid: WA_CHAT })).ok).toBe(
      true,
    );
    const again = await tools.call(bindingOf(main), 'register_group', {
      chat_jid: WA_CHAT,
      name: 'Other name',
    });
    expect(again).toEqual({ ok: false, result: `the chat ${WA_CHAT} is already a group` });
    expect([unknown.ok, local.ok]).toEqual([false, false]);
  });
});

describe('unregister_group', () => {
  it('lets the main group disable another group, keeping its folder', async () => {
    const answer = await tools.call(bindingOf(main), 'unregister_group', {
      group_folder: 'family',
    });
    expect(answer.ok).toBe(true);
    expect(answer.result).toContain('Unregistered Family (folder family)');
    expect(store.getGroup(family.jid)).toBeUndefined();
    expect(fs.existsSync(path.join(home, 'groups', 'family'))).toBe(true);
  });

  it('refuses a non-main group, even for itself, and logs it', async () => {
    const answer = await tools.call(bindingOf(family), 'unregister_group', {
      group_folder: 'family',
    });
    expect(answer).toEqual({
      ok: false,
      result: 'not allowed: only the main group may unregister a group',
    });
    expect(store.getGroup(family.jid)).toBeDefined();
    expect(denials()).toHaveLength(1);
  });

  it('refuses to unregister the main group itself, and answers an unknown folder', async () => {
    const self = await tools.call(bindingOf(main), 'unregister_group', { group_folder: 'owner' });
    expect(self.ok).toBe(false);
    expect(self.result).toContain('the main group cannot unregister itself');
    expect(store.getGroup(main.jid)).toBeDefined();
    const unknown = await tools.call(bindingOf(main), 'unregister_group', {
      group_folder: 'nobody',
    });
    expect(unknown).toMatchObject({ ok: false });
    expect(unknown.result).toContain('no registered group has the folder "nobody"');
  });
});

it('says so when the host offers no group management', async () => {
  const bare = new HostTools({
    store,
    outbox: { notify: () => undefined, whenSettled: async () => 'sent' },
    formatOutbound,
    now: () => 0,
    log: pino({ level: 'silent' }),
  });
  expect(await bare.call(bindingOf(main), 'unregister_group', { group_folder: 'family' })).toEqual({
    ok: false,
    result: 'managing groups is not available on this host',
  });
});
