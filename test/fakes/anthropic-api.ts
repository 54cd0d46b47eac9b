/**
 * A fake Anthropic Messages API on 127.0.0.1, for driving the real `@anthropic-ai/sdk`
 * (through `ANTHROPIC_BASE_URL` or the client's `baseURL`) without a network.
 *
 * It plays scripted turns in order: text and tool_use blocks, HTTP errors with Anthropic's
 * error body, and delays. When the script runs out it answers with a fallback turn. It
 * records every request so tests can check what was sent.
 *
 * `POST /v1/messages` answers with a JSON Message, or, when the body has `stream: true`, with
 * server-sent events shaped like Anthropic's: `message_start`, `ping`, `content_block_start`,
 * `content_block_delta` (`text_delta`, `input_json_delta` split over several chunks),
 * `content_block_stop`, `message_delta`, `message_stop`.
 *
 * ```ts
 * const fake = await startFakeAnthropic();
 * fake.enqueue(toolUseTurn('send_message', { text: 'hi' }), textTurn('done'));
 * const client = new Anthropic({ apiKey: 'sk-test', baseURL: fake.url });
 * // …
 * await fake.close();
 * ```
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { Usage } from '../../main/core/agent/protocol.js';
import { cacheBreakpointProblem, PromptCache, type PromptCacheOptions } from './prompt-cache.js';

// ── scripted turns ─────────────────────────────────────────────────────────

/** A content block the fake answers with, in Anthropic's wire shape. */
export type FakeContentBlock =
  | { type: 'text'; text: string }
  | {
      type: 'tool_use';
      /** @default `toolu_fake_<n>` */
      id?: string;
      name: string;
      input: Record<string, unknown>;
    }
  | {
      /** A call of a server tool the request offered, which "Anthropic" ran. */
      type: 'server_tool_use';
      /** @default `srvtoolu_fake_<n>` */
      id?: string;
      name: 'web_search' | 'web_fetch';
      input: Record<string, unknown>;
    }
  | {
      /** A server tool's result, sent whole (the API streams it in its content_block_start). */
      type: 'web_search_tool_result' | 'web_fetch_tool_result';
      tool_use_id: string;
      content: unknown;
    };

/** A successful assistant message. */
export interface MessageTurn {
  content: FakeContentBlock[];
  /** @default 'tool_use' when the content has a tool_use block, else 'end_turn' */
  stopReason?: string;
  /**
   * Token counts to report, named as in the protocol's `Usage`.
   * @default { inputTokens: 10, outputTokens: 5, cacheReadTokens: 0, cacheWriteTokens: 0 }
   */
  usage?: Partial<Usage>;
  /** Wait this long before sending anything (the status line included). @default 0 */
  delayMs?: number;
  /** Streaming only: wait this long between server-sent events, to mimic a slow model. @default 0 */
  eventDelayMs?: number;
  /**
   * Streaming only: drop the connection after this many events, as a network failure
   * half-way through an answer would. Unset means the stream runs to `message_stop`.
   */
  cutAfterEvents?: number;
}

/** An HTTP error with Anthropic's error body: `{ type: 'error', error: { type, message } }`. */
export interface ErrorTurn {
  error: {
    status: number;
    /** @default derived from the status, e.g. 'rate_limit_error' for 429 */
    type?: string;
    /** @default a short text derived from the type */
    message?: string;
    /**
     * Sent as `retry-after-ms`. The SDK waits that long before a retry; 1 makes its retries
     * almost immediate (0 is ignored by the SDK, which then backs off 0.5 s and more).
     */
    retryAfterMs?: number;
    /** Extra response headers, e.g. `{ 'x-should-retry': 'false' }`. */
    headers?: Record<string, string>;
    /**
     * Streaming calls only: answer 200, send `message_start`, then the error as an `error`
     * event, as the API does when it overloads half-way through an answer. The status is then
     * used only to pick the default type.
     * @default false
     */
    inStream?: boolean;
  };
  /** Wait this long before answering. @default 0 */
  delayMs?: number;
}

export type FakeTurn = MessageTurn | ErrorTurn;

/** Builds a turn from the request, so a test can react to what was sent. */
export type TurnFactory = (request: RecordedRequest) => FakeTurn;

/** A plain text answer. */
export function textTurn(text: string, extra: Omit<MessageTurn, 'content'> = {}): MessageTurn {
  return { content: [{ type: 'text', text }], ...extra };
}

/** An answer that asks for one tool call (stop reason `tool_use`). */
export function toolUseTurn(
  name: string,
  input: Record<string, unknown>,
  extra: Omit<MessageTurn, 'content'> & { id?: string } = {},
): MessageTurn {
  const { id, ...rest } = extra;
  return { content: [{ type: 'tool_use', name, input, ...(id ? { id } : {}) }], ...rest };
}

/** One result of {@link webSearchTurn}, as the API shows it (its page text is encrypted). */
export interface FakeSearchResult {
  url: string;
  title: string;
}

/** Numbers the ids of {@link webSearchTurn}'s calls, which must be unique in a conversation. */
let searchTurns = 0;

/**
 * An answer that searched the web, as the API gives it when its web search tool ran: the
 * `server_tool_use` call, its `web_search_tool_result`, then `answer` as text (end_turn). Only
 * valid when the request offered `web_search`; the fake refuses it otherwise, as the API would
 * never send it.
 */
export function webSearchTurn(
  query: string,
  results: FakeSearchResult[],
  answer: string,
  extra: Omit<MessageTurn, 'content'> & { id?: string } = {},
): MessageTurn {
  const { id = `srvtoolu_fake_search_${++searchTurns}`, ...rest } = extra;
  return {
    content: [
      { type: 'server_tool_use', id, name: 'web_search', input: { query } },
      {
        type: 'web_search_tool_result',
        tool_use_id: id,
        content: results.map((result) => ({
          type: 'web_search_result',
          url: result.url,
          title: result.title,
          encrypted_content: Buffer.from(`page text of ${result.url}`).toString('base64'),
          page_age: null,
        })),
      },
      { type: 'text', text: answer },
    ],
    ...rest,
  };
}

/** An HTTP error answer with Anthropic's error body. */
export function errorTurn(
  status: number,
  message?: string,
  extra: Omit<ErrorTurn['error'], 'status' | 'message'> = {},
): ErrorTurn {
  return { error: { status, ...(message === undefined ? {} : { message }), ...extra } };
}

// ── recorded requests ──────────────────────────────────────────────────────

const ContentBlockSchema = z.looseObject({ type: z.string().min(1) });

const MessagesBodySchema = z.looseObject({
  model: z.string().min(1),
  max_tokens: z.number().int().positive(),
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['user', 'assistant']),
        content: z.union([z.string(), z.array(ContentBlockSchema)]),
      }),
    )
    .min(1),
  system: z
    .union([z.string(), z.array(z.looseObject({ type: z.literal('text'), text: z.string() }))])
    .optional(),
  tools: z
    .array(
      z.union([
        // A custom tool: the API needs its input schema.
        z.looseObject({
          type: z.literal('custom').optional(),
          name: z.string().min(1),
          input_schema: z.looseObject({ type: z.literal('object') }),
        }),
        // The server tools the host may offer, each with its fixed name, as the API checks.
        z.looseObject({
          type: z.literal('web_search_20250305'),
          name: z.literal('web_search'),
          max_uses: z.number().int().positive().optional(),
        }),
        z.looseObject({
          type: z.literal('web_fetch_20250910'),
          name: z.literal('web_fetch'),
          max_uses: z.number().int().positive().optional(),
          max_content_tokens: z.number().int().positive().optional(),
        }),
      ]),
    )
    .optional(),
  stream: z.boolean().optional(),
});

/** A validated `POST /v1/messages` body. Fields the fake does not check pass through. */
export type MessagesRequestBody = z.infer<typeof MessagesBodySchema>;

/** One accepted `POST /v1/messages` call: authenticated and with a valid body. */
export interface RecordedRequest {
  /** Header names are lower-case. */
  headers: Record<string, string>;
  /**
   * The credential the client presented, from `x-api-key` or `Authorization: Bearer …`.
   * (The installed SDK sends an API key as a bearer token.)
   */
  apiKey: string;
  body: MessagesRequestBody;
  /** The body exactly as received, for "this secret was never sent" checks. */
  rawBody: string;
}

/** Every HTTP request that reached the fake, including the ones it rejected. */
export interface ReceivedRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  headers: Record<string, string>;
  rawBody: string;
  /** The status the fake answered with; 0 while the answer is pending. */
  status: number;
}

export interface FakeAnthropicOptions {
  /**
   * When set, a request presenting any other key gets 401. Without it, any non-empty key
   * passes; a request with no key at all always gets 401.
   */
  apiKey?: string;
  /**
   * The answer when no scripted turn is left: a turn, or a function of the request.
   * @default textTurn('ok')
   */
  fallback?: FakeTurn | TurnFactory;
  /**
   * Bill input tokens as Anthropic's prompt cache does (prompt-cache.ts): each answered call's
   * `input_tokens`, `cache_read_input_tokens` and `cache_creation_input_tokens` come from the
   * request's prefix and what earlier calls cached, and a turn's `usage` then sets only the
   * output tokens. `true` takes the defaults.
   * @default off: every call reports the turn's `usage` or the default figures
   */
  promptCache?: boolean | PromptCacheOptions;
}

/** What the fake billed one answered call (with `promptCache` on, from its cache). */
export interface BillingRecord {
  /** Index of the call in {@link FakeAnthropic.requests}. */
  request: number;
  model: string;
  /** The figures the answer reported. */
  usage: Usage;
}

export interface FakeAnthropic {
  /** Base URL to hand the SDK, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  /** Accepted Messages calls, in arrival order. */
  readonly requests: readonly RecordedRequest[];
  /** Every HTTP request, accepted or not, in arrival order. */
  readonly allRequests: readonly ReceivedRequest[];
  /** The usage of every answered call, as reported to the client: the fake's bill. */
  readonly billing: readonly BillingRecord[];
  /** The prompt cache, when `promptCache` is on. */
  readonly promptCache: PromptCache | null;
  /** Scripted turns not yet played. */
  readonly pending: number;
  /** Replaces the script with these turns. */
  script(turns: ReadonlyArray<FakeTurn | TurnFactory>): void;
  /** Appends turns to the script. */
  enqueue(...turns: Array<FakeTurn | TurnFactory>): void;
  /** Resolves once at least `count` Messages calls have been accepted. */
  waitForRequests(count: number): Promise<void>;
  /** Forgets the script, the recorded requests, the billing and the prompt cache. */
  reset(): void;
  /** Stops the server and cuts any answer still in progress. Safe to call twice. */
  close(): Promise<void>;
}

/** Text of the last user message: its string content, else its text blocks, else its tool results. */
export function lastUserText(request: RecordedRequest): string {
  const last = [...request.body.messages].reverse().find((m) => m.role === 'user');
  if (!last) return '';
  if (typeof last.content === 'string') return last.content;
  const texts = last.content.flatMap((block) =>
    block.type === 'text' && typeof block.text === 'string' ? [block.text] : [],
  );
  if (texts.length > 0) return texts.join('\n');
  return last.content
    .flatMap((block) => (block.type === 'tool_result' ? [toolResultText(block.content)] : []))
    .join('\n');
}

function toolResultText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .flatMap((item: unknown) => {
      const parsed = ContentBlockSchema.safeParse(item);
      return parsed.success && parsed.data.type === 'text' && typeof parsed.data.text === 'string'
        ? [parsed.data.text]
        : [];
    })
    .join('\n');
}

// ── server ─────────────────────────────────────────────────────────────────

const DEFAULT_USAGE: Usage = {
  inputTokens: 10,
  outputTokens: 5,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
};

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

const ERROR_MESSAGES: Record<string, string> = {
  invalid_request_error: 'Invalid request',
  authentication_error: 'invalid x-api-key',
  billing_error: 'Your credit balance is too low',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'Not found',
  request_too_large: 'Request exceeds the maximum allowed number of bytes.',
  rate_limit_error: 'Number of requests has exceeded your rate limit.',
  api_error: 'Internal server error',
  timeout_error: 'Request timed out',
  overloaded_error: 'Overloaded',
};

/** Starts the fake on an ephemeral port of 127.0.0.1. */
export async function startFakeAnthropic(opts: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
  const queue: Array<FakeTurn | TurnFactory> = [];
  const requests: RecordedRequest[] = [];
  const allRequests: ReceivedRequest[] = [];
  const billing: BillingRecord[] = [];
  const cache = opts.promptCache
    ? new PromptCache(opts.promptCache === true ? {} : opts.promptCache)
    : null;
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const fallback = opts.fallback ?? textTurn('ok');
  let counter = 0;
  let closing: Promise<void> | undefined;

  const nextId = (prefix: string): string => `${prefix}_fake_${String(++counter).padStart(4, '0')}`;

  const notifyWaiters = (): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const waiter = waiters[i];
      if (waiter && requests.length >= waiter.count) {
        waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const received: ReceivedRequest = {
        method: req.method ?? '',
        path: (req.url ?? '/').split('?')[0] ?? '/',
        headers: flattenHeaders(req.headers),
        rawBody: Buffer.concat(chunks).toString('utf8'),
        status: 0,
      };
      allRequests.push(received);
      res.on('finish', () => {
        received.status = res.statusCode;
      });
      handle(received, res);
    });
  });

  function handle(received: ReceivedRequest, res: http.ServerResponse): void {
    if (received.path !== '/v1/messages') {
      sendError(res, { status: 404, message: `Not found: ${received.method} ${received.path}` });
      return;
    }
    if (received.method !== 'POST') {
      sendError(res, {
        status: 405,
        type: 'invalid_request_error',
        message: `Method ${received.method} not allowed`,
      });
      return;
    }
    const apiKey = presentedKey(received.headers);
    if (!apiKey) {
      sendError(res, { status: 401, message: 'x-api-key header is required' });
      return;
    }
    if (opts.apiKey !== undefined && apiKey !== opts.apiKey) {
      sendError(res, { status: 401, message: 'invalid x-api-key' });
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(received.rawBody);
    } catch {
      sendError(res, { status: 400, message: 'The request body is not valid JSON.' });
      return;
    }
    const parsed = MessagesBodySchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? issue.path.join('.') : 'body';
      sendError(res, { status: 400, message: `${where}: ${issue?.message ?? 'invalid'}` });
      return;
    }
    // As the API does, whether or not the fake bills by its cache.
    const breakpointProblem = cacheBreakpointProblem(parsed.data);
    if (breakpointProblem) {
      sendError(res, { status: 400, message: breakpointProblem });
      return;
    }

    const recorded: RecordedRequest = {
      headers: received.headers,
      apiKey,
      body: parsed.data,
      rawBody: received.rawBody,
    };
    requests.push(recorded);
    notifyWaiters();

    const scripted = queue.shift() ?? fallback;
    const played = typeof scripted === 'function' ? scripted(recorded) : scripted;
    const unoffered = 'error' in played ? null : unofferedServerTool(played, parsed.data);
    if (unoffered) {
      // A scripting mistake, or a host that forgot the tool: the API never answers so.
      sendError(res, {
        status: 500,
        message: `fake: the scripted answer uses the server tool ${unoffered}, which the request did not offer`,
      });
      return;
    }
    const turn = 'error' in played ? played : billed(played, recorded);
    afterDelay(res, turn.delayMs ?? 0, () => {
      if ('error' in turn) {
        if (turn.error.inStream && parsed.data.stream === true) {
          streamError(res, turn.error, parsed.data.model);
        } else sendError(res, turn.error);
      } else if (parsed.data.stream === true) void streamMessage(res, turn, parsed.data.model);
      else
        sendJson(res, 200, buildMessage(turn, parsed.data.model), { 'request-id': nextId('req') });
    });
  }

  /** Bills an answered call (its cache figures, with `promptCache` on) and records the bill. */
  function billed(turn: MessageTurn, recorded: RecordedRequest): MessageTurn {
    const input = cache?.bill(recorded.body, recorded.apiKey) ?? {};
    const usage: Usage = { ...DEFAULT_USAGE, ...turn.usage, ...input };
    billing.push({ request: requests.indexOf(recorded), model: recorded.body.model, usage });
    return { ...turn, usage };
  }

  function buildMessage(turn: MessageTurn, model: string): Record<string, unknown> {
    const content = turn.content.map((block) => {
      switch (block.type) {
        case 'text':
          return { type: 'text', text: block.text };
        case 'tool_use':
          return {
            type: 'tool_use',
            id: block.id ?? nextId('toolu'),
            name: block.name,
            input: block.input,
          };
        case 'server_tool_use':
          return {
            type: 'server_tool_use',
            id: block.id ?? nextId('srvtoolu'),
            name: block.name,
            input: block.input,
          };
        default:
          return { type: block.type, tool_use_id: block.tool_use_id, content: block.content };
      }
    });
    return {
      id: nextId('msg'),
      type: 'message',
      role: 'assistant',
      model,
      content,
      stop_reason: stopReasonOf(turn),
      stop_sequence: null,
      usage: wireUsage({ ...DEFAULT_USAGE, ...turn.usage }),
    };
  }

  async function streamMessage(
    res: http.ServerResponse,
    turn: MessageTurn,
    model: string,
  ): Promise<void> {
    const message = buildMessage(turn, model);
    const usage = { ...DEFAULT_USAGE, ...turn.usage };
    const events: Array<[string, Record<string, unknown>]> = [];
    // As the real API does: input and cache counts arrive in message_start with a token or so
    // of output; message_delta then carries the final, cumulative counts.
    events.push([
      'message_start',
      {
        type: 'message_start',
        message: {
          ...message,
          content: [],
          stop_reason: null,
          usage: wireUsage({ ...usage, outputTokens: Math.min(1, usage.outputTokens) }),
        },
      },
    ]);
    events.push(['ping', { type: 'ping' }]);
    const content = message.content as Array<Record<string, unknown>>;
    content.forEach((block, index) => {
      if (block.type === 'text') {
        events.push([
          'content_block_start',
          { type: 'content_block_start', index, content_block: { type: 'text', text: '' } },
        ]);
        for (const piece of splitInto(String(block.text), 3)) {
          events.push([
            'content_block_delta',
            { type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } },
          ]);
        }
      } else if (block.type !== 'tool_use' && block.type !== 'server_tool_use') {
        // A server tool's result arrives whole in its start event, with no deltas.
        events.push([
          'content_block_start',
          { type: 'content_block_start', index, content_block: block },
        ]);
      } else {
        events.push([
          'content_block_start',
          { type: 'content_block_start', index, content_block: { ...block, input: {} } },
        ]);
        // The real API opens with an empty partial_json; then the JSON comes in pieces that are
        // not valid JSON on their own, which is what the SDK's partial parser must cope with.
        const pieces = ['', ...splitInto(JSON.stringify(block.input), 3)];
        for (const piece of pieces) {
          events.push([
            'content_block_delta',
            {
              type: 'content_block_delta',
              index,
              delta: { type: 'input_json_delta', partial_json: piece },
            },
          ]);
        }
      }
      events.push(['content_block_stop', { type: 'content_block_stop', index }]);
    });
    events.push([
      'message_delta',
      {
        type: 'message_delta',
        delta: { stop_reason: message.stop_reason, stop_sequence: null },
        usage: wireUsage(usage),
      },
    ]);
    events.push(['message_stop', { type: 'message_stop' }]);

    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'request-id': nextId('req'),
    });
    for (const [sent, [name, data]] of events.entries()) {
      if (res.destroyed) return;
      if (sent === turn.cutAfterEvents) {
        // Let what was written reach the client first, then cut the socket without ending the
        // chunked body, so the client sees a broken transfer rather than a clean end.
        await new Promise((resolve) => setTimeout(resolve, 20));
        res.socket?.destroy();
        return;
      }
      res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
      if (turn.eventDelayMs) await sleepUnlessClosed(res, turn.eventDelayMs);
    }
    res.end();
  }

  function errorBody(error: ErrorTurn['error'], requestId: string): Record<string, unknown> {
    const type =
      error.type ??
      ERROR_TYPES[error.status] ??
      (error.status >= 500 ? 'api_error' : 'invalid_request_error');
    const message = error.message ?? ERROR_MESSAGES[type] ?? 'Error';
    return { type: 'error', error: { type, message }, request_id: requestId };
  }

  function sendError(res: http.ServerResponse, error: ErrorTurn['error']): void {
    const requestId = nextId('req');
    const headers: Record<string, string> = { 'request-id': requestId, ...error.headers };
    if (error.retryAfterMs !== undefined) headers['retry-after-ms'] = String(error.retryAfterMs);
    sendJson(res, error.status, errorBody(error, requestId), headers);
  }

  function streamError(res: http.ServerResponse, error: ErrorTurn['error'], model: string): void {
    const requestId = nextId('req');
    const start = buildMessage({ content: [] }, model);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'request-id': requestId,
      ...error.headers,
    });
    res.write(
      `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { ...start, stop_reason: null } })}\n\n`,
    );
    res.end(`event: error\ndata: ${JSON.stringify(errorBody(error, requestId))}\n\n`);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    allRequests,
    billing,
    promptCache: cache,
    get pending() {
      return queue.length;
    },
    script(turns) {
      queue.splice(0, queue.length, ...turns);
    },
    enqueue(...turns) {
      queue.push(...turns);
    },
    waitForRequests(count) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    reset() {
      queue.length = 0;
      requests.length = 0;
      allRequests.length = 0;
      billing.length = 0;
      cache?.clear();
    },
    close() {
      // Idempotent, so a test may close early and an afterEach hook close again.
      closing ??= new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Without this, close() would wait for delayed answers and keep-alive sockets.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

// ── helpers ────────────────────────────────────────────────────────────────

function presentedKey(headers: Record<string, string>): string | null {
  const direct = headers['x-api-key'];
  if (direct) return direct;
  const bearer = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '');
  return bearer?.[1] ?? null;
}

/** The server tool a scripted answer uses that the request did not offer, or null. */
function unofferedServerTool(turn: MessageTurn, body: MessagesRequestBody): string | null {
  const offered = new Set(
    (body.tools ?? []).flatMap((tool) =>
      'type' in tool && tool.type !== 'custom' ? [tool.name] : [],
    ),
  );
  for (const block of turn.content) {
    if (block.type === 'server_tool_use' && !offered.has(block.name)) return block.name;
  }
  return null;
}

function stopReasonOf(turn: MessageTurn): string {
  return (
    turn.stopReason ?? (turn.content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn')
  );
}

function wireUsage(usage: Usage): Record<string, number> {
  return {
    input_tokens: usage.inputTokens,
    output_tokens: usage.outputTokens,
    cache_read_input_tokens: usage.cacheReadTokens,
    cache_creation_input_tokens: usage.cacheWriteTokens,
  };
}

/** Splits text into up to `parts` non-empty pieces (one piece when it is too short to split). */
function splitInto(text: string, parts: number): string[] {
  if (text.length <= 1) return [text];
  const size = Math.ceil(text.length / parts);
  const pieces: string[] = [];
  for (let i = 0; i < text.length; i += size) pieces.push(text.slice(i, i + size));
  return pieces;
}

function flattenHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return flat;
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Runs `then` after `ms`, unless the client hangs up first (an aborted request). */
function afterDelay(res: http.ServerResponse, ms: number, then: () => void): void {
  if (ms <= 0) {
    then();
    return;
  }
  const timer = setTimeout(then, ms);
  res.once('close', () => clearTimeout(timer));
}

function sleepUnlessClosed(res: http.ServerResponse, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    res.once('close', done);
    function done(): void {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    }
  });
}
