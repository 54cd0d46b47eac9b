/**
 * The transcript compactor on its own: a real SQLite store and real folders in a temp dir, and a
 * stand-in broker that records what it was asked (the end-to-end path through the real broker
 * and the fake API is in compaction-core.test.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelCaller } from '../../main/core/agent/agent-run.js';
import {
  SUMMARY_MARKER,
  TranscriptCompactor,
  archiveStem,
  hardTrim,
  summaryOf,
  summaryPair,
  type CompactionPolicy,
} from '../../main/core/agent/compaction.js';
import { conversationBytes, conversationProblem } from '../../main/core/agent/conversation.js';
import type { ModelRequest } from '../../main/core/agent/model-broker.js';
import type { MessageParam } from '../../main/core/agent/protocol.js';
import { silentLogger } from '../../main/core/logger.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const NOW = Date.UTC(2026, 10, 26, 9, 30);

/** One turn with a tool call, about `size` bytes bigger than its text. */
const turn = (question: string, size = 200): MessageParam[] => [
  { role: 'user', content: question },
  {
    role: 'assistant',
    content: [
      {
        type: 'tool_use',
        id: `t-${question.length}-${size}`,
        name: 'bash',
        input: { command: 'ls' },
      },
    ],
  },
  {
    role: 'user',
    content: [
      {
        type: 'tool_result',
        tool_use_id: `t-${question.length}-${size}`,
        content: 'x'.repeat(size),
      },
    ],
  },
  { role: 'assistant', content: [{ type: 'text', text: `answer to ${question}` }] },
];

function conversation(count: number): MessageParam[] {
  return Array.from({ length: count }, (_, i) => turn(`question ${i}`)).flat();
}

/** A broker that answers every call with `answer(request)` and records the requests. */
function recordingBroker(
  answer: (req: ModelRequest, signal?: AbortSignal) => Promise<string>,
): ModelCaller & {
  requests: ModelRequest[];
} {
  const requests: ModelRequest[] = [];
  return {
    requests,
    complete: async (req, opts) => {
      requests.push(req);
      const text = await answer(req, opts?.signal);
      return {
        content: [{ type: 'text', text }],
        stopReason: 'end_turn',
        usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 },
      };
    },
  };
}

let temp: TempStore;
let groupsDir: string;
let folder: string;

beforeEach(() => {
  temp = tempStore('clawbar-compaction-');
  groupsDir = path.join(temp.dir, 'groups');
  folder = path.join(groupsDir, temp.family.folder);
  fs.mkdirSync(folder, { recursive: true });
});

afterEach(() => temp.close());

function compactor(
  broker: ModelCaller,
  policy: Partial<CompactionPolicy> = {},
  onNotice?: () => void,
): TranscriptCompactor {
  return new TranscriptCompactor({
    store: temp.store,
    broker,
    group: { jid: temp.family.jid, folder: temp.family.folder },
    groupsDir,
    timezone: 'UTC',
    now: () => NOW,
    log: silentLogger(),
    policy: { thresholdBytes: 3_000, keepRecentBytes: 1_000, ...policy },
    ...(onNotice ? { onNotice } : {}),
  });
}

const archiveDir = (): string => path.join(folder, 'conversations');
const archiveNames = (): string[] =>
  fs.existsSync(archiveDir()) ? fs.readdirSync(archiveDir()).sort() : [];

describe('summaryPair and summaryOf', () => {
  it('builds a marked user/assistant pair that the store accepts and that reads back', () => {
    const pair = summaryPair('The user likes tea.', ['conversations/2026-11-26-0930.md']);
    expect(pair.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(String(pair[0]?.content).startsWith(SUMMARY_MARKER)).toBe(true);
    expect(String(pair[0]?.content)).toContain('conversations/2026-11-26-0930.md');
    const stored = [...pair, ...turn('next')];
    expect(conversationProblem(stored)).toBeNull();
    temp.store.setTranscript(temp.family.jid, stored, NOW);
    // The store's own checks (the API's rules and the broker's content policy) keep it.
    expect(temp.store.transcriptOf(temp.family.jid)).toEqual(stored);
    expect(summaryOf(stored)).toEqual({
      summary: 'The user likes tea.',
      archives: ['conversations/2026-11-26-0930.md'],
    });
  });

  it('does not take a plain conversation, or a user who types the marker, for a summary', () => {
    expect(summaryOf(turn('hello'))).toBeNull();
    expect(
      summaryOf([{ role: 'user', content: `${SUMMARY_MARKER} please` }, ...turn('x').slice(1)]),
    ).toBeNull();
  });
});

describe('TranscriptCompactor.prepare', () => {
  it('leaves a transcript under the threshold alone, with no model call', async () => {
    const broker = recordingBroker(async () => 'unused');
    const messages = conversation(2);
    temp.store.setTranscript(temp.family.jid, messages, NOW);
    expect(await compactor(broker).prepare(new AbortController().signal)).toEqual({ kind: 'fits' });
    expect(broker.requests).toHaveLength(0);
    expect(temp.store.transcriptOf(temp.family.jid)).toEqual(messages);
    expect(archiveNames()).toEqual([]);
  });

  it('archives the old turns first, then keeps the summary and the recent turns', async () => {
    const messages = conversation(12);
    temp.store.setTranscript(temp.family.jid, messages, NOW);
    let archivedBeforeCall: string[] = [];
    const broker = recordingBroker(async () => {
      archivedBeforeCall = archiveNames();
      return 'The user asked twelve questions.';
    });
    const outcome = await compactor(broker).prepare(new AbortController().signal);

    expect(outcome).toEqual({ kind: 'compacted', archive: 'conversations/2026-11-26-0930.md' });
    expect(archivedBeforeCall).toEqual(['2026-11-26-0930.md']);
    const stored = temp.store.transcriptOf(temp.family.jid);
    expect(summaryOf(stored)).toEqual({
      summary: 'The user asked twelve questions.',
      archives: ['conversations/2026-11-26-0930.md'],
    });
    const kept = stored.slice(2);
    expect(kept).toEqual(messages.slice(messages.length - kept.length));
    expect(conversationBytes(kept)).toBeLessThanOrEqual(1_000);
    expect(conversationProblem(stored)).toBeNull();

    // The archive holds every dropped turn, as markdown the agent can grep.
    const archive = fs.readFileSync(path.join(archiveDir(), '2026-11-26-0930.md'), 'utf8');
    const dropped = (messages.length - kept.length) / 4;
    for (let i = 0; i < dropped; i++) expect(archive).toContain(`## User\n\nquestion ${i}\n`);
    expect(archive).not.toContain(`question ${dropped}\n`);
    expect(archive).toContain('Tool call `bash`:\n```json\n{\n  "command": "ls"\n}\n```');
    expect(archive).toContain('- Archived: 2026-11-26T09:30:00+00:00');

    // The summary call: no tools, the host's output ceiling, the old turns as text.
    const [request] = broker.requests;
    expect(request?.tools).toEqual([]);
    expect(request?.maxTokens).toBe(2048);
    expect(request?.messages).toHaveLength(1);
    expect(String(request?.messages[0]?.content)).toContain('question 0');
    expect(String(request?.messages[0]?.content)).toContain('(none: this is the start');
  });

  it('feeds the earlier summary into the next one, and names the newest archives', async () => {
    const replies = ['Summary one: the code is 4711.', 'Summary two.'];
    const broker = recordingBroker(async () => replies.shift() ?? 'more');
    temp.store.setTranscript(temp.family.jid, conversation(12), NOW);
    await compactor(broker).prepare(new AbortController().signal);
    const afterFirst = temp.store.transcriptOf(temp.family.jid);
    temp.store.setTranscript(temp.family.jid, [...afterFirst, ...conversation(12)], NOW);
    const outcome = await compactor(broker).prepare(new AbortController().signal);

    expect(outcome).toEqual({ kind: 'compacted', archive: 'conversations/2026-11-26-0930_02.md' });
    expect(String(broker.requests[1]?.messages[0]?.content)).toMatch(
      /<earlier-summary>\nSummary one: the code is 4711\.\n<\/earlier-summary>/,
    );
    const stored = temp.store.transcriptOf(temp.family.jid);
    expect(summaryOf(stored)?.archives).toEqual([
      'conversations/2026-11-26-0930.md',
      'conversations/2026-11-26-0930_02.md',
    ]);
    // The second archive holds the turns, not the earlier summary pair, and says what it continues.
    const second = fs.readFileSync(path.join(archiveDir(), '2026-11-26-0930_02.md'), 'utf8');
    expect(second).not.toContain(SUMMARY_MARKER);
    expect(second).toContain('- Continues: conversations/2026-11-26-0930.md');
  });

  it('when the summary call fails, still drops the archived turns and keeps the earlier summary', async () => {
    const broker = recordingBroker(async () => 'Earlier: the user likes tea.');
    temp.store.setTranscript(temp.family.jid, conversation(12), NOW);
    await compactor(broker).prepare(new AbortController().signal);
    const afterFirst = temp.store.transcriptOf(temp.family.jid);
    temp.store.setTranscript(temp.family.jid, [...afterFirst, ...conversation(12)], NOW);

    const failing = recordingBroker(async () => {
      throw new Error('API error 500');
    });
    const outcome = await compactor(failing).prepare(new AbortController().signal);

    expect(outcome).toEqual({
      kind: 'trimmed',
      archive: 'conversations/2026-11-26-0930_02.md',
      reason: 'API error 500',
    });
    const stored = temp.store.transcriptOf(temp.family.jid);
    expect(summaryOf(stored)?.summary).toBe(
      'Earlier: the user likes tea.\n\n(The turns up to 2026-11-26T09:30:00+00:00 could not be summarised; their full text is in conversations/2026-11-26-0930_02.md.)',
    );
    expect(conversationBytes(stored)).toBeLessThan(3_000);
    expect(archiveNames()).toEqual(['2026-11-26-0930.md', '2026-11-26-0930_02.md']);
  });

  it('trims instead when the summary call outlives its deadline', async () => {
    const broker = recordingBroker(
      (_req, signal) =>
        new Promise((_resolve, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('aborted'))),
        ),
    );
    temp.store.setTranscript(temp.family.jid, conversation(12), NOW);
    const outcome = await compactor(broker, { timeoutMs: 20 }).prepare(
      new AbortController().signal,
    );
    expect(outcome).toMatchObject({
      kind: 'trimmed',
      reason: 'the summary took longer than 20 ms',
    });
    expect(summaryOf(temp.store.transcriptOf(temp.family.jid))).not.toBeNull();
  });

  it('changes nothing when the run is stopped during the summary call', async () => {
    const run = new AbortController();
    const broker = recordingBroker(
      (_req, signal) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () => reject(new Error('aborted')));
          run.abort();
        }),
    );
    const messages = conversation(12);
    temp.store.setTranscript(temp.family.jid, messages, NOW);
    expect(await compactor(broker).prepare(run.signal)).toEqual({ kind: 'aborted' });
    expect(temp.store.transcriptOf(temp.family.jid)).toEqual(messages);
  });

  it('never writes through a conversations link the agent planted, and then leaves the transcript alone', async () => {
    const outside = path.join(temp.dir, 'outside');
    fs.mkdirSync(outside);
    fs.symlinkSync(outside, archiveDir());
    const broker = recordingBroker(async () => 'unused');
    const messages = conversation(12);
    temp.store.setTranscript(temp.family.jid, messages, NOW);

    const outcome = await compactor(broker).prepare(new AbortController().signal);

    expect(outcome).toMatchObject({ kind: 'skipped' });
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(broker.requests).toHaveLength(0); // No tokens spent on a summary that cannot be kept.
    expect(temp.store.transcriptOf(temp.family.jid)).toEqual(messages);
  });

  it('starts a conversation that cannot be resumed afresh, telling the chat once', async () => {
    temp.store.db
      .prepare(
        `INSERT INTO sessions (group_jid, transcript, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (group_jid) DO UPDATE SET transcript = excluded.transcript`,
      )
      .run(temp.family.jid, '{"version": 1, "session": "abc"', NOW);
    let notices = 0;
    const broker = recordingBroker(async () => 'unused');

    const first = await compactor(broker, {}, () => notices++).prepare(
      new AbortController().signal,
    );
    const second = await compactor(broker, {}, () => notices++).prepare(
      new AbortController().signal,
    );

    expect(first).toEqual({ kind: 'reset', problem: 'it is not JSON' });
    expect(second).toEqual({ kind: 'fits' });
    expect(notices).toBe(1);
    const queued = temp.store.queuedOutbox().filter((item) => item.chatJid === temp.family.jid);
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ kind: 'notice' });
    expect(queued[0]?.text).toMatch(/could not pick up our earlier conversation.*starting fresh/);
    expect(temp.store.transcriptOf(temp.family.jid)).toEqual([]);
  });
});

describe('TranscriptCompactor.trimForCommit', () => {
  it('archives the turns the hard limit drops, and keeps the summary pair', () => {
    const pair = summaryPair('Facts: FACT-1.', ['conversations/2026-11-01-0800.md']);
    const messages = [...pair, ...conversation(12)];
    const kept = compactor(
      recordingBroker(async () => 'unused'),
      { hardMaxBytes: 2_000 },
    ).trimForCommit(messages);
    expect(kept.slice(0, 2)).toEqual(pair);
    expect(conversationBytes(kept)).toBeLessThanOrEqual(2_000);
    expect(conversationProblem(kept)).toBeNull();
    const [name] = archiveNames();
    const archive = fs.readFileSync(path.join(archiveDir(), name as string), 'utf8');
    expect(archive).toContain('question 0');
    expect(archive).toContain('trimmed at the hard limit');
  });

  it('returns a transcript within the limit as it is, writing nothing', () => {
    const messages = conversation(2);
    expect(compactor(recordingBroker(async () => 'unused')).trimForCommit(messages)).toEqual(
      messages,
    );
    expect(archiveNames()).toEqual([]);
  });
});

describe('hardTrim and archiveStem', () => {
  it('drops whole turns from after the summary pair', () => {
    const pair = summaryPair('s', []);
    const { kept, dropped } = hardTrim(
      [...pair, ...conversation(5)],
      conversationBytes([...pair, ...conversation(2)]),
    );
    expect(kept).toEqual([...pair, ...conversation(5).slice(12)]);
    expect(dropped).toEqual(conversation(5).slice(0, 12));
  });

  it('names an archive by the local minute', () => {
    expect(archiveStem(NOW, 'UTC')).toBe('2026-11-26-0930');
    expect(archiveStem(NOW, 'Asia/Kolkata')).toBe('2026-11-26-1500');
  });
});
