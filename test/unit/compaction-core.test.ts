/**
 * Compaction end to end: a real Core, the real runner as a child process, a real SQLite file,
 * and the real model broker (the real SDK) against the fake Messages API. A conversation is
 * driven past several compactions with a small threshold, and a fact from its first turn must
 * still be reachable: in the summary the next model request carries, and in the archive files.
 *
 * The fake's summaries are honest: a summary repeats exactly the `FACT-…` words found in the
 * summary request, so a fact survives only if the host really sent it to the summary call.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { SUMMARY_MARKER, type CompactionPolicy } from '../../main/core/agent/compaction.js';
import { ModelBroker } from '../../main/core/agent/model-broker.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { loadConfig } from '../../main/core/config.js';
import { Core } from '../../main/core/core.js';
import { silentLogger } from '../../main/core/logger.js';
import { openStore, type Group, type Store } from '../../main/core/store/index.js';
import { dayInZone } from '../../main/core/time.js';
import {
  errorTurn,
  textTurn,
  type FakeTurn,
  type RecordedRequest,
} from '../fakes/anthropic-api.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { runnerSuite } from '../helpers/runner-suite.js';

const API_KEY = 'sk-ant-test-compaction';
const suite = runnerSuite(API_KEY);

const FACT = 'FACT-LOCKER-4711';
/** Small enough that a few turns pass it: each turn here is about 1 KB of JSON. */
const POLICY: Partial<CompactionPolicy> = { thresholdBytes: 2_500, keepRecentBytes: 1_200 };

function systemText(request: RecordedRequest): string {
  const { system } = request.body;
  if (typeof system === 'string') return system;
  return (system ?? []).map((block) => block.text).join('\n');
}

function requestText(request: RecordedRequest): string {
  return JSON.stringify(request.body.messages);
}

function isSummaryCall(request: RecordedRequest): boolean {
  return systemText(request).includes('You compact the conversation');
}

/** The fake's summary: the FACT words of the request, and nothing else it could make up. */
function honestSummary(request: RecordedRequest): FakeTurn {
  const facts = [...new Set(requestText(request).match(/FACT-[A-Z0-9-]+/g) ?? [])];
  return textTurn(`The user shared these facts: ${facts.join(', ') || 'none'}.`);
}

/** The agent's answer: long enough that the transcript grows by about 1 KB a turn. */
function agentAnswer(): FakeTurn {
  return textTurn(`Noted. ${'(padding) '.repeat(60)}`, { usage: { inputTokens: 7 } });
}

interface Harness {
  core: Core;
  store: Store;
  group: Group;
  home: string;
  /** Posts one message in a run of its own (the previous run has ended) and waits for its reply. */
  say(text: string): Promise<string[]>;
}

async function harness(summary: (request: RecordedRequest) => FakeTurn): Promise<Harness> {
  const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-compact-')));
  // A tiny idle timeout: each message gets a run of its own, and compaction runs at its start.
  const config = {
    ...loadConfig({ CLAWBAR_HOME: home, TZ: 'UTC' }, () => undefined),
    idleTimeoutMs: 1,
  };
  const store = openStore(config.dbPath);
  const log = silentLogger();
  const runtime = new ProcessRuntime();
  const broker = new ModelBroker({
    apiKey: API_KEY,
    baseURL: suite.fake.url,
    model: config.model,
    log,
    maxRetries: 0,
  });
  const core = new Core({
    config,
    store,
    runtime,
    broker,
    log,
    channels: [localChannelFor(store)],
    retry: { baseDelayMs: 50, maxRetries: 1 },
    compaction: POLICY,
  });
  suite.defer(async () => {
    await core.shutdown(1_000);
    await runtime.cleanup();
    store.close();
    fs.rmSync(home, { recursive: true, force: true });
  });
  // Every call is answered by what it is: a summary call, or an agent's turn.
  const fallback = (request: RecordedRequest): FakeTurn =>
    isSummaryCall(request) ? summary(request) : agentAnswer();
  await core.start();
  const group = core.addGroup({ name: 'Family' });
  return {
    core,
    store,
    group,
    home,
    async say(text) {
      // At most a summary call and the agent's one call; spares are harmless.
      suite.fake.enqueue(fallback, fallback, fallback);
      const ended = new Promise<void>((resolve) => {
        const off = core.events.on('run:finished', (e) => {
          if (e.groupJid !== group.jid) return;
          off();
          resolve();
        });
      });
      const posted = core.postLocal('Family', 'Alice', `@Andy ${text}`);
      const reply = await core.waitForReply(group.jid, posted.message.seq, 20_000);
      await ended;
      return reply.replies.map((m) => m.text);
    },
  };
}

function archives(home: string, group: Group): string[] {
  const dir = path.join(home, 'groups', group.folder, 'conversations');
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

function readArchive(home: string, group: Group, name: string): string {
  return fs.readFileSync(path.join(home, 'groups', group.folder, 'conversations', name), 'utf8');
}

describe('compaction through the core', () => {
  it('keeps a fact from the first turn reachable across several compactions: in the summary the next request carries, and in the archives', async () => {
    const h = await harness(honestSummary);
    await h.say(`please remember: my locker code is ${FACT}`);
    for (let i = 1; i <= 9; i++) await h.say(`filler message ${i}: ${'chatter '.repeat(20)}`);
    const summaryCalls = suite.fake.requests.filter(isSummaryCall);
    const callsBefore = suite.fake.requests.length;
    // One more turn, to see what its request carries after the last compaction.
    await h.say('what is my locker code?');

    // Several compactions, each fed the one before: the first summary call saw the first turn
    // itself, the later ones only the earlier summary, which still held the fact.
    expect(summaryCalls.length).toBeGreaterThanOrEqual(3);
    expect(requestText(summaryCalls[0] as RecordedRequest)).toContain('please remember');
    const later = summaryCalls.at(-1) as RecordedRequest;
    expect(requestText(later)).not.toContain('please remember');
    expect(requestText(later)).toMatch(new RegExp(`<earlier-summary>[^<]*${FACT}`));
    // A summary call carries no tools (no web search either).
    expect(later.body.tools ?? []).toEqual([]);

    const last = suite.fake.requests
      .slice(callsBefore)
      .filter((r) => !isSummaryCall(r))
      .at(-1);
    expect(last).toBeDefined();
    const first = last?.body.messages[0];
    // The next request starts with the summary pair, which still holds the first turn's fact…
    expect(typeof first?.content === 'string' ? first.content : '').toMatch(
      new RegExp(`^\\${SUMMARY_MARKER}[\\s\\S]*${FACT}`),
    );
    expect(last?.body.messages[1]?.role).toBe('assistant');
    // …while the first turn itself is long gone from the conversation.
    expect(requestText(last as RecordedRequest)).not.toContain('please remember: my locker code');

    const stored = h.store.transcriptOf(h.group.jid);
    expect(stored[0]?.content).toEqual(expect.stringContaining(FACT));
    const names = archives(h.home, h.group);
    expect(names.length).toBe(suite.fake.requests.filter(isSummaryCall).length);
    for (const name of names) expect(name).toMatch(/^\d{4}-\d{2}-\d{2}-\d{4}(_\d{2})?\.md$/);
    // The first turn's full text is in the first archive: grep finds it.
    const withFact = names.filter((name) => readArchive(h.home, h.group, name).includes(FACT));
    expect(withFact[0]).toBe(names[0]);
    expect(readArchive(h.home, h.group, names[0] as string)).toContain(
      `please remember: my locker code is ${FACT}`,
    );
    // The summary pair names the archives, the latest one included.
    expect(stored[0]?.content).toEqual(
      expect.stringContaining(`conversations/${names.at(-1) as string}`),
    );
    // Every call, the summaries included, is metered to the group.
    const usage = h.store.usageOf(h.group.jid, dayInZone(Date.now(), 'UTC'));
    const summaries = suite.fake.requests.filter(isSummaryCall).length;
    expect(usage.inputTokens).toBe((suite.fake.requests.length - summaries) * 7 + summaries * 10);
  });

  it('compacts before a scheduled task that continues the group conversation, as before a chat run', async () => {
    const h = await harness(honestSummary);
    await h.say(`please remember: my locker code is ${FACT}`);
    for (let i = 1; i <= 2; i++) await h.say(`filler message ${i}: ${'chatter '.repeat(20)}`);
    const before = archives(h.home, h.group).length;
    const task = h.core.tasks.add({
      group: h.group,
      prompt: 'Remind me of my locker code',
      every: '1d',
      contextMode: 'group',
      createdBy: 'cli',
    });
    suite.fake.enqueue(
      (request: RecordedRequest) =>
        isSummaryCall(request) ? honestSummary(request) : agentAnswer(),
      (request: RecordedRequest) =>
        isSummaryCall(request) ? honestSummary(request) : agentAnswer(),
    );
    const finished = new Promise<string>((resolve) => {
      const off = h.core.events.on('task:finished', (e) => {
        off();
        resolve(e.status);
      });
    });
    const callsBefore = suite.fake.requests.length;
    h.core.runTask(task.id);
    expect(await finished).toBe('success');
    const calls = suite.fake.requests.slice(callsBefore);
    expect(calls.map(isSummaryCall)).toEqual([true, false]);
    expect(archives(h.home, h.group).length).toBe(before + 1);
    const taskRequest = calls[1] as RecordedRequest;
    const first = taskRequest.body.messages[0];
    expect(typeof first?.content === 'string' ? first.content : '').toMatch(
      new RegExp(`^\\${SUMMARY_MARKER}[\\s\\S]*${FACT}`),
    );
    expect(requestText(taskRequest)).toContain('Remind me of my locker code');
  });

  it('when the summary call fails, archives and trims the old turns anyway, keeps the earlier summary, and the run goes on', async () => {
    let failing = false;
    const h = await harness((request) =>
      failing ? errorTurn(500, 'summary server down') : honestSummary(request),
    );
    await h.say(`please remember: my locker code is ${FACT}`);
    // Until a first compaction succeeded.
    for (let i = 1; archives(h.home, h.group).length === 0; i++) {
      expect(i).toBeLessThan(10);
      await h.say(`filler message ${i}: ${'chatter '.repeat(20)}`);
    }
    failing = true;
    const before = archives(h.home, h.group).length;
    const failedCalls = (): number => suite.fake.allRequests.filter((r) => r.status === 500).length;
    let replies: string[] = [];
    for (let i = 0; failedCalls() === 0; i++) {
      expect(i).toBeLessThan(10);
      replies = await h.say(`more chatter ${i}: ${'words '.repeat(25)}`);
    }
    // The run that met the failed summary still answered.
    expect(replies).toEqual([expect.stringMatching(/^Noted\./)]);
    const names = archives(h.home, h.group);
    expect(names.length).toBe(before + 1);
    const stored = h.store.transcriptOf(h.group.jid);
    const pair = typeof stored[0]?.content === 'string' ? stored[0].content : '';
    expect(pair.startsWith(SUMMARY_MARKER)).toBe(true);
    // The earlier summary survives the failure, with a pointer to the unsummarised archive.
    expect(pair).toContain(FACT);
    expect(pair).toContain(
      `could not be summarised; their full text is in conversations/${names.at(-1) as string}`,
    );
    expect(readArchive(h.home, h.group, names.at(-1) as string)).toContain('filler message');
  });

  it('starts a stored conversation that cannot be resumed afresh, with one note to the chat, and answers', async () => {
    const h = await harness(honestSummary);
    // A transcript from an older format (the session ref of protocol 1), which no request can carry.
    h.store.db
      .prepare(
        `INSERT INTO sessions (group_jid, transcript, updated_at) VALUES (?, ?, 0)
         ON CONFLICT (group_jid) DO UPDATE SET transcript = excluded.transcript`,
      )
      .run(h.group.jid, JSON.stringify({ sessionId: 'old-format' }));

    expect(await h.say('hello?')).toEqual([expect.stringMatching(/^Noted\./)]);
    await h.say('still there?');

    const notes = (): string[] =>
      h.core
        .messages(h.group.jid, 20)
        .map((m) => m.text)
        .filter((text) => text.includes('could not pick up our earlier conversation'));
    await vi.waitFor(() => expect(notes()).toHaveLength(1));
    // The first run started fresh; the second resumed what the first stored.
    const agentCalls = suite.fake.requests.filter((r) => !isSummaryCall(r));
    expect(agentCalls[0]?.body.messages).toHaveLength(1);
    expect(requestText(agentCalls.at(-1) as RecordedRequest)).toContain('hello?');
  });
});
