import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  openStore,
  type NewGroup,
  type NewMessage,
  type OutboxItem,
  type Store,
  type TokenUsage,
  type TurnCommit,
} from '../../main/core/store/index.js';
import type { MessageParam } from '../../main/core/agent/protocol.js';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

const FAMILY = 'local:family';
const WORK = 'local:work';
const NOON = Date.UTC(2026, 10, 24, 12, 0);

let dir: string;
let file: string;
let store: Store;
const stores: Store[] = [];

function open(): Store {
  const opened = openStore(file);
  stores.push(opened);
  return opened;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-store-'));
  file = path.join(dir, 'clawbar.db');
  store = open();
});

afterEach(() => {
  for (const opened of stores.splice(0)) if (opened.db.open) opened.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function addChat(jid: string, lastActivity: number | null = null): void {
  store.upsertChat({
    jid,
    name: jid.replace('local:', ''),
    channel: 'local',
    isGroup: true,
    lastActivity,
  });
}

function message(id: string, over: Partial<NewMessage> = {}): NewMessage {
  return {
    chatJid: FAMILY,
    id,
    sender: 'local:alice',
    senderName: 'Alice',
    text: `text of ${id}`,
    timestamp: NOON,
    ...over,
  };
}

function group(over: Partial<NewGroup> = {}): NewGroup {
  return {
    jid: FAMILY,
    folder: 'family',
    name: 'Family',
    trigger: '@Andy',
    requiresTrigger: true,
    isMain: false,
    channel: 'local',
    ...over,
  };
}

/** A one-turn conversation, as a turn commit stores it. */
const conversation = (question: string): MessageParam[] => [
  { role: 'user', content: question },
  { role: 'assistant', content: [{ type: 'text', text: `answer to ${question}` }] },
];
const FIRST_TRANSCRIPT = conversation('first');
const SECOND_TRANSCRIPT = [...FIRST_TRANSCRIPT, ...conversation('second')];

const failed = (error: string, giveUp: boolean, nextAttemptAt = NOON + 1_000) => ({
  error,
  giveUp,
  nextAttemptAt,
  now: NOON,
});

const usage = (
  inputTokens: number,
  outputTokens: number,
  cacheReadTokens = 0,
  cacheWriteTokens = 0,
): TokenUsage => ({
  inputTokens,
  outputTokens,
  cacheReadTokens,
  cacheWriteTokens,
});

function turn(over: Partial<TurnCommit> = {}): TurnCommit {
  return {
    groupJid: FAMILY,
    throughSeq: 0,
    turnId: 'turn-1',
    replies: [],
    transcript: FIRST_TRANSCRIPT,
    now: NOON,
    ...over,
  };
}

const delivery = (id: string, timestamp = NOON + 1000) => ({
  id,
  sender: 'local:andy',
  senderName: 'Andy',
  timestamp,
});

const count = (table: string): number =>
  (store.db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;

describe('insertMessage', () => {
  beforeEach(() => addChat(FAMILY));

  it('stores a new message and hands back the stored row with its seq', () => {
    const { message: stored, inserted } = store.insertMessage(
      message('m1', { quotedId: 'm0', mediaRef: 'media/1.jpg' }),
    );

    expect(inserted).toBe(true);
    expect(stored).toEqual({
      seq: 1,
      chatJid: FAMILY,
      id: 'm1',
      sender: 'local:alice',
      senderName: 'Alice',
      text: 'text of m1',
      timestamp: NOON,
      fromMe: false,
      fromBot: false,
      quotedId: 'm0',
      mediaRef: 'media/1.jpg',
      turnId: null,
    });
    expect(store.getChat(FAMILY)?.lastActivity).toBe(NOON);
  });

  it('ignores a repeat of the same chat and id, returning the original row and bumping nothing', () => {
    const first = store.insertMessage(message('m1', { text: 'original' }));

    const repeat = store.insertMessage(
      message('m1', { text: 'redelivered', timestamp: NOON + 60_000 }),
    );

    expect(repeat.inserted).toBe(false);
    expect(repeat.message).toEqual(first.message);
    expect(count('messages')).toBe(1);
    expect(store.recentMessages(FAMILY, 5).map((m) => m.seq)).toEqual([first.message.seq]);
    expect(store.getChat(FAMILY)?.lastActivity).toBe(NOON);
    // The ignored insert did not use up a seq either.
    expect(store.insertMessage(message('m2')).message.seq).toBe(first.message.seq + 1);
  });

  it('treats the same id in another chat as a different message', () => {
    addChat(WORK);
    store.insertMessage(message('m1'));

    const other = store.insertMessage(message('m1', { chatJid: WORK }));

    expect(other.inserted).toBe(true);
    expect(other.message.chatJid).toBe(WORK);
    expect(count('messages')).toBe(2);
  });

  it('refuses a message for a chat it has never seen', () => {
    expect(() => store.insertMessage(message('m1', { chatJid: 'local:stranger' }))).toThrow(
      /FOREIGN KEY/,
    );
    expect(count('messages')).toBe(0);
  });
});

describe('chats', () => {
  const chat = (lastActivity: number | null, name = 'Book Club') => ({
    jid: '120363000000000001@g.us',
    name,
    channel: 'whatsapp' as const,
    isGroup: true,
    lastActivity,
  });

  it('keep the later last activity, and an unknown one stays unknown (never 0)', () => {
    store.upsertChat(chat(null));
    expect(store.getChat(chat(null).jid)?.lastActivity).toBeNull();
    store.upsertChat(chat(null, 'Books'));
    expect(store.getChat(chat(null).jid)).toMatchObject({ name: 'Books', lastActivity: null });
    store.upsertChat(chat(NOON));
    expect(store.getChat(chat(null).jid)?.lastActivity).toBe(NOON);
    // An older time or none (a name update) leaves the later one.
    store.upsertChat(chat(NOON - 5_000));
    store.upsertChat(chat(null));
    expect(store.getChat(chat(null).jid)?.lastActivity).toBe(NOON);
    store.upsertChat(chat(NOON + 5_000));
    expect(store.getChat(chat(null).jid)?.lastActivity).toBe(NOON + 5_000);
  });
});

describe('reading messages', () => {
  beforeEach(() => {
    addChat(FAMILY);
    addChat(WORK);
    // Interleave two chats, so that seqs within one chat have gaps.
    for (let i = 1; i <= 5; i++) {
      store.insertMessage(message(`f${i}`, { timestamp: NOON + i }));
      store.insertMessage(message(`w${i}`, { chatJid: WORK, timestamp: NOON + i }));
    }
  });

  it('messagesSince returns only that chat’s messages after the seq, oldest first', () => {
    const all = store.messagesSince(FAMILY, 0);
    expect(all.map((m) => m.id)).toEqual(['f1', 'f2', 'f3', 'f4', 'f5']);
    expect(all.map((m) => m.seq)).toEqual([1, 3, 5, 7, 9]);

    expect(store.messagesSince(FAMILY, 5).map((m) => m.id)).toEqual(['f4', 'f5']);
    expect(store.messagesSince(FAMILY, 4).map((m) => m.id)).toEqual(['f3', 'f4', 'f5']);
    expect(store.messagesSince(FAMILY, 9)).toEqual([]);
  });

  it('messagesSince with a limit returns the oldest pending messages first', () => {
    expect(store.messagesSince(FAMILY, 1, 2).map((m) => m.id)).toEqual(['f2', 'f3']);
  });

  it('recentMessages returns the last messages of the chat, oldest first', () => {
    expect(store.recentMessages(WORK, 3).map((m) => m.id)).toEqual(['w3', 'w4', 'w5']);
    expect(store.recentMessages(WORK, 50).map((m) => m.id)).toEqual(['w1', 'w2', 'w3', 'w4', 'w5']);
    expect(store.recentMessages('local:nobody', 3)).toEqual([]);
  });
});

describe('groups', () => {
  it('start their cursor at the chat’s latest message, so history from before registration is not pending', () => {
    addChat(FAMILY);
    for (const id of ['old1', 'old2', 'old3']) store.insertMessage(message(id));

    const added = store.addGroup(group(), NOON);

    expect(added).toEqual({
      jid: FAMILY,
      folder: 'family',
      name: 'Family',
      trigger: '@Andy',
      requiresTrigger: true,
      isMain: false,
      paused: false,
      networkAllowed: false,
      allowedSenders: null,
      model: null,
      webSearch: true,
      webFetch: false,
      dailyBudget: { tokens: null, usd: null },
      extraMounts: [],
      createdAt: NOON,
    });
    expect(store.cursorOf(FAMILY)).toBe(3);
    expect(store.messagesSince(FAMILY, store.cursorOf(FAMILY))).toEqual([]);

    store.insertMessage(message('new1'));
    expect(store.messagesSince(FAMILY, store.cursorOf(FAMILY)).map((m) => m.id)).toEqual(['new1']);
  });

  it('can be added for a chat never seen before, which creates the chat with an empty history', () => {
    store.addGroup(group({ jid: WORK, folder: 'work', name: 'Work' }), NOON);

    expect(store.getChat(WORK)).toEqual({
      jid: WORK,
      name: 'Work',
      channel: 'local',
      isGroup: true,
      lastActivity: null,
    });
    expect(store.cursorOf(WORK)).toBe(0);
  });

  it('are found by jid, by folder and by name in any case', () => {
    store.addGroup(group(), NOON);
    store.addGroup(group({ jid: WORK, folder: 'work', name: 'Work Team' }), NOON);

    expect(store.findGroup(WORK)?.folder).toBe('work');
    expect(store.findGroup('work')?.jid).toBe(WORK);
    expect(store.findGroup('work team')?.jid).toBe(WORK);
    expect(store.findGroup('WORK TEAM')?.jid).toBe(WORK);
    expect(store.findGroup('FAMILY')?.jid).toBe(FAMILY);
    expect(store.findGroup('nobody')).toBeUndefined();
  });

  it('are found by exact folder before another group’s name that matches without case', () => {
    // Inserted first, so a plain table scan would meet it first.
    store.addGroup(group({ jid: WORK, folder: 'work', name: 'Family' }), NOON);
    store.addGroup(group({ jid: 'local:kids', folder: 'family', name: 'Kids' }), NOON);

    expect(store.findGroup('family')?.jid).toBe('local:kids');
    expect(store.findGroup('Family')?.jid).toBe(WORK);
  });

  it('refuse a second main group and leave no trace of the attempt', () => {
    store.addGroup(group({ isMain: true }), NOON);

    expect(() =>
      store.addGroup(group({ jid: WORK, folder: 'work', name: 'Work', isMain: true }), NOON),
    ).toThrow(/UNIQUE constraint failed: groups.is_main/);

    expect(store.listGroups().map((g) => [g.jid, g.isMain])).toEqual([[FAMILY, true]]);
    expect(store.getChat(WORK)).toBeUndefined();
    expect(count('cursors')).toBe(1);
  });

  it('refuse a folder that another group already uses', () => {
    store.addGroup(group(), NOON);

    expect(() => store.addGroup(group({ jid: WORK, name: 'Work' }), NOON)).toThrow(
      /UNIQUE constraint failed: groups.folder/,
    );
    expect(store.getGroup(WORK)).toBeUndefined();
    expect([...store.groupFolders()]).toEqual(['family']);
  });

  it('list the main group first, then the others by name', () => {
    store.addGroup(group({ jid: 'local:b', folder: 'b', name: 'Bravo' }), NOON);
    store.addGroup(group({ jid: 'local:a', folder: 'a', name: 'Alpha' }), NOON);
    store.addGroup(group({ jid: 'local:z', folder: 'main', name: 'Zulu', isMain: true }), NOON);

    expect(store.listGroups().map((g) => g.name)).toEqual(['Zulu', 'Alpha', 'Bravo']);
  });

  it('when removed keep their chat history, and lose their cursor and transcript', () => {
    store.addGroup(group(), NOON);
    store.insertMessage(message('m1'));
    store.commitTurn(turn({ throughSeq: 1 }));

    expect(store.removeGroup(FAMILY)).toBe(true);

    expect(store.getGroup(FAMILY)).toBeUndefined();
    expect(store.messagesSince(FAMILY, 0).map((m) => m.id)).toEqual(['m1']);
    expect(store.getChat(FAMILY)).toBeDefined();
    expect(store.cursorOf(FAMILY)).toBe(0);
    expect(store.transcriptOf(FAMILY)).toEqual([]);
    expect(store.removeGroup(FAMILY)).toBe(false);
  });

  it('can be paused and resumed', () => {
    store.addGroup(group(), NOON);

    expect(store.setPaused(FAMILY, true)).toBe(true);
    expect(store.getGroup(FAMILY)?.paused).toBe(true);
    expect(store.setPaused(FAMILY, false)).toBe(true);
    expect(store.getGroup(FAMILY)?.paused).toBe(false);
    expect(store.setPaused('local:nobody', true)).toBe(false);
  });
});

describe('group settings', () => {
  it('change only the fields given, and read back as stored', () => {
    store.addGroup(group(), NOON);
    const changed = store.updateGroupSettings(FAMILY, {
      model: 'claude-haiku-4-5',
      webFetch: true,
      dailyBudget: { tokens: 200_000, usd: null },
      extraMounts: [{ hostPath: '~/projects', readonly: false }],
    });
    expect(changed).toMatchObject({
      model: 'claude-haiku-4-5',
      webSearch: true,
      webFetch: true,
      networkAllowed: false,
      dailyBudget: { tokens: 200_000, usd: null },
      extraMounts: [{ hostPath: '~/projects', readonly: false }],
    });
    const again = store.updateGroupSettings(FAMILY, { webSearch: false, networkAllowed: true });
    expect(again).toMatchObject({
      model: 'claude-haiku-4-5',
      webSearch: false,
      networkAllowed: true,
      dailyBudget: { tokens: 200_000, usd: null },
    });
    expect(store.updateGroupSettings(FAMILY, { model: null, extraMounts: [] })).toMatchObject({
      model: null,
      extraMounts: [],
    });
    expect(store.updateGroupSettings('local:nobody', { webFetch: true })).toBeUndefined();
  });

  it('refuses a budget that is not positive, leaving the group as it was', () => {
    store.addGroup(group(), NOON);
    expect(() =>
      store.updateGroupSettings(FAMILY, { dailyBudget: { tokens: 0, usd: null } }),
    ).toThrow(/positive whole number/);
    expect(() =>
      store.updateGroupSettings(FAMILY, { dailyBudget: { tokens: null, usd: -1 } }),
    ).toThrow(/CHECK constraint failed/);
    expect(store.getGroup(FAMILY)?.dailyBudget).toEqual({ tokens: null, usd: null });
  });

  it('drops stored mount entries that are not of a request’s shape', () => {
    store.addGroup(group(), NOON);
    store.db
      .prepare(`UPDATE groups SET extra_mounts = ? WHERE jid = ?`)
      .run(JSON.stringify([{ hostPath: '/srv/data' }, 'junk', { hostPath: 3 }, null]), FAMILY);
    expect(store.getGroup(FAMILY)?.extraMounts).toEqual([{ hostPath: '/srv/data' }]);
  });
});

describe('commitTurn', () => {
  beforeEach(() => {
    store.addGroup(group(), NOON);
    addChat(WORK);
    for (const id of ['m1', 'm2', 'm3']) store.insertMessage(message(id));
  });

  it('queues the replies, advances the cursor and records the transcript together, but no usage', () => {
    const items = store.commitTurn(
      turn({
        throughSeq: 3,
        replies: [
          { chatJid: FAMILY, text: 'first reply' },
          { chatJid: WORK, text: 'note for work' },
        ],
      }),
    );

    expect(items).toEqual([
      {
        id: 1,
        chatJid: FAMILY,
        text: 'first reply',
        turnId: 'turn-1',
        kind: 'reply',
        state: 'queued',
        attempts: 0,
        lastError: null,
        nextAttemptAt: null,
        createdAt: NOON,
        failedAt: null,
        attachment: null,
      },
      {
        id: 2,
        chatJid: WORK,
        text: 'note for work',
        turnId: 'turn-1',
        kind: 'reply',
        state: 'queued',
        attempts: 0,
        lastError: null,
        nextAttemptAt: null,
        createdAt: NOON,
        failedAt: null,
        attachment: null,
      },
    ]);
    expect(store.queuedOutbox()).toEqual(items);
    expect(store.cursorOf(FAMILY)).toBe(3);
    expect(store.transcriptOf(FAMILY)).toEqual(FIRST_TRANSCRIPT);
    // The broker records each model call's usage as the API answers it; a commit never does.
    expect(store.usageOf(FAMILY, '2026-11-24')).toEqual(usage(0, 0));
  });

  it('never moves the cursor backwards', () => {
    store.commitTurn(turn({ throughSeq: 3 }));

    store.commitTurn(turn({ throughSeq: 2, turnId: 'turn-2', transcript: SECOND_TRANSCRIPT }));

    expect(store.cursorOf(FAMILY)).toBe(3);
    expect(store.transcriptOf(FAMILY)).toEqual(SECOND_TRANSCRIPT);
  });

  it('keeps nothing of a turn whose reply fails part-way (a reply to an unknown chat)', () => {
    store.commitTurn(turn({ throughSeq: 1, replies: [{ chatJid: FAMILY, text: 'earlier' }] }));
    const outboxBefore = store.queuedOutbox();

    expect(() =>
      store.commitTurn(
        turn({
          throughSeq: 3,
          turnId: 'turn-2',
          transcript: SECOND_TRANSCRIPT,
          replies: [
            { chatJid: FAMILY, text: 'would be queued first' },
            { chatJid: 'local:stranger', text: 'violates the foreign key' },
          ],
        }),
      ),
    ).toThrow(/FOREIGN KEY constraint failed/);

    expect(store.queuedOutbox()).toEqual(outboxBefore);
    expect(count('outbox')).toBe(1);
    expect(store.cursorOf(FAMILY)).toBe(1);
    expect(store.transcriptOf(FAMILY)).toEqual(FIRST_TRANSCRIPT);
    expect(store.db.inTransaction).toBe(false);
  });

  it('keeps none of the queued replies when a later step fails (the group is gone)', () => {
    store.removeGroup(FAMILY);

    expect(() =>
      store.commitTurn(
        turn({ throughSeq: 3, replies: [{ chatJid: FAMILY, text: 'orphan reply' }] }),
      ),
    ).toThrow(/FOREIGN KEY constraint failed/);

    expect(count('outbox')).toBe(0);
    expect(store.usageOf(FAMILY, '2026-11-24')).toEqual(usage(0, 0));
  });
});

describe('the transcript', () => {
  beforeEach(() => {
    store.addGroup(group(), NOON);
    for (const id of ['m1', 'm2']) store.insertMessage(message(id));
  });

  it('is empty for a group that has none yet', () => {
    expect(store.transcriptOf(FAMILY)).toEqual([]);
    expect(store.transcriptOf('local:nobody')).toEqual([]);
  });

  it('round-trips tool calls and results exactly as committed', () => {
    const withTools: MessageParam[] = [
      { role: 'user', content: 'What is in the folder? ✓ 🐈' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Looking.' },
          {
            type: 'tool_use',
            id: 'tu-1',
            name: 'bash',
            input: { command: 'ls', nested: [1, null] },
          },
        ],
      },
      {
        role: 'user',
        content: [{ type: 'tool_result', tool_use_id: 'tu-1', content: 'notes.md' }],
      },
      { role: 'assistant', content: [{ type: 'text', text: 'One file: notes.md' }] },
    ];
    store.commitTurn(turn({ throughSeq: 1, transcript: withTools }));

    expect(store.transcriptOf(FAMILY)).toEqual(withTools);
    expect(open().transcriptOf(FAMILY)).toEqual(withTools);
  });

  it('stays as it was when a turn commits with no transcript', () => {
    store.commitTurn(turn({ throughSeq: 1, transcript: FIRST_TRANSCRIPT }));

    store.commitTurn(
      turn({
        throughSeq: 2,
        turnId: 'turn-2',
        transcript: null,
        replies: [{ chatJid: FAMILY, text: 'a reply whose turn was refused' }],
      }),
    );

    expect(store.transcriptOf(FAMILY)).toEqual(FIRST_TRANSCRIPT);
    expect(store.cursorOf(FAMILY)).toBe(2);
    expect(store.queuedOutbox().map((item) => item.text)).toEqual([
      'a reply whose turn was refused',
    ]);
  });

  it('is replaced by setTranscript', () => {
    store.setTranscript(FAMILY, SECOND_TRANSCRIPT, NOON);
    expect(store.transcriptOf(FAMILY)).toEqual(SECOND_TRANSCRIPT);
    store.setTranscript(FAMILY, [], NOON);
    expect(store.transcriptOf(FAMILY)).toEqual([]);
  });

  it.each([
    ['not JSON', '[{"role":"user"'],
    ['not a list', '{"version":1,"messages":[]}'],
    ['a message of the wrong shape', '[{"role":"owner","content":"obey"}]'],
    ['a conversation that ends mid-turn', JSON.stringify([{ role: 'user', content: 'hi' }])],
    [
      'a conversation that opens with the assistant',
      JSON.stringify([{ role: 'assistant', content: 'I am the owner' }]),
    ],
  ])('reads as empty, without throwing, when the stored value is %s', (_what, stored) => {
    store.commitTurn(turn({ throughSeq: 1 }));
    store.db.prepare(`UPDATE sessions SET transcript = ? WHERE group_jid = ?`).run(stored, FAMILY);

    expect(store.transcriptOf(FAMILY)).toEqual([]);
  });

  it('reads as empty, and says so in the log, when the model broker would refuse what is stored', () => {
    // Stored before the policy existed, or by a turn the check let through: an image whose
    // source is a URL, inside a tool result. Every request carrying it would be refused.
    const wedged = [
      { role: 'user', content: 'What is at this address?' },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'tu-1', name: 'bash', input: { command: 'curl' } }],
      },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            tool_use_id: 'tu-1',
            content: [
              { type: 'image', source: { type: 'url', url: 'https://attacker.example/x' } },
            ],
          },
        ],
      },
      { role: 'assistant', content: [{ type: 'text', text: 'A picture.' }] },
    ];
    store.commitTurn(turn({ throughSeq: 1 }));
    store.db
      .prepare(`UPDATE sessions SET transcript = ? WHERE group_jid = ?`)
      .run(JSON.stringify(wedged), FAMILY);
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });

    expect(store.transcriptOf(FAMILY, log)).toEqual([]);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        group: FAMILY,
        problem: expect.stringMatching(
          /^the model broker would refuse it: .*is an image with a url source/,
        ),
        msg: 'the stored transcript is unusable; the conversation starts fresh',
      }),
    ]);
    // A usable transcript is read without a word.
    store.setTranscript(FAMILY, FIRST_TRANSCRIPT, NOON);
    expect(store.transcriptOf(FAMILY, log)).toEqual(FIRST_TRANSCRIPT);
    expect(lines).toHaveLength(1);
  });

  it('keeps transcript, cursor and outbox unchanged when the commit fails at the transcript write', () => {
    store.commitTurn(turn({ throughSeq: 1, transcript: FIRST_TRANSCRIPT }));
    // The last step of the commit fails, as a full disk would make it fail.
    store.db.exec(`
      CREATE TRIGGER fail_transcript_write BEFORE UPDATE ON sessions
      BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END`);

    expect(() =>
      store.commitTurn(
        turn({
          throughSeq: 2,
          turnId: 'turn-2',
          transcript: SECOND_TRANSCRIPT,
          replies: [{ chatJid: FAMILY, text: 'never queued' }],
        }),
      ),
    ).toThrow(/disk is full/);

    expect(store.transcriptOf(FAMILY)).toEqual(FIRST_TRANSCRIPT);
    expect(store.cursorOf(FAMILY)).toBe(1);
    expect(count('outbox')).toBe(0);
    expect(store.db.inTransaction).toBe(false);
  });
});

describe('the outbox', () => {
  let items: OutboxItem[];

  beforeEach(() => {
    store.addGroup(group(), NOON);
    store.insertMessage(message('m1'));
    items = store.commitTurn(
      turn({
        throughSeq: 1,
        replies: [
          { chatJid: FAMILY, text: 'reply one' },
          { chatJid: FAMILY, text: 'reply two' },
          { chatJid: FAMILY, text: 'reply three' },
        ],
      }),
    );
  });

  const outboxRow = (id: number) =>
    store.db
      .prepare(
        `SELECT state, attempts, last_error AS lastError, sent_at AS sentAt FROM outbox WHERE id = ?`,
      )
      .get(id);

  it('on delivery records the reply as a bot message of its turn and marks the item sent', () => {
    const [first] = items as [OutboxItem];

    expect(store.markDelivered(first, delivery('wa-1'))).toBe(true);

    expect(outboxRow(first.id)).toEqual({
      state: 'sent',
      attempts: 1,
      lastError: null,
      sentAt: NOON + 1000,
    });
    const recorded = store.messagesSince(FAMILY, 1);
    expect(recorded).toEqual([
      {
        seq: 2,
        chatJid: FAMILY,
        id: 'wa-1',
        sender: 'local:andy',
        senderName: 'Andy',
        text: 'reply one',
        timestamp: NOON + 1000,
        fromMe: true,
        fromBot: true,
        quotedId: null,
        mediaRef: null,
        turnId: 'turn-1',
      },
    ]);
  });

  it('records a second delivery report of the same item neither under the same id nor under a new one', () => {
    const [first] = items as [OutboxItem];
    store.markDelivered(first, delivery('wa-1'));

    expect(store.markDelivered(first, delivery('wa-1'))).toBe(false);
    expect(store.markDelivered(first, delivery('wa-1-retry', NOON + 5000))).toBe(false);

    expect(store.messagesSince(FAMILY, 1).map((m) => m.id)).toEqual(['wa-1']);
    expect(outboxRow(first.id)).toEqual({
      state: 'sent',
      attempts: 1,
      lastError: null,
      sentAt: NOON + 1000,
    });
  });

  it('keeps the item queued when recording the delivered message fails', () => {
    const [first] = items as [OutboxItem];
    // A stale item pointing at a chat that does not exist makes the message insert fail
    // after the item has been marked sent inside the same transaction.
    const stale: OutboxItem = { ...first, chatJid: 'local:stranger' };

    expect(() => store.markDelivered(stale, delivery('wa-1'))).toThrow(
      /FOREIGN KEY constraint failed/,
    );

    expect(outboxRow(first.id)).toEqual({
      state: 'queued',
      attempts: 0,
      lastError: null,
      sentAt: null,
    });
    expect(store.messagesSince(FAMILY, 1)).toEqual([]);
  });

  it('lists only queued items, oldest first', () => {
    const [first, second, third] = items as [OutboxItem, OutboxItem, OutboxItem];
    store.markDelivered(second, delivery('wa-2'));
    store.recordFailedAttempt(third.id, failed('offline', true));

    expect(store.queuedOutbox().map((item) => item.id)).toEqual([first.id]);

    const later = store.enqueueOutbound(FAMILY, 'from send_message', null, NOON + 10);
    expect(store.queuedOutbox().map((item) => item.text)).toEqual([
      'reply one',
      'from send_message',
    ]);
    expect(later).toMatchObject({ state: 'queued', turnId: null, attempts: 0 });
  });

  it('counts failed attempts, keeps the last error and the retry time, and marks the item failed when told', () => {
    const [first] = items as [OutboxItem];

    store.recordFailedAttempt(first.id, failed('timeout', false, NOON + 2_000));
    const second = store.recordFailedAttempt(
      first.id,
      failed('connection closed', false, NOON + 4_000),
    );
    expect(second).toMatchObject({ state: 'queued', attempts: 2, nextAttemptAt: NOON + 4_000 });
    expect(outboxRow(first.id)).toEqual({
      state: 'queued',
      attempts: 2,
      lastError: 'connection closed',
      sentAt: null,
    });
    expect(store.nextOutboxItem(FAMILY)?.id).toBe(first.id);

    const given = store.recordFailedAttempt(first.id, failed('still offline', true));
    expect(given).toMatchObject({
      state: 'failed',
      attempts: 3,
      failedAt: NOON,
      nextAttemptAt: null,
    });
    expect(store.queuedOutbox().map((item) => item.id)).not.toContain(first.id);
    expect(store.outboxCounts()).toEqual({ queued: 2, failed: 1 });
    expect(store.failedOutbox(5).map((item) => item.id)).toEqual([first.id]);
    expect(store.undeliveredOutbox(FAMILY).map((item) => [item.id, item.state])).toEqual([
      [first.id, 'failed'],
      [(items[1] as OutboxItem).id, 'queued'],
      [(items[2] as OutboxItem).id, 'queued'],
    ]);

    // A report after giving up changes nothing.
    expect(store.recordFailedAttempt(first.id, failed('after giving up', true))).toBeUndefined();
    expect(outboxRow(first.id)).toEqual({
      state: 'failed',
      attempts: 3,
      lastError: 'still offline',
      sentAt: null,
    });
  });

  it('keeps a chat in order: its next item is the oldest still queued', () => {
    const [first, second] = items as [OutboxItem, OutboxItem];
    expect(store.nextOutboxItem(FAMILY)?.id).toBe(first.id);
    store.markDelivered(first, delivery('wa-1'));
    expect(store.nextOutboxItem(FAMILY)?.id).toBe(second.id);
    expect(store.chatsWithQueuedOutbox()).toEqual([FAMILY]);
    expect(store.nextOutboxItem(WORK)).toBeUndefined();
  });

  it('leaves a sent item sent when a late failure report arrives', () => {
    const [first] = items as [OutboxItem];
    store.markDelivered(first, delivery('wa-1'));

    store.recordFailedAttempt(first.id, failed('late timeout', true));

    expect(outboxRow(first.id)).toEqual({
      state: 'sent',
      attempts: 1,
      lastError: null,
      sentAt: NOON + 1000,
    });
  });
});

describe('messagesOfTurn', () => {
  it('returns only what the assistant sent in that turn, in order', () => {
    store.addGroup(group(), NOON);
    store.insertMessage(message('m1'));
    // A user message that happens to carry a turn id is not the assistant's.
    store.insertMessage(message('m2', { turnId: 'turn-1' }));
    const turnOne = store.commitTurn(
      turn({
        throughSeq: 2,
        replies: [
          { chatJid: FAMILY, text: 'one a' },
          { chatJid: FAMILY, text: 'one b' },
        ],
      }),
    ) as [OutboxItem, OutboxItem];
    const turnTwo = store.commitTurn(
      turn({ throughSeq: 2, turnId: 'turn-2', replies: [{ chatJid: FAMILY, text: 'two' }] }),
    ) as [OutboxItem];
    store.markDelivered(turnOne[0], delivery('wa-1'));
    store.markDelivered(turnTwo[0], delivery('wa-2'));
    store.markDelivered(turnOne[1], delivery('wa-3'));

    expect(store.messagesOfTurn('turn-1').map((m) => [m.id, m.text])).toEqual([
      ['wa-1', 'one a'],
      ['wa-3', 'one b'],
    ]);
    expect(store.messagesOfTurn('turn-2').map((m) => m.text)).toEqual(['two']);
    expect(store.messagesOfTurn('turn-3')).toEqual([]);
  });
});

describe('settings and usage', () => {
  it('settings read back what was set, and the last write wins', () => {
    expect(store.getSetting('model')).toBeUndefined();

    store.setSetting('model', 'claude-a');
    store.setSetting('model', 'claude-b');
    store.setSetting('theme', 'dark');

    expect(store.getSetting('model')).toBe('claude-b');
    expect(store.getSetting('theme')).toBe('dark');
  });

  it('usageOf sums every call recorded on the same day, per group', () => {
    store.addGroup(group(), NOON);
    store.addGroup(group({ jid: WORK, folder: 'work', name: 'Work' }), NOON);

    store.addUsage(FAMILY, '2026-11-24', usage(100, 10, 1, 2));
    store.addUsage(FAMILY, '2026-11-24', usage(50, 5, 3, 4));
    store.addUsage(FAMILY, '2026-11-24', usage(1, 1, 1, 1));
    store.addUsage(FAMILY, '2026-11-25', usage(7, 7, 7, 7));
    store.addUsage(WORK, '2026-11-24', usage(1000, 1000));

    expect(store.usageOf(FAMILY, '2026-11-24')).toEqual(usage(151, 16, 5, 7));
    expect(store.usageOf(FAMILY, '2026-11-25')).toEqual(usage(7, 7, 7, 7));
    expect(store.usageOf(WORK, '2026-11-24')).toEqual(usage(1000, 1000));
    expect(store.usageOf(FAMILY, '2026-11-23')).toEqual(usage(0, 0));
  });
});

describe('crash safety', () => {
  it('finds everything again after the store is closed and the file reopened by a new store', () => {
    store.addGroup(group(), NOON);
    store.insertMessage(message('m1'));
    store.insertMessage(message('m2'));
    const [reply] = store.commitTurn(
      turn({
        throughSeq: 2,
        replies: [
          { chatJid: FAMILY, text: 'hi' },
          { chatJid: FAMILY, text: 'again' },
        ],
      }),
    ) as [OutboxItem];
    store.markDelivered(reply, delivery('wa-1'));
    store.addUsage(FAMILY, '2026-11-24', usage(100, 20));
    store.setSetting('theme', 'dark');
    store.close();

    const reopened = open();

    expect(reopened.findGroup('family')?.jid).toBe(FAMILY);
    expect(reopened.messagesSince(FAMILY, 0).map((m) => m.id)).toEqual(['m1', 'm2', 'wa-1']);
    expect(reopened.cursorOf(FAMILY)).toBe(2);
    expect(reopened.transcriptOf(FAMILY)).toEqual(FIRST_TRANSCRIPT);
    expect(reopened.queuedOutbox().map((item) => item.text)).toEqual(['again']);
    expect(reopened.messagesOfTurn('turn-1').map((m) => m.text)).toEqual(['hi']);
    expect(reopened.usageOf(FAMILY, '2026-11-24')).toEqual(usage(100, 20));
    expect(reopened.getSetting('theme')).toBe('dark');
  });

  it('loses no committed write when the writing process is killed outright', async () => {
    store.close();
    const storeModule = pathToFileURL(path.join(projectRoot, 'main/core/store/index.ts')).href;
    const script = `
      const { openStore } = await import(${JSON.stringify(storeModule)});
      const store = openStore(process.argv[1]);
      store.addGroup({ jid: 'local:family', folder: 'family', name: 'Family', trigger: '@Andy', requiresTrigger: true, isMain: false, channel: 'local' }, 1);
      store.insertMessage({ chatJid: 'local:family', id: 'm1', sender: 'local:alice', senderName: 'Alice', text: 'hello', timestamp: 1 });
      store.commitTurn({ groupJid: 'local:family', throughSeq: 1, turnId: 'turn-1', replies: [{ chatJid: 'local:family', text: 'hi Alice' }],
        transcript: ${JSON.stringify(FIRST_TRANSCRIPT)}, now: 1 });
      store.addUsage('local:family', '1970-01-01', { inputTokens: 10, outputTokens: 2, cacheReadTokens: 0, cacheWriteTokens: 0 });
      store.setSetting('theme', 'dark');
      console.log('committed');
      process.kill(process.pid, 'SIGKILL');`;

    const run = await runNodeScript(script, [file]);

    expect(run.signal).toBe('SIGKILL');
    expect(run.stdout.trim()).toBe('committed');
    // Nothing was checkpointed: the commits live only in the write-ahead log.
    expect(fs.statSync(`${file}-wal`).size).toBeGreaterThan(0);
    const reopened = open();
    expect(reopened.messagesSince(FAMILY, 0).map((m) => m.text)).toEqual(['hello']);
    expect(reopened.cursorOf(FAMILY)).toBe(1);
    expect(reopened.transcriptOf(FAMILY)).toEqual(FIRST_TRANSCRIPT);
    expect(reopened.queuedOutbox().map((item) => item.text)).toEqual(['hi Alice']);
    expect(reopened.usageOf(FAMILY, '1970-01-01')).toEqual(usage(10, 2));
    expect(reopened.getSetting('theme')).toBe('dark');
  }, 30_000);
});

/** Runs an ES module snippet in a separate Node process that can import the TypeScript sources. */
function runNodeScript(
  script: string,
  args: string[],
): Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
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
    child.on('close', (_status, signal) => resolve({ signal, stdout, stderr }));
  });
}
