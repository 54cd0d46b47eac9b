/**
 * The sender allowlist per group: migration 005 over an existing database, the store's round
 * trip, the normalization of what the CLI is given, the router's rule, and a real Core where a
 * trigger from someone not on the list is stored but starts no run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { InboundMessage } from '../../main/core/channels/channel.js';
import { normalizeSenderEntry } from '../../main/core/group-admin.js';
import { hasPendingTrigger, isTriggerMessage, senderKey } from '../../main/core/router.js';
import { migrate } from '../../main/core/store/database.js';
import { DEFAULT_GROUP_SETTINGS, openStore, type Group } from '../../main/core/store/index.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { scriptedRunner } from '../helpers/scripted-runner.js';
import { tempStore } from '../helpers/store.js';
import { processCore, startUnitCore } from '../helpers/unit-core.js';
import { MIGRATIONS } from '../../main/core/store/migrations/index.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-senders-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const WA_GROUP = '120363012345678901@g.us';
const ALICE = '15551234567@s.whatsapp.net';
const BOB = '4915123456789@s.whatsapp.net';

describe('migration 005 (sender allowlist)', () => {
  it('adds an empty policy (anyone) to the groups of an existing database, and keeps them', () => {
    const file = path.join(tempDir(), 'clawbar.db');
    const db = new Database(file);
    db.pragma('foreign_keys = ON');
    migrate(db, MIGRATIONS.slice(0, 4));
    db.prepare(
      `INSERT INTO chats (jid, name, channel, is_group) VALUES (?, 'Family', 'local', 1)`,
    ).run('local:family');
    db.prepare(
      `INSERT INTO groups (jid, folder, name, trigger, is_main, created_at) VALUES ('local:family', 'family', 'Family', '@Andy', 1, 7)`,
    ).run();
    db.close();

    const store = openStore(file);
    cleanups.push(() => store.close());
    // Migrated to the newest version (005 and whatever came after it).
    expect(store.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(store.getGroup('local:family')).toMatchObject({
      name: 'Family',
      isMain: true,
      createdAt: 7,
      allowedSenders: null,
    });
    // The column holds a JSON array or nothing.
    expect(() => store.db.prepare(`UPDATE groups SET allowed_senders = '{"a":1}'`).run()).toThrow(
      /CHECK/,
    );
  });
});

describe('the store', () => {
  it('round-trips an allowlist, drops duplicates, and clears it back to anyone', () => {
    const t = tempStore('clawbar-senders-store-');
    cleanups.push(() => t.close());
    expect(t.family.allowedSenders).toBeNull();

    expect(t.store.setAllowedSenders(t.family.jid, [ALICE, BOB, ALICE])).toBe(true);
    expect(t.store.getGroup(t.family.jid)?.allowedSenders).toEqual([ALICE, BOB]);
    expect(t.store.listGroups()[0]?.allowedSenders).toEqual([ALICE, BOB]);

    t.store.setAllowedSenders(t.family.jid, []);
    expect(t.store.findGroup('family')?.allowedSenders).toEqual([]);

    t.store.setAllowedSenders(t.family.jid, null);
    expect(t.store.getGroup(t.family.jid)?.allowedSenders).toBeNull();
    expect(t.store.setAllowedSenders('local:nobody', [ALICE])).toBe(false);
  });
});

describe('normalizing what the user gives', () => {
  const wa = { jid: WA_GROUP };
  it('turns phone numbers as people write them, and jids with a device, into phone jids', () => {
    expect(normalizeSenderEntry(wa, '+1 555 123 4567')).toBe(ALICE);
    expect(normalizeSenderEntry(wa, '(1) 555-123.4567')).toBe(ALICE);
    expect(normalizeSenderEntry(wa, '15551234567:12@s.whatsapp.net')).toBe(ALICE);
    expect(normalizeSenderEntry(wa, '15551234567@c.us')).toBe(ALICE);
    expect(normalizeSenderEntry(wa, ' 98765432109876@lid ')).toBe('98765432109876@lid');
  });

  it('refuses what is neither a phone number nor a user jid, saying what would do', () => {
    expect(() => normalizeSenderEntry(wa, 'alice')).toThrow(
      /"alice" is neither a phone number \(like \+1 555 123 4567\) nor a WhatsApp jid/,
    );
    expect(() => normalizeSenderEntry(wa, WA_GROUP)).toThrow(/a group's jid, not a person's/);
    expect(() => normalizeSenderEntry(wa, 'x@example.com')).toThrow(/not a WhatsApp user jid/);
    expect(() => normalizeSenderEntry(wa, '+1 555')).toThrow(/8 to 15 digits/);
  });

  it('takes names in a local-chat group, since its senders are `send --from` names', () => {
    expect(normalizeSenderEntry({ jid: 'local:family' }, ' Alice ')).toBe('Alice');
    expect(() => normalizeSenderEntry({ jid: 'local:family' }, 'a<b')).toThrow(/not a sender name/);
  });

  it('compares message senders without their device suffix', () => {
    expect(senderKey('15551234567:3@s.whatsapp.net')).toBe(ALICE);
    expect(senderKey('local:alice')).toBe('local:alice');
  });
});

describe('the router', () => {
  const group = (over: Partial<Group> = {}): Group => ({
    jid: WA_GROUP,
    folder: 'team',
    name: 'Team',
    trigger: '@Andy',
    requiresTrigger: true,
    isMain: false,
    paused: false,
    networkAllowed: false,
    allowedSenders: [ALICE],
    ...DEFAULT_GROUP_SETTINGS,
    createdAt: 0,
    ...over,
  });
  const message = (sender: string, text: string, over = {}) => ({
    seq: 1,
    chatJid: WA_GROUP,
    id: 'm1',
    sender,
    senderName: 'Someone',
    text,
    timestamp: 0,
    fromMe: false,
    fromBot: false,
    quotedId: null,
    mediaRef: null,
    turnId: null,
    ...over,
  });

  it('lets only listed senders (any device) trigger, in every kind of group', () => {
    for (const g of [group(), group({ isMain: true }), group({ requiresTrigger: false })]) {
      expect(isTriggerMessage(g, message(BOB, '@Andy hi'))).toBe(false);
      expect(isTriggerMessage(g, message('15551234567:7@s.whatsapp.net', '@Andy hi'))).toBe(true);
    }
    // The trigger word is still needed where it always was.
    expect(isTriggerMessage(group(), message(ALICE, 'hi'))).toBe(false);
    expect(isTriggerMessage(group({ allowedSenders: null }), message(BOB, '@Andy hi'))).toBe(true);
  });

  it('never lets the assistant trigger itself; the account owner always may', () => {
    const mine = { fromMe: true };
    expect(isTriggerMessage(group({ allowedSenders: [] }), message(BOB, '@Andy hi', mine))).toBe(
      true,
    );
    const bot = { fromMe: true, fromBot: true };
    expect(isTriggerMessage(group(), message(ALICE, '@Andy hi', bot))).toBe(false);
  });

  it('matches a local-chat sender by name, whatever its case', () => {
    const local = group({ jid: 'local:family', allowedSenders: ['Alice'] });
    expect(isTriggerMessage(local, message('local:alice', '@Andy hi'))).toBe(true);
    expect(isTriggerMessage(local, message('local:bob', '@Andy hi'))).toBe(false);
  });

  it('finds no pending trigger in a backlog from strangers only', () => {
    const t = tempStore('clawbar-senders-router-');
    cleanups.push(() => t.close());
    t.store.setAllowedSenders(t.family.jid, ['Alice']);
    const insert = (id: string, sender: string) =>
      t.store.insertMessage({
        chatJid: t.family.jid,
        id,
        sender: `local:${sender.toLowerCase()}`,
        senderName: sender,
        text: '@Andy hello',
        timestamp: 1,
      });
    insert('m1', 'Bob');
    const policy = t.store.getGroup(t.family.jid) as Group;
    expect(hasPendingTrigger(t.store, policy)).toBe(false);
    insert('m2', 'Alice');
    expect(hasPendingTrigger(t.store, policy)).toBe(true);
  });
});

const DONE = `out({ type: 'done', status: 'ok', turn: [], usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 } });`;

/** Answers with the senders named in the prompt, so a test sees what rode along as context. */
const ECHOES_SENDERS = scriptedRunner({
  onPrompt: `
    const prompt = frame.type === 'start' ? frame.prompt : frame.text;
    const senders = [...prompt.matchAll(/sender="([^"]+)"/g)].map((m) => m[1]);
    out({ type: 'output', text: 'seen: ' + senders.join(', ') });
    ${DONE}`,
});

describe('a core with an allowlist', () => {
  async function start() {
    const runtime = new ProcessRuntime();
    runtime.useScript(ECHOES_SENDERS);
    const { core, close } = processCore({ prefix: 'clawbar-senders-core-', runtime });
    cleanups.push(close);
    await core.start();
    return { core, runtime };
  }

  for (const main of [false, true]) {
    it(`stores a stranger's trigger without a run, and answers an allowed sender${main ? ' (main group)' : ''}`, async () => {
      const { core, runtime } = await start();
      const group = core.addGroup({ name: 'Family', ...(main ? { main: true } : {}) });
      core.groups.updateSenders('Family', { allow: ['Alice'] });

      const stranger = core.postLocal('Family', 'Bob', '@Andy open the door');
      expect(stranger.triggered).toBe(false);
      expect(core.messages(group.jid, 10).map((m) => m.text)).toEqual(['@Andy open the door']);
      expect(core.queue.snapshot().waiting).toEqual([]);
      expect(core.queue.snapshot().running).toEqual([]);

      const allowed = core.postLocal('Family', 'alice', '@Andy who is here?');
      expect(allowed.triggered).toBe(true);
      const reply = await core.waitForReply(group.jid, allowed.message.seq, 20_000);
      // Bob's message was context for the turn Alice started.
      expect(reply.replies.map((m) => m.text)).toEqual(['seen: Bob, alice']);
      expect(runtime.startCalls).toBe(1);
    }, 30_000);
  }

  it('answers anyone again once the list is dropped', async () => {
    const { core } = await start();
    const group = core.addGroup({ name: 'Family' });
    core.groups.updateSenders('family', { allow: ['Alice'] });
    expect(core.postLocal('Family', 'Bob', '@Andy one').triggered).toBe(false);

    expect(core.groups.updateSenders('family', { everyone: true }).allowedSenders).toBeNull();
    const again = core.postLocal('Family', 'Bob', '@Andy two');
    expect(again.triggered).toBe(true);
    const reply = await core.waitForReply(group.jid, again.message.seq, 20_000);
    expect(reply.replies.map((m) => m.text)).toEqual(['seen: Bob, Bob']);
  }, 30_000);
});

describe('WhatsApp senders in the core', () => {
  it('a trigger from an unlisted number is stored and held back; a listed one on another device asks for a run', async () => {
    const unit = await startUnitCore();
    cleanups.push(() => unit.close());
    const { core } = unit;
    const group = core.addGroup({ name: 'Team', jid: WA_GROUP });
    expect(
      core.groups.updateSenders('Team', { allow: ['+1 555 123 4567', '+49 151 23456789'] }),
    ).toMatchObject({ allowedSenders: [ALICE, BOB] });
    core.groups.updateSenders('Team', { deny: ['4915123456789@s.whatsapp.net'] });

    const inbound = (id: string, sender: string): InboundMessage => ({
      channel: 'whatsapp',
      chatJid: WA_GROUP,
      chatName: 'Team',
      isGroup: true,
      id,
      sender,
      senderName: 'Someone',
      text: '@Andy status?',
      timestamp: 1_000,
    });
    expect(core.receive(inbound('m1', BOB))).toMatchObject({ inserted: true, triggered: false });
    expect(core.queue.snapshot().waitingForSetup).toEqual([]);
    expect(core.receive(inbound('m2', '15551234567:4@s.whatsapp.net')).triggered).toBe(true);
    // The engine is down in this core: the run it asked for waits for the set-up.
    expect(core.queue.snapshot().waitingForSetup).toEqual([group.jid]);
    expect(core.messages(group.jid, 10).map((m) => m.id)).toEqual(['m1', 'm2']);
  });
});
