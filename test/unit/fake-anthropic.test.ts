/**
 * The fake Anthropic Messages API itself, checked over raw HTTP so that a bug in the fake
 * cannot hide behind the SDK's leniency.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  errorTurn,
  lastUserText,
  startFakeAnthropic,
  textTurn,
  toolUseTurn,
  type FakeAnthropic,
} from '../fakes/anthropic-api.js';

const KEY = 'sk-fake-key';

let fake: FakeAnthropic;

beforeEach(async () => {
  fake = await startFakeAnthropic({ fallback: (req) => textTurn(`echo: ${lastUserText(req)}`) });
});
afterEach(async () => {
  await fake.close();
});

function post(
  body: unknown,
  headers: Record<string, string> = { 'x-api-key': KEY },
): Promise<Response> {
  return fetch(`${fake.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const validBody = (text: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'claude-test',
  max_tokens: 100,
  messages: [{ role: 'user', content: text }],
  ...extra,
});

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** A strict reader: every event must be exactly one `event:` line and one JSON `data:` line. */
function parseSse(text: string): SseEvent[] {
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((chunk) => {
      const lines = chunk.split('\n');
      expect(lines).toHaveLength(2);
      const [eventLine = '', dataLine = ''] = lines;
      expect(eventLine).toMatch(/^event: [a-z_]+$/);
      expect(dataLine).toMatch(/^data: \{/);
      return {
        event: eventLine.slice('event: '.length),
        data: JSON.parse(dataLine.slice('data: '.length)) as Record<string, unknown>,
      };
    });
}

describe('fake Anthropic API', () => {
  it('streams well-formed server-sent events in Anthropic order, tool input split in pieces', async () => {
    const input = { path: '/workspace/group/notes.md', lines: [1, 2, 3] };
    fake.enqueue({
      content: [
        { type: 'text', text: 'Reading it now.' },
        { type: 'tool_use', id: 'toolu_9', name: 'read', input },
      ],
      usage: { inputTokens: 20, outputTokens: 7, cacheReadTokens: 3, cacheWriteTokens: 4 },
    });

    const res = await post(validBody('read my notes', { stream: true }));

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = parseSse(await res.text());
    for (const { event, data } of events) expect(data.type).toBe(event);
    const names = events.map((e) => e.event).filter((name, i, all) => name !== all[i - 1]);
    expect(names).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);

    const deltas = events.flatMap((e) =>
      e.event === 'content_block_delta' ? [e.data.delta as Record<string, unknown>] : [],
    );
    const text = deltas.filter((d) => d.type === 'text_delta').map((d) => d.text);
    const json = deltas
      .filter((d) => d.type === 'input_json_delta')
      .map((d) => String(d.partial_json));
    expect(text.join('')).toBe('Reading it now.');
    expect(json.filter((piece) => piece.length > 0).length).toBeGreaterThanOrEqual(2);
    expect(JSON.parse(json.join(''))).toEqual(input);

    const delta = events.find((e) => e.event === 'message_delta')?.data;
    expect(delta).toMatchObject({
      delta: { stop_reason: 'tool_use' },
      usage: {
        input_tokens: 20,
        output_tokens: 7,
        cache_read_input_tokens: 3,
        cache_creation_input_tokens: 4,
      },
    });
  });

  it('answers a non-streaming call with a JSON message', async () => {
    fake.enqueue(toolUseTurn('send_message', { text: 'hi' }, { id: 'toolu_1' }));

    const res = await post(validBody('say hi'));

    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'claude-test',
      content: [{ type: 'tool_use', id: 'toolu_1', name: 'send_message', input: { text: 'hi' } }],
      stop_reason: 'tool_use',
      usage: { input_tokens: 10, output_tokens: 5 },
    });
  });

  it('rejects a body without max_tokens with 400 and an Anthropic error body', async () => {
    const res = await post({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] });

    expect(res.status).toBe(400);
    const body = (await res.json()) as { type: string; error: { type: string; message: string } };
    expect(body.type).toBe('error');
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toMatch(/^max_tokens: /);
    expect(fake.requests).toHaveLength(0);
    expect(fake.allRequests.map((r) => r.status)).toEqual([400]);
  });

  it('rejects a call with no key with 401', async () => {
    const res = await post(validBody('hi'), {});

    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({
      type: 'error',
      error: { type: 'authentication_error' },
    });
  });

  it('accepts a key sent as a bearer token and records it', async () => {
    const res = await post(validBody('hi'), { authorization: `Bearer ${KEY}` });

    expect(res.status).toBe(200);
    expect(fake.requests[0]?.apiKey).toBe(KEY);
  });

  it('plays scripted turns in order, then falls back to a function of the request', async () => {
    fake.enqueue(textTurn('first'), errorTurn(429, 'slow down', { retryAfterMs: 1 }));

    const first = await post(validBody('one'));
    const second = await post(validBody('two'));
    const third = await post(validBody('three'));

    expect(await first.json()).toMatchObject({ content: [{ type: 'text', text: 'first' }] });
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after-ms')).toBe('1');
    expect(await second.json()).toMatchObject({
      error: { type: 'rate_limit_error', message: 'slow down' },
    });
    expect(await third.json()).toMatchObject({ content: [{ type: 'text', text: 'echo: three' }] });
    expect(fake.pending).toBe(0);
  });

  it('cuts an answer still delayed when it closes', async () => {
    fake.enqueue(textTurn('never', { delayMs: 60_000 }));
    const started = Date.now();

    const pending = post(validBody('wait'));
    await fake.waitForRequests(1);
    await fake.close();

    await expect(pending).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
