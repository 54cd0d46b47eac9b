import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_PROMPT_MESSAGES, pendingTurn } from '../../main/core/agent/agent-run.js';
import { buildPrompt } from '../../main/core/router.js';
import { openStore, type Group, type Store } from '../../main/core/store/index.js';

describe('pendingTurn', () => {
  let dir: string;
  let store: Store;
  let group: Group;
  let next = 0;

  const post = (text: string, over: { fromBot?: boolean } = {}) =>
    store.insertMessage({
      chatJid: group.jid,
      id: `m${next}`,
      sender: 'local:alice',
      senderName: 'Alice',
      text,
      timestamp: 1_700_000_000_000 + next++,
      ...over,
    }).message;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-pending-'));
    store = openStore(path.join(dir, 'clawbar.db'));
    group = store.addGroup(
      {
        jid: 'local:family',
        folder: 'family',
        name: 'Family',
        trigger: '@Andy',
        requiresTrigger: true,
        isMain: false,
        channel: 'local',
      },
      0,
    );
  });

  afterEach(() => {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('is null while no pending message carries the trigger', () => {
    post('hello everyone');
    post('@Andy hi', { fromBot: true });
    expect(pendingTurn(store, group)).toBeNull();
  });

  it("answers everything since the cursor, without the assistant's own messages", () => {
    const a = post('context first');
    post('an earlier reply', { fromBot: true });
    const b = post('@Andy now answer');
    const turn = pendingTurn(store, group);
    expect(turn?.messages.map((m) => m.seq)).toEqual([a.seq, b.seq]);
    expect(turn?.throughSeq).toBe(b.seq);
    expect(turn?.omitted).toBe(0);
  });

  it('sees a trigger behind a backlog longer than one page, and caps the prompt', () => {
    for (let i = 0; i < 1_234; i++) post(`chatter ${i}`);
    const trigger = post('@Andy summarise please');
    const turn = pendingTurn(store, group);
    expect(turn).not.toBeNull();
    expect(turn?.throughSeq).toBe(trigger.seq);
    expect(turn?.messages).toHaveLength(MAX_PROMPT_MESSAGES);
    expect(turn?.messages.at(-1)?.text).toBe('@Andy summarise please');
    expect(turn?.omitted).toBe(1_235 - MAX_PROMPT_MESSAGES);
    expect(buildPrompt(turn!.messages, turn!.omitted)).toContain(
      `<omitted count="${1_235 - MAX_PROMPT_MESSAGES}">`,
    );
  });

  it('starts after the cursor once a turn is committed', () => {
    const old = post('@Andy first');
    store.commitTurn({
      groupJid: group.jid,
      throughSeq: old.seq,
      turnId: 't1',
      replies: [],
      sessionRef: null,
      usage: { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 },
      now: 1,
    });
    expect(pendingTurn(store, group)).toBeNull();
    const fresh = post('@Andy second');
    expect(pendingTurn(store, group)?.messages.map((m) => m.seq)).toEqual([fresh.seq]);
  });
});
