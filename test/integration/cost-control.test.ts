/**
 * Cost and control through the real parts (issue 10): the real runner bundle as a child
 * process per container (ProcessRuntime), a real Core over a real SQLite file, and the real
 * model broker on the real SDK against the fake Messages API, which bills cached prefixes as
 * the API does (test/fakes/prompt-cache.ts).
 *
 * - The usage the host records per group, day and model is what the fake billed, call by call.
 * - Over a 10-turn conversation in a warm container at least 85 % of input tokens are cache
 *   reads. (Each turn in a new container is measured by `npm run bench` in real Docker: here
 *   each process gets its own temp workspace, whose path is in the system prompt.)
 * - A group past its daily budget stops at the next model call of a tool loop, its chat is told
 *   once and the tray hears `budget:reached`; the message is kept, and answered once the
 *   budget is raised.
 * - An idle warm container makes no model call while it waits out its idle time.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ModelBroker, ModelError } from '../../main/core/agent/model-broker.js';
import { silentLogger } from '../../main/core/logger.js';
import type { CoreEvents } from '../../main/core/events.js';
import type { ClawbarConfig } from '../../main/core/config.js';
import { dayInZone } from '../../main/core/time.js';
import {
  errorTurn,
  startFakeAnthropic,
  textTurn,
  toolUseTurn,
  type FakeAnthropic,
} from '../fakes/anthropic-api.js';
import { requireBuild } from '../helpers/clawbar.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-cost-control';
const REPLY_TIMEOUT_MS = 30_000;

let fake: FakeAnthropic;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  requireBuild();
  fake = await startFakeAnthropic({ apiKey: API_KEY, promptCache: true });
});
afterAll(() => fake.close());
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
  fake.reset();
});

async function startCore(config: Partial<ClawbarConfig> = {}): Promise<ProcessCore> {
  const parts = processCore({
    prefix: 'clawbar-cost-',
    api: { url: fake.url, apiKey: API_KEY },
    config,
  });
  cleanups.push(parts.close);
  await parts.core.start();
  parts.core.addGroup({ name: 'Family' });
  return parts;
}

/** Posts a message to Family and waits for the turn that answers it; the reply texts. */
async function ask(parts: ProcessCore, text: string): Promise<string[]> {
  const posted = parts.core.postLocal('Family', 'Alice', `@Andy ${text}`);
  const reply = await parts.core.waitForReply(
    posted.group.jid,
    posted.message.seq,
    REPLY_TIMEOUT_MS,
  );
  return reply.replies.map((m) => m.text);
}

/** Of every input token the fake billed, the share read from the cache. */
function cacheReadRatio(): { ratio: number; input: number; read: number } {
  let input = 0;
  let read = 0;
  for (const { usage } of fake.billing) {
    input += usage.inputTokens + usage.cacheReadTokens + usage.cacheWriteTokens;
    read += usage.cacheReadTokens;
  }
  return { ratio: read / input, input, read };
}

describe('usage and the prompt cache, through the real runner', () => {
  it('records per group, day and model exactly what the fake API billed', async () => {
    const parts = await startCore();
    fake.enqueue(
      toolUseTurn('bash', { command: 'echo hello' }),
      toolUseTurn('bash', { command: 'echo again' }),
      textTurn('Done.', { usage: { outputTokens: 12 } }),
      textTurn('Second answer.'),
    );

    expect(await ask(parts, 'run two commands')).toEqual(['Done.']);
    expect(await ask(parts, 'and now?')).toEqual(['Second answer.']);

    expect(fake.billing).toHaveLength(4);
    const billed = fake.billing.reduce(
      (sum, { usage }) => ({
        inputTokens: sum.inputTokens + usage.inputTokens,
        outputTokens: sum.outputTokens + usage.outputTokens,
        cacheReadTokens: sum.cacheReadTokens + usage.cacheReadTokens,
        cacheWriteTokens: sum.cacheWriteTokens + usage.cacheWriteTokens,
      }),
      { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 },
    );
    expect(billed.cacheReadTokens).toBeGreaterThan(0);
    const group = parts.store.getGroup('local:family') ?? parts.core.groups.resolve('Family');
    const today = dayInZone(Date.now(), parts.config.timezone);
    expect(parts.store.usageOnDay(today)).toEqual([
      { groupJid: group.jid, model: parts.config.model, calls: 4, usage: billed },
    ]);
    expect(parts.core.budget.usageToday(group.jid)).toMatchObject({
      ...billed,
      calls: 4,
      tokens:
        billed.inputTokens + billed.outputTokens + billed.cacheReadTokens + billed.cacheWriteTokens,
    });
    expect(parts.core.budget.usageToday(group.jid).costUsd).toBeGreaterThan(0);
  });

  it('reads at least 85 % of input tokens from the cache over 10 turns in a warm container', async () => {
    const parts = await startCore();
    for (let turn = 1; turn <= 10; turn++) {
      if (turn % 3 === 0) fake.enqueue(toolUseTurn('bash', { command: `echo step ${turn}` }));
      fake.enqueue(textTurn(`Answer ${turn}.`));
      expect(await ask(parts, `question ${turn}`)).toEqual([`Answer ${turn}.`]);
    }
    // One container served every turn.
    expect(parts.runtime.started).toHaveLength(1);
    const { ratio } = cacheReadRatio();
    expect(ratio).toBeGreaterThanOrEqual(0.85);
  });

  it('makes no model call while a warm container sits idle until it stops', async () => {
    const parts = await startCore({ idleTimeoutMs: 300 });
    fake.enqueue(textTurn('Hi.'));
    expect(await ask(parts, 'hello')).toEqual(['Hi.']);
    const callsAfterReply = fake.allRequests.length;

    // The container waits out its idle time, then exits.
    await parts.runtime.started[0]?.exited;

    expect(fake.allRequests).toHaveLength(callsAfterReply);
    expect(callsAfterReply).toBe(1);
  });
});

describe('the daily budget, through the real runner', () => {
  it('stops a tool loop at the next model call, tells the chat once, keeps the message and answers it when raised', async () => {
    const parts = await startCore();
    const { core, store } = parts;
    const family = core.groups.resolve('Family');
    core.updateGroupSettings('Family', { budgetTokens: 1 });
    const reached: Array<CoreEvents['budget:reached']> = [];
    core.events.on('budget:reached', (e) => reached.push(e));
    // The model would loop on tools forever.
    fake.enqueue(
      toolUseTurn('bash', { command: 'echo 1' }),
      toolUseTurn('bash', { command: 'echo 2' }),
    );

    const posted = core.postLocal('Family', 'Alice', '@Andy loop please');
    await expect
      .poll(() => core.budget.heldGroups(), { timeout: REPLY_TIMEOUT_MS })
      .toEqual([family.jid]);

    // The first call ran (no usage yet); the second was refused before it reached the API.
    expect(fake.requests).toHaveLength(1);
    expect(reached).toHaveLength(1);
    expect(reached[0]).toMatchObject({ groupJid: family.jid, limit: '1 token' });
    const notices = () =>
      store
        .recentMessages(family.jid, 50)
        .filter((m) => m.fromBot)
        .map((m) => m.text);
    await expect.poll(notices, { timeout: REPLY_TIMEOUT_MS }).toHaveLength(1);
    expect(notices()[0]).toMatch(
      /^The daily budget of 1 token for this group is reached \(.* tokens used today\); it resets at midnight \(UTC\)\. Your messages are kept/,
    );

    // Another message waits too, with no call and no second notice.
    core.postLocal('Family', 'Alice', '@Andy are you there?');
    await expect.poll(() => core.budget.heldGroups()).toEqual([family.jid]);
    expect(fake.requests).toHaveLength(1);
    expect(store.cursorOf(family.jid)).toBeLessThan(posted.message.seq);

    // Raised: both messages are answered in one turn.
    fake.script([textTurn('Back again.')]);
    const reply = core.waitForReply(family.jid, posted.message.seq, REPLY_TIMEOUT_MS);
    core.updateGroupSettings('Family', { budgetTokens: null });
    expect((await reply).replies.map((m) => m.text)).toEqual(['Back again.']);
    expect(notices().filter((text) => text.includes('daily budget'))).toHaveLength(1);
    expect(notices().some((text) => text.startsWith('Sorry'))).toBe(false);
  });
});

describe('request errors', () => {
  it.each([400, 401, 403, 404, 413, 422])(
    'never retries a %i, even with the SDK allowed to, and says what the API answered',
    async (status) => {
      fake.enqueue(errorTurn(status, 'the API says no'), textTurn('should never be reached'));
      const broker = new ModelBroker({
        apiKey: API_KEY,
        baseURL: fake.url,
        model: 'claude-sonnet-4-6',
        log: silentLogger(),
        maxRetries: 2,
      });

      const error = await broker
        .complete({
          system: 's',
          messages: [{ role: 'user', content: 'hi' }],
          tools: [],
          maxTokens: 10,
        })
        .then(
          () => null,
          (err: unknown) => err,
        );

      expect(error).toBeInstanceOf(ModelError);
      expect(error).toMatchObject({ retryable: false, status });
      expect((error as ModelError).message).toContain(`(${status}`);
      expect((error as ModelError).message).toContain('the API says no');
      expect(fake.allRequests).toHaveLength(1);
      expect(fake.billing).toHaveLength(0);
    },
  );

  it('does retry a 429 and a 529, which are the API asking to wait', async () => {
    fake.enqueue(
      errorTurn(429, undefined, { retryAfterMs: 1 }),
      errorTurn(529, undefined, { retryAfterMs: 1 }),
      textTurn('ok'),
    );
    const broker = new ModelBroker({
      apiKey: API_KEY,
      baseURL: fake.url,
      model: 'claude-sonnet-4-6',
      log: silentLogger(),
      maxRetries: 2,
    });

    const result = await broker.complete({
      system: 's',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [],
      maxTokens: 10,
    });

    expect(result.content).toEqual([{ type: 'text', text: 'ok' }]);
    expect(fake.allRequests).toHaveLength(3);
  });

  it('ends the turn at a 400 with one request, and tells the chat what the API said', async () => {
    const parts = await startCore();
    fake.enqueue(errorTurn(400, 'prompt is too long'), textTurn('never'));

    const posted = parts.core.postLocal('Family', 'Alice', '@Andy hello');
    const outcome = await parts.core
      .waitForReply(posted.group.jid, posted.message.seq, REPLY_TIMEOUT_MS)
      .then(
        (reply) => reply.replies.map((m) => m.text).join('\n'),
        (err: unknown) => (err instanceof Error ? err.message : String(err)),
      );

    expect(outcome).toContain('prompt is too long');
    // The runner did not send it again, and neither did the SDK.
    expect(fake.allRequests.filter((r) => r.path === '/v1/messages')).toHaveLength(1);
  });
});
