/**
 * How the model broker turns a failed Anthropic call into a {@link ModelError}: a kind, whether
 * the same request may succeed later, the HTTP status, how long the API asked us to wait, and
 * two texts. The SDK's error is kept as `cause` for logs.
 *
 * - `message` goes to the container (in `model.error`) and, when the run gives up, to the chat.
 *   It is built from the kind, the status and the API's own short message, and carries no host
 *   detail: no base URL, host name or address, no key, no request id, no model name.
 * - `detail` is for the host's log: it names the base URL, the model and the network reason.
 *
 * Both go through {@link redactSecrets}, so a credential echoed back by the API or a proxy
 * never leaves the host.
 */
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from '@anthropic-ai/sdk';
import { redactSecrets } from '../redact.js';

/** Why a model call failed. `retryable` on {@link ModelError} follows from it. */
export type ModelErrorKind =
  /** No API key is configured. */
  | 'no_key'
  /** 401: the key is wrong or revoked. */
  | 'auth'
  /** 402: billing. */
  | 'billing'
  /** 403: the key may not use this model or resource. */
  | 'permission'
  /** 404: unknown model or wrong base URL. */
  | 'not_found'
  /** Other 4xx: the request itself is bad (too long, malformed blocks…). */
  | 'bad_request'
  /** 429. */
  | 'rate_limit'
  /** 529, or an `overloaded_error` in the stream. */
  | 'overloaded'
  /** Other 5xx, 408, 409, or an `api_error` in the stream. */
  | 'server'
  /** The call ran past `timeoutMs`. */
  | 'timeout'
  /** The API could not be reached. */
  | 'connection'
  /** The stream broke off or made no sense. */
  | 'stream'
  /** The caller's signal aborted the call. */
  | 'aborted'
  /** The host refused to forward the request (a block or field it does not allow); no call made. */
  | 'refused'
  /** The API answered with content the host cannot pass on (a block type it does not handle). */
  | 'bad_answer';

/**
 * A failed model call. Its `message` is fit for the container and the chat (no host detail, no
 * key); `detail` says more, for the host's log. The SDK's error is kept as `cause`.
 */
export class ModelError extends Error {
  override readonly name = 'ModelError';
  readonly kind: ModelErrorKind;
  /** True when the same request may succeed later (rate limits, overload, network, timeouts). */
  readonly retryable: boolean;
  /** The HTTP status, when the API answered with one. */
  readonly status: number | null;
  /**
   * How long the API asked us to wait before trying again, in whole milliseconds, from its
   * `retry-after-ms` or `retry-after` header; null when it did not say (or said nonsense).
   */
  readonly retryAfterMs: number | null;
  /**
   * What went wrong in full, for the host's log only: it may name the base URL, the model and
   * the network error. Redacted of secrets, like the message. Defaults to the message.
   */
  readonly detail: string;

  /** @param message safe for the container and the chat: see the module comment. */
  constructor(
    message: string,
    opts: {
      kind: ModelErrorKind;
      retryable: boolean;
      status?: number | null;
      retryAfterMs?: number | null;
      detail?: string;
      cause?: unknown;
    },
  ) {
    super(redactSecrets(message), { cause: opts.cause });
    this.kind = opts.kind;
    this.retryable = opts.retryable;
    this.status = opts.status ?? null;
    this.retryAfterMs = opts.retryAfterMs ?? null;
    this.detail = opts.detail === undefined ? this.message : redactSecrets(opts.detail);
  }
}

/** What the classification needs to know about the broker that made the call. */
export interface ModelErrorContext {
  /** Named in the host-only `detail` of connection and not-found errors. */
  baseURL: string;
  /** Named in the host-only `detail` of permission and not-found errors. */
  model: string;
  /** The broker's deadline for one call, named in timeout messages. */
  timeoutMs: number;
}

/** The kinds an answer from the API (an HTTP status or a stream `error` event) can have. */
export type ApiErrorKind = Exclude<
  ModelErrorKind,
  'no_key' | 'timeout' | 'connection' | 'stream' | 'aborted' | 'refused' | 'bad_answer'
>;

/**
 * Classifies an answer from the API by its HTTP status, or, for an `error` event inside a
 * stream (which has no status of its own), by the error type in its body.
 */
export function kindOf(status: number | undefined, type: string | null): ApiErrorKind {
  if (status === undefined) {
    switch (type) {
      case 'overloaded_error':
        return 'overloaded';
      case 'rate_limit_error':
        return 'rate_limit';
      case 'api_error':
      case 'timeout_error':
        return 'server';
      case 'authentication_error':
        return 'auth';
      case 'permission_error':
        return 'permission';
      case 'not_found_error':
        return 'not_found';
      case 'billing_error':
        return 'billing';
      default:
        return 'bad_request';
    }
  }
  if (status === 401) return 'auth';
  if (status === 402) return 'billing';
  if (status === 403) return 'permission';
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limit';
  if (status === 529) return 'overloaded';
  // The SDK retries 408 and 409 too, so they are transient by its own reckoning.
  if (status === 408 || status === 409 || status >= 500) return 'server';
  return 'bad_request';
}

/** The caller's signal aborted the call. */
export function abortedError(cause?: unknown): ModelError {
  return new ModelError('The model call was cancelled.', {
    kind: 'aborted',
    retryable: false,
    cause,
  });
}

/** The call ran past the broker's deadline of `timeoutMs`. */
export function timeoutError(timeoutMs: number, cause: unknown): ModelError {
  return new ModelError(`The Anthropic API did not finish within ${formatSeconds(timeoutMs)}.`, {
    kind: 'timeout',
    retryable: true,
    cause,
  });
}

/** Turns whatever the SDK threw into a {@link ModelError}. */
export function toModelError(err: unknown, context: ModelErrorContext): ModelError {
  if (err instanceof APIUserAbortError) return abortedError(err);
  // Before APIConnectionError, which it extends.
  if (err instanceof APIConnectionTimeoutError) return timeoutError(context.timeoutMs, err);
  if (err instanceof APIConnectionError) {
    const reason = networkReason(err);
    // Only an error code such as ECONNREFUSED goes to the container: a network error's message
    // names the address it tried.
    const code = reason && ERROR_CODE.test(reason) ? ` (${reason})` : '';
    return new ModelError(`Could not reach the Anthropic API${code}.`, {
      kind: 'connection',
      retryable: true,
      detail: `Could not reach the Anthropic API at ${context.baseURL}${reason ? ` (${reason})` : ''}.`,
      cause: err,
    });
  }
  if (err instanceof APIError) {
    const apiText = truncate(err.apiMessage ?? err.message, 300);
    return httpError(
      {
        status: err.status,
        type: err.type,
        detail: scrubHostDetail(apiText, context.baseURL),
        retryAfterMs: retryAfterOf(err.headers),
      },
      context,
      err,
    );
  }
  // What is left is whatever broke while reading the stream (the SDK wraps it in a plain
  // AnthropicError), typically a connection dropped mid-answer. Nothing was handed to the
  // runner yet, so the same request may simply be sent again.
  const text = truncate(err instanceof Error ? err.message : String(err), 300);
  return new ModelError(
    `The Anthropic API stream broke off: ${scrubHostDetail(text, context.baseURL)}`,
    {
      kind: 'stream',
      retryable: true,
      detail: `The Anthropic API stream from ${context.baseURL} broke off: ${text}`,
      cause: err,
    },
  );
}

/** A Node error code, e.g. `ECONNREFUSED`, `ENOTFOUND`, `UND_ERR_SOCKET`. */
const ERROR_CODE = /^[A-Z][A-Z0-9_]{2,40}$/;

/**
 * Text from the API or the network, made fit for the container: secrets redacted, and the
 * base URL, its host, any other URL, any IP address and any request id replaced. A gateway's
 * error page may name the internal host it failed to reach; a body the SDK could not read as
 * an API error is quoted whole, request id included.
 */
export function scrubHostDetail(text: string, baseURL: string): string {
  let out = redactSecrets(text);
  const hosts = [baseURL.replace(/\/+$/, '')];
  try {
    const url = new URL(baseURL);
    hosts.push(url.host, url.hostname);
  } catch {
    // Not a URL: only its literal text is replaced.
  }
  for (const host of hosts) {
    if (host) out = out.split(host).join('[host]');
  }
  return out
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>)\]]+/gi, '[url]')
    .replace(/\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b/g, '[address]')
    .replace(/\breq_[A-Za-z0-9]{6,}/g, '[request id]')
    .replace(/\[[0-9a-f:]*:[0-9a-f:]*\](?::\d{1,5})?/gi, '[address]');
}

/** What the API answered with: an HTTP error, or an `error` event inside a stream. */
export interface ApiErrorAnswer {
  /** Undefined for an `error` event inside a stream. */
  status: number | undefined;
  /** The error type in the body, e.g. `overloaded_error`. */
  type: string | null;
  /** The API's message, already truncated and scrubbed ({@link scrubHostDetail}). */
  detail: string;
  /** From the answer's `retry-after-ms` or `retry-after` header. */
  retryAfterMs: number | null;
}

/**
 * Classifies an answer from the API and words it: the message from the status, the error type
 * and the API's own words (`429 rate_limit_error: …`), plus what a user can do; the host-only
 * detail adds the model and the base URL where they are the likely fault.
 */
export function httpError(
  answer: ApiErrorAnswer,
  context: Pick<ModelErrorContext, 'baseURL' | 'model'>,
  cause: unknown,
): ModelError {
  const { status, type, detail, retryAfterMs } = answer;
  const kind = kindOf(status, type);
  const code = [status, type].filter((part) => part !== undefined && part !== null).join(' ');
  const answered = `(${code || 'error'}: ${detail})`;
  const make = (retryable: boolean, message: string, hostDetail = message): ModelError =>
    new ModelError(message, {
      kind,
      retryable,
      status: status ?? null,
      retryAfterMs,
      detail: hostDetail,
      cause,
    });
  switch (kind) {
    case 'auth':
      return make(
        false,
        `The Anthropic API rejected the key ${answered}. Check ANTHROPIC_API_KEY or the key in Settings.`,
      );
    case 'billing':
      return make(
        false,
        `The Anthropic API refused the call for billing reasons ${answered}. Check the account's plan and credit.`,
      );
    case 'permission':
      return make(
        false,
        `The Anthropic API denied access ${answered}. The key may not be allowed to use the configured model.`,
        `The Anthropic API denied access ${answered}. The key may not be allowed to use model "${context.model}".`,
      );
    case 'not_found':
      return make(
        false,
        `The Anthropic API answered not found ${answered}. Check the model name and the base URL in the settings.`,
        `The Anthropic API answered not found ${answered}. Check the model name "${context.model}" and the base URL ${context.baseURL}.`,
      );
    case 'bad_request':
      return make(false, `The Anthropic API rejected the request ${answered}.`);
    case 'rate_limit':
      return make(true, `The Anthropic API rate limit was reached ${answered}. Try again shortly.`);
    case 'overloaded':
      return make(true, `The Anthropic API is overloaded ${answered}. Try again shortly.`);
    case 'server':
      return make(true, `The Anthropic API failed ${answered}. Try again shortly.`);
    default: {
      const unreachable: never = kind;
      return unreachable;
    }
  }
}

/** The host refused to forward a request; `reason` says where and why, in one sentence. */
export function refusedError(reason: string): ModelError {
  return new ModelError(`The request was refused: ${reason}.`, {
    kind: 'refused',
    retryable: false,
  });
}

/** The API answered with content the host cannot pass to the container. */
export function badAnswerError(reason: string): ModelError {
  return new ModelError(
    `The Anthropic API answered with content the host cannot pass on: ${reason}.`,
    {
      kind: 'bad_answer',
      retryable: false,
    },
  );
}

/**
 * The longest wait a `retry-after` may ask for before it is taken for nonsense.
 * @default 1 hour (the protocol's own cap on `retryAfterMs`)
 */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

/** A plain non-negative decimal number, as `retry-after` (seconds) and `retry-after-ms` carry. */
const DECIMAL = /^\d+(?:\.\d+)?$/;

/**
 * How long an API answer asks us to wait, in whole milliseconds: `retry-after-ms` (a float,
 * which Anthropic sends) wins; else `retry-after`, in seconds or as an HTTP date. Values that
 * are not numbers, negative, or longer than {@link MAX_RETRY_AFTER_MS} are ignored.
 */
export function retryAfterOf(
  headers: Pick<Headers, 'get'> | null | undefined,
  now: number = Date.now(),
): number | null {
  if (!headers) return null;
  const millis = headers.get('retry-after-ms')?.trim();
  if (millis && DECIMAL.test(millis)) {
    const wait = saneWait(Number(millis));
    if (wait !== null) return wait;
  }
  const after = headers.get('retry-after')?.trim();
  if (!after) return null;
  if (DECIMAL.test(after)) return saneWait(Number(after) * 1000);
  const date = Date.parse(after);
  return Number.isNaN(date) ? null : saneWait(date - now);
}

function saneWait(ms: number): number | null {
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_RETRY_AFTER_MS) return null;
  return Math.ceil(ms);
}

/** The innermost network error code or message, e.g. `ECONNREFUSED`. */
export function networkReason(err: Error): string | null {
  let reason: string | null = null;
  let current: unknown = err.cause;
  for (let depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    reason = typeof code === 'string' ? code : current.message;
    current = current.cause;
  }
  return reason;
}

export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
