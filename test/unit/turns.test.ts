import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { messageTurns, taskTurn } from '../../main/core/agent/turns.js';
import type { Group, Store } from '../../main/core/store/index.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const USAGE = { inputTokens: 120, outputTokens: 30, cacheReadTokens: 5, cacheWriteTokens: 1 };
// 23:30 UTC on 31 December: already 1 January in Tokyo, still 31 December in New York.
const NEW_YEAR_EVE_UTC = Date.UTC(2025, 11, 31, 23, 30);

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

  it.each([
    ['Asia/Tokyo', '2026-01-01'],
    ['America/New_York', '2025-12-31'],
    ['UTC', '2025-12-31'],
  ])('records a turn’s usage on the day it is in %s (%s)', (timezone, day) => {
    post('@Andy happy new year');
    const turn = messageTurns({ store, groupJid: group.jid, timezone }).next();
    turn!.commit({
      turnId: 't1',
      replies: ['Same to you'],
      sessionRef: null,
      usage: USAGE,
      now: NEW_YEAR_EVE_UTC,
    });
    expect(store.usageOf(group.jid, day)).toEqual(USAGE);
  });

  it('a message turn commits replies, cursor and session together; nothing is pending after', () => {
    const seq = post('@Andy hi').seq;
    const source = messageTurns({ store, groupJid: group.jid, timezone: 'UTC' });
    const turn = source.next();
    expect(turn?.throughSeq).toBe(seq);
    const items = turn!.commit({
      turnId: 't1',
      replies: ['hello'],
      sessionRef: 's1',
      usage: USAGE,
      now: 1,
    });
    expect(items.map((i) => [i.text, i.kind, i.turnId])).toEqual([['hello', 'reply', 't1']]);
    expect(store.cursorOf(group.jid)).toBe(seq);
    expect(source.sessionRef()).toBe('s1');
    expect(source.next()).toBeNull();
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
      sessionRef: null,
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
      sessionRef: null,
      usage: USAGE,
      now: NEW_YEAR_EVE_UTC,
    });
    expect(recorded).toEqual(['task-1:1']);
    expect(store.cursorOf(group.jid)).toBe(0);
    expect(store.usageOf(group.jid, '2026-01-01')).toEqual(USAGE);
  });

  it('a task commit whose bookkeeping throws leaves no reply behind', () => {
    const turn = taskTurn({
      store,
      group,
      prompt: 'x',
      sessionRef: null,
      timezone: 'UTC',
      onCommit: () => {
        throw new Error('run log is full');
      },
    }).next();
    expect(() =>
      turn!.commit({ turnId: 't', replies: ['orphan'], sessionRef: null, usage: USAGE, now: 1 }),
    ).toThrow(/run log is full/);
    expect(store.queuedOutbox()).toEqual([]);
  });
});
