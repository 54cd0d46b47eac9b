/**
 * Keeps secrets out of logs: {@link redactSecrets} for text, and {@link serializeError}, the
 * pino serializer for `err` (wired in `createLogger`).
 *
 * An upstream error body may echo the API key back (a proxy, a misconfigured gateway), and
 * pino's own error serializer prints the whole cause chain, messages and stacks included, plus
 * every field of the error (the SDK's parsed error body among them). So redaction cannot stop
 * at the top message: the serializer here redacts the message, the stack, every cause, the
 * errors of an AggregateError, and every string field at any depth.
 *
 * What counts as a secret: every value given to {@link registerSecret} (the configured API
 * key, registered at start), anything that looks like an Anthropic key or token (`sk-ant-…`),
 * and the value of credential headers (`Authorization`, `x-api-key`, …) wherever they appear
 * in text or as object fields.
 */

/** What a secret is replaced with. */
export const REDACTED = '[redacted]';

/**
 * Values shorter than this are not registered: redacting every occurrence of a short string
 * would mangle ordinary text, and no real key is that short.
 */
const MIN_SECRET_LENGTH = 8;

/** Registered secrets, longest first once sorted, so a key that contains another goes whole. */
const secrets = new Set<string>();
let sortedSecrets: string[] = [];

/**
 * Adds a value to redact from every log line and error message from now on (the configured
 * API key). Its URL-encoded form is redacted too. Empty and very short values are ignored.
 */
export function registerSecret(value: string | null | undefined): void {
  const secret = value?.trim();
  if (!secret || secret.length < MIN_SECRET_LENGTH) return;
  const before = secrets.size;
  secrets.add(secret);
  const encoded = encodeURIComponent(secret);
  if (encoded !== secret) secrets.add(encoded);
  // The log line is redacted as JSON text, where a quote or backslash in the key is escaped.
  const inJson = JSON.stringify(secret).slice(1, -1);
  if (inJson !== secret) secrets.add(inJson);
  if (secrets.size !== before) sortedSecrets = [...secrets].sort((a, b) => b.length - a.length);
}

/** Anthropic keys and OAuth tokens: `sk-ant-api03-…`, `sk-ant-oat01-…`, `sk-ant-admin01-…`. */
const ANTHROPIC_TOKEN = /sk-ant-[A-Za-z0-9_-]+/g;

/** Header names whose values are credentials. */
const CREDENTIAL_HEADERS = 'authorization|proxy-authorization|x-api-key|api-key|anthropic-api-key';

/**
 * A credential header in text: `Authorization: Bearer abc`, `"x-api-key":"abc"`,
 * `x-api-key=abc`. The scheme word (Bearer, Basic) is kept; the value goes.
 */
const CREDENTIAL_HEADER_TEXT = new RegExp(
  // The lookahead skips a value already redacted (a registered key), which would else come
  // out as "[redacted]]".
  `\\b(${CREDENTIAL_HEADERS})(["']?\\s*[:=]\\s*["']?)(?!(?:(?:bearer|basic|token)\\s+)?\\[redacted\\])((?:bearer|basic|token)\\s+)?[^\\s"',;})>\\]]+`,
  'gi',
);

/** Object fields whose whole value is a credential, whatever it looks like. */
const CREDENTIAL_FIELD = new RegExp(
  `^(?:${CREDENTIAL_HEADERS}|api[-_]?key|apikey|auth[-_]?token|access[-_]?token|password|secret)$`,
  'i',
);

/** Removes registered secrets, Anthropic-looking keys and credential header values. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const secret of sortedSecrets) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  return out
    .replace(ANTHROPIC_TOKEN, REDACTED)
    .replace(CREDENTIAL_HEADER_TEXT, (_match, name: string, sep: string, scheme?: string) => {
      return `${name}${sep}${scheme ?? ''}${REDACTED}`;
    });
}

// ── errors ────────────────────────────────────────────────────────────────

/** How deep a field value is followed before it is cut off. */
const MAX_VALUE_DEPTH = 6;
/** How many causes of one error are followed. */
const MAX_CAUSES = 10;
/** Items of an array field kept. */
const MAX_ARRAY_ITEMS = 50;

interface ErrorLike {
  message: string;
  stack?: unknown;
  cause?: unknown;
  errors?: unknown;
  name?: unknown;
}

function isErrorLike(value: unknown): value is ErrorLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/**
 * A serialized error: `type`, `message` (the error's own), `stack` (its stack, then each
 * cause's after a `caused by:` line), the error's other fields (`code`, `status`…), then
 * `causes`, one entry per cause in order, each with its type, its message and its fields.
 */
export type SerializedError = Record<string, unknown> & {
  type: string;
  message: string;
  stack: string;
  causes?: SerializedCause[];
};

/**
 * One cause of a serialized error. `message` is left out when an earlier message in the chain
 * already contains it: errors here are often built as `new XError(\`what failed: ${err.message}\`,
 * { cause: err })`, and printing every message of such a chain said the same thing two or three
 * times ("X: Y: Y").
 */
export type SerializedCause = Record<string, unknown> & { type: string; message?: string };

/**
 * The pino serializer for `err` (and `error`): an error becomes `{ type, message, stack, …,
 * causes }` with every string redacted. Values that are not errors are redacted the same way,
 * field by field.
 */
export function serializeError(value: unknown): unknown {
  if (!isErrorLike(value)) return redactValue(value, 0, new Set());
  return serializeErrorLike(value, new Set());
}

function serializeErrorLike(err: ErrorLike, seen: Set<unknown>): SerializedError {
  seen.add(err);
  const message = redactSecrets(err.message);
  const out: SerializedError = {
    type: errorType(err),
    message,
    // The whole chain's stacks: the log file is for finding out what went wrong after the
    // fact, when nobody can run it again at debug. The terminal shows them only at debug.
    stack: redactSecrets(
      chainText(err, (e) => (typeof e.stack === 'string' ? e.stack : e.message), '\ncaused by: '),
    ),
  };
  copyFields(err, out, seen);
  // Each cause with its type, its message unless already said, and its other fields (an SDK
  // error's status, request id and parsed body; an AggregateError's errors), so nothing pino
  // would print, or that says what went wrong, is lost to the redaction.
  const said = [message];
  const causes: SerializedCause[] = [];
  let cause = err.cause;
  while (isErrorLike(cause) && !seen.has(cause) && causes.length < MAX_CAUSES) {
    seen.add(cause);
    const entry: SerializedCause = { type: errorType(cause) };
    const text = redactSecrets(cause.message);
    if (!alreadySaid(said, text)) {
      entry.message = text;
      said.push(text);
    }
    copyFields(cause, entry, seen);
    causes.push(entry);
    cause = cause.cause;
  }
  if (causes.length > 0) out.causes = causes;
  // A cause that is not an error (a string, a response body) is kept, redacted, since it
  // often says what went wrong.
  if (cause !== undefined && !isErrorLike(cause)) out.cause = redactValue(cause, 1, seen);
  return out;
}

/**
 * Whether `text` says nothing that one of `earlier` does not: empty, or contained in one of
 * them, give or take the final full stop (a parent often quotes its cause without it:
 * `${err.message.replace(/[\s.]+$/, '')}; the conversation is forgotten`).
 */
export function alreadySaid(earlier: readonly string[], text: string): boolean {
  const core = text.trim().replace(/[\s.]+$/, '');
  return core === '' || earlier.some((said) => said.includes(core));
}

/**
 * Copies an error's fields into `out`, redacted: its AggregateError errors, then every
 * enumerable field, own and inherited (for…in, as pino does), but not its cause, message or
 * stack, which the chain texts carry.
 */
function copyFields(err: ErrorLike, out: Record<string, unknown>, seen: Set<unknown>): void {
  if (Array.isArray(err.errors)) {
    out.aggregateErrors = err.errors
      .slice(0, MAX_ARRAY_ITEMS)
      .map((inner: unknown) =>
        isErrorLike(inner) && !seen.has(inner)
          ? serializeErrorLike(inner, seen)
          : redactValue(inner, 1, seen),
      );
  }
  for (const key in err) {
    if (Object.hasOwn(out, key) || SKIPPED_FIELDS.has(key)) continue;
    let field: unknown;
    try {
      field = (err as unknown as Record<string, unknown>)[key];
    } catch {
      continue; // A throwing getter: leave the field out rather than lose the whole line.
    }
    if (field instanceof Error) {
      if (!seen.has(field)) out[key] = serializeErrorLike(field as ErrorLike, seen);
    } else {
      out[key] = redactValue(field, 1, seen);
    }
  }
}

/** Error fields the serialized form carries otherwise (or not at all). */
const SKIPPED_FIELDS = new Set(['cause', 'errors', 'stack', 'message']);

function errorType(err: ErrorLike): string {
  const ctor = (err as { constructor?: unknown }).constructor;
  if (typeof ctor === 'function' && ctor.name && ctor.name !== 'Object') return ctor.name;
  // A plain object: an error serialized already (the model broker logs `serializeError(e)` as
  // `err`, which pino serializes again), or an API error body.
  const type = (err as { type?: unknown }).type;
  if (typeof type === 'string') return type;
  return typeof err.name === 'string' ? err.name : 'Error';
}

/**
 * The texts of an error and its causes, joined: each stack after a `caused by:` line. Stops at
 * a cycle or after {@link MAX_CAUSES}.
 */
function chainText(err: ErrorLike, pick: (e: ErrorLike) => string, separator: string): string {
  const parts: string[] = [];
  const visited = new Set<unknown>();
  let current: unknown = err;
  while (isErrorLike(current) && parts.length <= MAX_CAUSES) {
    if (visited.has(current)) {
      parts.push('…causes have become circular');
      break;
    }
    visited.add(current);
    parts.push(pick(current));
    current = current.cause;
  }
  return parts.join(separator);
}

/** A copy of a logged value with every string redacted, safe to hand to JSON. */
function redactValue(value: unknown, depth: number, seen: Set<unknown>): unknown {
  switch (typeof value) {
    case 'string':
      return redactSecrets(value);
    case 'number':
    case 'boolean':
    case 'undefined':
      return value;
    case 'bigint':
      return value.toString();
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (value === null) return null;
  // Only real errors here: a plain object with a `message` (an API error body) stays an object.
  if (value instanceof Error) {
    return seen.has(value) ? '[circular]' : serializeErrorLike(value, seen);
  }
  if (seen.has(value)) return '[circular]';
  if (depth > MAX_VALUE_DEPTH) return '[too deep]';
  if (ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      return value.slice(0, MAX_ARRAY_ITEMS).map((item) => redactValue(item, depth + 1, seen));
    }
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      // A URL, for one, serialises through toJSON, and may carry credentials.
      return redactValue(toJSON.call(value), depth + 1, seen);
    }
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value as object)) {
      out[key] =
        CREDENTIAL_FIELD.test(key) && field !== null && field !== undefined
          ? REDACTED
          : redactValue(field, depth + 1, seen);
    }
    return out;
  } catch {
    return '[unreadable]';
  } finally {
    seen.delete(value);
  }
}
