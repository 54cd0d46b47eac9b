import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TRANSCRIPT_MAX_BYTES, conversationBytes } from '../../main/core/agent/conversation.js';
import type { MessageParam } from '../../main/core/agent/protocol.js';
import { messageTurns, taskTurn } from '../../main/core/agent/turns.js';
import type { Group, Store } from '../../main/core/store/index.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const USAGE = { inputTokens: 120, outputTokens: 30, cacheReadTokens: 5, cacheWriteTokens: 1 };
const NO_USAGE = { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };
// 23:30 UTC on 31 December: already 1 January in Tokyo, still 31 December in New York.
const NEW_YEAR_EVE_UTC = Date.UTC(2025, 11, 31, 23, 30);

/** One complete turn: the prompt and a text answer. */
const exchange = (prompt: string, answer = `answer to ${prompt}`): MessageParam[] => [
  { role: 'user', content: prompt },
  { role: 'assistant', content: [{ type: 'text', text: answer }] },
];

describe('turn sources', () => {
  let temp: TempStore;
  let store: Store;
  let group: Group;

  beforeEach(() => {
    temp = tempStore('clawbar-turns-');
    ({ store, family: group } = temp);
  });

  afterEach(() => temp.close());

  const post = (text: string) =>
    store.insertMessage({
      chatJid: group.jid,
      id: `m-${text}`,
      sender: 'local:alice',
      senderName: 'Alice',
      text,
      timestamp: NEW_YEAR_EVE_UTC,
    }).message;

  it('a message turn’s commit records no usage: the broker recorded each call’s already', () => {
    post('@Andy happy new year');
    const turn = messageTurns({ store, groupJid: group.jid, timezone: 'UTC' }).next();
    turn!.commit({
      turnId: 't1',
      replies: ['Same to you'],
      messages: null,
      usage: USAGE,
      now: NEW_YEAR_EVE_UTC,
    });
    expect(store.usageOf(group.jid, '2025-12-31')).toEqual(NO_USAGE);
  });

  it('a message turn commits replies, cursor and transcript together; nothing is pending after', () => {
    const seq = post('@Andy hi').seq;
    const source = messageTurns({ store, groupJid: group.jid, timezone: 'UTC' });
    expect(source.history()).toEqual([]);
    const turn = source.next();
    expect(turn?.throughSeq).toBe(seq);
    const items = turn!.commit({
      turnId: 't1',
      replies: ['hello'],
      messages: exchange(turn!.prompt, 'hello'),
      usage: USAGE,
      now: 1,
    });
    expect(items.map((i) => [i.text, i.kind, i.turnId])).toEqual([['hello', 'reply', 't1']]);
    expect(store.cursorOf(group.jid)).toBe(seq);
    expect(source.history()).toEqual(exchange(turn!.prompt, 'hello'));
    expect(source.next()).toBeNull();
  });

  it('a message turn resumes the stored transcript and appends its own messages to it', () => {
    store.setTranscript(group.jid, exchange('earlier'), 1);
    post('@Andy again');
    const source = messageTurns({ store, groupJid: group.jid, timezone: 'UTC' });
    expect(source.history()).toEqual(exchange('earlier'));
    const turn = source.next()!;
    turn.commit({ turnId: 't2', replies: [], messages: exchange('now'), usage: USAGE, now: 2 });
    expect(store.transcriptOf(group.jid)).toEqual([...exchange('earlier'), ...exchange('now')]);
  });

  it('a message turn whose messages were refused keeps the stored transcript as it was', () => {
    store.setTranscript(group.jid, exchange('earlier'), 1);
    const seq = post('@Andy again').seq;
    const turn = messageTurns({ store, groupJid: group.jid, timezone: 'UTC' }).next()!;
    turn.commit({ turnId: 't2', replies: ['real reply'], messages: null, usage: USAGE, now: 2 });
    expect(store.transcriptOf(group.jid)).toEqual(exchange('earlier'));
    expect(store.cursorOf(group.jid)).toBe(seq);
    expect(store.queuedOutbox().map((item) => item.text)).toEqual(['real reply']);
  });

  it('trims the oldest turns from the stored transcript past its budget', () => {
    const big = (name: string) => exchange(name, name.repeat(TRANSCRIPT_MAX_BYTES / 3));
    store.setTranscript(group.jid, [...big('a'), ...big('b')], 1);
    post('@Andy c');
    const turn = messageTurns({ store, groupJid: group.jid, timezone: 'UTC' }).next()!;
    turn.commit({ turnId: 't3', replies: [], messages: big('c'), usage: USAGE, now: 2 });
    const stored = store.transcriptOf(group.jid);
    expect(stored).toEqual([...big('b'), ...big('c')]);
    expect(conversationBytes(stored)).toBeLessThanOrEqual(TRANSCRIPT_MAX_BYTES);
  });

  it('a paused group has no message turn', () => {
    post('@Andy hi');
    store.setPaused(group.jid, true);
    expect(messageTurns({ store, groupJid: group.jid, timezone: 'UTC' }).next()).toBeNull();
  });

  it('a task gives exactly one turn, leaves the cursor alone, and runs its own bookkeeping in the commit', () => {
    post('@Andy waiting chat message');
    const recorded: string[] = [];
    const source = taskTurn({
      store,
      group,
      prompt: 'briefing',
      history: null,
      timezone: 'Asia/Tokyo',
      onCommit: (result, items) => recorded.push(`${result.turnId}:${items.length}`),
    });
    expect(source.takesMessages).toBe(false);
    const turn = source.next();
    expect(turn?.prompt).toBe('briefing');
    expect(source.next()).toBeNull();
    turn!.commit({
      turnId: 'task-1',
      replies: ['Good morning'],
      messages: exchange('briefing', 'Good morning'),
      usage: USAGE,
      now: NEW_YEAR_EVE_UTC,
    });
    expect(recorded).toEqual(['task-1:1']);
    // Isolated: it started fresh and leaves the group's conversation alone.
    expect(source.history()).toEqual([]);
    expect(store.transcriptOf(group.jid)).toEqual([]);
    expect(store.cursorOf(group.jid)).toBe(0);
    // Counted per model call by the broker, so the commit adds nothing.
    expect(store.usageOf(group.jid, '2026-01-01')).toEqual(NO_USAGE);
  });

  it('a task commit whose bookkeeping throws leaves no reply behind', () => {
    const turn = taskTurn({
      store,
      group,
      prompt: 'x',
      history: exchange('earlier'),
      timezone: 'UTC',
      onCommit: () => {
        throw new Error('run log is full');
      },
    }).next();
    expect(() =>
      turn!.commit({
        turnId: 't',
        replies: ['orphan'],
        messages: exchange('x'),
        usage: USAGE,
        now: 1,
      }),
    ).toThrow(/run log is full/);
    expect(store.queuedOutbox()).toEqual([]);
    expect(store.transcriptOf(group.jid)).toEqual([]);
  });

  it('a task in the group context resumes the conversation and commits its turn into it', () => {
    store.setTranscript(group.jid, exchange('earlier'), 1);
    const source = taskTurn({
      store,
      group,
      prompt: 'weekly summary',
      history: store.transcriptOf(group.jid),
      timezone: 'UTC',
    });
    expect(source.history()).toEqual(exchange('earlier'));
    source.next()!.commit({
      turnId: 'task-2',
      replies: ['Summary'],
      messages: exchange('weekly summary', 'Summary'),
      usage: USAGE,
      now: 2,
    });
    expect(store.transcriptOf(group.jid)).toEqual([
      ...exchange('earlier'),
      ...exchange('weekly summary', 'Summary'),
    ]);
    expect(store.cursorOf(group.jid)).toBe(0);
  });
});
