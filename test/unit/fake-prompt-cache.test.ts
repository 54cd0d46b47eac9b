/**
 * The fake Messages API's prompt cache is the yardstick of the cache-read ratio, so its
 * billing is tested on its own: prefixes end at breakpoints, hits are looked for 20 blocks
 * back, writes and the uncached rest are counted as the API counts them, entries expire after
 * 5 minutes of disuse, and the API's limit of 4 breakpoints is enforced. The last tests go
 * through the real SDK against the fake server.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import {
  CacheRequestError,
  estimateTokens,
  PromptCache,
  type CacheableRequest,
} from '../fakes/prompt-cache.js';

const MARK = { type: 'ephemeral' } as const;

/** A text block of exactly `tokens` estimated tokens (JSON length / 4). */
function text(tokens: number, tag: string, marked = false): Record<string, unknown> {
  const block = { type: 'text', text: '' };
  const bare = JSON.stringify({ ...block, text: tag }).length;
  block.text = tag + 'x'.repeat(tokens * 4 - bare);
  expect(estimateTokens(block)).toBe(tokens);
  return marked ? { ...block, cache_control: MARK } : block;
}

/** A conversation of `turns` user/assistant pairs of one 10-token block each, then a user turn. */
function conversation(turns: number, marks: number[] = []): CacheableRequest['messages'] {
  const messages: Array<{ role: string; content: Array<Record<string, unknown>> }> = [];
  for (let i = 0; i <= turns * 2; i++) {
    messages.push({
      role: i % 2 === 0 ? 'user' : 'assistant',
      content: [text(10, `m${i}`, marks.includes(i))],
    });
  }
  return messages;
}

function request(messages: CacheableRequest['messages'], system = 'sys'): CacheableRequest {
  return { model: 'claude-test', system: [{ type: 'text', text: system }], messages };
}

/** Total estimated tokens of a request. */
function total(req: CacheableRequest): number {
  const blocks = [
    ...(req.tools ?? []),
    ...(typeof req.system === 'string' ? [{ type: 'text', text: req.system }] : (req.system ?? [])),
    ...req.messages.flatMap((m) =>
      typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content,
    ),
  ];
  return blocks.reduce(
    (sum, block) => sum + estimateTokens({ ...block, cache_control: undefined }),
    0,
  );
}

describe('PromptCache billing', () => {
  it('writes the prefix up to the breakpoint on a miss and bills the rest as input', () => {
    const cache = new PromptCache();
    const req = request(conversation(1, [1]));
    const systemTokens = estimateTokens({ type: 'text', text: 'sys' });

    const bill = cache.bill(req);

    expect(bill).toEqual({
      cacheReadTokens: 0,
      cacheWriteTokens: systemTokens + 20,
      inputTokens: 10,
    });
  });

  it('reads the same prefix back on the next request, and writes only what is new', () => {
    const cache = new PromptCache();
    const first = request(conversation(1, [2]));
    cache.bill(first);
    const second = request(conversation(2, [4]));

    const bill = cache.bill(second);

    expect(bill.cacheReadTokens).toBe(total(first));
    expect(bill.cacheWriteTokens).toBe(20);
    expect(bill.inputTokens).toBe(0);
    expect(bill.cacheReadTokens + bill.cacheWriteTokens + bill.inputTokens).toBe(total(second));
  });

  it('bills nothing from the cache without a breakpoint', () => {
    const cache = new PromptCache();
    const req = request(conversation(2));
    cache.bill(req);

    expect(cache.bill(req)).toEqual({
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      inputTokens: total(req),
    });
  });

  it('finds an entry 19 blocks before the breakpoint, but not 20', () => {
    const cache = new PromptCache();
    // Entry at message 0 (block 1, after the system block).
    cache.bill(request(conversation(0, [0])));
    // Breakpoint at message 19 (block 20): the entry is 19 blocks back, the 20th position.
    const near = cache.bill(request(conversation(10, [19]).slice(0, 20)));
    expect(near.cacheReadTokens).toBeGreaterThan(0);

    const far = new PromptCache();
    far.bill(request(conversation(0, [0])));
    // Breakpoint at message 20 (block 21): the entry is 20 blocks back, out of reach.
    const missed = far.bill(request(conversation(10, [20])));
    expect(missed.cacheReadTokens).toBe(0);
    expect(missed.cacheWriteTokens).toBe(total(request(conversation(10))));
  });

  it('a second breakpoint at the previous end reads it however far back it lies', () => {
    const cache = new PromptCache();
    cache.bill(request(conversation(0, [0])));
    // 30 blocks later, but with a breakpoint exactly where the last request ended.
    const bill = cache.bill(request(conversation(15, [0, 30])));
    expect(bill.cacheReadTokens).toBe(total(request(conversation(0))));
    expect(bill.inputTokens).toBe(0);
  });

  it('reads nothing once the prefix changed before the breakpoint', () => {
    const cache = new PromptCache();
    cache.bill(request(conversation(1, [2]), 'old system prompt'));

    const bill = cache.bill(request(conversation(2, [4]), 'new system prompt'));

    expect(bill.cacheReadTokens).toBe(0);
  });

  it('ignores where the marks sit when it compares prefixes, and reads a string as a text block', () => {
    const cache = new PromptCache();
    const first: CacheableRequest = {
      model: 'claude-test',
      system: 'sys',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hello', cache_control: MARK }] }],
    };
    cache.bill(first);
    const second: CacheableRequest = {
      model: 'claude-test',
      system: [{ type: 'text', text: 'sys' }],
      messages: [
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi' },
        { role: 'user', content: [{ type: 'text', text: 'more', cache_control: MARK }] },
      ],
    };

    expect(cache.bill(second).cacheReadTokens).toBe(total(first));
  });

  it('keeps caches apart per model and per account', () => {
    const cache = new PromptCache();
    const req = request(conversation(1, [2]));
    cache.bill(req, 'key-a');

    expect(cache.bill({ ...req, model: 'other' }, 'key-a').cacheReadTokens).toBe(0);
    expect(cache.bill(req, 'key-b').cacheReadTokens).toBe(0);
    expect(cache.bill(req, 'key-a').cacheReadTokens).toBe(total(req));
  });

  it('drops an entry after 5 minutes without use, and a hit keeps it alive', () => {
    let now = 1_000_000;
    const cache = new PromptCache({ now: () => now });
    const req = request(conversation(1, [2]));
    cache.bill(req);

    now += 4 * 60 * 1000;
    expect(cache.bill(req).cacheReadTokens).toBe(total(req));
    // 8 minutes after the write, but 4 after the hit that refreshed it.
    now += 4 * 60 * 1000;
    expect(cache.bill(req).cacheReadTokens).toBe(total(req));

    now += 5 * 60 * 1000;
    const expired = cache.bill(req);
    expect(expired.cacheReadTokens).toBe(0);
    expect(expired.cacheWriteTokens).toBe(total(req));
  });

  it('does not cache a prefix shorter than the minimum', () => {
    const cache = new PromptCache({ minCacheableTokens: 1000 });
    const req = request(conversation(1, [2]));

    expect(cache.bill(req)).toEqual({
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      inputTokens: total(req),
    });
    expect(cache.bill(req).cacheReadTokens).toBe(0);
    expect(cache.size).toBe(0);
  });

  it('caches tools before the system prompt, so a new system prompt still reads the tools', () => {
    const cache = new PromptCache();
    const tools = [{ name: 'bash', input_schema: { type: 'object' }, cache_control: MARK }];
    cache.bill({ ...request(conversation(0), 'one'), tools });

    const bill = cache.bill({ ...request(conversation(0), 'two'), tools });

    expect(bill.cacheReadTokens).toBe(
      estimateTokens({ name: 'bash', input_schema: { type: 'object' } }),
    );
  });

  it('refuses more than 4 breakpoints, as the API does', () => {
    const cache = new PromptCache();
    expect(() => cache.bill(request(conversation(2, [0, 1, 2, 3, 4])))).toThrow(CacheRequestError);
  });
});

describe('the fake Messages API with promptCache on', () => {
  let fake: FakeAnthropic | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it('reports its bill to the SDK and keeps it in `billing`', async () => {
    fake = await startFakeAnthropic({
      promptCache: true,
      fallback: textTurn('ok', { usage: { outputTokens: 7 } }),
    });
    const client = new Anthropic({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 });
    const body = {
      model: 'claude-test',
      max_tokens: 100,
      system: [{ type: 'text' as const, text: 'You are a test.', cache_control: MARK }],
      messages: [{ role: 'user' as const, content: 'hello' }],
    };

    const first = await client.messages.create(body);
    const second = await client.messages.stream(body).finalMessage();

    const systemTokens = estimateTokens({ type: 'text', text: 'You are a test.' });
    const userTokens = estimateTokens({ type: 'text', text: 'hello' });
    expect(first.usage).toMatchObject({
      input_tokens: userTokens,
      cache_creation_input_tokens: systemTokens,
      cache_read_input_tokens: 0,
      output_tokens: 7,
    });
    expect(second.usage).toMatchObject({
      input_tokens: userTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: systemTokens,
      output_tokens: 7,
    });
    expect(fake.billing.map((b) => [b.request, b.model, b.usage.cacheReadTokens])).toEqual([
      [0, 'claude-test', 0],
      [1, 'claude-test', systemTokens],
    ]);
  });

  it('answers 400 to more than 4 breakpoints and bills nothing', async () => {
    fake = await startFakeAnthropic({ promptCache: true });
    const client = new Anthropic({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 });
    const block = { type: 'text' as const, text: 'x', cache_control: MARK };

    await expect(
      client.messages.create({
        model: 'claude-test',
        max_tokens: 100,
        messages: [{ role: 'user', content: [block, block, block, block, block] }],
      }),
    ).rejects.toMatchObject({ status: 400 });
    expect(fake.billing).toHaveLength(0);
  });

  it('bills no cache when promptCache is off', async () => {
    fake = await startFakeAnthropic();
    const client = new Anthropic({ apiKey: 'sk-test', baseURL: fake.url, maxRetries: 0 });
    const message = await client.messages.create({
      model: 'claude-test',
      max_tokens: 100,
      system: [{ type: 'text', text: 'You are a test.', cache_control: MARK }],
      messages: [{ role: 'user', content: 'hello' }],
    });
    expect(message.usage).toMatchObject({ input_tokens: 10, cache_read_input_tokens: 0 });
    expect(fake.promptCache).toBeNull();
  });
});
