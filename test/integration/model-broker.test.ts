/**
 * The model broker with the real `@anthropic-ai/sdk`, against the fake Messages API on
 * 127.0.0.1 (test/fakes/anthropic-api.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  MAX_TOKENS_CEILING,
  ModelBroker,
  ModelError,
  type ModelBrokerDeps,
  type ModelRequest,
} from '../../main/core/agent/model-broker.js';
import { retryAfterOf } from '../../main/core/agent/model-errors.js';
import type { Logger } from '../../main/core/logger.js';
import {
  errorTurn,
  lastUserText,
  startFakeAnthropic,
  textTurn,
  toolUseTurn,
  type FakeAnthropic,
} from '../fakes/anthropic-api.js';

const KEY = 'sk-ant-test-0123456789abcdef';
const MODEL = 'claude-test-model';

let fake: FakeAnthropic;

beforeAll(async () => {
  fake = await startFakeAnthropic({ apiKey: KEY });
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.reset();
});
afterEach(() => {
  vi.unstubAllEnvs();
});

/** A pino logger that keeps every line, at every level, in memory. */
function memoryLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'));
      callback();
    },
  });
  return { log: pino({ level: 'trace' }, sink), lines };
}

function makeBroker(overrides: Partial<ModelBrokerDeps> = {}): {
  broker: ModelBroker;
  lines: string[];
} {
  const { log, lines } = memoryLogger();
  const broker = new ModelBroker({
    apiKey: KEY,
    baseURL: fake.url,
    model: MODEL,
    log,
    maxRetries: 0,
    ...overrides,
  });
  return { broker, lines };
}

function request(text = 'Hello?', extra: Partial<ModelRequest> = {}): ModelRequest {
  return {
    system: 'You are Andy.',
    messages: [{ role: 'user', content: text }],
    tools: [],
    maxTokens: 1024,
    ...extra,
  };
}

/** Runs `promise`, expecting a ModelError, and returns it. */
async function modelError(promise: Promise<unknown>): Promise<ModelError> {
  const outcome = await promise.then(
    () => null,
    (err: unknown) => err,
  );
  expect(outcome).toBeInstanceOf(ModelError);
  return outcome as ModelError;
}

describe('ModelBroker', () => {
  it('returns a streamed text answer with its stop reason', async () => {
    fake.enqueue(textTurn('Hello there, it is a fine day.'));
    const { broker } = makeBroker();

    const result = await broker.complete(request());

    expect(result.content).toEqual([{ type: 'text', text: 'Hello there, it is a fine day.' }]);
    expect(result.stopReason).toBe('end_turn');
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]?.body.stream).toBe(true);
  });

  it('parses tool_use input from JSON streamed in pieces, into plain data', async () => {
    const input = {
      command: 'ls -la "my dir"',
      options: { timeoutMs: 5000, flags: ['a', 'b'] },
      note: 'héllo ✓',
    };
    fake.enqueue({
      content: [
        { type: 'text', text: 'Let me look.' },
        { type: 'tool_use', id: 'toolu_01', name: 'bash', input },
      ],
    });
    const { broker } = makeBroker();

    const result = await broker.complete(request('What is in my dir?'));

    expect(result.stopReason).toBe('tool_use');
    expect(result.content).toEqual([
      { type: 'text', text: 'Let me look.' },
      { type: 'tool_use', id: 'toolu_01', name: 'bash', input },
    ]);
    // The result goes to the runner as a JSON frame: it must survive serialisation unchanged.
    expect(JSON.parse(JSON.stringify(result.content))).toEqual(result.content);
  });

  it('returns content that goes back unchanged as the next call’s assistant turn', async () => {
    fake.enqueue(toolUseTurn('send_message', { text: 'on my way' }, { id: 'toolu_7' }), (req) =>
      textTurn(`saw ${lastUserText(req)}`),
    );
    const { broker } = makeBroker();

    const first = await broker.complete(request('tell them'));
    const second = await broker.complete(
      request('unused', {
        messages: [
          { role: 'user', content: 'tell them' },
          { role: 'assistant', content: first.content },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: 'toolu_7', content: 'sent' }],
          },
        ],
      }),
    );

    expect(second.content).toEqual([{ type: 'text', text: 'saw sent' }]);
    expect(fake.requests[1]?.body.messages[1]).toEqual({
      role: 'assistant',
      content: [
        { type: 'tool_use', id: 'toolu_7', name: 'send_message', input: { text: 'on my way' } },
      ],
    });
  });

  it('maps usage, cache reads and cache writes included', async () => {
    fake.enqueue(
      textTurn('ok', {
        usage: { inputTokens: 1234, outputTokens: 56, cacheReadTokens: 789, cacheWriteTokens: 42 },
      }),
    );
    const { broker } = makeBroker();

    const result = await broker.complete(request());

    expect(result.usage).toEqual({
      inputTokens: 1234,
      outputTokens: 56,
      cacheReadTokens: 789,
      cacheWriteTokens: 42,
    });
  });

  it('sends the configured model and nothing billed that the request tries to smuggle in', async () => {
    const { broker } = makeBroker();
    const smuggled = {
      ...request(),
      model: 'claude-most-expensive',
      service_tier: 'priority',
      thinking: { type: 'enabled', budget_tokens: 100_000 },
      tools: [
        {
          name: 'search',
          description: 'Search',
          input_schema: { type: 'object' as const },
          type: 'web_search_20250305',
          max_uses: 1000,
        },
      ],
    };

    await broker.complete(smuggled);

    const body = fake.requests[0]?.body;
    expect(body?.model).toBe(MODEL);
    expect(Object.keys(body ?? {}).sort()).toEqual([
      'max_tokens',
      'messages',
      'model',
      'stream',
      'system',
      'tools',
    ]);
    expect(body?.tools).toEqual([
      { name: 'search', description: 'Search', input_schema: { type: 'object' } },
    ]);
  });

  it('clamps max_tokens to the ceiling and passes smaller values through', async () => {
    const { broker } = makeBroker();

    await broker.complete(request('big', { maxTokens: 1_000_000 }));
    await broker.complete(request('small', { maxTokens: 300 }));

    expect(fake.requests.map((r) => r.body.max_tokens)).toEqual([MAX_TOKENS_CEILING, 300]);
  });

  it('sends the key as the request credential', async () => {
    const { broker } = makeBroker();

    await broker.complete(request());

    const sent = fake.requests[0];
    expect(sent?.apiKey).toBe(KEY);
    // SDK 1.13 sends an API key as a bearer token rather than in x-api-key.
    expect(sent?.headers.authorization ?? sent?.headers['x-api-key']).toContain(KEY);
  });

  it('turns a rejected key into a non-retryable error that does not reveal the key', async () => {
    const wrongKey = 'sk-ant-wrong-key-that-must-not-leak';
    const { broker, lines } = makeBroker({ apiKey: wrongKey, maxRetries: 2 });

    const error = await modelError(broker.complete(request()));

    expect(error.kind).toBe('auth');
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(401);
    expect(error.message).toMatch(/rejected the key \(401/);
    expect(error.message).not.toContain(wrongKey);
    expect(lines.join('')).not.toContain(wrongKey);
    // A 401 is final: the SDK does not retry it, even with retries allowed.
    expect(fake.allRequests).toHaveLength(1);
  });

  it('redacts the key when an error body echoes it back', async () => {
    fake.enqueue(errorTurn(400, `unexpected header value ${KEY}`));
    const { broker } = makeBroker();

    const error = await modelError(broker.complete(request()));

    expect(error.kind).toBe('bad_request');
    expect(error.message).toContain('[redacted]');
    expect(error.message).not.toContain(KEY);
  });

  it('reports a 500 as retryable', async () => {
    fake.enqueue(errorTurn(500));
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'server', retryable: true, status: 500 });
    expect(error.message).toMatch(/Anthropic API failed \(500/);
    expect(fake.requests).toHaveLength(1);
  });

  it.each([
    [429, 'rate_limit', true],
    [529, 'overloaded', true],
    [400, 'bad_request', false],
    [403, 'permission', false],
    [404, 'not_found', false],
  ] as const)('classifies HTTP %i as %s (retryable: %s)', async (status, kind, retryable) => {
    fake.enqueue(errorTurn(status));
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind, retryable, status });
  });

  it('reads a 429’s retry-after, in seconds, as retryAfterMs', async () => {
    fake.enqueue(errorTurn(429, undefined, { headers: { 'retry-after': '7' } }));
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({
      kind: 'rate_limit',
      retryable: true,
      status: 429,
      retryAfterMs: 7000,
    });
    expect(fake.requests).toHaveLength(1);
  });

  it('prefers retry-after-ms over retry-after, rounding a fraction up', async () => {
    fake.enqueue(
      errorTurn(529, undefined, { retryAfterMs: 1500.2, headers: { 'retry-after': '7' } }),
    );
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'overloaded', retryable: true, retryAfterMs: 1501 });
  });

  it.each([['soon'], ['-5'], ['7200'], ['NaN']])('ignores a retry-after of %j', async (value) => {
    fake.enqueue(errorTurn(429, undefined, { headers: { 'retry-after': value } }));
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'rate_limit', retryable: true, retryAfterMs: null });
  });

  it('falls back to retry-after when retry-after-ms is garbage', async () => {
    fake.enqueue(
      errorTurn(429, undefined, { headers: { 'retry-after-ms': 'later', 'retry-after': '2' } }),
    );
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error.retryAfterMs).toBe(2000);
  });

  it('has no retryAfterMs when the API does not say how long to wait', async () => {
    fake.enqueue(errorTurn(503));
    const { broker } = makeBroker({ maxRetries: 0 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'server', retryable: true, retryAfterMs: null });
  });

  it('reads a retry-after given as an HTTP date, relative to now', () => {
    const now = Date.parse('2025-06-01T12:00:00Z');
    const headers = (value: string) => new Headers({ 'retry-after': value });

    expect(retryAfterOf(headers('Sun, 01 Jun 2025 12:00:30 GMT'), now)).toBe(30_000);
    // In the past, or more than an hour away: nonsense, so ignored.
    expect(retryAfterOf(headers('Sun, 01 Jun 2025 11:59:00 GMT'), now)).toBeNull();
    expect(retryAfterOf(headers('Sun, 01 Jun 2025 14:00:00 GMT'), now)).toBeNull();
    expect(retryAfterOf(undefined, now)).toBeNull();
  });

  it('classifies an error event inside the stream by its type', async () => {
    fake.enqueue(errorTurn(529, 'Overloaded', { inStream: true }));
    const { broker } = makeBroker();

    const error = await modelError(broker.complete(request()));

    // The HTTP status was 200; only the event's `overloaded_error` type says what went wrong.
    expect(error).toMatchObject({ kind: 'overloaded', retryable: true, status: null });
    expect(error.message).toContain('overloaded_error: Overloaded');
  });

  it('reports a stream cut off half-way as a retryable stream error', async () => {
    fake.enqueue(textTurn('this answer never arrives whole', { cutAfterEvents: 4 }));
    const { broker } = makeBroker({ maxRetries: 2 });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'stream', retryable: true, status: null });
    expect(error.message).toMatch(/^The Anthropic API stream broke off: /);
    // Headers had arrived, so the SDK does not retry: retrying is the runner's call.
    expect(fake.requests).toHaveLength(1);
  });

  it('lets the SDK retry overload and rate limits before succeeding', async () => {
    fake.enqueue(
      errorTurn(529, undefined, { retryAfterMs: 1 }),
      errorTurn(429, undefined, { retryAfterMs: 1 }),
      textTurn('third time lucky'),
    );
    const { broker } = makeBroker({ maxRetries: 2 });

    const result = await broker.complete(request());

    expect(result.content).toEqual([{ type: 'text', text: 'third time lucky' }]);
    expect(fake.requests).toHaveLength(3);
  });

  it('cancels a call in flight when the signal aborts', async () => {
    fake.enqueue(textTurn('too late', { delayMs: 10_000 }));
    const { broker } = makeBroker();
    const controller = new AbortController();
    const started = Date.now();

    const pending = broker.complete(request(), { signal: controller.signal, group: 'family' });
    await fake.waitForRequests(1);
    controller.abort();
    const error = await modelError(pending);

    expect(error).toMatchObject({ kind: 'aborted', retryable: false });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('sends nothing when the signal has already aborted', async () => {
    const { broker } = makeBroker();

    const error = await modelError(broker.complete(request(), { signal: AbortSignal.abort() }));

    expect(error.kind).toBe('aborted');
    expect(fake.allRequests).toHaveLength(0);
  });

  it('fails as a retryable timeout when the stream stalls past timeoutMs', async () => {
    fake.enqueue(textTurn('a slow answer in many parts', { eventDelayMs: 2_000 }));
    const { broker } = makeBroker({ timeoutMs: 300 });
    const started = Date.now();

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'timeout', retryable: true });
    expect(error.message).toContain('0.3 s');
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('fails at once on a missing key, without falling back to the environment', async () => {
    vi.stubEnv('ANTHROPIC_API_KEY', KEY);
    vi.stubEnv('ANTHROPIC_AUTH_TOKEN', KEY);
    const { broker } = makeBroker({ apiKey: '  ' });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'no_key', retryable: false });
    expect(error.message).toMatch(/No Anthropic API key is set/);
    expect(fake.allRequests).toHaveLength(0);
  });

  it('reports an unreachable API as a retryable connection error', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const { broker } = makeBroker({ baseURL: `http://127.0.0.1:${port}` });

    const error = await modelError(broker.complete(request()));

    expect(error).toMatchObject({ kind: 'connection', retryable: true, status: null });
    expect(error.message).toContain(`http://127.0.0.1:${port}`);
  });

  it('sets its own cache breakpoints and drops the ones the container sent', async () => {
    const { broker } = makeBroker();
    const req: ModelRequest = request('unused', {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'first', cache_control: { type: 'ephemeral', ttl: '1h' } },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'toolu_1', name: 'bash', input: {} }],
        },
        {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: 'toolu_1',
              content: [{ type: 'text', text: 'files', cache_control: { type: 'ephemeral' } }],
            },
          ],
        },
      ],
    });
    const before = JSON.stringify(req);

    await broker.complete(req);

    const body = fake.requests[0]?.body;
    expect(body?.system).toEqual([
      { type: 'text', text: 'You are Andy.', cache_control: { type: 'ephemeral' } },
    ]);
    expect(body?.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'first' }] },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'bash', input: {} }],
      },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            tool_use_id: 'toolu_1',
            content: [{ type: 'text', text: 'files' }],
            cache_control: { type: 'ephemeral' },
          },
        ],
      },
    ]);
    // The caller's transcript is left as it was.
    expect(JSON.stringify(req)).toBe(before);
  });

  it('sends no cache marks when prompt caching is off', async () => {
    const { broker } = makeBroker({ promptCaching: false });

    await broker.complete(request('plain'));

    const body = fake.requests[0]?.body;
    expect(body?.system).toEqual([{ type: 'text', text: 'You are Andy.' }]);
    expect(body?.messages).toEqual([{ role: 'user', content: 'plain' }]);
  });

  it('logs usage at info without the key or any message contents', async () => {
    const secret = 'my bank PIN is 4321';
    fake.enqueue(textTurn(`I will not repeat "${secret}".`));
    const { broker, lines } = makeBroker();

    await broker.complete(request(secret, { system: `system ${secret}` }), { group: 'family' });

    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(entries).toContainEqual(
      expect.objectContaining({
        mod: 'broker',
        group: 'family',
        msg: 'model call done',
        usage: expect.any(Object),
      }),
    );
    expect(lines.join('')).not.toContain(KEY);
    expect(lines.join('')).not.toContain(secret);
  });
});
